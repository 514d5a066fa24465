//! Engine errors.

use thiserror::Error;

/// Why the engine could not do what was asked.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The process moved to another node (process ownership in a cluster) while this node evaluated it.
    #[error("process {0} moved to another node")]
    Moved(String),
    /// No process with this id is in the store.
    #[error("process {0} not found")]
    UnknownProcess(String),
    /// The process's module is not in the store.
    #[error("module {0} not found")]
    UnknownModule(String),
    /// The module could not be loaded (bad wasm, bad format, missing exports).
    #[error("module {module}: {reason}")]
    Module {
        /// The module id.
        module: String,
        /// What went wrong.
        reason: String,
    },
    /// The process's `Memory-Limit` or `Compute-Limit` tag is not valid.
    #[error("process {process}: {reason}")]
    Limits {
        /// The process id.
        process: String,
        /// What went wrong.
        reason: String,
    },
    /// The module trapped or failed during start-up.
    #[error("process {process} failed to start: {reason}")]
    Boot {
        /// The process id.
        process: String,
        /// What went wrong.
        reason: String,
    },
    /// The evaluator could not keep the process consistent (a replay diverged); the process was dropped
    /// and will be restored from its last checkpoint on its next message.
    #[error("process {process}: {reason}")]
    Evaluation {
        /// The process id.
        process: String,
        /// What went wrong.
        reason: String,
    },
    /// The process cannot go past the message at `pos` now: WeaveDrive data that message reads is not
    /// admissible, not found, or unreachable (`cu_wasm::drive`). Nothing of it was stored; the
    /// evaluation is tried again on the next request.
    #[error("process {process} halted at log position {pos}: {reason}")]
    Halted {
        /// The process id.
        process: String,
        /// The log position of the message that halted.
        pos: u64,
        /// Why.
        reason: String,
    },
    /// The shard's queue is full: retry later (backpressure).
    #[error("the engine is busy: the queue of shard {0} is full")]
    Busy(usize),
    /// The dry-run queue is full.
    #[error("the dry-run queue is full")]
    DryRunBusy,
    /// The dry-run evaluated for longer than the node allows (`EngineConfig::dry_run_timeout`) and was
    /// stopped.
    #[error("dry-run exceeded its {} time limit", seconds(.0))]
    DryRunTimeout(std::time::Duration),
    /// The dry-run's caller went away before it finished; it was stopped.
    #[error("dry-run cancelled: its caller went away")]
    DryRunCancelled,
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// A checkpoint file is malformed or corrupt.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The engine configuration is not valid.
    #[error("configuration: {0}")]
    Config(String),
}

/// `10 s`, `1.5 s`, `250 ms`.
fn seconds(d: &std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

impl From<cu_store::StoreError> for EngineError {
    fn from(e: cu_store::StoreError) -> Self {
        match e {
            cu_store::StoreError::NotOwner { process, .. } => EngineError::Moved(process),
            e => EngineError::Store(e.to_string()),
        }
    }
}
