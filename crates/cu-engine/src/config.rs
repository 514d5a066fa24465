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

/// Per-process limits set by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Gas per message of a process that has no `Compute-Limit` tag (nor its module). It decides results
    /// (the message that runs out of gas), so it is bound into the node's attestation.
    pub default_compute: u64,
    /// The largest `Compute-Limit` a spawn may ask for (the reference's `PROCESS_WASM_COMPUTE_MAX_LIMIT`;
    /// a larger one is refused, 413).
    pub max_compute: u64,
    /// The largest `Memory-Limit` a spawn may ask for (`PROCESS_WASM_MEMORY_MAX_LIMIT`).
    pub max_memory: u64,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            default_compute: cu_types::limits::COMPUTE_MAX_LIMIT,
            max_compute: cu_types::limits::COMPUTE_MAX_LIMIT,
            max_memory: cu_types::limits::MEMORY_MAX_LIMIT,
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
    /// Operator limits: the default and largest `Compute-Limit`, the largest `Memory-Limit`.
    pub limits: LimitPolicy,
    /// The longest a dry-run may evaluate before it is stopped (dry-runs are never persisted, so a time
    /// limit cannot make results differ).
    pub dry_run_timeout: Duration,
    /// How long a shard's thread may spend on one command (one process's messages) before the shard is
    /// handed to a new thread and the command goes on off the shard (`docs/ARCHITECTURE.md`, cu-engine).
    /// Also how long a dry-run may run before the pool adds a thread for the others.
    pub time_slice: Duration,
    /// Long evaluations (commands past their time slice) that may run at once on the node; more wait,
    /// paused, for one to finish (up to [`LONG_QUEUE_PER_SLOT`] per slot; beyond that a long command
    /// keeps its shard until a slot frees).
    pub long_evaluations: usize,
    /// Extra dry-run threads the pool may add while its threads are busy with dry-runs past their time
    /// slice.
    pub dry_run_overflow: usize,
    /// `argv[0]` (and `_` in the environment) every process's `main` is given
    /// ([`Engine::start`](crate::Engine::start)); the reference CU passes its worker script's path, so
    /// memory and metered `GasUsed` match a given reference deployment only with the same value.
    pub this_program: String,
}

/// Long evaluations that may wait for a slot, per slot of [`EngineConfig::long_evaluations`].
pub const LONG_QUEUE_PER_SLOT: usize = 8;

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
            limits: LimitPolicy::default(),
            dry_run_timeout: Duration::from_secs(10),
            time_slice: Duration::from_millis(250),
            long_evaluations: cores,
            dry_run_overflow: cores.max(2),
            this_program: cu_wasm::THIS_PROGRAM.to_owned(),
        }
    }
}
