//! The dry-run pool: threads that evaluate dry-runs on copy-on-write images of process states.
//!
//! A shard answers a dry-run by bringing the process to the end of its log and handing the pool a
//! [`ForkImage`] of that state (made once per state and reused by every dry-run until the process moves
//! on). A pool thread keeps a few [`DryRunner`]s (instances of the modules it has seen, keyed by module and
//! limits) and maps the image into one of them for each dry-run: no memory is copied per dry-run and the
//! process itself is never touched, so the shard goes on with its messages meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::Receiver;
use cu_types::{EvalOutput, Limits};
use cu_wasm::{CompiledModule, DryRunner, ForkImage, ProcessConfig};
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
        let out = run(&mut runners, &job);
        shared.metrics.dry_runs.fetch_add(1, Relaxed);
        let _ = job.reply.send(out);
    }
}

fn run(runners: &mut Vec<(RunnerKey, DryRunner)>, job: &DryRunJob) -> Result<EvalOutput, EngineError> {
    let error = |e: cu_wasm::WasmError| EngineError::Evaluation {
        process: job.process.clone(),
        reason: e.to_string(),
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
    let out = runner.run(&job.image, &job.msg, &job.env);
    if out.is_err() {
        // A runner the host could not use is not kept.
        runners.remove(0);
    }
    out.map_err(error)
}
