//! The SU's JSON shapes (`servers/su/src/domain/core/json.rs`), built from stored data items.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cu_ans104::DataItem;
use cu_store::schedule::ScheduleRecord;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::chain::block_height;
use crate::error::SchedError;

fn parse(raw: &[u8]) -> Result<DataItem, SchedError> {
    DataItem::parse(raw).map_err(|e| SchedError::Invalid(format!("stored data item: {e}")))
}

/// `{address, key}`: the SU's owner (address = base64url(sha256(owner key bytes))).
pub fn owner_json(item: &DataItem) -> Value {
    json!({
        "address": URL_SAFE_NO_PAD.encode(Sha256::digest(item.owner())),
        "key": item.owner_b64url(),
    })
}

fn tags_json(item: &DataItem) -> Value {
    Value::Array(
        item.tags()
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
}

/// The anchor as the SU shows it: the anchor bytes as UTF-8, `None` when empty or not UTF-8.
pub fn anchor_of(item: &DataItem) -> Option<String> {
    item.anchor_bytes()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.is_empty())
}

/// `data_if_string`: the data as UTF-8, `None` when it is not.
pub fn data_if_string(item: &DataItem) -> Option<String> {
    String::from_utf8(item.data().to_vec()).ok()
}

/// `MessageInner`.
pub fn message_json(item: &DataItem) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), item.id().into());
    m.insert("owner".into(), owner_json(item));
    m.insert(
        "data".into(),
        data_if_string(item).map_or(Value::Null, Value::String),
    );
    m.insert("tags".into(), tags_json(item));
    m.insert("signature".into(), item.signature_b64url().into());
    m.insert(
        "anchor".into(),
        anchor_of(item).map_or(Value::Null, Value::String),
    );
    m.insert("target".into(), item.target().map_or(Value::Null, Value::String));
    Value::Object(m)
}

/// `AssignmentInner`.
pub fn assignment_json(item: &DataItem) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), item.id().into());
    m.insert("owner".into(), owner_json(item));
    m.insert("tags".into(), tags_json(item));
    m.insert("signature".into(), item.signature_b64url().into());
    m.insert(
        "anchor".into(),
        anchor_of(item).map_or(Value::Null, Value::String),
    );
    m.insert("target".into(), Value::String(item.target().unwrap_or_default()));
    Value::Object(m)
}

/// `{message, assignment}` of one assignment (`message` null for an assignment of an existing message).
pub fn message_node(r: &ScheduleRecord) -> Result<Value, SchedError> {
    let assignment = parse(&r.assignment)?;
    let message = match &r.message {
        Some(raw) => message_json(&parse(raw)?),
        None => Value::Null,
    };
    Ok(json!({"message": message, "assignment": assignment_json(&assignment)}))
}

/// `ProcessInner` of a process from its nonce-0 assignment.
pub fn process_json(r: &ScheduleRecord) -> Result<Value, SchedError> {
    let raw = r
        .message
        .as_ref()
        .ok_or_else(|| SchedError::Invalid(format!("process {} has no spawn item", r.process_id)))?;
    let item = parse(raw)?;
    let assignment = parse(&r.assignment)?;
    let block = assignment
        .tag("Block-Height")
        .map_or_else(|| r.block_height.to_string(), str::to_string);
    let mut m = Map::new();
    m.insert("process_id".into(), item.id().into());
    m.insert("block".into(), block.into());
    m.insert("owner".into(), owner_json(&item));
    m.insert("tags".into(), tags_json(&item));
    m.insert("timestamp".into(), r.timestamp.into());
    m.insert(
        "data".into(),
        data_if_string(&item).map_or(Value::Null, Value::String),
    );
    m.insert(
        "anchor".into(),
        anchor_of(&item).map_or(Value::Null, Value::String),
    );
    m.insert("signature".into(), item.signature_b64url().into());
    m.insert("target".into(), item.target().map_or(Value::Null, Value::String));
    Ok(Value::Object(m))
}

/// A page `{page_info: {has_next_page}, edges: [{node, cursor}]}`; the cursor is the timestamp.
pub fn page_json(records: &[ScheduleRecord], has_next_page: bool) -> Result<Value, SchedError> {
    let edges = records
        .iter()
        .map(|r| Ok(json!({"node": message_node(r)?, "cursor": r.timestamp.to_string()})))
        .collect::<Result<Vec<Value>, SchedError>>()?;
    Ok(json!({"page_info": {"has_next_page": has_next_page}, "edges": edges}))
}

/// `GET /timestamp`: `{timestamp, block_height}`, both strings as the SU sends them
/// (`servers/su` `flows::timestamp`: milliseconds, and the height left-padded to 12 digits).
pub fn timestamp_json(now: u64) -> Value {
    json!({"timestamp": now.to_string(), "block_height": format!("{:0>12}", block_height(now))})
}
