//! ao-cu's process engine: hot processes on core-pinned shards, incremental checkpoints, a memory budget.
//!
//! - [`Engine`] starts one shard per worker (pinned to a core) and a dry-run pool. Every process is owned
//!   by exactly one shard (a fixed hash of its id); its messages are evaluated there, serially, on its
//!   resident instance, while other shards run other processes in parallel. Queues are bounded: a full
//!   queue is [`EngineError::Busy`].
//! - The *mailbox* of a process is its message log in `cu-store`: the node appends, the engine reads
//!   from the process's position and queues every result to the store's group-commit writer. A caller
//!   waiting on a position ([`Engine::evaluate_to`]) is answered once that result is durable
//!   ([`progress`]).
//! - A [`resident::Resident`] keeps its instance hot (no memory copy per message). Beyond the memory
//!   budget the least recently used processes are checkpointed and dropped; their next message restores
//!   them ([`resident::restore_newest`]), then replays the log from the checkpoint.
//! - [`checkpoint`]s are incremental: per-chunk XXH3-128 digests (seeded per node) find the 4 KiB chunks that changed; a
//!   delta holds only those, a base every `base_every` deltas. zstd-compressed, hash-checked, written
//!   atomically by the store; a torn or corrupt one is skipped for the one before it.
//! - Dry-runs evaluate on the [`dryrun`] pool, on a copy-on-write image of the process's latest state
//!   ([`cu_wasm::ForkImage`], made once per state on the shard) mapped into a reusable instance
//!   ([`cu_wasm::DryRunner`]): no memory copy per dry-run, never persisted.
//! - A memory image made elsewhere (another CU's Arweave checkpoint) is adopted as a base checkpoint at
//!   log position 0 ([`Engine::adopt_memory`]); the log then begins after it.
//! - After a crash the log and the last checkpoint reproduce every result exactly (results already in the
//!   store are rewritten identically and ignored).

mod adopt;
pub mod checkpoint;
pub mod config;
pub mod dryrun;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod modules;
pub mod probe;
pub mod progress;
pub mod resident;
pub mod shard;

pub use config::{CheckpointPolicy, EngineConfig, LONG_QUEUE_PER_SLOT, LimitPolicy};
pub use engine::{DryRunReply, Engine, StateReply};
pub use error::EngineError;
pub use metrics::EngineStats;
