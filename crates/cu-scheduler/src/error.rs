//! Scheduler errors.

use thiserror::Error;

/// Why the scheduler could not schedule or read.
#[derive(Debug, Error)]
pub enum SchedError {
    /// A `Cron-Interval` / `Cron-Tag-*` tag is invalid (the reference CU's messages).
    #[error("{0}")]
    Cron(String),
    /// A hash-chain input is not base64url of 32 bytes.
    #[error("hash chain: {0}")]
    HashChain(String),
    /// No such process.
    #[error("process {0} not found")]
    UnknownProcess(String),
    /// The request is invalid (the message builder refused it, a bad id).
    #[error("{0}")]
    Invalid(String),
    /// Signing the assignment failed.
    #[error("signing the assignment: {0}")]
    Sign(String),
    /// The commit of a message this call waited for (a duplicate of it was queued first) failed.
    #[error("store: committing the first copy of this message: {0}")]
    Commit(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] cu_store::StoreError),
}
