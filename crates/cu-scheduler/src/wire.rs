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
    as_value(&OwnerOut::of(item))
}

/// A wire struct as a `Value`. Every field is a string, a list or an option of them, which always
/// serializes, so the error arm cannot happen.
fn as_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
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
    as_value(&MessageOut::of(item))
}

/// `AssignmentInner`.
pub fn assignment_json(item: &DataItem) -> Value {
    as_value(&AssignmentOut::of(item))
}

/// `{message, assignment}` of one assignment (`message` null for an assignment of an existing message).
pub fn message_node(r: &ScheduleRecord) -> Result<Value, SchedError> {
    let (assignment, message) = parsed(r)?;
    serde_json::to_value(NodeOut::of(&assignment, message.as_ref()))
        .map_err(|e| SchedError::Invalid(format!("encoding slot {}: {e}", r.nonce)))
}

/// [`message_node`] as JSON text, written straight from the data items (no `Value` tree): what the SU
/// routes and the QUIC publisher send.
pub fn message_node_text(r: &ScheduleRecord) -> Result<Vec<u8>, SchedError> {
    let (assignment, message) = parsed(r)?;
    serde_json::to_vec(&NodeOut::of(&assignment, message.as_ref()))
        .map_err(|e| SchedError::Invalid(format!("encoding slot {}: {e}", r.nonce)))
}

fn parsed(r: &ScheduleRecord) -> Result<(DataItem, Option<DataItem>), SchedError> {
    let assignment = parse(&r.assignment)?;
    let message = r.message.as_deref().map(parse).transpose()?;
    Ok((assignment, message))
}

/// The wire shapes as structs, in the SU's field order: one definition for the text and the `Value`.
#[derive(serde::Serialize)]
struct OwnerOut {
    address: String,
    key: String,
}

impl OwnerOut {
    fn of(item: &DataItem) -> OwnerOut {
        OwnerOut {
            address: URL_SAFE_NO_PAD.encode(Sha256::digest(item.owner())),
            key: item.owner_b64url(),
        }
    }
}

#[derive(serde::Serialize)]
struct TagOut<'a> {
    name: &'a str,
    value: &'a str,
}

fn tags_out(item: &DataItem) -> Vec<TagOut<'_>> {
    item.tags()
        .iter()
        .map(|(n, v)| TagOut { name: n, value: v })
        .collect()
}

#[derive(serde::Serialize)]
struct MessageOut<'a> {
    id: String,
    owner: OwnerOut,
    data: Option<String>,
    tags: Vec<TagOut<'a>>,
    signature: String,
    anchor: Option<String>,
    target: Option<String>,
}

#[derive(serde::Serialize)]
struct AssignmentOut<'a> {
    id: String,
    owner: OwnerOut,
    tags: Vec<TagOut<'a>>,
    signature: String,
    anchor: Option<String>,
    target: String,
}

#[derive(serde::Serialize)]
struct NodeOut<'a> {
    message: Option<MessageOut<'a>>,
    assignment: AssignmentOut<'a>,
}

impl<'a> MessageOut<'a> {
    fn of(m: &'a DataItem) -> MessageOut<'a> {
        MessageOut {
            id: m.id(),
            owner: OwnerOut::of(m),
            data: data_if_string(m),
            tags: tags_out(m),
            signature: m.signature_b64url(),
            anchor: anchor_of(m),
            target: m.target(),
        }
    }
}

impl<'a> AssignmentOut<'a> {
    fn of(a: &'a DataItem) -> AssignmentOut<'a> {
        AssignmentOut {
            id: a.id(),
            owner: OwnerOut::of(a),
            tags: tags_out(a),
            signature: a.signature_b64url(),
            anchor: anchor_of(a),
            target: a.target().unwrap_or_default(),
        }
    }
}

impl<'a> NodeOut<'a> {
    fn of(assignment: &'a DataItem, message: Option<&'a DataItem>) -> NodeOut<'a> {
        NodeOut {
            message: message.map(MessageOut::of),
            assignment: AssignmentOut::of(assignment),
        }
    }
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
    m.insert("tags".into(), as_value(&tags_out(&item)));
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
    let text = page_text(records, has_next_page)?;
    serde_json::from_slice(&text).map_err(|e| SchedError::Invalid(format!("re-reading a page: {e}")))
}

/// [`page_json`] as JSON text, each node written by [`message_node_text`].
pub fn page_text(records: &[ScheduleRecord], has_next_page: bool) -> Result<Vec<u8>, SchedError> {
    let mut out = Vec::with_capacity(records.len() * 4096 + 64);
    out.extend_from_slice(b"{\"page_info\":{\"has_next_page\":");
    out.extend_from_slice(if has_next_page { b"true" } else { b"false" });
    out.extend_from_slice(b"},\"edges\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"node\":");
        out.extend(message_node_text(r)?);
        out.extend_from_slice(b",\"cursor\":\"");
        out.extend_from_slice(r.timestamp.to_string().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// `GET /timestamp`: `{timestamp, block_height}`, both strings as the SU sends them
/// (`servers/su` `flows::timestamp`: milliseconds, and the height left-padded to 12 digits).
pub fn timestamp_json(now: u64) -> Value {
    json!({"timestamp": now.to_string(), "block_height": format!("{:0>12}", block_height(now))})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet() -> cu_ans104::Wallet {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cu-ans104/tests/oracle/test-jwk.json");
        cu_ans104::Wallet::from_jwk_json(&std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_else(|e| unreachable!("test wallet: {e}"))
    }

    // The shapes as they were built before the structs (`Map` inserts in the SU's order): the oracle.
    fn old_owner(item: &DataItem) -> Value {
        json!({
            "address": URL_SAFE_NO_PAD.encode(Sha256::digest(item.owner())),
            "key": item.owner_b64url(),
        })
    }

    fn old_tags(item: &DataItem) -> Value {
        Value::Array(
            item.tags()
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        )
    }

    fn old_message(item: &DataItem) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), item.id().into());
        m.insert("owner".into(), old_owner(item));
        m.insert(
            "data".into(),
            data_if_string(item).map_or(Value::Null, Value::String),
        );
        m.insert("tags".into(), old_tags(item));
        m.insert("signature".into(), item.signature_b64url().into());
        m.insert(
            "anchor".into(),
            anchor_of(item).map_or(Value::Null, Value::String),
        );
        m.insert("target".into(), item.target().map_or(Value::Null, Value::String));
        Value::Object(m)
    }

    fn old_assignment(item: &DataItem) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), item.id().into());
        m.insert("owner".into(), old_owner(item));
        m.insert("tags".into(), old_tags(item));
        m.insert("signature".into(), item.signature_b64url().into());
        m.insert(
            "anchor".into(),
            anchor_of(item).map_or(Value::Null, Value::String),
        );
        m.insert("target".into(), Value::String(item.target().unwrap_or_default()));
        Value::Object(m)
    }

    fn record(message: Option<Vec<u8>>, assignment: Vec<u8>, nonce: u64) -> ScheduleRecord {
        ScheduleRecord {
            process_id: "p".into(),
            nonce,
            epoch: 0,
            message_id: "m".into(),
            assignment_id: "a".into(),
            timestamp: 1_700_000_000_000 + nonce,
            block_height: 1,
            hash_chain: "h".into(),
            pos: nonce + 1,
            assignment,
            message,
        }
    }

    /// The struct-written text is the `Value` the SU shapes were built as before, field for field and in
    /// the same order, for a message with an anchor and binary data, and for an assignment of an
    /// existing message (`message` null).
    #[test]
    fn the_written_text_is_the_value_shape() -> Result<(), Box<dyn std::error::Error>> {
        let w = wallet();
        let anchor = [7u8; 32];
        let msg = w.sign_data_item(
            b"\xff\x00binary",
            &[("Action", "Eval"), ("Ünï", "cödé \"q\"")],
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Some(&anchor),
        )?;
        let asg = w.sign_data_item(b"", &[("Process", "p"), ("Nonce", "1")], None, None)?;
        let with = record(Some(msg.clone()), asg.clone(), 1);
        let without = record(None, asg.clone(), 2);
        for r in [&with, &without] {
            let old = json!({
                "message": r.message.as_deref().map(parse).transpose()?.map_or(Value::Null, |m| old_message(&m)),
                "assignment": old_assignment(&parse(&r.assignment)?),
            });
            let text = message_node_text(r)?;
            assert_eq!(String::from_utf8(text.clone())?, old.to_string());
            assert_eq!(message_node(r)?, old);
            let a = parse(&r.assignment)?;
            assert_eq!(assignment_json(&a).to_string(), old_assignment(&a).to_string());
            assert_eq!(owner_json(&a).to_string(), old_owner(&a).to_string());
            if let Some(m) = r.message.as_deref().map(parse).transpose()? {
                assert_eq!(message_json(&m).to_string(), old_message(&m).to_string());
            }
        }
        let page = page_text(&[with.clone(), without.clone()], true)?;
        let old = json!({"page_info": {"has_next_page": true}, "edges": [
            {"node": message_node(&with)?, "cursor": with.timestamp.to_string()},
            {"node": message_node(&without)?, "cursor": without.timestamp.to_string()},
        ]});
        assert_eq!(String::from_utf8(page)?, old.to_string());
        assert_eq!(
            page_json(&[], false)?,
            json!({"page_info": {"has_next_page": false}, "edges": []})
        );
        Ok(())
    }
}
