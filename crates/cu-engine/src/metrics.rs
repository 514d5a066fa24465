//! Engine counters (exported by the node's `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters shared by all shards.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages evaluated (replays included).
    pub evaluated: AtomicU64,
    /// Base checkpoints written.
    pub bases: AtomicU64,
    /// Delta checkpoints written.
    pub deltas: AtomicU64,
    /// Checkpoint bytes written.
    pub checkpoint_bytes: AtomicU64,
    /// Processes dropped to respect the memory budget.
    pub evictions: AtomicU64,
    /// Processes restored from a checkpoint.
    pub restores: AtomicU64,
    /// Processes started from their module (no checkpoint).
    pub boots: AtomicU64,
    /// Dry-runs evaluated.
    pub dry_runs: AtomicU64,
    /// Commands that ran past their time slice and went on off their shard.
    pub preemptions: AtomicU64,
    /// Dry-runs stopped at their time limit.
    pub dry_run_timeouts: AtomicU64,
}

impl Metrics {
    pub(crate) fn checkpoint_written(&self, base: bool, bytes: u64) {
        if base {
            self.bases.fetch_add(1, Relaxed);
        } else {
            self.deltas.fetch_add(1, Relaxed);
        }
        self.checkpoint_bytes.fetch_add(bytes, Relaxed);
    }
}

/// A point-in-time view of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Processes resident now.
    pub resident_processes: u64,
    /// Bytes they keep resident.
    pub resident_bytes: u64,
    /// Messages evaluated.
    pub evaluated: u64,
    /// Base checkpoints written.
    pub bases: u64,
    /// Delta checkpoints written.
    pub deltas: u64,
    /// Checkpoint bytes written.
    pub checkpoint_bytes: u64,
    /// Evictions.
    pub evictions: u64,
    /// Restores from checkpoints.
    pub restores: u64,
    /// Boots from the module.
    pub boots: u64,
    /// Dry-runs.
    pub dry_runs: u64,
    /// Commands that ran past their time slice and went on off their shard.
    pub preemptions: u64,
    /// Dry-runs stopped at their time limit.
    pub dry_run_timeouts: u64,
}
