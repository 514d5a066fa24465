//! Column lists and row mapping for the record types.

use rusqlite::Row;
use rusqlite::types::Type;

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

fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)))
        .transpose()
}

fn get_tags(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<Tag>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Reads a [`ModuleRecord`] from a row of [`MODULE_COLS`].
pub fn module(row: &Row<'_>) -> rusqlite::Result<ModuleRecord> {
    Ok(ModuleRecord {
        id: row.get(0)?,
        format: row.get(1)?,
        owner: row.get(2)?,
        tags: get_tags(row, 3)?,
        wasm: row.get(4)?,
        owner_key: row.get(5)?,
    })
}

/// Reads a [`ProcessRecord`] from a row of [`PROCESS_COLS`].
pub fn process(row: &Row<'_>) -> rusqlite::Result<ProcessRecord> {
    Ok(ProcessRecord {
        id: row.get(0)?,
        module_id: row.get(1)?,
        owner: row.get(2)?,
        tags: get_tags(row, 3)?,
        env_json: row.get(4)?,
        block_height: get_u64(row, 5)?,
        timestamp: get_u64(row, 6)?,
        spawn_json: row.get(7)?,
    })
}

/// Reads a [`LogEntry`] from a row of [`LOG_COLS`].
pub fn log_entry(row: &Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        process_id: row.get(0)?,
        pos: get_u64(row, 1)?,
        message_id: row.get(2)?,
        nonce: get_opt_u64(row, 3)?,
        timestamp: get_u64(row, 4)?,
        block_height: get_u64(row, 5)?,
        cron: row.get(6)?,
        msg_json: row.get(7)?,
    })
}

/// Reads a [`ResultRecord`] from a row of [`RESULT_COLS`].
pub fn result(row: &Row<'_>) -> rusqlite::Result<ResultRecord> {
    Ok(ResultRecord {
        process_id: row.get(0)?,
        pos: get_u64(row, 1)?,
        message_id: row.get(2)?,
        nonce: get_opt_u64(row, 3)?,
        timestamp: get_u64(row, 4)?,
        block_height: get_u64(row, 5)?,
        cron: row.get(6)?,
        has_error: row.get::<_, i64>(7)? != 0,
        output_json: row.get(8)?,
    })
}

/// Reads a [`CheckpointRecord`] from a row of [`CHECKPOINT_COLS`].
pub fn checkpoint(row: &Row<'_>) -> rusqlite::Result<CheckpointRecord> {
    let kind: String = row.get(3)?;
    let kind = CheckpointKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            Type::Text,
            format!("checkpoint kind {kind:?} is neither \"base\" nor \"delta\"").into(),
        )
    })?;
    Ok(CheckpointRecord {
        process_id: row.get(0)?,
        seq: get_u64(row, 1)?,
        pos: get_u64(row, 2)?,
        kind,
        parent: get_opt_u64(row, 4)?,
        memory_len: get_u64(row, 5)?,
        file: row.get(6)?,
        blake3: row.get(7)?,
        bytes: get_u64(row, 8)?,
    })
}
