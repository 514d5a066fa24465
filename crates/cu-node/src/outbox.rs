//! Outbox delivery: the messages, spawns and assignments a result asks for, signed by the node wallet
//! and scheduled here, in order and exactly once, resumed after a restart.

use crate::cluster::Route;
use std::sync::atomic::Ordering::Relaxed;

use cu_ans104::DataItem;
use serde_json::Value;

use crate::error::NodeError;
use crate::node::Node;

pub(crate) fn filtered_tags(m: &Value, drop: &[&str]) -> Vec<(String, String)> {
    m.get("Tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| {
                    let n = t.get("name")?.as_str()?;
                    let v = match t.get("value")? {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (!drop.contains(&n)).then(|| (n.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the outbox reads of a stored result (`cu_types::EvalOutput` as stored): the items to deliver.
/// Each item stays JSON, as the module wrote it.
#[derive(Debug, Default, serde::Deserialize)]
struct OutboxView {
    #[serde(rename = "Messages", default)]
    messages: Vec<Value>,
    #[serde(rename = "Spawns", default)]
    spawns: Vec<Value>,
    #[serde(rename = "Assignments", default)]
    assignments: Vec<Value>,
}

/// What the outbox reads of a logged msg: its id and tags.
#[derive(Debug, serde::Deserialize)]
struct MsgView {
    #[serde(rename = "Id", default)]
    id: Option<String>,
    #[serde(rename = "Tags", default)]
    tags: Vec<TagView>,
}

/// One `{name, value}` tag.
#[derive(Debug, serde::Deserialize)]
struct TagView {
    name: String,
    value: String,
}

impl Node {
    /// Delivers the outboxes of `pid`'s results not delivered yet (waits for its evaluation).
    pub(crate) fn deliver(&self, pid: &str) -> Result<(), NodeError> {
        // In a cluster, only the process's owner delivers its outbox.
        if !self.owns(pid) {
            return Ok(());
        }
        let store = &self.inner.store;
        let last = store.last_pos(pid)?;
        let reads = self.inner.scheduler.reads();
        // A process read from a remote SU: the network's MUs push its outbox, not its CUs.
        if reads.upstream_cursor(pid)?.is_some() {
            return Ok(());
        }
        let cursor = reads.outbox_cursor(pid)?;
        if last <= cursor {
            return Ok(());
        }
        self.inner.engine.wait_for(pid, last)?;
        let record = self.known_process(pid)?;
        for pos in cursor + 1..=last {
            let Some(result) = store.result(pid, pos)? else {
                break;
            };
            let out: OutboxView =
                serde_json::from_str(&result.output_json).map_err(|e| NodeError::Internal(e.to_string()))?;
            let entry = store.log_range(pid, pos, 1)?;
            // The message this outbox answers: its `Pushed-For`, else its own id.
            let initial = entry.first().and_then(|e| {
                let m: MsgView = serde_json::from_str(&e.msg_json).ok()?;
                let pushed = m
                    .tags
                    .into_iter()
                    .find(|t| t.name == "Pushed-For")
                    .map(|t| t.value);
                pushed.or(m.id)
            });
            for (i, m) in out.messages.iter().enumerate() {
                let key = format!("m{i}");
                if reads.delivered(pid, pos, &key)? {
                    continue;
                }
                let Some(target) = m.get("Target").and_then(Value::as_str) else {
                    continue;
                };
                // Only processes this node schedules (not wallets, not remote or hbu processes).
                if reads.by_nonce(target, 0)?.is_none() {
                    continue;
                }
                let mut tags = filtered_tags(
                    m,
                    &[
                        "Data-Protocol",
                        "Type",
                        "From-Process",
                        "From-Module",
                        "Assignments",
                    ],
                );
                tags.push(("Data-Protocol".into(), "ao".into()));
                tags.push(("Type".into(), "Message".into()));
                tags.push(("From-Process".into(), pid.into()));
                tags.push(("From-Module".into(), record.module_id.clone()));
                if let Some(p) = &initial {
                    tags.push(("Pushed-For".into(), p.clone()));
                }
                let raw = self.sign(m, &tags, Some(target))?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let mark = cu_store::schedule::DeliveryMark {
                    process_id: pid.into(),
                    pos,
                    item: key,
                };
                self.deliver_message(target, &item, raw, mark)?;
                self.inner.delivered.fetch_add(1, Relaxed);
            }
            for (i, sp) in out.spawns.iter().enumerate() {
                let key = format!("s{i}");
                if reads.delivered(pid, pos, &key)? {
                    continue;
                }
                let mut tags = filtered_tags(sp, &["Data-Protocol", "Type"]);
                let variant = if tags.iter().any(|(n, v)| n == "Variant" && v == "ao.N.1") {
                    "ao.N.1"
                } else {
                    "ao.TN.1"
                };
                tags.retain(|(n, _)| n != "Variant");
                tags.push(("Variant".into(), variant.into()));
                tags.push(("Data-Protocol".into(), "ao".into()));
                tags.push(("Type".into(), "Process".into()));
                tags.push(("From-Process".into(), pid.into()));
                if let Some(p) = &initial {
                    tags.push(("Pushed-For".into(), p.clone()));
                }
                // As the reference MU (`spawn-process.js`): `From-Module` names the spawning process's
                // module, and a spawn without a `Scheduler` goes to the spawning process's SU (this node).
                for (n, v) in tags.iter_mut() {
                    if n == "From-Module" {
                        v.clone_from(&record.module_id);
                    }
                }
                if !tags.iter().any(|(n, _)| n == "Scheduler") {
                    tags.push(("Scheduler".into(), self.inner.address.clone()));
                }
                let raw = self.sign(sp, &tags, None)?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let mark = cu_store::schedule::DeliveryMark {
                    process_id: pid.into(),
                    pos,
                    item: key,
                };
                let spawned = match self.route(&item.id())? {
                    Route::Local => self.spawn(&item, raw, vec![mark]),
                    // Spawned already (its id is the item's): by an earlier try of this delivery.
                    Route::Remote { .. } => self.mark_delivered(mark),
                };
                match spawned {
                    Ok(()) => {
                        self.inner.delivered.fetch_add(1, Relaxed);
                    }
                    Err(NodeError::BadRequest(e)) => {
                        tracing::warn!(process = %pid, pos, error = %e, "spawn not delivered")
                    }
                    Err(e) => return Err(e),
                }
            }
            for (i, a) in out.assignments.iter().enumerate() {
                let Some(message_id) = a.get("Message").and_then(Value::as_str) else {
                    continue;
                };
                let Some(raw) = reads.message_item(message_id)? else {
                    continue;
                };
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let targets = a
                    .get("Processes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for t in targets.iter().filter_map(Value::as_str) {
                    let key = format!("a{i}:{t}");
                    if reads.delivered(pid, pos, &key)? || reads.by_nonce(t, 0)?.is_none() {
                        continue;
                    }
                    let mark = cu_store::schedule::DeliveryMark {
                        process_id: pid.into(),
                        pos,
                        item: key,
                    };
                    match self.route(t)? {
                        Route::Local => {
                            self.schedule_item(t, &item, None, vec![mark.clone()])?;
                            // An earlier try may have assigned it through the owner then (nothing
                            // written now): mark it on its own.
                            if self.clustered() {
                                self.mark_delivered(mark)?;
                            }
                        }
                        Route::Remote { url, .. } => {
                            let at = format!("{url}/?process-id={t}&assign={message_id}");
                            self.post_to_owner(&at, b"")?;
                            self.mark_delivered(mark)?;
                        }
                    }
                }
            }
            store.commit_schedule(cu_store::schedule::ScheduleBatch {
                outbox_cursors: vec![(pid.to_string(), pos)],
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Schedules an outbox message on its target, here (with its delivery mark, in one transaction) or,
    /// in a cluster, through the MU of the node that owns the target (then the delivery is marked here).
    ///
    /// In a cluster the signed item is kept first (`Store::keep_signed_outbox_item`), and every try, by
    /// this node or by whichever node owns the process next, delivers that same item: a try after a crash
    /// between the hand-over and the mark sends the same id, which the target schedules once, wherever the
    /// target is owned by then. The mark is then written on its own too, since a target that already has
    /// the item answers its assignment without writing anything.
    fn deliver_message(
        &self,
        target: &str,
        item: &DataItem,
        raw: Vec<u8>,
        mark: cu_store::schedule::DeliveryMark,
    ) -> Result<(), NodeError> {
        if !self.clustered() {
            return self
                .schedule_item(target, item, Some(raw), vec![mark])
                .map(|_| ());
        }
        let raw = self
            .inner
            .store
            .keep_signed_outbox_item(&mark.process_id, mark.pos, &mark.item, &raw)?;
        match self.route(target)? {
            Route::Local => {
                let kept = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                self.schedule_item(target, &kept, Some(raw), vec![mark.clone()])?;
            }
            Route::Remote { url, .. } => {
                self.post_to_owner(&format!("{url}/"), &raw)?;
            }
        }
        self.mark_delivered(mark)
    }

    /// `POST` to another node of the cluster (its MU): the JSON answer, or why not (503).
    fn post_to_owner(&self, url: &str, body: &[u8]) -> Result<serde_json::Value, NodeError> {
        let peers =
            self.inner.peers.as_ref().ok_or_else(|| {
                NodeError::Internal("only a cluster node hands items to other nodes".into())
            })?;
        peers
            .post_bytes::<serde_json::Value>(
                "handing an outbox item to the node that owns its target",
                url,
                "application/octet-stream",
                body,
            )
            .map_err(|e| NodeError::Unavailable(e.to_string()))
    }

    fn mark_delivered(&self, mark: cu_store::schedule::DeliveryMark) -> Result<(), NodeError> {
        Ok(self
            .inner
            .store
            .commit_schedule(cu_store::schedule::ScheduleBatch {
                delivered: vec![mark],
                ..Default::default()
            })?)
    }

    pub(crate) fn sign(
        &self,
        m: &Value,
        tags: &[(String, String)],
        target: Option<&str>,
    ) -> Result<Vec<u8>, NodeError> {
        let data = match m.get("Data") {
            Some(Value::String(s)) => s.clone().into_bytes(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => other.to_string().into_bytes(),
        };
        let anchor = m
            .get("Anchor")
            .and_then(Value::as_str)
            .filter(|a| a.len() == 32)
            .map(str::as_bytes);
        self.inner
            .wallet
            .sign_data_item(&data, tags, target, anchor)
            .map_err(|e| NodeError::Internal(format!("signing an outbox item: {e}")))
    }
}
