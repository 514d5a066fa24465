//! A shard: one worker thread (pinned to a core) that owns a set of resident processes and evaluates
//! their messages serially, reading each process's log from the store and queuing results to the
//! store's group-commit writer. Commands arrive on a bounded channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use cu_store::{ResultRecord, Store};
use cu_types::EvalOutput;
use cu_wasm::{ForkImage, Process, ProcessConfig};
use tokio::sync::oneshot;

use crate::config::EngineConfig;
use crate::dryrun::DryRunJob;
use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::modules::{Modules, limits_of};
use crate::probe::Probe;
use crate::progress::{Progress, Waiter};
use crate::resident::{Resident, Since, restore_newest, timed};

/// What a shard is asked to do.
pub enum Command {
    /// Evaluate the process's log up to `until` (or its end) and answer `waiter` when the result at
    /// `until` is durable.
    Advance {
        /// Process id.
        process: String,
        /// The log position wanted (`None`: the end of the log, no waiter).
        until: Option<u64>,
        /// Who waits for it.
        waiter: Option<Waiter>,
    },
    /// Evaluate the log to its end, fork the process and evaluate `msg` on the fork (dry-run pool).
    DryRun {
        /// Process id.
        process: String,
        /// The message JSON.
        msg: String,
        /// Where the output goes.
        reply: oneshot::Sender<Result<EvalOutput, EngineError>>,
    },
    /// Evaluate the log to its end and copy the process's linear memory (the CU API's `/state`).
    State {
        /// Process id.
        process: String,
        /// The log position and the memory.
        reply: oneshot::Sender<Result<(u64, Vec<u8>), EngineError>>,
    },
    /// Checkpoint the process now (if it is resident and changed).
    Checkpoint {
        /// Process id.
        process: String,
        /// The sequence number written, if any.
        reply: Sender<Result<Option<u64>, EngineError>>,
    },
    /// Checkpoint (per policy) and drop every resident process, then stop.
    Shutdown {
        /// Answered once everything is durable (a plain channel: shutdown may be called from any thread,
        /// async runtimes included).
        reply: Sender<Result<(), EngineError>>,
    },
}

/// What shards share.
pub struct Shared {
    /// The engine configuration.
    pub config: EngineConfig,
    /// The store.
    pub store: Store,
    /// Compiled modules.
    pub modules: Modules,
    /// Counters.
    pub metrics: Metrics,
    /// The crash-test phase file, if configured.
    pub probe: Option<Probe>,
    /// The dry-run pool's queue (`None` stops a worker).
    pub dry_runs: Sender<Option<DryRunJob>>,
    /// Resident bytes per shard.
    pub resident: Vec<AtomicU64>,
    /// Resident processes per shard.
    pub resident_count: Vec<AtomicU64>,
    /// The process settings every process starts from (limits come from its tags).
    pub process_config: ProcessConfig,
}

impl Shared {
    /// Checkpoints `resident` with the engine's store, policy, counters and phase file.
    fn checkpoint(&self, resident: &mut Resident) -> Result<Option<u64>, EngineError> {
        resident.checkpoint(
            &self.store,
            &self.config.checkpoints,
            &self.metrics,
            self.probe.as_ref(),
        )
    }
}

/// One shard's state, owned by its thread.
pub struct Shard {
    index: usize,
    shared: Arc<Shared>,
    residents: HashMap<String, Resident>,
    progress: HashMap<String, Arc<Progress>>,
    clock: u64,
    budget: u64,
}

impl Shard {
    /// The shard `index` of `shared.config.workers`.
    pub fn new(index: usize, shared: Arc<Shared>) -> Self {
        let budget = shared.config.memory_budget / shared.config.workers.max(1) as u64;
        Shard {
            index,
            shared,
            residents: HashMap::new(),
            progress: HashMap::new(),
            clock: 0,
            budget,
        }
    }

    /// Runs commands until `Shutdown` or until every sender is gone.
    pub fn run(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            if let Command::Shutdown { reply } = command {
                let _ = reply.send(self.shutdown());
                return;
            }
            self.execute(command);
            self.enforce_budget(None);
            self.publish();
        }
        let _ = self.shutdown();
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Advance {
                process,
                until,
                waiter,
            } => {
                let progress = match self.progress_of(&process) {
                    Ok(p) => p,
                    Err(e) => {
                        if let Some(w) = waiter {
                            let _ = w.send(Err(e));
                        }
                        return;
                    }
                };
                if let (Some(pos), Some(w)) = (until, waiter) {
                    // Already durable: answer without touching the process.
                    if progress.committed() >= pos {
                        let _ = w.send(Ok(pos));
                        return;
                    }
                    progress.wait(pos, w);
                }
                if let Err(e) = self.advance(&process, until, &progress) {
                    progress.fail_all(&e);
                }
            }
            Command::DryRun { process, msg, reply } => match self.dry_run_image(&process) {
                Ok((image, module, config, env)) => {
                    let job = DryRunJob {
                        process,
                        image,
                        module,
                        config,
                        msg,
                        env,
                        reply,
                    };
                    if let Err(e) = self.shared.dry_runs.try_send(Some(job)) {
                        let (job, error) = match e {
                            TrySendError::Full(job) => (job, EngineError::DryRunBusy),
                            TrySendError::Disconnected(job) => (job, EngineError::Stopped),
                        };
                        if let Some(job) = job {
                            let _ = job.reply.send(Err(error));
                        }
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::State { process, reply } => {
                let state = self.progress_of(&process).and_then(|progress| {
                    self.advance(&process, None, &progress)?;
                    let r = self
                        .residents
                        .get(&process)
                        .ok_or_else(|| EngineError::UnknownProcess(process.clone()))?;
                    Ok((r.pos, r.process.memory().to_vec()))
                });
                let _ = reply.send(state);
            }
            Command::Checkpoint { process, reply } => {
                let result = match self.residents.get_mut(&process) {
                    Some(r) => self.shared.checkpoint(r),
                    None => Ok(None),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn progress_of(&mut self, process: &str) -> Result<Arc<Progress>, EngineError> {
        if let Some(p) = self.progress.get(process) {
            return Ok(p.clone());
        }
        let committed = self.shared.store.last_result_pos(process)?;
        let p = Arc::new(Progress::new(committed));
        self.progress.insert(process.to_string(), p.clone());
        Ok(p)
    }

    /// Evaluates the log of `process` up to `until` (or its end).
    fn advance(
        &mut self,
        process: &str,
        until: Option<u64>,
        progress: &Arc<Progress>,
    ) -> Result<(), EngineError> {
        self.ensure_resident(process)?;
        let last = self.shared.store.last_pos(process)?;
        let target = until.map_or(last, |u| u.min(last));
        progress.fail_beyond(
            last,
            &EngineError::Evaluation {
                process: process.to_string(),
                reason: "no message at that position in the log".into(),
            },
        );
        let batch = self.shared.config.log_batch.max(1);
        loop {
            let Some(resident) = self.residents.get_mut(process) else {
                return Ok(());
            };
            if resident.pos >= target {
                break;
            }
            let want = (target - resident.pos).min(batch as u64) as usize;
            let entries = self.shared.store.log_range(process, resident.pos + 1, want)?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                if entry.pos != resident.pos + 1 {
                    return Err(EngineError::Store(format!(
                        "log of {process} has a gap before position {}",
                        entry.pos
                    )));
                }
                let (out, took) = timed(|| resident.process.handle(&entry.msg_json, &resident.env));
                let out = match out {
                    Ok(out) => out,
                    Err(e) => {
                        self.residents.remove(process);
                        return Err(EngineError::Evaluation {
                            process: process.to_string(),
                            reason: e.to_string(),
                        });
                    }
                };
                resident.pos = entry.pos;
                resident.dry_image = None;
                resident.since.messages += 1;
                resident.since.eval_time += took;
                resident.since.gas = resident.since.gas.saturating_add(out.gas_used);
                self.shared.metrics.evaluated.fetch_add(1, Relaxed);
                let record = ResultRecord {
                    process_id: process.to_string(),
                    pos: entry.pos,
                    message_id: entry.message_id,
                    nonce: entry.nonce,
                    timestamp: entry.timestamp,
                    block_height: entry.block_height,
                    cron: entry.cron,
                    has_error: out.error.is_some(),
                    output_json: serde_json::to_string(&out).unwrap_or_default(),
                };
                let p = progress.clone();
                let shared = self.shared.clone();
                if let Some(probe) = &shared.probe {
                    probe.results(1);
                }
                let pos = entry.pos;
                self.shared.store.put_result(
                    record,
                    Box::new(move |outcome| {
                        if let Some(probe) = &shared.probe {
                            probe.results(-1);
                        }
                        p.committed_to(pos, outcome.map_err(EngineError::from));
                    }),
                );
                if resident.checkpoint_due(&self.shared.config.checkpoints) {
                    self.shared.checkpoint(resident)?;
                }
            }
        }
        Ok(())
    }

    /// Makes `process` resident: restored from its newest checkpoint, or started from its module.
    fn ensure_resident(&mut self, process: &str) -> Result<(), EngineError> {
        self.clock += 1;
        if let Some(r) = self.residents.get_mut(process) {
            r.last_used = self.clock;
            return Ok(());
        }
        let store = &self.shared.store;
        let record = store
            .process(process)?
            .ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let (module, module_tags) = self.shared.modules.get(&record.module_id)?;
        let config = ProcessConfig {
            limits: limits_of(&record, &module_tags)?,
            ..self.shared.process_config.clone()
        };
        let boot_error = |e: cu_wasm::WasmError| EngineError::Boot {
            process: process.to_string(),
            reason: e.to_string(),
        };
        let resident = match restore_newest(store, process, &module, &config)? {
            Some(restored) => {
                self.shared.metrics.restores.fetch_add(1, Relaxed);
                Resident {
                    id: process.to_string(),
                    process: restored.process,
                    env: record.env_json.into(),
                    pos: restored.pos,
                    table: Some(restored.table),
                    last: Some((restored.seq, restored.pos)),
                    bases: restored.bases,
                    next_seq: restored.next_seq,
                    deltas: restored.deltas,
                    since: Since::default(),
                    last_used: self.clock,
                    dry_image: None,
                }
            }
            None => {
                let live = Process::boot(module, config).map_err(boot_error)?;
                self.shared.metrics.boots.fetch_add(1, Relaxed);
                let next_seq = store
                    .checkpoints(process)?
                    .iter()
                    .map(|r| r.seq + 1)
                    .max()
                    .unwrap_or(1);
                Resident {
                    id: process.to_string(),
                    process: live,
                    env: record.env_json.into(),
                    pos: 0,
                    table: None,
                    last: None,
                    bases: (None, None),
                    next_seq,
                    deltas: (0, 0, 0),
                    since: Since::default(),
                    last_used: self.clock,
                    dry_image: None,
                }
            }
        };
        self.residents.insert(process.to_string(), resident);
        self.enforce_budget(Some(process));
        Ok(())
    }

    /// Brings `process` to the end of its log and returns a copy-on-write image of that state (made once
    /// per state: later dry-runs on the same state reuse it), with what a runner needs besides.
    #[allow(clippy::type_complexity)]
    fn dry_run_image(
        &mut self,
        process: &str,
    ) -> Result<
        (
            Arc<ForkImage>,
            Arc<cu_wasm::CompiledModule>,
            ProcessConfig,
            Arc<str>,
        ),
        EngineError,
    > {
        let progress = self.progress_of(process)?;
        self.advance(process, None, &progress)?;
        let resident = self
            .residents
            .get_mut(process)
            .ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let (image, made) = match &resident.dry_image {
            Some((pos, image)) if *pos == resident.pos => (image.clone(), false),
            _ => {
                resident.dry_image = None;
                let image = ForkImage::of(&mut resident.process).map_err(|e| EngineError::Evaluation {
                    process: process.to_string(),
                    reason: e.to_string(),
                })?;
                let image = Arc::new(image);
                resident.dry_image = Some((resident.pos, image.clone()));
                (image, true)
            }
        };
        let reply = (
            image,
            resident.process.module().clone(),
            resident.process.config().clone(),
            resident.env.clone(),
        );
        if made {
            // A new image adds to the resident bytes; reusing one changes nothing.
            self.enforce_budget(Some(process));
            self.publish();
        }
        Ok(reply)
    }

    /// Checkpoints (per policy) and drops least recently used processes until the shard is within its
    /// budget. `keep` is never dropped (the process about to be used).
    fn enforce_budget(&mut self, keep: Option<&str>) {
        let mut total: u64 = self.residents.values().map(|r| r.resident_bytes()).sum();
        while total > self.budget {
            let victim = self
                .residents
                .values()
                .filter(|r| Some(r.id.as_str()) != keep)
                .min_by_key(|r| r.last_used)
                .map(|r| r.id.clone());
            let Some(victim) = victim else {
                break;
            };
            if let Some(mut r) = self.residents.remove(&victim) {
                total = total.saturating_sub(r.resident_bytes());
                if self.shared.config.checkpoints.on_evict
                    && let Err(e) = self.shared.checkpoint(&mut r)
                {
                    tracing::warn!(process = %victim, error = %e,
                        "checkpoint on eviction failed; the process will replay its log");
                }
                self.shared.metrics.evictions.fetch_add(1, Relaxed);
            }
        }
    }

    fn publish(&self) {
        let bytes: u64 = self.residents.values().map(|r| r.resident_bytes()).sum();
        if let Some(slot) = self.shared.resident.get(self.index) {
            slot.store(bytes, Relaxed);
        }
        if let Some(slot) = self.shared.resident_count.get(self.index) {
            slot.store(self.residents.len() as u64, Relaxed);
        }
    }

    fn shutdown(&mut self) -> Result<(), EngineError> {
        let mut first_error = None;
        if self.shared.config.checkpoints.on_shutdown {
            for r in self.residents.values_mut() {
                if let Err(e) = self.shared.checkpoint(r) {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.residents.clear();
        self.publish();
        if let Err(e) = self.shared.store.flush() {
            first_error.get_or_insert(e.into());
        }
        first_error.map_or(Ok(()), Err)
    }
}
