//! The SU role's reads (`GET /processes/:pid`, `/:pid`, `/:id?process-id=`, `/:pid/latest`, `/timestamp`)
//! in the SU wire format.

use cu_scheduler::wire;
use serde_json::Value;

use crate::error::NodeError;
use crate::node::{Node, bad};

impl Node {
    /// SU `GET /processes/:pid`.
    pub fn su_process(&self, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .reads()
            .by_nonce(process_id, 0)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} not found")))?;
        Ok(wire::process_json(&r)?)
    }

    /// SU `GET /:pid?from&to&limit` (timestamps; from exclusive, to inclusive; limit default 100).
    pub fn su_messages(
        &self,
        process_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Value, NodeError> {
        let (records, more) = self.su_page(process_id, from, to, limit)?;
        Ok(wire::page_json(&records, more)?)
    }

    /// [`Node::su_messages`] as the JSON text the route sends, written without a `Value` tree.
    pub fn su_messages_text(
        &self,
        process_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<u8>, NodeError> {
        let (records, more) = self.su_page(process_id, from, to, limit)?;
        Ok(wire::page_text(&records, more)?)
    }

    fn su_page(
        &self,
        process_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<cu_store::schedule::ScheduleRecord>, bool), NodeError> {
        self.known_process(process_id)?;
        let num = |s: Option<&str>, what: &str| -> Result<Option<u64>, NodeError> {
            s.filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().map_err(|_| bad(format!("invalid {what} {s:?}"))))
                .transpose()
        };
        let (from, to) = (num(from, "from")?, num(to, "to")?);
        let limit = limit.unwrap_or(100).clamp(1, 5000);
        let mut records = self
            .inner
            .scheduler
            .reads()
            .page(process_id, from, to, limit + 1)?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok((records, more))
    }

    /// Up to `max` slots of `process_id` from nonce `from`, in nonce order, as a pushed schedule (the
    /// QUIC subscription) sends them: `(nonce, cursor, SU wire node JSON)`, the node and cursor exactly
    /// an edge of `GET /:pid` has. Empty when nothing is scheduled from `from` yet; 404 for a process
    /// this node does not schedule. Blocking.
    pub fn su_slots(
        &self,
        process_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, String, Vec<u8>)>, NodeError> {
        if !self.inner.scheduler_role {
            return Err(NodeError::NotFound(
                "this node does not schedule processes".into(),
            ));
        }
        let records = self
            .inner
            .scheduler
            .reads()
            .from_nonce(process_id, from, max.clamp(1, 5000))?;
        if records.is_empty() {
            self.known_process(process_id)?;
        }
        let mut out = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            // A missing nonce ends the batch rather than sending a gap.
            if r.nonce != from + i as u64 {
                break;
            }
            let node = wire::message_node_text(r)?;
            out.push((r.nonce, r.timestamp.to_string(), node));
        }
        Ok(out)
    }

    /// SU `GET /:message_id?process-id=`: one message.
    pub fn su_message(&self, message_id: &str, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .reads()
            .by_message(process_id, message_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Message {message_id} not found")))?;
        Ok(wire::message_node(&r)?)
    }

    /// SU `GET /:pid/latest`.
    pub fn su_latest(&self, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .latest(process_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} not found")))?;
        Ok(wire::message_node(&r)?)
    }

    /// SU `GET /timestamp`.
    pub fn su_timestamp(&self) -> Value {
        wire::timestamp_json(self.now())
    }
}
