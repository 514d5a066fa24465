//! The CU role's reads: `/result`, `/results`, `/cron`, `/dry-run`, `/state`, and the result shape the
//! reference CU serves.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cu_store::{ResultsQuery, Sort};
use serde_json::{Map, Value, json};

use crate::error::NodeError;
use crate::network::Refresh;
use crate::node::{Node, bad};

/// Query of `/results` and `/cron`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultsParams {
    /// Exclusive lower bound: a cursor or a timestamp.
    pub from: Option<String>,
    /// Inclusive upper bound: a cursor or a timestamp.
    pub to: Option<String>,
    /// `ASC` or `DESC`.
    pub sort: Option<String>,
    /// Most items.
    pub limit: Option<usize>,
}

/// The answer to [`Node::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReply {
    /// Timestamp of the last evaluated message.
    pub timestamp: u64,
    /// Its ordinate (nonce as a string).
    pub ordinate: String,
    /// Its block height.
    pub block_height: u64,
    /// The linear memory.
    pub memory: Vec<u8>,
}

pub(crate) struct Cursor {
    bound: cu_store::Bound,
    sort: Option<Sort>,
}

/// A cursor (base64 JSON `{timestamp, ordinate, cron, sort}`) or a plain timestamp.
pub(crate) fn parse_cursor(s: &str) -> Result<Cursor, NodeError> {
    if let Ok(ts) = s.parse::<u64>() {
        return Ok(Cursor {
            bound: cu_store::Bound::Timestamp(ts),
            sort: None,
        });
    }
    let bytes = STANDARD
        .decode(s)
        .map_err(|_| bad(format!("invalid cursor {s:?}")))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad(format!("invalid cursor {s:?}")))?;
    let sort = match v.get("sort").and_then(Value::as_str) {
        Some("DESC") => Some(Sort::Desc),
        Some("ASC") => Some(Sort::Asc),
        _ => None,
    };
    let bound = match v.get("pos").and_then(Value::as_u64) {
        Some(p) => cu_store::Bound::Pos(p),
        None => cu_store::Bound::Timestamp(
            v.get("timestamp")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("invalid cursor {s:?}")))?,
        ),
    };
    Ok(Cursor { bound, sort })
}

/// A stored `EvalOutput` in the reference's route shape: `{Messages, Assignments, Spawns, Output,
/// GasUsed?, Error?}`.
pub(crate) fn result_shape(output_json: &str, with_gas: bool) -> Result<Value, NodeError> {
    let v: Value =
        serde_json::from_str(output_json).map_err(|e| NodeError::Internal(format!("stored result: {e}")))?;
    let field = |n: &str| v.get(n).cloned().unwrap_or(Value::Array(Vec::new()));
    let mut m = Map::new();
    m.insert("Messages".into(), field("Messages"));
    m.insert("Assignments".into(), field("Assignments"));
    m.insert("Spawns".into(), field("Spawns"));
    m.insert(
        "Output".into(),
        v.get("Output").cloned().unwrap_or(Value::String(String::new())),
    );
    if with_gas {
        m.insert("GasUsed".into(), v.get("GasUsed").cloned().unwrap_or(0.into()));
    }
    if let Some(e) = v.get("Error") {
        m.insert("Error".into(), e.clone());
    }
    Ok(Value::Object(m))
}

/// The dry-run msg: `{Timestamp, Block-Height, Cron:false, Target, ...body, From, Read-Only:true}` put in
/// the reference's `messageSchema` key order (unknown keys dropped, tags `From`/`Owner` removed).
pub(crate) fn dry_run_msg(
    process_id: &str,
    body: &Map<String, Value>,
    ts: u64,
    height: u64,
) -> Result<String, NodeError> {
    let mut all = Map::new();
    all.insert("Timestamp".into(), ts.into());
    all.insert("Block-Height".into(), height.into());
    all.insert("Cron".into(), false.into());
    all.insert("Target".into(), process_id.into());
    for (k, v) in body {
        all.insert(k.clone(), v.clone());
    }
    let owner = match body.get("Owner") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => return Err(bad("'Owner': Required")),
        Some(_) => return Err(bad("'Owner': Expected string")),
    };
    let tags: Vec<Value> = match body.get("Tags") {
        Some(Value::Array(t)) => t.clone(),
        None => Vec::new(),
        Some(_) => return Err(bad("'Tags': Expected array")),
    };
    if let Some(i) = tags.iter().position(|t| {
        !(t.get("name").is_some_and(Value::is_string) && t.get("value").is_some_and(Value::is_string))
    }) {
        return Err(bad(format!(
            "'Tags[{i}]': Expected {{name: string, value: string}}"
        )));
    }
    let from = tags
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some("From-Process"))
        .and_then(|t| t.get("value").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map_or(owner, str::to_string);
    all.insert("From".into(), from.into());
    all.insert("Read-Only".into(), true.into());
    all.insert(
        "Tags".into(),
        Value::Array(
            tags.into_iter()
                .filter(|t| !matches!(t.get("name").and_then(Value::as_str), Some("From" | "Owner")))
                .collect(),
        ),
    );
    let order = [
        "Id",
        "Signature",
        "Data",
        "Owner",
        "Target",
        "Anchor",
        "From",
        "Forwarded-By",
        "Tags",
        "Epoch",
        "Nonce",
        "Timestamp",
        "Block-Height",
        "Hash-Chain",
        "Cron",
        "Read-Only",
    ];
    let mut m = Map::new();
    for k in order {
        if let Some(v) = all.remove(k)
            && !v.is_null()
        {
            m.insert(k.into(), v);
        }
    }
    Ok(Value::Object(m).to_string())
}

impl Node {
    pub(crate) async fn evaluate_to(&self, process_id: &str, pos: u64) -> Result<(), NodeError> {
        let rx = self.inner.engine.evaluate_to(process_id, pos)?;
        rx.await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        Ok(())
    }

    /// `GET /result/:id?process-id=`: evaluates up to that message; the reference's result shape.
    pub async fn result(&self, process_id: &str, message_id: &str) -> Result<Value, NodeError> {
        Ok(self.result_with_slot(process_id, message_id).await?.0)
    }

    /// [`Node::result`] and the message's slot (its scheduler nonce; `None` only for a message without
    /// one), which a signed result names as its position.
    pub async fn result_with_slot(
        &self,
        process_id: &str,
        message_id: &str,
    ) -> Result<(Value, Option<u64>), NodeError> {
        self.refresh_remote(process_id, Refresh::UnlessKnown(message_id))
            .await?;
        let (pid, mid) = (process_id.to_owned(), message_id.to_owned());
        let (entry, stored) = self
            .off_worker(move |node| {
                node.known_process(&pid)?;
                let entry = node
                    .inner
                    .store
                    .log_entry_by_message(&pid, &mid)?
                    .ok_or_else(|| {
                        NodeError::NotFound(format!("Message {mid} not found on process {pid}"))
                    })?;
                // A durable result is served from the store without a round trip through the shard.
                let stored = node.inner.store.result(&pid, entry.pos)?;
                Ok((entry, stored))
            })
            .await?;
        if let Some(r) = stored {
            return Ok((result_shape(&r.output_json, true)?, entry.nonce));
        }
        self.evaluate_to(process_id, entry.pos).await?;
        let (pid, pos) = (process_id.to_owned(), entry.pos);
        let r = self
            .off_worker(move |node| {
                node.inner
                    .store
                    .result(&pid, pos)?
                    .ok_or_else(|| NodeError::Internal(format!("result at {pos} missing after evaluation")))
            })
            .await?;
        Ok((result_shape(&r.output_json, true)?, entry.nonce))
    }

    /// `GET /results/:pid`: cached results, cursor paging (does not evaluate, as the reference).
    pub fn results(&self, process_id: &str, q: ResultsParams) -> Result<Value, NodeError> {
        self.refresh_remote_blocking(process_id)?;
        self.known_process(process_id)?;
        self.results_page(process_id, q, false, 25, usize::MAX)
    }

    pub(crate) fn results_page(
        &self,
        process_id: &str,
        q: ResultsParams,
        only_cron: bool,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<Value, NodeError> {
        let from = q
            .from
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_cursor)
            .transpose()?;
        let to =
            q.to.as_deref()
                .filter(|s| !s.is_empty())
                .map(parse_cursor)
                .transpose()?;
        let mut sort = match q.sort.as_deref() {
            None | Some("ASC") => Sort::Asc,
            Some("DESC") => Sort::Desc,
            Some(other) => {
                return Err(bad(format!(
                    "'sort': invalid value {other:?}, expected ASC or DESC"
                )));
            }
        };
        if let Some(s) = from
            .as_ref()
            .and_then(|c| c.sort)
            .or(to.as_ref().and_then(|c| c.sort))
        {
            sort = s;
        }
        if only_cron {
            sort = Sort::Asc;
        }
        let limit = q.limit.unwrap_or(default_limit).min(max_limit);
        let query = ResultsQuery {
            after: from.map(|c| c.bound),
            upto: to.map(|c| c.bound),
            sort,
            limit,
            only_cron,
            skip_errors: true,
        };
        let page = self.inner.store.results(process_id, &query)?;
        let sort_s = if sort == Sort::Desc { "DESC" } else { "ASC" };
        let edges = page
            .items
            .iter()
            .map(|r| {
                let cursor = json!({
                    "timestamp": r.timestamp,
                    "ordinate": r.nonce.map(|n| n.to_string()).unwrap_or_else(|| r.pos.to_string()),
                    "cron": r.cron,
                    "sort": sort_s,
                    "pos": r.pos,
                });
                Ok(json!({"cursor": STANDARD.encode(cursor.to_string()), "node": result_shape(&r.output_json, false)?}))
            })
            .collect::<Result<Vec<Value>, NodeError>>()?;
        Ok(json!({"pageInfo": {"hasNextPage": page.has_next_page}, "edges": edges}))
    }

    /// `GET /cron/:pid`: generates due crons, evaluates to the end, returns cron results only.
    pub async fn cron(&self, process_id: &str, q: ResultsParams) -> Result<Value, NodeError> {
        let pid = process_id.to_owned();
        let last = self
            .off_worker(move |node| {
                node.known_process(&pid)?;
                Ok(node.inner.scheduler.tick_crons(&pid, node.now())?)
            })
            .await?;
        if last > 0 {
            self.evaluate_to(process_id, last).await?;
        }
        let pid = process_id.to_owned();
        self.off_worker(move |node| node.results_page(&pid, q, true, 500, 1000))
            .await
    }

    /// `POST /dry-run?process-id=`: evaluates `body` on a fork at the latest state; never persisted.
    pub async fn dry_run(&self, process_id: &str, body: Value) -> Result<Value, NodeError> {
        Ok(self.dry_run_with_slot(process_id, body).await?.0)
    }

    /// [`Node::dry_run`] and the slot (scheduler nonce) of the last message of the state it ran on; `None`
    /// when that state is the initial one, ends with a cron message (which has no slot), or is not known
    /// exactly (a message was scheduled while the dry-run started).
    pub async fn dry_run_with_slot(
        &self,
        process_id: &str,
        body: Value,
    ) -> Result<(Value, Option<u64>), NodeError> {
        self.refresh_remote(process_id, Refresh::IfStale).await?;
        let Value::Object(body) = body else {
            return Err(bad("the dry-run body must be a JSON object"));
        };
        // The engine's dry-run evaluates the log to its end before it freezes the state (no separate
        // round trip to the shard to wait for it here).
        let pid = process_id.to_owned();
        let (last, ts, height, slot) = self
            .off_worker(move |node| {
                node.known_process(&pid)?;
                let last = node.inner.store.last_pos(&pid)?;
                Ok(match node.inner.store.log_range(&pid, last.max(1), 1)?.first() {
                    Some(e) => (last, e.timestamp, e.block_height, e.nonce.filter(|_| last > 0)),
                    None => (last, 0, 0, None),
                })
            })
            .await?;
        let msg = dry_run_msg(process_id, &body, ts, height)?;
        let rx = self.inner.engine.dry_run(process_id, msg)?;
        let out = rx
            .await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        let text = serde_json::to_string(&out).map_err(|e| NodeError::Internal(e.to_string()))?;
        // The fork ran on the end of the log at the time it was made: exactly `last` only if the log did
        // not grow meanwhile; otherwise the slot is not known and none is claimed.
        let pid = process_id.to_owned();
        let now_last = self
            .off_worker(move |node| Ok(node.inner.store.last_pos(&pid)?))
            .await
            .ok();
        let slot = slot.filter(|_| now_last == Some(last));
        Ok((result_shape(&text, true)?, slot))
    }

    /// `GET /state/:pid?to=`: [`Node::state`] when `to` (ms) is at or after the newest evaluated
    /// message; a 422 when it is before, since a node keeps only the newest state of a process (the
    /// reference evaluates a fresh copy up to `to`; a silently newer state would be wrong data).
    pub async fn state_at(&self, process_id: &str, to: Option<u64>) -> Result<StateReply, NodeError> {
        let reply = self.state(process_id).await?;
        match to {
            Some(to) if reply.timestamp > to => Err(NodeError::Unprocessable(format!(
                "the state of process {process_id} at to={to} is not served: its newest evaluated message \
                 (ordinate {}) is at {}, and this node keeps only the newest state; ask without `to`",
                reply.ordinate, reply.timestamp
            ))),
            _ => Ok(reply),
        }
    }

    /// `GET /state/:pid`: evaluates to the end; memory and the last message's position.
    pub async fn state(&self, process_id: &str) -> Result<StateReply, NodeError> {
        self.refresh_remote(process_id, Refresh::IfStale).await?;
        let pid = process_id.to_owned();
        self.off_worker(move |node| node.known_process(&pid).map(|_| ()))
            .await?;
        let rx = self.inner.engine.state(process_id)?;
        let (pos, memory) = rx
            .await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        let pid = process_id.to_owned();
        let (timestamp, ordinate, block_height) = self
            .off_worker(move |node| {
                Ok(match node.inner.store.log_range(&pid, pos.max(1), 1)?.first() {
                    Some(e) if pos > 0 => (
                        e.timestamp,
                        e.nonce.map_or_else(|| e.pos.to_string(), |n| n.to_string()),
                        e.block_height,
                    ),
                    _ => (0, "0".into(), 0),
                })
            })
            .await?;
        Ok(StateReply {
            timestamp,
            ordinate,
            block_height,
            memory,
        })
    }
}
