//! The GraphQL subset aoconnect (legacy mode) and `@permaweb/ao-scheduler-utils` send to a gateway:
//! `transactions(ids:, owners:, tags: [{name, values}], first:, sort:, after:)` with any selection of
//! `pageInfo{hasNextPage}`, `edges{cursor node{id anchor signature recipient owner{address key}
//! fee{winston ar} quantity{winston ar} data{size type} tags{name value} block{id timestamp height
//! previous} parent{id}}}`. Variables (`$name`) are resolved from the request's `variables`. The answer
//! holds exactly the selected fields (aliases are not supported), served from the local store.

use serde_json::{Map, Value, json};

use crate::error::NodeError;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(String),
    Punct(char),
}

fn tokenize(q: &str) -> Result<Vec<Tok>, NodeError> {
    let b: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() || c == ',' {
            i += 1;
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(b[s..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '-' {
            let s = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(b[s..i].iter().collect()));
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' && i + 1 < b.len() {
                    i += 1;
                }
                s.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                return Err(NodeError::BadRequest("GraphQL: unterminated string".into()));
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if "{}()[]:!$=@".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else if c == '.' {
            i += 1; // `...` spreads are not supported; skipped as punctuation
        } else {
            return Err(NodeError::BadRequest(format!(
                "GraphQL: unexpected character {c:?}"
            )));
        }
    }
    Ok(out)
}

/// A selected field with its arguments and sub-selection.
#[derive(Debug, Clone)]
pub struct Field {
    name: String,
    args: Vec<(String, Value)>,
    selection: Vec<Field>,
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    vars: &'a Value,
}

fn syntax(what: &str) -> NodeError {
    NodeError::BadRequest(format!("GraphQL syntax error: {what}"))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> Result<(), NodeError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(syntax(&format!("expected {c:?}")))
        }
    }
    fn name(&mut self) -> Result<String, NodeError> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            _ => Err(syntax("expected a name")),
        }
    }

    fn document(&mut self) -> Result<Vec<Field>, NodeError> {
        if let Some(Tok::Name(n)) = self.peek()
            && n == "query"
        {
            self.pos += 1;
            if let Some(Tok::Name(_)) = self.peek() {
                self.pos += 1;
            }
            if self.eat('(') {
                // Variable definitions: skipped up to the matching ')'.
                let mut depth = 1;
                while depth > 0 {
                    match self.next() {
                        Some(Tok::Punct('(')) => depth += 1,
                        Some(Tok::Punct(')')) => depth -= 1,
                        None => return Err(syntax("unterminated variable definitions")),
                        _ => {}
                    }
                }
            }
        }
        self.selection()
    }

    fn selection(&mut self) -> Result<Vec<Field>, NodeError> {
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.eat('}') {
            let name = self.name()?;
            let mut args = Vec::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let a = self.name()?;
                    self.expect(':')?;
                    args.push((a, self.value()?));
                }
            }
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection()?
            } else {
                Vec::new()
            };
            fields.push(Field {
                name,
                args,
                selection,
            });
        }
        Ok(fields)
    }

    fn value(&mut self) -> Result<Value, NodeError> {
        match self.next() {
            Some(Tok::Punct('$')) => {
                let n = self.name()?;
                Ok(self.vars.get(&n).cloned().unwrap_or(Value::Null))
            }
            Some(Tok::Str(s)) => Ok(Value::String(s)),
            Some(Tok::Num(n)) => Ok(n.parse::<i64>().map(Value::from).unwrap_or(Value::String(n))),
            Some(Tok::Name(n)) => Ok(match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(n),
            }),
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.value()?);
                }
                Ok(Value::Array(items))
            }
            Some(Tok::Punct('{')) => {
                let mut m = Map::new();
                while !self.eat('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    m.insert(k, self.value()?);
                }
                Ok(Value::Object(m))
            }
            _ => Err(syntax("expected a value")),
        }
    }
}

/// Parses a query document into its top-level fields.
pub fn parse(query: &str, variables: &Value) -> Result<Vec<Field>, NodeError> {
    let mut p = Parser {
        toks: tokenize(query)?,
        pos: 0,
        vars: variables,
    };
    p.document()
}

/// The `transactions` arguments.
#[derive(Debug, Default)]
pub struct TxFilter {
    /// `ids`.
    pub ids: Option<Vec<String>>,
    /// `owners`.
    pub owners: Option<Vec<String>>,
    /// `tags`: name and accepted values.
    pub tags: Vec<(String, Vec<String>)>,
    /// `first` (default 10).
    pub first: usize,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl Field {
    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads `transactions` arguments.
    pub fn tx_filter(&self) -> TxFilter {
        let mut f = TxFilter {
            first: 10,
            ..TxFilter::default()
        };
        for (k, v) in &self.args {
            match k.as_str() {
                "ids" => f.ids = Some(strings(v)),
                "owners" => f.owners = Some(strings(v)),
                "first" => f.first = v.as_u64().map_or(10, |n| n.min(100) as usize),
                "tags" => {
                    if let Value::Array(items) = v {
                        for t in items {
                            let name = t
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string();
                            let values = t.get("values").map(strings).unwrap_or_default();
                            f.tags.push((name, values));
                        }
                    }
                }
                _ => {}
            }
        }
        f
    }

    /// Projects `full` onto this field's selection.
    pub fn project(&self, full: &Value) -> Value {
        if self.selection.is_empty() {
            return full.clone();
        }
        match full {
            Value::Array(items) => Value::Array(items.iter().map(|i| self.project(i)).collect()),
            Value::Object(m) => {
                let mut out = Map::new();
                for f in &self.selection {
                    let v = m.get(&f.name).map_or(Value::Null, |v| f.project(v));
                    out.insert(f.name.clone(), v);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

impl TxFilter {
    /// Whether a full node passes the owner and tag filters.
    pub fn matches(&self, node: &Value) -> bool {
        if let Some(owners) = &self.owners {
            let addr = node["owner"]["address"].as_str().unwrap_or_default();
            if !owners.iter().any(|o| o == addr) {
                return false;
            }
        }
        let tags = node["tags"].as_array().cloned().unwrap_or_default();
        self.tags.iter().all(|(name, values)| {
            tags.iter().any(|t| {
                t["name"].as_str() == Some(name.as_str())
                    && t["value"]
                        .as_str()
                        .is_some_and(|v| values.is_empty() || values.iter().any(|x| x == v))
            })
        })
    }
}

/// `{data: {transactions: {pageInfo, edges}}}` for full nodes, projected on the selection.
pub fn transactions_answer(field: &Field, nodes: Vec<Value>, first: usize) -> Value {
    let more = nodes.len() > first;
    let edges: Vec<Value> = nodes
        .into_iter()
        .take(first)
        .map(|n| json!({"cursor": n["id"].clone(), "node": n}))
        .collect();
    let full = json!({"pageInfo": {"hasNextPage": more}, "edges": edges});
    field.project(&full)
}
