//! hbu mode (HyperBEAM's `genesis-wasm` device, `hyperbeam.md` §7): HyperBEAM schedules, the node only
//! computes. `POST /result/:slot?process-id=` carries one page of the SU wire format; the edge at `slot`
//! is turned into a msg exactly as the reference CU's `mapNode` does and evaluated at log position
//! `slot + 1` (slot 0 is the process itself).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::error::NodeError;

fn bad(m: impl Into<String>) -> NodeError {
    NodeError::BadRequest(m.into())
}

/// The value of tag `name` in a `[{name, value}]` list.
pub fn tag<'a>(tags: &'a Value, name: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|t| t.get("value").and_then(Value::as_str))
}

/// `addressFrom(owner)`: Ethereum (65-byte key) → EIP-55 address, else `owner.address`.
pub fn address_from(owner: &Value) -> String {
    let key = owner.get("key").and_then(Value::as_str).unwrap_or_default();
    match URL_SAFE_NO_PAD.decode(key.trim_end_matches('=')) {
        Ok(bytes) if bytes.len() == 65 => cu_ans104::sig::ethereum_address(&bytes),
        _ => owner
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

/// The edge of `page` whose cursor (or assignment `Nonce`) is `slot`.
pub fn edge_at(page: &Value, slot: u64) -> Result<&Value, NodeError> {
    let edges = page
        .get("edges")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the body must be an SU page with edges"))?;
    edges
        .iter()
        .find(|e| {
            let cursor = match e.get("cursor") {
                Some(Value::String(s)) => s.parse::<u64>().ok(),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            };
            let nonce = tag(&e["node"]["assignment"]["tags"], "Nonce").and_then(|n| n.parse::<u64>().ok());
            cursor == Some(slot) || nonce == Some(slot)
        })
        .ok_or_else(|| bad(format!("the page has no edge for slot {slot}")))
}

/// Checks the hash chain between consecutive edges of the page (each assignment's `Hash-Chain` must be
/// `sha256(previous assignment id || previous Hash-Chain)`).
pub fn check_chain(page: &Value) -> Result<(), NodeError> {
    let edges = page
        .get("edges")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for w in edges.windows(2) {
        let (a, b) = (&w[0]["node"]["assignment"], &w[1]["node"]["assignment"]);
        let (Some(prev_id), Some(prev_chain), Some(chain)) = (
            a.get("id").and_then(Value::as_str),
            tag(&a["tags"], "Hash-Chain"),
            tag(&b["tags"], "Hash-Chain"),
        ) else {
            continue;
        };
        let expected = cu_scheduler::hash_chain(prev_chain, Some(prev_id))
            .map_err(|e| NodeError::Unprocessable(e.to_string()))?;
        if expected != chain {
            let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
            return Err(NodeError::Unprocessable(format!(
                "HashChain invalid on message {id}"
            )));
        }
    }
    Ok(())
}

/// The msg of an edge (`mapNode` + `messageSchema` order). `message` may be a hydrated stand-in for an
/// assignment of an existing message.
pub fn msg_of(message: &Value, assignment: &Value) -> Result<(String, u64, u64, u64, String), NodeError> {
    let at = &assignment["tags"];
    let num = |n: &str| -> Result<u64, NodeError> {
        tag(at, n)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| bad(format!("assignment tag {n} missing or not a number")))
    };
    let (epoch, nonce, ts, height) = (
        num("Epoch").unwrap_or(0),
        num("Nonce")?,
        num("Timestamp")?,
        num("Block-Height")?,
    );
    let id = message
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("message without id"))?
        .to_string();
    let owner = address_from(&message["owner"]);
    let from_process = tag(&message["tags"], "From-Process").filter(|v| !v.is_empty());
    let mut m = Map::new();
    m.insert("Id".into(), id.clone().into());
    if let Some(s) = message.get("signature").filter(|s| !s.is_null()) {
        m.insert("Signature".into(), s.clone());
    }
    if let Some(d) = message.get("data").filter(|s| !s.is_null()) {
        m.insert("Data".into(), d.clone());
    }
    m.insert("Owner".into(), owner.clone().into());
    m.insert("Target".into(), tag(at, "Process").unwrap_or_default().into());
    if let Some(a) = message.get("anchor").filter(|s| !s.is_null()) {
        m.insert("Anchor".into(), a.clone());
    }
    m.insert(
        "From".into(),
        from_process.map_or(owner.clone(), str::to_string).into(),
    );
    if tag(&message["tags"], "From-Process").is_some() {
        m.insert("Forwarded-By".into(), owner.into());
    }
    let tags: Vec<Value> = message["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t.get("name").and_then(Value::as_str), Some("From" | "Owner")))
        .collect();
    m.insert("Tags".into(), Value::Array(tags));
    m.insert("Epoch".into(), epoch.into());
    m.insert("Nonce".into(), nonce.into());
    m.insert("Timestamp".into(), ts.into());
    m.insert("Block-Height".into(), height.into());
    if let Some(h) = tag(at, "Hash-Chain") {
        m.insert("Hash-Chain".into(), h.into());
    }
    m.insert("Cron".into(), false.into());
    m.insert("Read-Only".into(), false.into());
    Ok((Value::Object(m).to_string(), nonce, ts, height, id))
}

/// The headers of an hbu reply: `slot`, `timestamp`, `block-height` and their `ao-types`.
pub fn headers(slot: u64, timestamp: u64, height: u64) -> Vec<(String, String)> {
    vec![
        ("slot".into(), slot.to_string()),
        ("timestamp".into(), timestamp.to_string()),
        ("block-height".into(), height.to_string()),
        (
            "ao-types".into(),
            "block-height=\"integer\", slot=\"integer\", timestamp=\"integer\"".into(),
        ),
    ]
}

/// The env of a process spawned through hbu, from its SU message JSON.
pub fn env_of(pid: &str, owner: &str, tags: &Value, module: &cu_store::ModuleRecord) -> String {
    let mtags: Vec<Value> = module
        .tags
        .iter()
        .map(|t| json!({"name": t.name, "value": t.value}))
        .collect();
    json!({
        "Process": {"Id": pid, "Owner": owner, "Tags": tags},
        "Module": {"Id": module.id, "Owner": module.owner, "Tags": mtags},
    })
    .to_string()
}
