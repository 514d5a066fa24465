//! The records the store keeps, and the query types of [`crate::Store::results`].

use serde::{Deserialize, Serialize};

/// One ANS-104 tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag name.
    pub name: String,
    /// Tag value.
    pub value: String,
}

/// A module: its transaction id, `Module-Format`, owner, tags and the WASM binary itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The module's transaction id.
    pub id: String,
    /// The `Module-Format` tag value (e.g. `wasm32-unknown-emscripten-metering`).
    pub format: String,
    /// The owner's address.
    pub owner: String,
    /// The owner's public key (base64url), as a gateway's `owner { key }` answers it; `None` for a
    /// module stored from a local file (`ao-cu run`, benchmarks), not from a signed data item.
    #[serde(default)]
    pub owner_key: Option<String>,
    /// All tags of the module transaction.
    pub tags: Vec<Tag>,
    /// The WASM binary.
    pub wasm: Vec<u8>,
}

/// A process: its id, module, owner, tags and what every evaluation of it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The process id (also used in checkpoint file paths: `[A-Za-z0-9_-]`, 1 to 64 characters).
    pub id: String,
    /// The module's transaction id.
    pub module_id: String,
    /// The owner's address.
    pub owner: String,
    /// All tags of the process (spawn) transaction.
    pub tags: Vec<Tag>,
    /// The env passed to every `handle()` call of this process.
    pub env_json: String,
    /// Block height of the spawn.
    pub block_height: u64,
    /// Timestamp (ms) of the spawn.
    pub timestamp: u64,
    /// The process's own spawn message as the node received it (opaque to the store).
    pub spawn_json: String,
}

/// One message of a process's log. `pos` is 1, 2, 3, ... per process, gap-free: the order of evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The process id.
    pub process_id: String,
    /// Position in the process's log (1-based).
    pub pos: u64,
    /// The message id; `None` for cron messages.
    pub message_id: Option<String>,
    /// The scheduler nonce; `None` for cron messages.
    pub nonce: Option<u64>,
    /// Timestamp (ms).
    pub timestamp: u64,
    /// Block height.
    pub block_height: u64,
    /// The cron interval for a cron message (e.g. `"0-10-minutes"`), `None` otherwise.
    pub cron: Option<String>,
    /// The msg passed to `handle()`.
    pub msg_json: String,
}

/// The result of evaluating the log entry at `pos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The process id.
    pub process_id: String,
    /// Position of the evaluated log entry.
    pub pos: u64,
    /// The message id; `None` for cron messages.
    pub message_id: Option<String>,
    /// The scheduler nonce; `None` for cron messages.
    pub nonce: Option<u64>,
    /// Timestamp (ms) of the message.
    pub timestamp: u64,
    /// Block height of the message.
    pub block_height: u64,
    /// The cron interval for a cron message, `None` otherwise.
    pub cron: Option<String>,
    /// Whether the result carries an `Error`.
    pub has_error: bool,
    /// The serialized evaluation output (opaque to the store).
    pub output_json: String,
}

/// A bound of a results query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    /// The result at this log position.
    Pos(u64),
    /// A timestamp: every result with `timestamp <= t` is at or before this bound.
    Timestamp(u64),
}

/// Sort order of a results query (by position).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sort {
    /// Ascending positions.
    #[default]
    Asc,
    /// Descending positions.
    Desc,
}

/// A `/results` or `/cron` query: results with `after` < key <= `upto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsQuery {
    /// Exclusive lower bound; `None` = from the first result.
    pub after: Option<Bound>,
    /// Inclusive upper bound; `None` = up to the last result.
    pub upto: Option<Bound>,
    /// Order of the items.
    pub sort: Sort,
    /// Most items returned.
    pub limit: usize,
    /// Keep only cron results.
    pub only_cron: bool,
    /// Drop results with `has_error`.
    pub skip_errors: bool,
}

impl Default for ResultsQuery {
    /// Everything, ascending, 25 items (the reference's `/results` default), errors and non-cron included.
    fn default() -> Self {
        ResultsQuery {
            after: None,
            upto: None,
            sort: Sort::Asc,
            limit: 25,
            only_cron: false,
            skip_errors: false,
        }
    }
}

/// One page of a results query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsPage {
    /// The results, in the query's order.
    pub items: Vec<ResultRecord>,
    /// Whether more results match beyond `limit`.
    pub has_next_page: bool,
}

/// Whether a checkpoint is a full snapshot or a delta on top of its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKind {
    /// A full snapshot.
    Base,
    /// Changes relative to the parent checkpoint.
    Delta,
}

impl CheckpointKind {
    /// The stored name: `"base"` or `"delta"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Base => "base",
            CheckpointKind::Delta => "delta",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<CheckpointKind> {
        match s {
            "base" => Some(CheckpointKind::Base),
            "delta" => Some(CheckpointKind::Delta),
            _ => None,
        }
    }
}

/// What the caller knows about a checkpoint before it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The process id.
    pub process_id: String,
    /// Sequence number of the checkpoint within the process (file name, index key).
    pub seq: u64,
    /// Log position the checkpoint reflects (state after evaluating `pos`).
    pub pos: u64,
    /// Base or delta.
    pub kind: CheckpointKind,
    /// The `seq` of the checkpoint a delta applies to.
    pub parent: Option<u64>,
    /// Length of the linear memory the checkpoint restores.
    pub memory_len: u64,
}

/// A stored checkpoint: its meta, its file and the file's integrity data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The process id.
    pub process_id: String,
    /// Sequence number within the process.
    pub seq: u64,
    /// Log position the checkpoint reflects.
    pub pos: u64,
    /// Base or delta.
    pub kind: CheckpointKind,
    /// The `seq` of the checkpoint a delta applies to.
    pub parent: Option<u64>,
    /// Length of the linear memory the checkpoint restores.
    pub memory_len: u64,
    /// The file, relative to the store directory (`checkpoints/<process_id>/<seq:020>.ckpt`).
    pub file: String,
    /// BLAKE3 of the file's bytes, lowercase hex.
    pub blake3: String,
    /// Length of the file in bytes.
    pub bytes: u64,
}
