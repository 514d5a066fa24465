//! ao-cu's persistence: modules, processes, the message log, results and the checkpoint index in one
//! database, checkpoint blobs as files in the store directory (`<dir>/checkpoints/<process_id>/<seq:020>.ckpt`).
//!
//! - Two engines behind the same API ([`Database`]): SQLite (`<dir>/ao-cu.sqlite`, WAL mode), the embedded
//!   default, and PostgreSQL ([`StoreOptions::database`], a `postgres://` URL), for nodes that share one
//!   database. Each statement is written once in SQL both accept (module `db`); the store's test suite runs
//!   on both (`CU_STORE_TEST_POSTGRES`, see `tests/run.sh`).
//! - [`Store`] is the handle (cheap to clone, `Send + Sync`). Reads use a small pool of read connections and
//!   never wait for writes. All writes go to one writer thread through a bounded queue (a full queue blocks the
//!   caller); the writer commits everything queued in ONE transaction (group commit), then runs the callbacks
//!   in queue order, so a result is durable before [`Store::put_result`]'s callback runs.
//! - Durability: commits survive `kill -9` (`synchronous=NORMAL` in WAL); with [`StoreOptions::fsync`] they
//!   survive a power cut (`synchronous=FULL`). Checkpoint files are always written atomically (temporary file,
//!   fsync, rename, directory fsync) and verified by length and BLAKE3 when read ([`StoreError::Corrupt`]).
//! - The message log has gap-free positions 1, 2, 3, ... per process; [`Store::append`] checks them and writes
//!   a batch all or nothing.
//! - The schema is versioned (`PRAGMA user_version` in SQLite, table `cu_schema` in PostgreSQL); a database
//!   from a newer build is refused.
//! - Process ids name checkpoint folders, so they are validated (`[A-Za-z0-9_-]`, 1 to 64 characters,
//!   [`StoreError::BadId`]) by [`Store::put_process`] and every checkpoint method.
//!
//! - Data items uploaded to the node ([`items`]): kept whole, indexed by tag for the gateway surface.
//!
//! Modules: [`records`] (the record and query types), [`error`], and internally `db` (the SQL surface
//! over both engines), `schema` (tables, pragmas, migrations), `writer` (the group-commit thread), `blobs`
//! (checkpoint files), `rows` (row mapping) and `store` (the operations, and the one write path of the
//! message log).

mod blobs;
mod db;
pub mod error;
pub mod items;
pub mod lease;
pub mod ownership;
pub mod records;
mod rows;
pub mod s3;
pub mod schedule;
mod schema;
mod store;
mod writer;

pub use blobs::validate_process_id;
pub use db::DbError;
pub use error::StoreError;
pub use items::{Adopted, ItemMeta, NewItem};
pub use lease::LeaseOptions;
pub use ownership::{Claim, Ownership, OwnershipOptions};
pub use records::{
    Bound, CheckpointKind, CheckpointMeta, CheckpointRecord, LogEntry, ModuleRecord, ProcessRecord,
    ResultRecord, ResultsPage, ResultsQuery, Sort, Tag,
};
pub use s3::S3Config;
pub use schema::SCHEMA_VERSION;
pub use store::{DB_FILE, Database, Store, StoreOptions};

#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ownership;
