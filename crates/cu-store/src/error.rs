//! The one error type of the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Messages name the path or the process id involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory, or a directory or file inside it, cannot be created or written.
    #[error("store path {} is not writable: {reason}", path.display())]
    NotWritable {
        /// The path that could not be created or written.
        path: PathBuf,
        /// Why (the operating system's message).
        reason: String,
    },
    /// The database was written by a newer ao-cu whose schema this build does not know.
    #[error(
        "database {} has schema version {found}, newer than the newest this build knows ({supported}); \
         refusing to open it",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The `PRAGMA user_version` found in it.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A database call failed (SQLite or PostgreSQL), or a stored value does not fit its record.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing (names the database and the process id where there is one).
        context: String,
        /// The driver's error.
        #[source]
        source: crate::db::DbError,
    },
    /// This node lost the store lease to another node (see `cu_store::lease`): the write was not made,
    /// and no later write of this store will be.
    #[error(
        "fenced: node {owner} no longer holds the store lease (its token {token} was superseded); nothing was written"
    )]
    Fenced {
        /// This node's owner name.
        owner: String,
        /// The token it held.
        token: i64,
    },
    /// This node does not hold the lease of the process a write touches (see `cu_store::ownership`): it
    /// was never claimed here, was released, or was taken over by another node. Nothing was written.
    #[error("fenced: node {node} does not own process {process}{}; nothing was written", token.map(|t| format!(" (its token {t} was superseded)")).unwrap_or_default())]
    NotOwner {
        /// The process.
        process: String,
        /// This node's name in the lease table.
        node: String,
        /// The token this node held, when it held one.
        token: Option<i64>,
    },
    /// The store's options do not fit together (e.g. a lease on SQLite).
    #[error("store configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A request to the object storage of checkpoints (S3) failed.
    #[error("object storage error on {object}: {reason}")]
    ObjectStore {
        /// The object (`s3://bucket/key`).
        object: String,
        /// What failed and the service's answer.
        reason: String,
    },
    /// A file operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record with this id already exists (`put_process`, `write_checkpoint`); nothing was written.
    #[error("{kind} {id} already exists")]
    Exists {
        /// What kind of record ("process", "checkpoint").
        kind: &'static str,
        /// Its id ("<process id>/<seq>" for checkpoints).
        id: String,
    },
    /// Log entries for a process that was never stored with `put_process`; nothing was written.
    #[error("unknown process {process_id}")]
    UnknownProcess {
        /// The process id.
        process_id: String,
    },
    /// A log entry whose position is not the next one of its process; nothing of the batch was written.
    #[error(
        "log entry for process {process_id} has pos {got} but the next position is {expected} \
         (positions are 1, 2, 3, ... per process, without gaps)"
    )]
    OutOfOrder {
        /// The process id.
        process_id: String,
        /// The position the entry had to have.
        expected: u64,
        /// The position it had.
        got: u64,
    },
    /// A process id that may not be used in a file path (only `[A-Za-z0-9_-]`, 1 to 64 characters).
    #[error("invalid process id {id:?}: {reason}")]
    BadId {
        /// The offending id (as given).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Stored data failed its integrity check (checkpoint length or BLAKE3, or an impossible value in a row).
    #[error("corrupt data in {}: {reason}", path.display())]
    Corrupt {
        /// The file (checkpoint blob or database).
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// Tags could not be encoded to or decoded from their JSON column.
    #[error("JSON error while {context}: {source}")]
    Json {
        /// What the store was doing.
        context: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A `u64` above `i64::MAX`, which SQLite's integers cannot hold; nothing was written.
    #[error("{field} = {value} is larger than SQLite's largest integer (2^63 - 1)")]
    ValueTooLarge {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The transaction this write was grouped into could not be committed; the write is not durable.
    #[error("commit of database {} failed: {reason}", path.display())]
    CommitFailed {
        /// The database file.
        path: PathBuf,
        /// SQLite's message (or the error of the write that aborted the transaction).
        reason: String,
    },
    /// A write was made from a write callback, which runs on the writer thread: it would wait for itself.
    #[error(
        "a write to the store at {} was made from a write callback (on the writer thread); \
         write from another thread",
        path.display()
    )]
    Reentrant {
        /// The store directory.
        path: PathBuf,
    },
    /// The store's writer thread has stopped (it panicked); writes are no longer accepted.
    #[error("the writer thread of the store at {} has stopped; writes are no longer accepted", path.display())]
    WriterStopped {
        /// The store directory.
        path: PathBuf,
    },
}

impl StoreError {
    /// A [`StoreError::Database`] with its context.
    pub(crate) fn db(context: impl Into<String>, source: impl Into<crate::db::DbError>) -> StoreError {
        StoreError::Database {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Maps an I/O error on `path`: permission problems and read-only file systems become
    /// [`StoreError::NotWritable`], everything else [`StoreError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StoreError::NotWritable {
                    path,
                    reason: source.to_string(),
                }
            }
            _ => StoreError::Io { path, source },
        }
    }
}

/// Converts a `u64` for the database (64-bit signed integers), refusing values above `i64::MAX`.
pub(crate) fn to_sql_int(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::ValueTooLarge { field, value })
}
