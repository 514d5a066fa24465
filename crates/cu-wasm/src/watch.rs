//! Watching an evaluation from outside: stopping it, or pausing it, without changing what it computes.
//!
//! The engines are built with epoch interruption (see [`crate::engine`]): compiled code checks a
//! counter that one thread per [`crate::Engines`] advances every [`crate::engine::EPOCH_TICK`]. When a
//! running store sees the counter move, wasmtime calls back into the host on the evaluating thread, and
//! the host calls the process's [`Watch`], if it has one. The watch either lets the evaluation go on
//! (`Ok`; it may first block the thread for as long as it likes: the module cannot tell) or stops it with
//! a [`Stop`], which unwinds the evaluation as a trap that [`crate::Process::handle`] reports as
//! [`crate::WasmError::Interrupted`], never as a message result.
//!
//! Time reaches a watch, never a module: a persisted evaluation's watch only ever pauses it (to hand its
//! shard to another thread, or to wait for a free long-evaluation slot), so its result is the same as
//! without one. Only dry-runs (never persisted) and evaluations that are being thrown away (engine
//! shutdown) are stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Why an evaluation was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Whoever wanted the result no longer does (a dry-run's client went away, the engine stops).
    Cancelled,
    /// The evaluation ran past its time limit (dry-runs only).
    TimedOut,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Cancelled => "cancelled",
            Stop::TimedOut => "timed out",
        })
    }
}

/// Called on the evaluating thread about every [`crate::engine::EPOCH_TICK`] while wasm code of the
/// process runs: `Ok` continues (after blocking, if the watch wants to), `Err` stops the evaluation.
#[derive(Clone)]
pub struct Watch(Arc<dyn Fn() -> Result<(), Stop> + Send + Sync>);

impl Watch {
    /// A watch calling `f`.
    pub fn new(f: impl Fn() -> Result<(), Stop> + Send + Sync + 'static) -> Watch {
        Watch(Arc::new(f))
    }

    /// A watch that stops the evaluation once `cancel` is set or `limit` has passed since now.
    pub fn deadline(limit: Duration, cancel: Arc<AtomicBool>) -> Watch {
        let until = Instant::now().checked_add(limit);
        Watch::new(move || {
            if cancel.load(Relaxed) {
                Err(Stop::Cancelled)
            } else if until.is_some_and(|u| Instant::now() >= u) {
                Err(Stop::TimedOut)
            } else {
                Ok(())
            }
        })
    }

    /// Asks the watch whether the evaluation goes on.
    pub fn check(&self) -> Result<(), Stop> {
        (self.0)()
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}
