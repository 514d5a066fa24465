//! Errors of the evaluator.

use cu_types::ModuleFormat;

/// Why a module could not be loaded, a process could not be started, or a snapshot not be used.
/// Errors of a single message are not here: they become that message's `Error` (see [`crate::Process::handle`]).
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The bytes are not a valid WebAssembly module, or Cranelift rejected them.
    #[error("the module does not compile: {0}")]
    Compile(String),
    /// The module imports something no AO module format provides.
    #[error("the module imports {module}.{name}, which ao-cu cannot provide: {reason}")]
    UnsupportedImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// Why it cannot be provided.
        reason: String,
    },
    /// Defining an import in the linker failed.
    #[error("linking the module failed: {0}")]
    Link(String),
    /// The module lacks an export its format requires.
    #[error("the module does not export {name}, which the {format} format requires")]
    MissingExport {
        /// The export name.
        name: &'static str,
        /// The format.
        format: ModuleFormat,
    },
    /// Metering the module for a `-metering` format failed.
    #[error("metering the module failed: {0}")]
    Metering(String),
    /// Instantiation, the constructors or `main` trapped.
    #[error("the module failed to start: {0}")]
    Boot(String),
    /// Reading or writing the AOT cache failed (the module is compiled without it).
    #[error("AOT cache: {0}")]
    Cache(String),
    /// A snapshot is malformed, corrupt, or belongs to another format.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
    /// Replaying messages after a rollback did not reproduce the earlier run: a determinism bug.
    #[error("replay after a failed message diverged: {0}")]
    Replay(String),
    /// The process's watch stopped the evaluation (a dry-run's time limit or cancellation, an engine
    /// shutdown). The process is left in the middle of the message: drop it (a [`crate::DryRunner`] is
    /// reset by its next run anyway).
    #[error("the evaluation was stopped: {0}")]
    Interrupted(crate::watch::Stop),
    /// The process cannot go past this message now: WeaveDrive data it reads is not admissible, not
    /// found, or its source is unreachable (see [`crate::drive`]). Nothing of the message is kept; the
    /// process is left in the middle of it and must be dropped, as for [`WasmError::Interrupted`].
    #[error("the evaluation halted: {0}")]
    Halted(String),
    /// An I/O error on a file the caller named.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
