//! The engine handle: starts the shards and the dry-run pool, routes each process to the one shard that
//! owns it, and applies backpressure (a full shard queue is an error the caller sees).

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};
use cu_store::Store;
use cu_types::EvalOutput;
use cu_wasm::{EVAL_THREAD_STACK, Loader, ProcessConfig};
use tokio::sync::oneshot;

use crate::config::EngineConfig;
use crate::dryrun::{DryRunJob, Pool};
use crate::error::EngineError;
use crate::metrics::{EngineStats, Metrics};
use crate::modules::Modules;
use crate::probe::Probe;
use crate::shard::{Command, LongSlots, Shard, Shared};

/// The answer to [`Engine::state`]: the log position and the linear memory.
pub type StateReply = Result<(u64, Vec<u8>), EngineError>;

/// The answer to [`Engine::dry_run`], awaited (or [`DryRunReply::blocking_recv`]). Dropping it before
/// the answer came cancels the dry-run: it is skipped if it has not started, stopped within an epoch
/// tick if it has (an HTTP client that goes away takes its dry-run with it).
pub struct DryRunReply {
    rx: oneshot::Receiver<Result<EvalOutput, EngineError>>,
    cancel: Arc<AtomicBool>,
}

impl DryRunReply {
    /// Waits on the calling thread (not for async contexts).
    pub fn blocking_recv(mut self) -> Result<Result<EvalOutput, EngineError>, oneshot::error::RecvError> {
        let rx = std::mem::replace(&mut self.rx, oneshot::channel().1);
        rx.blocking_recv()
    }
}

impl Future for DryRunReply {
    type Output = Result<Result<EvalOutput, EngineError>, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx)
    }
}

impl Drop for DryRunReply {
    fn drop(&mut self) {
        // After the answer this changes nothing; before it, nobody waits any more.
        self.cancel.store(true, Relaxed);
    }
}

/// A running engine. Dropping it shuts it down (checkpointing per policy); call [`Engine::shutdown`] to
/// see errors.
pub struct Engine {
    shared: Arc<Shared>,
    shards: Vec<Sender<Command>>,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Engine {
    /// Starts `config.workers` shards over `store`, compiling modules with `loader`; processes start with
    /// `config.this_program` as `argv[0]`.
    pub fn start(config: EngineConfig, store: Store, loader: Arc<Loader>) -> Result<Engine, EngineError> {
        let process_config = ProcessConfig {
            this_program: config.this_program.clone(),
            ..ProcessConfig::default()
        };
        Self::start_with(config, store, loader, process_config, None)
    }

    /// [`Engine::start`] with the settings every process starts from, and an optional crash-test phase
    /// file (see [`crate::probe`]).
    pub fn start_with(
        config: EngineConfig,
        store: Store,
        loader: Arc<Loader>,
        process_config: ProcessConfig,
        phase_file: Option<&Path>,
    ) -> Result<Engine, EngineError> {
        if config.workers == 0 || config.queue_capacity == 0 || config.dry_run_workers == 0 {
            return Err(EngineError::Config(
                "workers, queue capacity and dry-run workers must be at least 1".into(),
            ));
        }
        let probe = phase_file
            .map(Probe::create)
            .transpose()
            .map_err(|e| EngineError::Config(format!("phase file: {e}")))?;
        let process_config = journal_behind_checkpoints(process_config, &config.checkpoints);
        let (dry_tx, dry_rx) = bounded::<Option<DryRunJob>>(config.dry_run_queue.max(1));
        let workers = config.workers;
        let shared = Arc::new(Shared {
            dry_pool: Pool::new(config.dry_run_workers, config.dry_run_overflow, dry_rx),
            long: LongSlots::new(config.long_evaluations),
            modules: Modules::new(loader, store.clone()),
            store,
            metrics: Metrics::default(),
            probe,
            dry_runs: dry_tx,
            resident: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            resident_count: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            process_config,
            config,
        });
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut shards = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers + shared.config.dry_run_workers);
        for index in 0..workers {
            let (tx, rx) = bounded(shared.config.queue_capacity);
            let shard = Shard::new(index, shared.clone(), rx);
            let core = (shared.config.pin_cores && !cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("cu-shard-{index}"))
                .stack_size(EVAL_THREAD_STACK)
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    shard.run();
                })
                .map_err(|e| EngineError::Config(format!("cannot start shard {index}: {e}")))?;
            shards.push(tx);
            threads.push(thread);
        }
        for index in 0..shared.config.dry_run_workers {
            let rx = shared.dry_pool.receiver();
            let metrics = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("cu-dry-run-{index}"))
                .stack_size(EVAL_THREAD_STACK)
                .spawn(move || crate::dryrun::serve(rx, metrics))
                .map_err(|e| EngineError::Config(format!("cannot start dry-run worker {index}: {e}")))?;
            threads.push(thread);
        }
        Ok(Engine {
            shared,
            shards,
            threads,
            stopped: false,
        })
    }

    /// The shard that owns `process` (a fixed hash of its id).
    pub fn shard_of(&self, process: &str) -> usize {
        let mut h = DefaultHasher::new();
        process.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    fn send(&self, process: &str, command: Command) -> Result<(), EngineError> {
        let shard = self.shard_of(process);
        let tx = self.shards.get(shard).ok_or(EngineError::Stopped)?;
        tx.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => EngineError::Busy(shard),
            TrySendError::Disconnected(_) => EngineError::Stopped,
        })
    }

    /// Asks the owner of `process` to evaluate its log to the end (returns at once).
    pub fn advance(&self, process: &str) -> Result<(), EngineError> {
        self.send(
            process,
            Command::Advance {
                process: process.to_string(),
                until: None,
                waiter: None,
            },
        )
    }

    /// Evaluates `process` up to log position `pos`; the receiver answers when the result at `pos` is
    /// durable (at once if it already is).
    pub fn evaluate_to(
        &self,
        process: &str,
        pos: u64,
    ) -> Result<oneshot::Receiver<Result<u64, EngineError>>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(
            process,
            Command::Advance {
                process: process.to_string(),
                until: Some(pos),
                waiter: Some(tx),
            },
        )?;
        Ok(rx)
    }

    /// [`Engine::evaluate_to`], waiting on the calling thread (not for async contexts).
    pub fn wait_for(&self, process: &str, pos: u64) -> Result<u64, EngineError> {
        self.evaluate_to(process, pos)?
            .blocking_recv()
            .map_err(|_| EngineError::Stopped)?
    }

    /// Evaluates `msg` on a fork of `process` at the end of its log; nothing is persisted. The dry-run
    /// evaluates for at most [`EngineConfig::dry_run_timeout`] ([`EngineError::DryRunTimeout`]) and is
    /// cancelled when the reply is dropped unanswered.
    pub fn dry_run(&self, process: &str, msg: String) -> Result<DryRunReply, EngineError> {
        let (tx, rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        self.send(
            process,
            Command::DryRun {
                process: process.to_string(),
                msg,
                reply: tx,
                cancel: cancel.clone(),
            },
        )?;
        Ok(DryRunReply { rx, cancel })
    }

    /// Evaluates `process` to the end of its log and returns its log position and a copy of its linear
    /// memory.
    pub fn state(&self, process: &str) -> Result<oneshot::Receiver<StateReply>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(
            process,
            Command::State {
                process: process.to_string(),
                reply: tx,
            },
        )?;
        Ok(rx)
    }

    /// Drops what the engine keeps of `process` (its instance, without a checkpoint, and its progress;
    /// its waiters fail with [`EngineError::Moved`]): another node owns it now. Returns at once; the
    /// process's commands queued before run first.
    pub fn forget(&self, process: &str) -> Result<(), EngineError> {
        self.send(
            process,
            Command::Forget {
                process: process.to_string(),
            },
        )
    }

    /// Checkpoints `process` now if it is resident and changed; the sequence number written.
    pub fn checkpoint(&self, process: &str) -> Result<Option<u64>, EngineError> {
        let (tx, rx) = bounded(1);
        self.send(
            process,
            Command::Checkpoint {
                process: process.to_string(),
                reply: tx,
            },
        )?;
        rx.recv().map_err(|_| EngineError::Stopped)?
    }

    /// Adopts a memory image made elsewhere as the starting state of `record`'s process, before the
    /// process is stored (see [`crate::adopt`]): its log then begins with the message after the image.
    /// Blocking (boots the module once); run it off async workers.
    pub fn adopt_memory(&self, record: &cu_store::ProcessRecord, image: &[u8]) -> Result<(), EngineError> {
        crate::adopt::adopt_memory(&self.shared, record, image)
    }

    /// Counters and resident totals.
    pub fn stats(&self) -> EngineStats {
        let m = &self.shared.metrics;
        EngineStats {
            resident_processes: self.shared.resident_count.iter().map(|a| a.load(Relaxed)).sum(),
            resident_bytes: self.shared.resident.iter().map(|a| a.load(Relaxed)).sum(),
            evaluated: m.evaluated.load(Relaxed),
            bases: m.bases.load(Relaxed),
            deltas: m.deltas.load(Relaxed),
            checkpoint_bytes: m.checkpoint_bytes.load(Relaxed),
            evictions: m.evictions.load(Relaxed),
            restores: m.restores.load(Relaxed),
            boots: m.boots.load(Relaxed),
            dry_runs: m.dry_runs.load(Relaxed),
            preemptions: m.preemptions.load(Relaxed),
            dry_run_timeouts: m.dry_run_timeouts.load(Relaxed),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Checkpoints every resident process (per policy), waits until every result is durable and stops.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut first_error = None;
        let mut replies = Vec::new();
        for tx in &self.shards {
            let (reply, rx) = bounded(1);
            // A blocking send: shutdown waits its turn behind queued work.
            if tx.send(Command::Shutdown { reply }).is_ok() {
                replies.push(rx);
            }
        }
        for rx in replies {
            match rx.recv() {
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(EngineError::Stopped);
                }
                Ok(Ok(())) => {}
            }
        }
        self.shards.clear();
        for _ in 0..self.shared.dry_pool.threads() {
            let _ = self.shared.dry_runs.send(None);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "engine shutdown");
        }
    }
}

/// A checkpoint becomes its process's rollback base (`Process::rebase_on`). When checkpoints are due every
/// N messages and N is near the journal limit, the in-memory base the process would take at its limit
/// (a copy of the whole memory) lands on the same message or just before the checkpoint that replaces
/// it: move the limit just past N. Checkpoints much further apart keep the in-memory base, so that a
/// failed message never replays more than a few journal limits of messages.
fn journal_behind_checkpoints(
    mut config: ProcessConfig,
    policy: &crate::config::CheckpointPolicy,
) -> ProcessConfig {
    let every = usize::try_from(policy.every_messages).unwrap_or(usize::MAX);
    if every > 0 && every <= config.journal_limit.saturating_mul(4) {
        config.journal_limit = config.journal_limit.max(every.saturating_add(1));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::journal_behind_checkpoints;
    use crate::config::CheckpointPolicy;
    use cu_wasm::ProcessConfig;

    fn limit_with(every: u64) -> usize {
        let policy = CheckpointPolicy {
            every_messages: every,
            ..CheckpointPolicy::default()
        };
        journal_behind_checkpoints(ProcessConfig::default(), &policy).journal_limit
    }

    #[test]
    fn the_journal_limit_moves_just_past_nearby_checkpoints_only() {
        let default = ProcessConfig::default().journal_limit;
        assert_eq!(limit_with(0), default, "no message-count checkpoints");
        assert_eq!(limit_with(10), default, "checkpoints come first anyway");
        assert_eq!(limit_with(default as u64), default + 1);
        assert_eq!(limit_with(3 * default as u64), 3 * default + 1);
        assert_eq!(
            limit_with(100 * default as u64),
            default,
            "too far apart: keep the base"
        );
    }
}
