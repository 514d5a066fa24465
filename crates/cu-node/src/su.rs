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
        Ok(wire::page_json(&records, more)?)
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
