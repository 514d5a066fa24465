//! Column lists and row mapping for the record types.

use crate::db::{DbError, Row};

use crate::records::{
    CheckpointKind, CheckpointRecord, LogEntry, ModuleRecord, ProcessRecord, ResultRecord, Tag,
};

/// Columns of `modules`, in the order [`module`] reads them.
pub const MODULE_COLS: &str = "id, format, owner, tags, wasm, owner_key";
/// Columns of `processes`, in the order [`process`] reads them.
pub const PROCESS_COLS: &str = "id, module_id, owner, tags, env_json, block_height, timestamp, spawn_json";
/// Columns of `log`, in the order [`log_entry`] reads them.
pub const LOG_COLS: &str = "process_id, pos, message_id, nonce, timestamp, block_height, cron, msg_json";
/// Columns of `results`, in the order [`result`] reads them.
pub const RESULT_COLS: &str =
    "process_id, pos, message_id, nonce, timestamp, block_height, cron, has_error, output_json";
/// Columns of `checkpoints`, in the order [`checkpoint`] reads them.
pub const CHECKPOINT_COLS: &str = "process_id, seq, pos, kind, parent, memory_len, file, blake3, bytes";

/// Reads a [`ModuleRecord`] from a row of [`MODULE_COLS`].
pub fn module(row: &Row<'_>) -> Result<ModuleRecord, DbError> {
    Ok(ModuleRecord {
        id: row.text(0)?,
        format: row.text(1)?,
        owner: row.text(2)?,
        tags: row.json::<Vec<Tag>>(3)?,
        wasm: row.bytes(4)?,
        owner_key: row.opt_text(5)?,
    })
}

/// Reads a [`ProcessRecord`] from a row of [`PROCESS_COLS`].
pub fn process(row: &Row<'_>) -> Result<ProcessRecord, DbError> {
    Ok(ProcessRecord {
        id: row.text(0)?,
        module_id: row.text(1)?,
        owner: row.text(2)?,
        tags: row.json::<Vec<Tag>>(3)?,
        env_json: row.text(4)?,
        block_height: row.u64(5)?,
        timestamp: row.u64(6)?,
        spawn_json: row.text(7)?,
    })
}

/// Reads a [`LogEntry`] from a row of [`LOG_COLS`].
pub fn log_entry(row: &Row<'_>) -> Result<LogEntry, DbError> {
    Ok(LogEntry {
        process_id: row.text(0)?,
        pos: row.u64(1)?,
        message_id: row.opt_text(2)?,
        nonce: row.opt_u64(3)?,
        timestamp: row.u64(4)?,
        block_height: row.u64(5)?,
        cron: row.opt_text(6)?,
        msg_json: row.text(7)?,
    })
}

/// Reads a [`ResultRecord`] from a row of [`RESULT_COLS`].
pub fn result(row: &Row<'_>) -> Result<ResultRecord, DbError> {
    Ok(ResultRecord {
        process_id: row.text(0)?,
        pos: row.u64(1)?,
        message_id: row.opt_text(2)?,
        nonce: row.opt_u64(3)?,
        timestamp: row.u64(4)?,
        block_height: row.u64(5)?,
        cron: row.opt_text(6)?,
        has_error: row.int(7)? != 0,
        output_json: row.text(8)?,
    })
}

/// Reads a [`CheckpointRecord`] from a row of [`CHECKPOINT_COLS`].
pub fn checkpoint(row: &Row<'_>) -> Result<CheckpointRecord, DbError> {
    let kind = row.text(3)?;
    let kind = CheckpointKind::parse(&kind).ok_or_else(|| DbError::Value {
        column: 3,
        reason: format!("checkpoint kind {kind:?} is neither \"base\" nor \"delta\""),
    })?;
    Ok(CheckpointRecord {
        process_id: row.text(0)?,
        seq: row.u64(1)?,
        pos: row.u64(2)?,
        kind,
        parent: row.opt_u64(4)?,
        memory_len: row.u64(5)?,
        file: row.text(6)?,
        blake3: row.text(7)?,
        bytes: row.u64(8)?,
    })
}
