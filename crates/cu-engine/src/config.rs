//! Engine configuration and the checkpoint policy.

use std::time::Duration;

/// When checkpoints are taken. Every trigger is counted per process since its last checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// After this many evaluated messages (0 = never on count).
    pub every_messages: u64,
    /// After this much evaluation time (zero = never on time). Time only decides *when* a checkpoint is
    /// taken, never what a module sees.
    pub every_eval_time: Duration,
    /// After this much accumulated gas (0 = never on gas).
    pub every_gas: u64,
    /// Before a process is dropped to respect the memory budget (if off, an evicted process replays its
    /// log from its last checkpoint).
    pub on_evict: bool,
    /// When the engine shuts down.
    pub on_shutdown: bool,
    /// A full base after this many deltas (a base is also taken when the deltas since the last base
    /// add up to more than the base).
    pub base_every: u32,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_messages: 1000,
            every_eval_time: Duration::from_secs(60),
            every_gas: 300_000_000_000_000,
            on_evict: true,
            on_shutdown: true,
            base_every: 32,
        }
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Shards (worker threads); default: one per available core.
    pub workers: usize,
    /// Pin shard `i` to core `i % cores`.
    pub pin_cores: bool,
    /// Commands a shard queues before callers get [`crate::EngineError::Busy`].
    pub queue_capacity: usize,
    /// Resident process memory (linear memory, rollback base and journal) for the whole engine, split
    /// evenly between shards; least recently used processes are checkpointed and dropped beyond it.
    pub memory_budget: u64,
    /// Checkpoint policy.
    pub checkpoints: CheckpointPolicy,
    /// Threads that evaluate dry-runs on forks.
    pub dry_run_workers: usize,
    /// Dry-runs queued before callers get [`crate::EngineError::DryRunBusy`].
    pub dry_run_queue: usize,
    /// Log entries read from the store at once.
    pub log_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineConfig {
            workers: cores,
            pin_cores: true,
            queue_capacity: 4096,
            memory_budget: 4 << 30,
            checkpoints: CheckpointPolicy::default(),
            dry_run_workers: 1.max(cores / 2),
            dry_run_queue: 1024,
            log_batch: 256,
        }
    }
}
