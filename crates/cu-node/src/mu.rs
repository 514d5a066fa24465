//! The MU role: `POST /` ingest (verify, register a module, spawn, schedule), assignments, and the msg
//! a scheduled item becomes (as the reference CU builds it from the SU wire format).

use std::sync::atomic::Ordering::Relaxed;

use cu_ans104::DataItem;
use cu_scheduler::{Assigned, ScheduleRequest, wire};
use cu_store::{ModuleRecord, ProcessRecord};
use serde_json::{Map, Value, json};

use crate::error::NodeError;
use crate::node::{Node, bad, check_limits, store_tags, tag_of, tags_value};

/// What [`Node::ingest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    /// A module was registered.
    Module,
    /// A process was spawned.
    Process,
    /// A message was scheduled.
    Message,
}

/// The answer to [`Node::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The item id.
    pub id: String,
    /// What it was.
    pub kind: IngestKind,
}

/// The msg of a scheduled message exactly as the reference CU builds it (§2.7 key order).
pub fn build_msg(item: &DataItem, a: &Assigned) -> String {
    Value::Object(build_msg_map(item, a)).to_string()
}

pub(crate) fn build_msg_map(item: &DataItem, a: &Assigned) -> Map<String, Value> {
    let tags = item.tags();
    let owner = item.owner_address();
    let from_process = tag_of(tags, "From-Process").filter(|v| !v.is_empty());
    let mut m = Map::new();
    m.insert("Id".into(), item.id().into());
    m.insert("Signature".into(), item.signature_b64url().into());
    m.insert(
        "Data".into(),
        String::from_utf8_lossy(item.data()).into_owned().into(),
    );
    m.insert("Owner".into(), owner.clone().into());
    m.insert("Target".into(), a.process_id.clone().into());
    // The SU serves `"anchor": null` for an item without one and the reference keeps that null
    // (`Anchor: path(['anchor'])`), so the key is always there.
    m.insert(
        "Anchor".into(),
        wire::anchor_of(item).map_or(Value::Null, Value::from),
    );
    m.insert(
        "From".into(),
        from_process.map_or(owner.clone(), str::to_string).into(),
    );
    if tag_of(tags, "From-Process").is_some() {
        m.insert("Forwarded-By".into(), owner.into());
    }
    m.insert(
        "Tags".into(),
        Value::Array(
            tags.iter()
                .filter(|(n, _)| n != "From" && n != "Owner")
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        ),
    );
    m.insert("Epoch".into(), a.epoch.into());
    m.insert("Nonce".into(), a.nonce.into());
    m.insert("Timestamp".into(), a.timestamp.into());
    m.insert("Block-Height".into(), a.block_height.into());
    m.insert("Hash-Chain".into(), a.hash_chain.clone().into());
    m.insert("Cron".into(), false.into());
    m.insert("Read-Only".into(), false.into());
    m
}

/// The msg of an assigned message as the reference CU hydrates it (§2.7, `loadFromChain` merged over the
/// SU's assignment record): the original's fields with `Target` = its recipient (`""` when none) and no
/// `Forwarded-By` (the reference sets it only from the SU's `message`, which is null for assignments);
/// nonce, timestamp, block height and hash chain from the assignment.
pub(crate) fn assignment_msg(item: &DataItem, a: &Assigned) -> String {
    let mut m = build_msg_map(item, a);
    m.insert("Target".into(), item.target().unwrap_or_default().into());
    m.shift_remove("Forwarded-By");
    Value::Object(m).to_string()
}

impl Node {
    /// MU ingress: verifies a signed ANS-104 item and registers, spawns or schedules it.
    pub fn ingest(&self, raw: &[u8]) -> Result<Ingested, NodeError> {
        let item = self.accept_item(raw, || self.now())?;
        let tags = item.tags().to_vec();
        let id = item.id();
        match tag_of(&tags, "Type") {
            Some("Module") => {
                let format = tag_of(&tags, "Module-Format")
                    .ok_or_else(|| bad("Tag 'Module-Format': was not found on module"))?;
                format
                    .trim()
                    .parse::<cu_types::ModuleFormat>()
                    .map_err(|e| NodeError::Unprocessable(e.to_string()))?;
                for t in ["Input-Encoding", "Output-Encoding"] {
                    if tag_of(&tags, t).is_none() {
                        return Err(bad(format!("Tag '{t}': was not found on module")));
                    }
                }
                self.inner.store.put_module(&ModuleRecord {
                    id: id.clone(),
                    format: format.to_string(),
                    owner: item.owner_address(),
                    owner_key: Some(item.owner_b64url()),
                    tags: store_tags(&tags),
                    wasm: item.data().to_vec(),
                })?;
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Module,
                })
            }
            Some("Process") if self.forwards_spawn(&tags) => self.forward(raw, &item, IngestKind::Process),
            Some("Message") | None if self.forwards_message(&item)? => {
                self.forward(raw, &item, IngestKind::Message)
            }
            Some("Process") => {
                // A retried spawn answers its id again without scheduling anything.
                if self.inner.scheduler.reads().by_nonce(&id, 0)?.is_none() {
                    self.spawn(&item, raw.to_vec(), Vec::new())?;
                }
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Process,
                })
            }
            Some("Message") | None => {
                let target = item.target().ok_or_else(|| bad("a message needs a Target"))?;
                if self.inner.scheduler.reads().by_nonce(&target, 0)?.is_none() {
                    return Err(bad(format!(
                        "process {target} not found (or not scheduled by this node)"
                    )));
                }
                // A retried message answers its id again without scheduling it twice.
                if self.inner.scheduler.reads().by_message(&target, &id)?.is_none() {
                    self.schedule_item(&target, &item, Some(raw.to_vec()), Vec::new())?;
                }
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Message,
                })
            }
            Some(other) => Err(bad(format!("unsupported Type {other:?}"))),
        }
    }

    /// Network mode: a spawn goes to its `Scheduler`'s SU when this node is not an SU or not that
    /// scheduler.
    fn forwards_spawn(&self, tags: &[(String, String)]) -> bool {
        self.inner.network.is_some()
            && (!self.inner.scheduler_role
                || tag_of(tags, "Scheduler").is_some_and(|s| s != self.inner.address))
    }

    /// Network mode: a message goes to its process's SU when this node is not an SU or does not
    /// schedule that process.
    fn forwards_message(&self, item: &DataItem) -> Result<bool, NodeError> {
        if self.inner.network.is_none() {
            return Ok(false);
        }
        if !self.inner.scheduler_role {
            return Ok(true);
        }
        let Some(target) = item.target() else {
            return Ok(false);
        };
        Ok(self.inner.scheduler.reads().by_nonce(&target, 0)?.is_none())
    }

    /// Hands a verified item to the SU that schedules it (located through the gateway's
    /// `Scheduler-Location` records, as the reference MU does): `POST {su}/`. Nothing is stored here;
    /// an unreachable SU is a 503, a refusal is the SU's status.
    fn forward(&self, raw: &[u8], item: &DataItem, kind: IngestKind) -> Result<Ingested, NodeError> {
        let net = self
            .inner
            .network
            .as_ref()
            .ok_or_else(|| NodeError::Internal("forwarding needs network mode".into()))?;
        let up = net.upstream();
        let su = match kind {
            IngestKind::Process => {
                let scheduler = tag_of(item.tags(), "Scheduler").unwrap_or_default();
                up.scheduler_url(scheduler)?
            }
            _ => up.locate(&item.target().unwrap_or_default())?,
        };
        let pushed = self
            .inner
            .item_transport
            .get()
            .and_then(|t| t.post_item(&su, raw));
        let answer = match pushed {
            Some(answer) => answer?,
            None => up.post_item(&su, raw)?,
        };
        let id = item.id();
        if let Some(other) = answer.get("id").and_then(Value::as_str)
            && other != id
        {
            return Err(NodeError::BadGateway(format!(
                "the SU at {su} answered id {other} for item {id}"
            )));
        }
        self.inner.forwarded.fetch_add(1, Relaxed);
        Ok(Ingested { id, kind })
    }

    /// What every posted data item passes, on the MU and the bundler routes alike: the size limit (413),
    /// a parse and a signature that verifies, tags that are valid UTF-8 (400), and the signer's upload
    /// quota at `now()` (429; the clock is read only when a quota is set).
    pub(crate) fn accept_item(&self, raw: &[u8], now: impl FnOnce() -> u64) -> Result<DataItem, NodeError> {
        if raw.len() > self.inner.max_item_bytes {
            return Err(NodeError::TooLarge(format!(
                "data item of {} bytes exceeds the limit of {} bytes",
                raw.len(),
                self.inner.max_item_bytes
            )));
        }
        let item = DataItem::parse(raw).map_err(bad)?;
        if let Some(i) = item.non_utf8_tag() {
            return Err(bad(format!(
                "tag {i} is not valid UTF-8 (the signature covers its raw bytes, which a text copy would not keep)"
            )));
        }
        item.verify().map_err(bad)?;
        if let Some(book) = &self.inner.upload_quota {
            book.charge(&item.owner_address(), raw.len() as u64, now())?;
        }
        Ok(item)
    }

    pub(crate) fn spawn(
        &self,
        item: &DataItem,
        raw: Vec<u8>,
        delivered: Vec<cu_store::schedule::DeliveryMark>,
    ) -> Result<(), NodeError> {
        let tags = item.tags().to_vec();
        let pid = item.id();
        let module_id =
            tag_of(&tags, "Module").ok_or_else(|| bad("Tag 'Module': was not found on process"))?;
        let module = self
            .inner
            .store
            .module(module_id)?
            .ok_or_else(|| bad(format!("module {module_id} not found")))?;
        check_limits(&tags, &module.tags, &self.inner.limits)?;
        if self.inner.store.process(&pid)?.is_some() {
            return Err(bad(format!("process {pid} already exists")));
        }
        let owner = item.owner_address();
        let env = json!({
            "Process": {"Id": pid, "Owner": owner, "Tags": tags_value(&store_tags(&tags))},
            "Module": {"Id": module.id, "Owner": module.owner, "Tags": tags_value(&module.tags)},
        });
        let record = ProcessRecord {
            id: pid.clone(),
            module_id: module.id.clone(),
            owner,
            tags: store_tags(&tags),
            env_json: env.to_string(),
            block_height: 0,
            timestamp: 0,
            spawn_json: String::new(),
        };
        let req = ScheduleRequest {
            process_id: pid.clone(),
            message_id: pid.clone(),
            message: Some(raw),
            spawn: Some(record),
            delivered,
        };
        self.inner
            .scheduler
            .schedule(req, self.now(), |a| Ok(build_msg(item, a)))?;
        self.notify(&pid);
        Ok(())
    }

    /// Schedules `item` onto `target`: as a message when its bytes `raw` are given, otherwise as an
    /// assignment of the stored item (`message: null` on the SU wire, tag `Message=<id>`; the one path of
    /// outbox `Assignments` and [`Node::assign`]). A message already scheduled on `target` is answered with
    /// its existing assignment and nothing is written.
    pub(crate) fn schedule_item(
        &self,
        target: &str,
        item: &DataItem,
        raw: Option<Vec<u8>>,
        delivered: Vec<cu_store::schedule::DeliveryMark>,
    ) -> Result<Assigned, NodeError> {
        let build: fn(&DataItem, &Assigned) -> String =
            if raw.is_some() { build_msg } else { assignment_msg };
        let req = ScheduleRequest {
            process_id: target.to_string(),
            message_id: item.id(),
            message: raw,
            spawn: None,
            delivered,
        };
        let s = self
            .inner
            .scheduler
            .schedule(req, self.now(), |a| Ok(build(item, a)))?;
        self.notify(target);
        Ok(s.assigned)
    }

    /// MU `POST /?process-id=&assign=`: assigns the message `message_id`, stored on this node (scheduled
    /// on another process of it), to `process_id`; answers the assignment's id. The process evaluates it
    /// with `msg.Target` = the message's own recipient (so aos sees `msg.Target ~= ao.id` and checks
    /// `ao.assignables`).
    ///
    /// `exclude` (the MU's comma-separated `exclude` query, aop-1) is refused when non-empty: the embedded
    /// scheduler does not put `Exclude` tags on its assignments, and excluding fields only in the msg
    /// would make our schedule evaluate differently elsewhere. Errors write nothing: an unknown process
    /// or message is [`NodeError::NotFound`]; a message id that is not 43 characters, a non-empty
    /// `exclude`, or a message already scheduled on `process_id` (the SU's duplicate deep-hash check) is
    /// [`NodeError::BadRequest`]. Two concurrent calls for the same pair both answer the one assignment
    /// (the scheduler never schedules a message twice on a process). In network mode, an assignment to a
    /// process this node does not schedule is asked of that process's SU.
    pub fn assign(
        &self,
        process_id: &str,
        message_id: &str,
        exclude: Option<&str>,
    ) -> Result<String, NodeError> {
        if let Some(net) = &self.inner.network
            && (!self.inner.scheduler_role || self.inner.scheduler.reads().by_nonce(process_id, 0)?.is_none())
        {
            // Network mode: the process's own SU assigns.
            let up = net.upstream();
            let su = up.locate(process_id)?;
            let answer = up.post_assign(&su, process_id, message_id, exclude)?;
            self.inner.forwarded.fetch_add(1, Relaxed);
            return answer
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    NodeError::BadGateway(format!("the SU at {su} answered no assignment id: {answer}"))
                });
        }
        self.known_process(process_id)?;
        let reads = self.inner.scheduler.reads();
        if reads.by_nonce(process_id, 0)?.is_none() {
            return Err(NodeError::NotFound(format!(
                "Process {process_id} is not scheduled by this node"
            )));
        }
        if message_id.len() != 43 {
            return Err(bad("assign param must be 43 characters"));
        }
        if exclude.is_some_and(|e| !e.trim().is_empty()) {
            return Err(bad(
                "exclude is not supported by this node: its scheduler does not sign Exclude tags",
            ));
        }
        let raw = reads
            .message_item(message_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Message {message_id} was not found on this node")))?;
        if reads.by_message(process_id, message_id)?.is_some() {
            return Err(bad(format!(
                "Message {message_id} is already scheduled on process {process_id}"
            )));
        }
        let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok(self
            .schedule_item(process_id, &item, None, Vec::new())?
            .assignment_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cu_ans104::Wallet;

    fn wallet() -> Wallet {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cu-ans104/tests/oracle/test-jwk.json");
        Wallet::from_jwk_json(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn assigned(process_id: &str, message_id: &str) -> Assigned {
        Assigned {
            process_id: process_id.into(),
            message_id: message_id.into(),
            nonce: 7,
            epoch: 0,
            timestamp: 1_750_000_000_123,
            block_height: 42,
            hash_chain: "chain".into(),
            assignment_id: "assignment".into(),
            pos: 8,
        }
    }

    #[test]
    fn an_assigned_msg_keeps_the_original_target_and_has_no_forwarded_by() {
        let w = wallet();
        let original_target = "Q".repeat(43);
        let from_process = "P".repeat(43);
        let raw = w
            .sign_data_item(
                b"payload",
                &[
                    ("Action", "Transfer"),
                    ("From-Process", from_process.as_str()),
                    ("Owner", "dropped"),
                ],
                Some(&original_target),
                None,
            )
            .unwrap();
        let item = DataItem::parse(&raw).unwrap();
        let a = assigned("B".repeat(43).as_str(), &item.id());
        // A scheduled message: Target = the process, Forwarded-By = the signer.
        let scheduled: Value = serde_json::from_str(&build_msg(&item, &a)).unwrap();
        assert_eq!(scheduled["Target"], "B".repeat(43));
        assert_eq!(scheduled["Forwarded-By"], w.address());
        // The assignment: the original's recipient, no Forwarded-By, the rest the same, in the same order.
        let s = assignment_msg(&item, &a);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["Target"], original_target);
        assert!(v.get("Forwarded-By").is_none(), "{s}");
        assert_eq!(v["From"], from_process);
        assert_eq!(v["Owner"], w.address());
        assert_eq!(v["Id"], item.id());
        assert_eq!(v["Data"], "payload");
        assert_eq!(v["Nonce"], 7);
        assert_eq!(v["Timestamp"], 1_750_000_000_123u64);
        assert_eq!(v["Hash-Chain"], "chain");
        let tags: Vec<&str> = v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["Action", "From-Process"]);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "Id",
                "Signature",
                "Data",
                "Owner",
                "Target",
                "Anchor",
                "From",
                "Tags",
                "Epoch",
                "Nonce",
                "Timestamp",
                "Block-Height",
                "Hash-Chain",
                "Cron",
                "Read-Only"
            ]
        );
        // Without a recipient the Target is "" (the reference's `recipient || ''`).
        let raw = w.sign_data_item(b"", &[("Action", "Echo")], None, None).unwrap();
        let item = DataItem::parse(&raw).unwrap();
        let v: Value = serde_json::from_str(&assignment_msg(&item, &a)).unwrap();
        assert_eq!(v["Target"], "");
    }
}
