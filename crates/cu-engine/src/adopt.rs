//! Adopting a memory image made elsewhere (an Arweave checkpoint of the reference CU or of another
//! ao-cu): the process boots as usual, the image is loaded the way the reference loader reloads memory
//! ([`cu_wasm::Process::load_memory_image`]), and the result is written as an ordinary local base
//! checkpoint at log position 0, so the process's log begins with the first message after the image.
//! The engine then restores it like any other checkpoint; the store's `adopted` mark keeps it from ever
//! being booted fresh instead (its log lacks the messages before the image).

use cu_store::{CheckpointKind, CheckpointMeta, ProcessRecord};
use cu_wasm::{Process, ProcessConfig, WasmError};

use crate::checkpoint::{self, CheckpointState};
use crate::error::EngineError;
use crate::modules::{drive_of, limits_of};
use crate::shard::Shared;

/// Writes `image` as the base checkpoint (position 0, sequence 1) of `record`'s process, which must not
/// be in the store yet (its checkpoints, left by an earlier attempt, are replaced). Blocking: boots the
/// module once.
pub(crate) fn adopt_memory(shared: &Shared, record: &ProcessRecord, image: &[u8]) -> Result<(), EngineError> {
    let store = &shared.store;
    if store.process(&record.id)?.is_some() {
        return Err(EngineError::Checkpoint(format!(
            "process {} already exists here: a checkpoint is adopted only on a cold start",
            record.id
        )));
    }
    let (module, module_tags) = shared.modules.get(&record.module_id)?;
    let config = ProcessConfig {
        limits: limits_of(record, &module_tags, shared.config.limits.default_compute)?,
        watch: None,
        drive: drive_of(
            shared.process_config.drive.as_ref(),
            module.format,
            record,
            &module_tags,
        ),
        ..shared.process_config.clone()
    };
    let boot_error = |e: WasmError| EngineError::Boot {
        process: record.id.clone(),
        reason: e.to_string(),
    };
    let mut process = Process::boot(module.clone(), config).map_err(boot_error)?;
    process
        .load_memory_image(image)
        .map_err(|e| EngineError::Checkpoint(format!("process {}: {e}", record.id)))?;
    let meta = process
        .meta()
        .map_err(|e| EngineError::Checkpoint(e.to_string()))?;
    let memory = process.memory();
    let state = CheckpointState {
        format: module.format,
        module_sha256: module.sha256,
        pos: 0,
        globals: meta.globals,
        glue: meta.glue,
        memory,
    };
    let bytes = checkpoint::encode(&state, None, &checkpoint::nonzero_chunks(memory))?;
    store.delete_checkpoints_before(&record.id, u64::MAX)?;
    store.write_checkpoint(
        CheckpointMeta {
            process_id: record.id.clone(),
            seq: 1,
            pos: 0,
            kind: CheckpointKind::Base,
            parent: None,
            memory_len: memory.len() as u64,
        },
        &bytes,
    )?;
    Ok(())
}
