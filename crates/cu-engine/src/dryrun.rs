//! The dry-run pool: threads that evaluate dry-runs on copy-on-write images of process states.
//!
//! A shard answers a dry-run by bringing the process to the end of its log and handing the pool a
//! [`ForkImage`] of that state (made once per state and reused by every dry-run until the process moves
//! on). A pool thread keeps a few [`DryRunner`]s (instances of the modules it has seen, keyed by module and
//! limits) and maps the image into one of them for each dry-run: no memory is copied per dry-run and the
//! process itself is never touched, so the shard goes on with its messages meanwhile.
//!
//! Every dry-run evaluates under a [`Watch`]: it is stopped when it has run for
//! [`crate::EngineConfig::dry_run_timeout`] ([`EngineError::DryRunTimeout`]) or when its caller went
//! away (the [`crate::engine::DryRunReply`] was dropped: [`EngineError::DryRunCancelled`]; a job whose
//! caller is gone before it starts is skipped). A dry-run still running after
//! [`crate::EngineConfig::time_slice`] adds a thread to the pool (up to
//! [`crate::EngineConfig::dry_run_overflow`] extra ones, which end once they find the pool larger than
//! configured), so one looping dry-run never holds up the others.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::Receiver;
use cu_types::{EvalOutput, Limits};
use cu_wasm::{
    CompiledModule, DryRunner, EVAL_THREAD_STACK, ForkImage, ProcessConfig, Stop, WasmError, Watch,
};
use tokio::sync::oneshot;

use crate::error::EngineError;
use crate::shard::Shared;

/// Runners a pool thread keeps (least recently used first out).
const RUNNERS_PER_THREAD: usize = 16;

/// A dry-run for the pool.
pub struct DryRunJob {
    /// The process id (for errors).
    pub process: String,
    /// The state to evaluate on.
    pub image: Arc<ForkImage>,
    /// The process's module.
    pub module: Arc<CompiledModule>,
    /// The process's settings (its limits).
    pub config: ProcessConfig,
    /// Message JSON.
    pub msg: String,
    /// Env JSON.
    pub env: Arc<str>,
    /// Where the output goes.
    pub reply: oneshot::Sender<Result<EvalOutput, EngineError>>,
    /// Set when the caller no longer waits for the answer.
    pub cancel: Arc<AtomicBool>,
}

/// How many threads the pool has: the configured ones, plus overflow threads while dry-runs run long.
pub struct Pool {
    /// The configured threads.
    base: usize,
    /// The most threads at once.
    max: usize,
    /// Threads now.
    threads: AtomicUsize,
    /// The queue every pool thread takes jobs from.
    rx: Receiver<Option<DryRunJob>>,
}

impl Pool {
    /// A pool of `base` threads (started by the engine) that may grow by `overflow`.
    pub fn new(base: usize, overflow: usize, rx: Receiver<Option<DryRunJob>>) -> Pool {
        Pool {
            base,
            max: base.saturating_add(overflow),
            threads: AtomicUsize::new(base),
            rx,
        }
    }

    /// The queue (for the threads the engine starts).
    pub fn receiver(&self) -> Receiver<Option<DryRunJob>> {
        self.rx.clone()
    }

    /// Threads now (the engine sends each a stop at shutdown).
    pub fn threads(&self) -> usize {
        self.threads.load(Relaxed)
    }

    /// Takes one thread off the count if the pool is larger than configured: the calling thread ends.
    fn shrink(&self) -> bool {
        self.threads
            .fetch_update(Relaxed, Relaxed, |n| (n > self.base).then(|| n - 1))
            .is_ok()
    }
}

/// Adds a pool thread, unless the pool is at its most.
fn grow(shared: &Arc<Shared>) {
    let pool = &shared.dry_pool;
    if pool
        .threads
        .fetch_update(Relaxed, Relaxed, |n| (n < pool.max).then_some(n + 1))
        .is_err()
    {
        return;
    }
    let (rx, for_thread) = (pool.rx.clone(), shared.clone());
    let spawned = std::thread::Builder::new()
        .name("cu-dry-run-overflow".into())
        .stack_size(EVAL_THREAD_STACK)
        .spawn(move || serve(rx, for_thread));
    if let Err(e) = spawned {
        pool.threads.fetch_sub(1, Relaxed);
        tracing::warn!(error = %e, "cannot add a dry-run thread");
    }
}

/// The watch of one dry-run: its time limit, its caller's cancellation, and a thread added to the pool
/// once it has run for a time slice.
fn watch(shared: &Arc<Shared>, cancel: Arc<AtomicBool>) -> Watch {
    let limit = Watch::deadline(shared.config.dry_run_timeout, cancel);
    let slice = shared.config.time_slice;
    let started = Instant::now();
    let grown = AtomicBool::new(false);
    let weak: Weak<Shared> = Arc::downgrade(shared);
    Watch::new(move || {
        limit.check()?;
        if !grown.load(Relaxed) && started.elapsed() >= slice {
            grown.store(true, Relaxed);
            if let Some(shared) = weak.upgrade() {
                grow(&shared);
            }
        }
        Ok(())
    })
}

/// What a runner can be reused for: processes of this module with these limits.
#[derive(PartialEq, Eq)]
struct RunnerKey {
    module_sha256: [u8; 32],
    limits: Limits,
    this_program: String,
}

impl RunnerKey {
    fn of(job: &DryRunJob) -> RunnerKey {
        RunnerKey {
            module_sha256: job.module.sha256,
            limits: job.config.limits,
            this_program: job.config.this_program.clone(),
        }
    }
}

/// A pool thread's loop: evaluates jobs until the queue closes or a `None` arrives.
pub fn serve(rx: Receiver<Option<DryRunJob>>, shared: Arc<Shared>) {
    let mut runners: Vec<(RunnerKey, DryRunner)> = Vec::new();
    while let Ok(Some(job)) = rx.recv() {
        if job.cancel.load(Relaxed) {
            // Nobody waits for it any more.
            continue;
        }
        let out = run(&mut runners, &job, &shared);
        shared.metrics.dry_runs.fetch_add(1, Relaxed);
        if out == Err(EngineError::DryRunTimeout(shared.config.dry_run_timeout)) {
            shared.metrics.dry_run_timeouts.fetch_add(1, Relaxed);
        }
        let _ = job.reply.send(out);
        if shared.dry_pool.shrink() {
            return;
        }
    }
}

fn run(
    runners: &mut Vec<(RunnerKey, DryRunner)>,
    job: &DryRunJob,
    shared: &Arc<Shared>,
) -> Result<EvalOutput, EngineError> {
    let error = |e: WasmError| match e {
        WasmError::Interrupted(Stop::TimedOut) => EngineError::DryRunTimeout(shared.config.dry_run_timeout),
        WasmError::Interrupted(Stop::Cancelled) => EngineError::DryRunCancelled,
        e => EngineError::Evaluation {
            process: job.process.clone(),
            reason: e.to_string(),
        },
    };
    let key = RunnerKey::of(job);
    let found = runners
        .iter_mut()
        .position(|(k, r)| *k == key && r.fits(&job.image));
    let entry = match found {
        Some(i) => runners.remove(i),
        None => (
            key,
            DryRunner::new(job.module.clone(), job.config.clone()).map_err(error)?,
        ),
    };
    runners.insert(0, entry);
    runners.truncate(RUNNERS_PER_THREAD);
    let (_, runner) = &mut runners[0];
    let watch = watch(shared, job.cancel.clone());
    let out = runner.run_watched(&job.image, &job.msg, &job.env, Some(watch));
    if matches!(&out, Err(e) if !matches!(e, WasmError::Interrupted(_))) {
        // A runner the host could not use is not kept (a stopped one is reset by its next run).
        runners.remove(0);
    }
    out.map_err(error)
}
