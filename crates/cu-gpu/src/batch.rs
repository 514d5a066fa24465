//! The batcher: one thread that owns GPU submission and merges jobs from many callers.
//!
//! Every shard thread that calls into the GPU path sends its prepared job over a channel and blocks
//! on its own reply channel. The batcher thread takes the first waiting job, then keeps collecting
//! for at most `window` (or until `max_jobs` / `max_bytes`), encodes everything it has into one
//! command buffer, submits once, reads all outputs back through one mapped buffer and replies to
//! each caller. Jobs that arrive while the GPU is busy wait in the channel and form the next batch,
//! so under load batches grow on their own even with a zero window.
//!
//! Timing only decides which jobs share a submission; every job's bytes are independent of its
//! batch companions, so the wall clock never reaches a result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::TensorError;
use crate::gpu::{GpuContext, GpuJob};

/// Reply to one job: its output buffers, in order.
pub(crate) type Reply = Result<Vec<Vec<u8>>, TensorError>;

pub(crate) struct Envelope {
    pub job: GpuJob,
    pub reply: Sender<Reply>,
}

/// How the batcher groups jobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// How long to wait for more jobs after the first one of a batch arrives.
    pub window: Duration,
    /// Most jobs per submission.
    pub max_jobs: usize,
    /// Most input + output bytes per submission (a single larger job still runs alone).
    pub max_bytes: u64,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            window: Duration::from_micros(100),
            max_jobs: 64,
            max_bytes: 256 << 20,
        }
    }
}

/// Counters of the batcher's work since the device was opened.
#[derive(Debug, Default)]
pub struct BatchStats {
    jobs: AtomicU64,
    submissions: AtomicU64,
    failed_submissions: AtomicU64,
}

/// A copy of [`BatchStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchStatsSnapshot {
    /// Jobs run on the GPU.
    pub jobs: u64,
    /// Queue submissions (one per batch).
    pub submissions: u64,
    /// Submissions that failed (every job in them got the error).
    pub failed_submissions: u64,
}

impl BatchStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> BatchStatsSnapshot {
        BatchStatsSnapshot {
            jobs: self.jobs.load(Ordering::Relaxed),
            submissions: self.submissions.load(Ordering::Relaxed),
            failed_submissions: self.failed_submissions.load(Ordering::Relaxed),
        }
    }
}

/// Starts the batcher thread. It ends when every sender is dropped.
pub(crate) fn spawn(
    ctx: Arc<GpuContext>,
    policy: BatchPolicy,
    stats: Arc<BatchStats>,
    rx: Receiver<Envelope>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cu-gpu-batcher".into())
        .spawn(move || run(&ctx, policy, &stats, &rx))
}

fn run(ctx: &GpuContext, policy: BatchPolicy, stats: &BatchStats, rx: &Receiver<Envelope>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.job.bytes();
        let mut batch = vec![first];
        let deadline = Instant::now() + policy.window;
        let mut open = true;
        while open && batch.len() < policy.max_jobs.max(1) && bytes < policy.max_bytes {
            let next = match rx.try_recv() {
                Ok(e) => Some(e),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        None
                    } else {
                        rx.recv_timeout(deadline - now).ok()
                    }
                }
            };
            match next {
                Some(e) => {
                    bytes += e.job.bytes();
                    batch.push(e);
                }
                None => open = false,
            }
        }
        let (jobs, replies): (Vec<GpuJob>, Vec<Sender<Reply>>) =
            batch.into_iter().map(|e| (e.job, e.reply)).unzip();
        let result = ctx.run_batch(&jobs);
        stats.submissions.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outputs) => {
                stats.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (reply, out) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                stats.failed_submissions.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, jobs = jobs.len(), "GPU batch failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
