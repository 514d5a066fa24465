//! A resident process: its live instance, where it is in its log, and what its last checkpoint holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cu_store::{CheckpointKind, CheckpointMeta, CheckpointRecord, Store};
use cu_wasm::{ForkImage, Process, ProcessConfig, ProcessMeta, Snapshot, StateSource, WasmError};

use crate::checkpoint::{self, CheckpointState, ChunkTable};
use crate::config::CheckpointPolicy;
use crate::error::EngineError;
use crate::metrics::Metrics;

/// Counters since the last checkpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct Since {
    /// Messages evaluated.
    pub messages: u64,
    /// Evaluation time.
    pub eval_time: Duration,
    /// Gas used.
    pub gas: u64,
}

/// One process held by a shard.
pub struct Resident {
    /// The process id.
    pub id: String,
    /// The live instance.
    pub process: Process,
    /// The env JSON passed with every message.
    pub env: Arc<str>,
    /// The log position of the last evaluated message.
    pub pos: u64,
    /// The chunk digests as of the last checkpoint (`None`: the next checkpoint is a base).
    pub table: Option<ChunkTable>,
    /// The last checkpoint written or restored: (sequence number, position).
    pub last: Option<(u64, u64)>,
    /// The current base's sequence number, and the one before it (kept as a fallback).
    pub bases: (Option<u64>, Option<u64>),
    /// The next checkpoint sequence number.
    pub next_seq: u64,
    /// Deltas and their bytes since the current base, and the base's bytes.
    pub deltas: (u32, u64, u64),
    /// The chain of the last checkpoint (its base first): what a failed message rolls back to, read back.
    pub chain: Vec<CheckpointRecord>,
    /// Counters since the last checkpoint.
    pub since: Since,
    /// The shard's clock at the last use (for LRU eviction).
    pub last_used: u64,
    /// The copy-on-write image dry-runs use, with the position it was taken at.
    pub dry_image: Option<(u64, Arc<ForkImage>)>,
    /// An evaluation left the instance unusable (stopped mid-message, or a replay diverged): the shard
    /// drops it instead of keeping it.
    pub broken: bool,
}

impl Resident {
    /// Bytes this process keeps resident: its instance's (memory, rollback base, journal) and its
    /// dry-run image's.
    pub fn resident_bytes(&self) -> u64 {
        let image = self.dry_image.as_ref().map_or(0, |(_, i)| i.stored_bytes());
        self.process.resident_bytes() + image
    }

    /// Whether the policy asks for a checkpoint now.
    pub fn checkpoint_due(&self, policy: &CheckpointPolicy) -> bool {
        let s = &self.since;
        s.messages > 0
            && ((policy.every_messages > 0 && s.messages >= policy.every_messages)
                || (!policy.every_eval_time.is_zero() && s.eval_time >= policy.every_eval_time)
                || (policy.every_gas > 0 && s.gas >= policy.every_gas))
    }

    /// Writes a checkpoint of the current state (a delta when possible), unless nothing changed since
    /// the last one. Returns the sequence number written.
    pub fn checkpoint(
        &mut self,
        store: &Store,
        policy: &CheckpointPolicy,
        metrics: &Metrics,
        probe: Option<&crate::probe::Probe>,
    ) -> Result<Option<u64>, EngineError> {
        if self.last.is_some_and(|(_, pos)| pos == self.pos) {
            return Ok(None);
        }
        let meta = self
            .process
            .meta()
            .map_err(|e| EngineError::Checkpoint(e.to_string()))?;
        let module = self.process.module().clone();
        let memory = self.process.memory();
        let (deltas, delta_bytes, base_bytes) = self.deltas;
        let want_base = self.table.is_none()
            || self.last.is_none()
            || deltas >= policy.base_every
            || delta_bytes > base_bytes;
        let mut table = self.table.clone().unwrap_or_default();
        let (kind, parent, indices) = if want_base {
            table = ChunkTable::of(memory);
            (CheckpointKind::Base, None, checkpoint::nonzero_chunks(memory))
        } else {
            let parent = self.last.map(|(seq, _)| seq);
            (CheckpointKind::Delta, parent, table.diff_and_update(memory))
        };
        let source_meta = meta.clone();
        let state = CheckpointState {
            format: module.format,
            module_sha256: module.sha256,
            pos: self.pos,
            globals: meta.globals,
            glue: meta.glue,
            memory,
        };
        let bytes = checkpoint::encode(&state, parent, &indices)?;
        let seq = self.next_seq;
        let _phase = probe.map(|p| p.enter(crate::probe::Phase::Checkpoint));
        let record = store.write_checkpoint(
            CheckpointMeta {
                process_id: self.id.clone(),
                seq,
                pos: self.pos,
                kind,
                parent,
                memory_len: memory.len() as u64,
            },
            &bytes,
        )?;
        metrics.checkpoint_written(kind == CheckpointKind::Base, record.bytes);
        if kind == CheckpointKind::Base {
            self.chain.clear();
        }
        self.chain.push(record.clone());
        // The checkpoint holds the current state: a failed message now rolls back by reading it.
        self.process
            .rebase_on(chain_source(store, self.chain.clone(), &module, source_meta));
        self.next_seq += 1;
        self.table = Some(table);
        self.last = Some((seq, self.pos));
        self.since = Since::default();
        if kind == CheckpointKind::Base {
            // Keep the previous chain as a fallback; drop everything older.
            if let Some(previous) = self.bases.0 {
                store.delete_checkpoints_before(&self.id, previous)?;
            }
            self.bases = (Some(seq), self.bases.0);
            self.deltas = (0, 0, record.bytes);
        } else {
            self.deltas.0 += 1;
            self.deltas.1 += record.bytes;
        }
        Ok(Some(seq))
    }
}

/// A process rebuilt from the newest readable checkpoint chain.
pub struct Restored {
    /// The live process.
    pub process: Process,
    /// The chunk digests of its memory.
    pub table: ChunkTable,
    /// Its log position.
    pub pos: u64,
    /// The checkpoint's sequence number.
    pub seq: u64,
    /// The base of its chain and the base before it.
    pub bases: (Option<u64>, Option<u64>),
    /// Deltas since the base, their bytes, the base's bytes.
    pub deltas: (u32, u64, u64),
    /// The chain restored (its base first).
    pub chain: Vec<CheckpointRecord>,
    /// One more than the highest sequence number in the index.
    pub next_seq: u64,
}

/// Rebuilds the newest readable state of `process_id` from its checkpoints, straight into a fresh
/// instance's memory (each file is decompressed and its chunks copied in place; no other copy of the
/// memory is made). A checkpoint whose file is torn or corrupt (or whose chain is, or which
/// reassembles to another memory hash) is skipped for the one before it (later checkpoints get higher
/// sequence numbers, so it is never tried first again). `Ok(None)`: no usable checkpoint (the process
/// starts from its log).
pub fn restore_newest(
    store: &Store,
    process_id: &str,
    module: &Arc<cu_wasm::CompiledModule>,
    config: &ProcessConfig,
) -> Result<Option<Restored>, EngineError> {
    let records = store.checkpoints(process_id)?;
    let next_seq = records.iter().map(|r| r.seq + 1).max().unwrap_or(1);
    for candidate in records.iter().rev() {
        // The chain: the candidate, its parent, ... down to a base.
        let mut chain = vec![candidate.clone()];
        let mut ok = true;
        while let Some(parent) = chain.last().and_then(|r| r.parent) {
            match records.iter().find(|r| r.seq == parent) {
                Some(r) => chain.push(r.clone()),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok || chain.last().is_some_and(|r| r.kind != CheckpointKind::Base) {
            continue;
        }
        chain.reverse();
        let base = chain.first().map(|r| r.seq);
        let deltas = (
            (chain.len() - 1) as u32,
            chain.iter().skip(1).map(|r| r.bytes).sum(),
            chain.first().map_or(0, |r| r.bytes),
        );
        match restore_chain(store, chain.clone(), module, config) {
            Ok((process, table)) => {
                let previous_base = records
                    .iter()
                    .filter(|r| r.kind == CheckpointKind::Base && Some(r.seq) < base)
                    .map(|r| r.seq)
                    .max();
                return Ok(Some(Restored {
                    process,
                    table,
                    pos: candidate.pos,
                    seq: candidate.seq,
                    bases: (base, previous_base),
                    deltas,
                    chain,
                    next_seq,
                }));
            }
            Err(e) => {
                tracing::warn!(process = process_id, seq = candidate.seq, error = %e,
                    "checkpoint unusable, trying the one before it");
            }
        }
    }
    Ok(None)
}

/// Reads one checkpoint of a chain and decodes it straight into `memory`, streaming the file (no buffer
/// of it). The file's BLAKE3 is computed over the bytes as they are decoded and checked at the end (the
/// decoder takes any bytes safely; on a mismatch the error is returned and the caller discards
/// `memory`).
fn load_into(
    store: &Store,
    record: &CheckpointRecord,
    memory: &mut [u8],
) -> Result<checkpoint::Header, EngineError> {
    let header = store.read_checkpoint_stream(record, |input, len| {
        checkpoint::decode_into_from(memory, input, len)
    })??;
    if header.pos != record.pos || header.memory_len != record.memory_len {
        return Err(EngineError::Checkpoint(format!(
            "checkpoint {} does not match its index row",
            record.seq
        )));
    }
    Ok(header)
}

/// Reassembles a chain into `memory` (sized as its newest checkpoint), checks it against the newest
/// header's memory hash and returns that header.
fn reassemble_into(
    store: &Store,
    chain: &[CheckpointRecord],
    memory: &mut [u8],
) -> Result<checkpoint::Header, EngineError> {
    let header = apply_chain(store, chain, memory)?;
    checkpoint::verify(memory, &header)?;
    Ok(header)
}

/// Applies every checkpoint of a chain to `memory` in order and returns the newest header, without the
/// whole-memory check (the caller makes it).
fn apply_chain(
    store: &Store,
    chain: &[CheckpointRecord],
    memory: &mut [u8],
) -> Result<checkpoint::Header, EngineError> {
    let mut last = None;
    for record in chain {
        last = Some(load_into(store, record, memory)?);
    }
    last.ok_or_else(|| EngineError::Checkpoint("empty chain".into()))
}

fn restore_chain(
    store: &Store,
    chain: Vec<CheckpointRecord>,
    module: &Arc<cu_wasm::CompiledModule>,
    config: &ProcessConfig,
) -> Result<(Process, ChunkTable), EngineError> {
    let newest = chain
        .last()
        .ok_or_else(|| EngineError::Checkpoint("empty chain".into()))?;
    let to_wasm = |e: EngineError| WasmError::Snapshot(e.to_string());
    let mut table = None;
    let process = Process::restore_with(module.clone(), config.clone(), newest.memory_len, |memory| {
        // The newest header (checked with the reassembled memory) names the module and carries the
        // globals and glue state.
        let header = apply_chain(store, &chain, memory).map_err(to_wasm)?;
        if header.module_sha256 != hex::encode(module.sha256) || header.format != module.format {
            return Err(WasmError::Snapshot(
                "the checkpoint belongs to another module".into(),
            ));
        }
        // Two read-only passes over the memory side by side: the whole chain checked against the newest
        // header's hash, and the chunk digests the next delta is taken against.
        let memory: &[u8] = memory;
        let (verified, digests) = std::thread::scope(|scope| {
            let check = scope.spawn(|| checkpoint::verify(memory, &header));
            let digests = ChunkTable::of(memory);
            (check.join(), digests)
        });
        verified
            .map_err(|_| WasmError::Snapshot("the memory check panicked".into()))?
            .map_err(to_wasm)?;
        table = Some(digests);
        let meta = ProcessMeta {
            globals: header.globals,
            glue: header.glue,
        };
        // A rollback before the process's next base reads the same chain again (rare: a failed message).
        let source = chain_source(store, chain.clone(), module, meta.clone());
        Ok((meta, source))
    })
    .map_err(|e| EngineError::Checkpoint(e.to_string()))?;
    let table = table.ok_or_else(|| EngineError::Checkpoint("memory not filled".into()))?;
    Ok((process, table))
}

/// Reads the state a checkpoint chain holds back into a snapshot, when a rollback needs it.
fn chain_source(
    store: &Store,
    chain: Vec<CheckpointRecord>,
    module: &Arc<cu_wasm::CompiledModule>,
    meta: ProcessMeta,
) -> StateSource {
    let (store, module) = (store.clone(), module.clone());
    Arc::new(move || {
        let to_wasm = |e: EngineError| WasmError::Snapshot(e.to_string());
        let len = usize::try_from(chain.last().map_or(0, |r| r.memory_len))
            .map_err(|_| WasmError::Snapshot("memory too large".into()))?;
        let mut memory = vec![0u8; len];
        reassemble_into(&store, &chain, &mut memory).map_err(to_wasm)?;
        Ok(Snapshot {
            format: module.format,
            module_sha256: module.sha256,
            memory,
            globals: meta.globals.clone(),
            glue: meta.glue.clone(),
        })
    })
}

/// Wall time of a closure, for the eval-time checkpoint trigger (never seen by a module).
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}
