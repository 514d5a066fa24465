//! hbu mode (HyperBEAM's `genesis-wasm` device, `hyperbeam.md` §7): HyperBEAM schedules, the node only
//! computes. `POST /result/:slot?process-id=` carries one page of the SU wire format; the edge at `slot`
//! is turned into a msg exactly as the reference CU's `mapNode` does and evaluated at log position
//! `slot + 1` (slot 0 is the process itself).
//!
//! What is checked before anything is stored (the caller is trusted by the HTTP layer: loopback or a
//! token, and only in hbu mode): the hash chain between the page's edges ([`check_chain`]) and from the
//! last slot this node evaluated for the process; the assignment's `Process` tag; and, when the operator
//! asks for it, the assignment's ANS-104 signature ([`verify_assignment`]). HyperBEAM's aos-2 JSON carries
//! the commitments of its own messages (httpsig by default), which do not verify as ANS-104, so that
//! last check is off by default. A process this node's own scheduler schedules is never written to
//! through hbu (the node answers 403).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cu_ans104::sig::SignatureType;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::cu::result_shape;
use crate::error::NodeError;
use crate::node::{Node, check_limits, store_tags};
use cu_ans104::DataItem;
use cu_scheduler::wire;
use cu_store::ProcessRecord;

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

/// Verifies an SU-wire assignment (`{id, owner: {key}, signature, anchor, target, tags}`) as the ANS-104
/// data item it was made from (no data, tags in their given order): the signature type follows from the
/// owner key's length, the signature must verify over the item's deep hash, and `id` must be
/// base64url(sha256(signature)). Returns the signer's address.
pub fn verify_assignment(assignment: &Value) -> Result<String, NodeError> {
    let refuse = |why: &str| {
        let id = assignment.get("id").and_then(Value::as_str).unwrap_or_default();
        NodeError::Unprocessable(format!("assignment {id}: {why}"))
    };
    let b64 = |field: Option<&Value>, name: &str| -> Result<Vec<u8>, NodeError> {
        let text = field
            .and_then(Value::as_str)
            .ok_or_else(|| refuse(&format!("no {name}")))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| refuse(&format!("{name} is not base64url")))
    };
    let owner = b64(assignment.get("owner").and_then(|o| o.get("key")), "owner key")?;
    let signature = b64(assignment.get("signature"), "signature")?;
    let sig_type = [
        SignatureType::Arweave,
        SignatureType::Ed25519,
        SignatureType::Ethereum,
    ]
    .into_iter()
    .find(|t| t.owner_len() == owner.len())
    .ok_or_else(|| {
        refuse(&format!(
            "an owner key of {} bytes has no known signature type",
            owner.len()
        ))
    })?;
    if signature.len() != sig_type.signature_len() {
        return Err(refuse("the signature length does not match the owner key"));
    }
    let id = URL_SAFE_NO_PAD.encode(Sha256::digest(&signature));
    if assignment.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(refuse("its id is not the hash of its signature"));
    }
    let target = match assignment.get("target").and_then(Value::as_str) {
        None | Some("") => Vec::new(),
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| refuse("target is not base64url"))?,
    };
    let anchor = assignment
        .get("anchor")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .as_bytes();
    let tags: Vec<(String, String)> = assignment
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| refuse("no tags"))?
        .iter()
        .map(|t| {
            Some((
                t.get("name")?.as_str()?.to_owned(),
                t.get("value")?.as_str()?.to_owned(),
            ))
        })
        .collect::<Option<_>>()
        .ok_or_else(|| refuse("a tag is not {name, value} strings"))?;
    let raw_tags = cu_ans104::tags::encode_tags(&tags).map_err(|e| refuse(&e.to_string()))?;
    let ty = sig_type.as_u16().to_string();
    let message = cu_ans104::deep_hash::deep_hash_blobs(&[
        b"dataitem",
        b"1",
        ty.as_bytes(),
        &owner,
        &target,
        anchor,
        &raw_tags,
        b"",
    ]);
    cu_ans104::sig::verify(sig_type, &owner, &message, &signature)
        .map_err(|e| refuse(&format!("signature does not verify: {e}")))?;
    Ok(cu_ans104::sig::owner_address(sig_type, &owner))
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
    // `Anchor: path(['anchor'])`: kept when the key is there, `null` included.
    if let Some(a) = message.get("anchor") {
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

/// The last hbu slot evaluated for a process: what the next slot's `Hash-Chain` must follow from.
pub(crate) struct HbuLink {
    slot: u64,
    assignment_id: String,
    hash_chain: String,
}

impl Node {
    /// hbu mode: evaluates the message at `slot` of one SU-wire-format page (see [`crate::hbu`]); the
    /// result JSON and the headers `slot`, `timestamp`, `block-height`, `ao-types`. Slot 0 (the process
    /// itself) creates the process (its module must be registered here). Slots must arrive in order.
    pub async fn hbu_result(
        &self,
        process_id: &str,
        slot: u64,
        page: Value,
    ) -> Result<(Value, Vec<(String, String)>), NodeError> {
        let pid = process_id.to_owned();
        let (pos, assignment, timestamp, height) = self
            .off_worker(move |node| node.hbu_prepare(&pid, slot, page))
            .await?;
        self.evaluate_to(process_id, pos).await?;
        let pid = process_id.to_owned();
        let r = self
            .off_worker(move |node| {
                let r = node.inner.store.result(&pid, pos)?.ok_or_else(|| {
                    NodeError::Internal(format!("result at {pos} missing after evaluation"))
                })?;
                node.record_hbu_link(&pid, slot, &assignment);
                Ok(r)
            })
            .await?;
        Ok((
            result_shape(&r.output_json, true)?,
            headers(slot, timestamp, height),
        ))
    }

    /// The checks and store writes of [`Node::hbu_result`] before evaluation (blocking): the log
    /// position of `slot`, its assignment, timestamp and block height.
    fn hbu_prepare(
        &self,
        process_id: &str,
        slot: u64,
        page: Value,
    ) -> Result<(u64, Value, u64, u64), NodeError> {
        if self.inner.scheduler.reads().by_nonce(process_id, 0)?.is_some() {
            return Err(NodeError::Forbidden(format!(
                "process {process_id} is scheduled by this node's own scheduler: hbu may only compute processes HyperBEAM schedules"
            )));
        }
        check_chain(&page)?;
        let edge = edge_at(&page, slot)?;
        let assignment = &edge["node"]["assignment"];
        if tag(&assignment["tags"], "Process") != Some(process_id) {
            return Err(NodeError::Unprocessable(format!(
                "the assignment at slot {slot} is not for process {process_id}"
            )));
        }
        if self.inner.hbu_verify_signatures {
            verify_assignment(assignment)?;
        }
        self.check_hbu_link(process_id, slot, assignment)?;
        let message = match &edge["node"]["message"] {
            Value::Null => {
                let mid = tag(&assignment["tags"], "Message")
                    .ok_or_else(|| bad("an assignment without message needs a Message tag"))?;
                let raw = self.inner.scheduler.reads().message_item(mid)?.ok_or_else(|| {
                    NodeError::Unprocessable(format!("assigned message {mid} is not known here"))
                })?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                wire::message_json(&item)
            }
            m => m.clone(),
        };
        let (msg_json, nonce, timestamp, height, mid) = msg_of(&message, assignment)?;
        let pos = slot + 1;
        let store = &self.inner.store;
        if slot == 0 && store.process(process_id)?.is_none() {
            if mid != process_id {
                return Err(bad("slot 0 must be the process itself"));
            }
            let module_id = tag(&message["tags"], "Module")
                .ok_or_else(|| bad("Tag 'Module': was not found on process"))?;
            let module = store.module(module_id)?.ok_or_else(|| {
                NodeError::Unprocessable(format!("module {module_id} is not registered here"))
            })?;
            let ptags: Vec<(String, String)> = message["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.get("name")?.as_str()?.to_string(),
                        t.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect();
            check_limits(&ptags, &module.tags, &self.inner.limits)?;
            let owner = address_from(&message["owner"]);
            store.commit_schedule(cu_store::schedule::ScheduleBatch {
                process: Some(ProcessRecord {
                    id: process_id.to_string(),
                    module_id: module.id.clone(),
                    owner: owner.clone(),
                    tags: store_tags(&ptags),
                    env_json: env_of(process_id, &owner, &message["tags"], &module),
                    block_height: height,
                    timestamp,
                    spawn_json: msg_json.clone(),
                }),
                ..Default::default()
            })?;
        }
        self.known_process(process_id)?;
        let last = store.last_pos(process_id)?;
        if pos == last + 1 {
            store.append(&[cu_store::LogEntry {
                process_id: process_id.to_string(),
                pos,
                message_id: Some(mid.clone()),
                nonce: Some(nonce),
                timestamp,
                block_height: height,
                cron: None,
                msg_json,
            }])?;
        } else if pos > last + 1 {
            return Err(NodeError::Unprocessable(format!(
                "slot {slot} of process {process_id}: slots {last} to {} were never posted",
                slot - 1
            )));
        } else {
            let have = store.log_range(process_id, pos, 1)?;
            if have.first().and_then(|e| e.message_id.as_deref()) != Some(mid.as_str()) {
                return Err(NodeError::Unprocessable(format!(
                    "slot {slot} of process {process_id} already holds another message"
                )));
            }
        }
        Ok((pos, assignment.clone(), timestamp, height))
    }

    /// The slot after the last one evaluated must chain from it: `Hash-Chain` =
    /// sha256(previous assignment id ‖ previous Hash-Chain).
    pub(crate) fn check_hbu_link(
        &self,
        process_id: &str,
        slot: u64,
        assignment: &Value,
    ) -> Result<(), NodeError> {
        let chains = self
            .inner
            .hbu_chain
            .lock()
            .map_err(|_| NodeError::Internal("hbu chain lock poisoned".into()))?;
        let (Some(prev), Some(chain)) = (
            chains.get(process_id).filter(|l| l.slot + 1 == slot),
            tag(&assignment["tags"], "Hash-Chain"),
        ) else {
            return Ok(());
        };
        let expected = cu_scheduler::hash_chain(&prev.hash_chain, Some(&prev.assignment_id))
            .map_err(|e| NodeError::Unprocessable(e.to_string()))?;
        if expected != chain {
            let id = assignment.get("id").and_then(Value::as_str).unwrap_or_default();
            return Err(NodeError::Unprocessable(format!(
                "HashChain invalid on message {id}: it does not follow slot {} of process {process_id}",
                prev.slot
            )));
        }
        Ok(())
    }

    pub(crate) fn record_hbu_link(&self, process_id: &str, slot: u64, assignment: &Value) {
        let (Some(id), Some(chain)) = (
            assignment.get("id").and_then(Value::as_str),
            tag(&assignment["tags"], "Hash-Chain"),
        ) else {
            return;
        };
        if let Ok(mut chains) = self.inner.hbu_chain.lock()
            && chains.get(process_id).is_none_or(|l| l.slot < slot)
        {
            chains.insert(
                process_id.to_owned(),
                HbuLink {
                    slot,
                    assignment_id: id.to_owned(),
                    hash_chain: chain.to_owned(),
                },
            );
        }
    }
}
