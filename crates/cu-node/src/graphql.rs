//! The GraphQL subset aoconnect (legacy mode) and `@permaweb/ao-scheduler-utils` send to a gateway:
//! `transactions(ids:, owners:, tags: [{name, values}], block: {min, max}, first:, sort:, after:)` with any selection of
//! `pageInfo{hasNextPage}`, `edges{cursor node{id anchor signature recipient owner{address key}
//! fee{winston ar} quantity{winston ar} data{size type} tags{name value} block{id timestamp height
//! previous} parent{id}}}`, and `blocks(height: {min, max}, first:, sort:)` (the reference CU's cron
//! block metadata). Variables (`$name`) are resolved from the request's `variables`, with the defaults
//! of the variable definitions; `@skip(if:)` and `@include(if:)` drop or keep a field, as the reference
//! CU's `GetProcesses` query uses them. The answer holds exactly the selected fields (aliases are not
//! supported), served from the local store.
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

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// The request's variables, with the definitions' defaults added.
    vars: Value,
}

fn syntax(what: &str) -> NodeError {
    NodeError::BadRequest(format!("GraphQL syntax error: {what}"))
}

fn too_deep(what: &str) -> NodeError {
    NodeError::BadRequest(format!(
        "GraphQL: {what} nested more than {MAX_DEPTH} levels deep"
    ))
}

impl Parser {
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
                self.variable_definitions()?;
            }
        }
        self.selection(0)
    }

    /// `($name: Type = default, ...)`: the types are not checked; a default fills a variable the
    /// request's `variables` leave out.
    fn variable_definitions(&mut self) -> Result<(), NodeError> {
        while !self.eat(')') {
            self.expect('$')?;
            let name = self.name()?;
            self.expect(':')?;
            self.skip_type(0)?;
            if self.eat('=') {
                let default = self.value(0)?;
                if let Value::Object(vars) = &mut self.vars
                    && !vars.contains_key(&name)
                {
                    vars.insert(name, default);
                }
            }
        }
        Ok(())
    }

    /// A type reference: `Name`, `[Type]`, each maybe followed by `!`.
    fn skip_type(&mut self, depth: usize) -> Result<(), NodeError> {
        if depth >= MAX_DEPTH {
            return Err(too_deep("types"));
        }
        if self.eat('[') {
            self.skip_type(depth + 1)?;
            self.expect(']')?;
        } else {
            self.name()?;
        }
        self.eat('!');
        Ok(())
    }

    /// `@skip(if: Boolean)` / `@include(if: Boolean)` after a field; whether the field stays.
    fn directives(&mut self) -> Result<bool, NodeError> {
        let mut keep = true;
        while self.eat('@') {
            let directive = self.name()?;
            let mut condition = None;
            if self.eat('(') {
                while !self.eat(')') {
                    let a = self.name()?;
                    self.expect(':')?;
                    let v = self.value(0)?;
                    if a == "if" {
                        condition = Some(v);
                    }
                }
            }
            let cond = match condition {
                Some(Value::Bool(b)) => b,
                Some(other) => {
                    return Err(NodeError::BadRequest(format!(
                        "GraphQL: @{directive}(if:) needs a Boolean, got {other}"
                    )));
                }
                None => {
                    return Err(NodeError::BadRequest(format!(
                        "GraphQL: @{directive} needs an `if` argument"
                    )));
                }
            };
            match directive.as_str() {
                "skip" => keep &= !cond,
                "include" => keep &= cond,
                other => {
                    return Err(NodeError::BadRequest(format!(
                        "GraphQL: directive @{other} is not supported (only @skip and @include)"
                    )));
                }
            }
        }
        Ok(keep)
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
            let keep = self.directives()?;
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection(depth + 1)?
            } else {
                Vec::new()
            };
            if keep {
                fields.push(Field {
                    name,
                    args,
                    selection,
                });
            }
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
    let vars = match variables {
        Value::Object(_) => variables.clone(),
        _ => Value::Object(Map::new()),
    };
    let mut p = Parser {
        toks: tokenize(query)?,
        pos: 0,
        vars,
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
    /// `block: {min, max}`: only transactions in a block within these heights (inclusive).
    pub block: Option<(u64, u64)>,
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
                "block" => {
                    let bound = |name: &str, default: u64| match v.get(name) {
                        None | Some(Value::Null) => Ok(default),
                        Some(b) => b.as_u64().ok_or_else(|| {
                            NodeError::BadRequest(format!(
                                "GraphQL: block.{name} must be a non-negative integer, not {b}"
                            ))
                        }),
                    };
                    f.block = Some((bound("min", 0)?, bound("max", u64::MAX)?));
                }
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
        if let Some((min, max)) = self.block {
            // Only mined transactions have a height; a node without a block is outside every range.
            match node["block"]["height"].as_u64() {
                Some(h) if (min..=max).contains(&h) => {}
                _ => return false,
            }
        }
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

/// Most blocks one `blocks` page answers.
pub const MAX_BLOCKS_PAGE: u64 = 1_000;

/// `blocks(height: {min, max}, first:, sort: HEIGHT_ASC | HEIGHT_DESC)` over the node's local chain
/// (heights `0..=current`, block `h` at `timestamp_of(h)` ms, answered in seconds as a gateway does),
/// projected on the selection. `first` defaults to 10 and is capped at [`MAX_BLOCKS_PAGE`].
pub fn blocks_answer(
    field: &Field,
    current: u64,
    timestamp_of: impl Fn(u64) -> u64,
) -> Result<Value, NodeError> {
    let mut min = 0u64;
    let mut max = current;
    let mut first = 10u64;
    let mut descending = false;
    let int = |what: &str, v: &Value| {
        v.as_u64().ok_or_else(|| {
            NodeError::BadRequest(format!(
                "GraphQL: blocks {what} must be a non-negative integer, got {v}"
            ))
        })
    };
    for (k, v) in &field.args {
        match k.as_str() {
            "height" => {
                if let Some(m) = v.get("min").filter(|m| !m.is_null()) {
                    min = int("height.min", m)?;
                }
                if let Some(m) = v.get("max").filter(|m| !m.is_null()) {
                    max = max.min(int("height.max", m)?);
                }
            }
            "first" => first = int("first", v)?.min(MAX_BLOCKS_PAGE),
            "sort" => {
                descending = match v.as_str() {
                    Some("HEIGHT_ASC") => false,
                    Some("HEIGHT_DESC") => true,
                    _ => {
                        return Err(NodeError::BadRequest(format!(
                            "GraphQL: blocks sort {v} is not HEIGHT_ASC or HEIGHT_DESC"
                        )));
                    }
                }
            }
            "ids" | "after" => {
                return Err(NodeError::BadRequest(format!(
                    "GraphQL: blocks argument {k:?} is not supported"
                )));
            }
            _ => {}
        }
    }
    let count = if min > max { 0 } else { max - min + 1 };
    let take = count.min(first);
    let node = |h: u64| {
        json!({
            "id": format!("local-{h}"),
            "timestamp": timestamp_of(h) / 1000,
            "height": h,
            "previous": if h == 0 { Value::Null } else { format!("local-{}", h - 1).into() },
        })
    };
    let edges: Vec<Value> = (0..take)
        .map(|i| if descending { max - i } else { min + i })
        .map(|h| json!({"cursor": h.to_string(), "node": node(h)}))
        .collect();
    let full = json!({"pageInfo": {"hasNextPage": count > take}, "edges": edges});
    Ok(field.project(&full))
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

    /// The reference CU's `GetProcesses` query (servers/cu `effects/arweave.js`), verbatim.
    const GET_PROCESSES: &str = "query GetProcesses (
      $processIds: [ID!]!
      $skipTags: Boolean!
      $skipSignature: Boolean!
      $skipAnchor: Boolean!
    ) {
      transactions(ids: $processIds) {
        edges {
          node {
            id
            signature @skip (if: $skipSignature)
            anchor @skip (if: $skipAnchor)
            owner { address key }
            tags @skip (if: $skipTags) { name value }
            recipient
          }
        }
      }
    }";

    fn node_fields(fields: &[Field]) -> Vec<String> {
        let edges = &fields[0].selection[0];
        edges.selection[0]
            .selection
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    #[test]
    fn skip_and_include_directives_drop_or_keep_fields() {
        let vars =
            json!({"processIds": ["p"], "skipTags": false, "skipSignature": true, "skipAnchor": false});
        let fields = parse(GET_PROCESSES, &vars).unwrap();
        assert_eq!(
            node_fields(&fields),
            ["id", "anchor", "owner", "tags", "recipient"]
        );
        let vars = json!({"processIds": ["p"], "skipTags": true, "skipSignature": false, "skipAnchor": true});
        let fields = parse(GET_PROCESSES, &vars).unwrap();
        assert_eq!(node_fields(&fields), ["id", "signature", "owner", "recipient"]);
        let q = "{ transactions { edges { node { id tags @include(if: false) { name } owner @include(if: true) { address } } } } }";
        assert_eq!(node_fields(&parse(q, &Value::Null).unwrap()), ["id", "owner"]);
        // A non-Boolean condition, a missing `if` and an unknown directive are 400s.
        assert!(rejected("{ a @skip(if: \"yes\") }", &Value::Null).contains("Boolean"));
        assert!(rejected("{ a @skip }", &Value::Null).contains("`if`"));
        assert!(rejected("{ a @deprecated(if: true) }", &Value::Null).contains("not supported"));
    }

    #[test]
    fn variable_defaults_fill_what_the_request_leaves_out() {
        let q = "query Q($skip: Boolean = true, $ids: [ID!]! = [\"x\"]) { transactions(ids: $ids) { edges { node { id tags @skip(if: $skip) { name } } } } }";
        let fields = parse(q, &json!({})).unwrap();
        assert_eq!(node_fields(&fields), ["id"]);
        assert_eq!(fields[0].tx_filter().unwrap().ids, Some(vec!["x".to_owned()]));
        // A given variable wins over the default.
        let fields = parse(q, &json!({"skip": false, "ids": ["y"]})).unwrap();
        assert_eq!(node_fields(&fields), ["id", "tags"]);
        assert_eq!(fields[0].tx_filter().unwrap().ids, Some(vec!["y".to_owned()]));
    }

    #[test]
    fn blocks_pages_the_local_chain_in_seconds() {
        // The reference CU's GetBlocks query (effects/ao-block.js).
        let q = "query GetBlocks($min: Int!, $limit: Int!) { blocks(height: { min: $min }, first: $limit, sort: HEIGHT_ASC) { pageInfo { hasNextPage } edges { node { timestamp height } } } }";
        let field = |vars: Value| parse(q, &vars).unwrap().remove(0);
        let at = |h: u64| h * 120_000;
        let v = blocks_answer(&field(json!({"min": 10, "limit": 3})), 20, at).unwrap();
        assert_eq!(
            v,
            json!({"pageInfo": {"hasNextPage": true}, "edges": [
                {"node": {"timestamp": 1200, "height": 10}},
                {"node": {"timestamp": 1320, "height": 11}},
                {"node": {"timestamp": 1440, "height": 12}},
            ]})
        );
        // The last page ends at the current height; above it there are no blocks.
        let v = blocks_answer(&field(json!({"min": 19, "limit": 5})), 20, at).unwrap();
        assert_eq!(v["edges"].as_array().unwrap().len(), 2);
        assert_eq!(v["pageInfo"]["hasNextPage"], false);
        let v = blocks_answer(&field(json!({"min": 21, "limit": 5})), 20, at).unwrap();
        assert_eq!(v["edges"], json!([]));
        // Descending with a max; a bad sort or a negative height is a 400.
        let q2 = "{ blocks(height: {min: 5, max: 7}, sort: HEIGHT_DESC) { edges { node { height } } } }";
        let v = blocks_answer(&parse(q2, &Value::Null).unwrap()[0], 20, at).unwrap();
        let heights: Vec<u64> = v["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["height"].as_u64().unwrap())
            .collect();
        assert_eq!(heights, [7, 6, 5]);
        for bad in [
            "{ blocks(sort: NEWEST) { edges } }",
            "{ blocks(height: {min: -1}) { edges } }",
        ] {
            assert!(
                matches!(
                    blocks_answer(&parse(bad, &Value::Null).unwrap()[0], 20, at),
                    Err(NodeError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
