//! The GraphQL subset aoconnect (legacy mode) and `@permaweb/ao-scheduler-utils` send to a gateway:
//! `transactions(ids:, owners:, tags: [{name, values}], first:, sort:, after:)` with any selection of
//! `pageInfo{hasNextPage}`, `edges{cursor node{id anchor signature recipient owner{address key}
//! fee{winston ar} quantity{winston ar} data{size type} tags{name value} block{id timestamp height
//! previous} parent{id}}}`. Variables (`$name`) are resolved from the request's `variables`. The answer
//! holds exactly the selected fields (aliases are not supported), served from the local store.
//!
//! Every bound is checked before any work is done, so a hostile query is a 400, never a stack overflow or
//! an unbounded scan: at most [`MAX_QUERY_BYTES`] of query text and [`MAX_TOKENS`] tokens, selections and
//! argument values nested at most [`MAX_DEPTH`] deep (the parser recurses once per level), and at most
//! [`MAX_IDS`] ids, owners or tag filters per `transactions` field. aoconnect's deepest query nests 6 levels.

use serde_json::{Map, Value, json};

use crate::error::NodeError;

/// Most bytes of query text.
pub const MAX_QUERY_BYTES: usize = 64 << 10;
/// Most tokens in a query.
pub const MAX_TOKENS: usize = 16_384;
/// Deepest nesting of selections, and separately of argument values (lists and objects).
pub const MAX_DEPTH: usize = 24;
/// Most `ids`, `owners` or `tags` entries in one `transactions` field.
pub const MAX_IDS: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(String),
    Punct(char),
}

fn tokenize(q: &str) -> Result<Vec<Tok>, NodeError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(NodeError::BadRequest(format!(
            "GraphQL: the query is {} bytes, more than the {MAX_QUERY_BYTES} allowed",
            q.len()
        )));
    }
    let b: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        if out.len() > MAX_TOKENS {
            return Err(NodeError::BadRequest(format!(
                "GraphQL: the query has more than {MAX_TOKENS} tokens"
            )));
        }
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

fn too_deep(what: &str) -> NodeError {
    NodeError::BadRequest(format!(
        "GraphQL: {what} nested more than {MAX_DEPTH} levels deep"
    ))
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
        self.selection(0)
    }

    fn selection(&mut self, depth: usize) -> Result<Vec<Field>, NodeError> {
        if depth >= MAX_DEPTH {
            return Err(too_deep("selections"));
        }
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.eat('}') {
            let name = self.name()?;
            let mut args = Vec::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let a = self.name()?;
                    self.expect(':')?;
                    args.push((a, self.value(0)?));
                }
            }
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection(depth + 1)?
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

    fn value(&mut self, depth: usize) -> Result<Value, NodeError> {
        if depth >= MAX_DEPTH {
            return Err(too_deep("argument values"));
        }
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
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            Some(Tok::Punct('{')) => {
                let mut m = Map::new();
                while !self.eat('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    m.insert(k, self.value(depth + 1)?);
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

    /// Reads `transactions` arguments; more than [`MAX_IDS`] ids, owners or tags is a 400.
    pub fn tx_filter(&self) -> Result<TxFilter, NodeError> {
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
        let counts = [
            ("ids", f.ids.as_ref().map_or(0, Vec::len)),
            ("owners", f.owners.as_ref().map_or(0, Vec::len)),
            ("tags", f.tags.len()),
        ];
        if let Some((name, n)) = counts.iter().find(|(_, n)| *n > MAX_IDS) {
            return Err(NodeError::BadRequest(format!(
                "GraphQL: {n} {name} given, at most {MAX_IDS} are allowed"
            )));
        }
        Ok(f)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(query: &str, variables: &Value) -> String {
        match parse(query, variables) {
            Err(NodeError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn deeply_nested_selections_are_a_400_not_a_stack_overflow() {
        // The attack of issue 16 (~7,000 levels in 21 KB, which aborted the node) is a 400; it is over the
        // token bound too, so the depth bound is shown alone on 2,000 levels.
        let q = format!("{}{}", "{a".repeat(7_000), "}".repeat(7_000));
        rejected(&q, &Value::Null);
        let q = format!("{}{}", "{a".repeat(2_000), "}".repeat(2_000));
        assert!(rejected(&q, &Value::Null).contains("selections nested more than"));
        // The limit itself: MAX_DEPTH - 1 nested selections parse, one more does not.
        let ok = format!("{}{}", "{a".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&ok, &Value::Null).is_ok());
        let over = format!("{}{}", "{a".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert!(rejected(&over, &Value::Null).contains("selections"));
    }

    #[test]
    fn deeply_nested_argument_values_are_a_400() {
        for (open, close) in [("[", "]"), ("{k:", "}")] {
            let q = format!(
                "{{ transactions(ids: {}1{}) {{ edges }} }}",
                open.repeat(2_000),
                close.repeat(2_000)
            );
            assert!(
                rejected(&q, &Value::Null).contains("argument values nested"),
                "{open}"
            );
        }
    }

    #[test]
    fn oversized_queries_and_token_floods_are_a_400() {
        let big = format!("{{ transactions {{ {} }} }}", "x ".repeat(MAX_QUERY_BYTES));
        assert!(rejected(&big, &Value::Null).contains("bytes"));
        let many = format!(
            "{{ transactions(ids: [{}]) {{ edges }} }}",
            "1 ".repeat(MAX_TOKENS)
        );
        assert!(rejected(&many, &Value::Null).contains("tokens"));
    }

    #[test]
    fn too_many_ids_are_a_400() {
        let vars = serde_json::json!({ "ids": vec!["x"; MAX_IDS + 1] });
        let fields = parse(
            "query ($ids: [ID!]) { transactions(ids: $ids) { edges { cursor } } }",
            &vars,
        )
        .unwrap();
        assert!(matches!(fields[0].tx_filter(), Err(NodeError::BadRequest(m)) if m.contains("ids")));
        let vars = serde_json::json!({ "ids": vec!["x"; MAX_IDS] });
        let fields = parse(
            "query ($ids: [ID!]) { transactions(ids: $ids) { edges { cursor } } }",
            &vars,
        )
        .unwrap();
        assert_eq!(fields[0].tx_filter().unwrap().ids.unwrap().len(), MAX_IDS);
    }
}
