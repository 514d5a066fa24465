//! [`Store`]: the handle, its read-connection pool and every operation.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SendError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};

use crate::blobs::{self, Blobs, CHECKPOINT_DIR};
use crate::db::{Arg, Conn, DbError, args};
use crate::error::{StoreError, to_sql_int};
use crate::lease::{self, LeaseOptions, LeaseState};
use crate::ownership::{self, Ownership, OwnershipOptions};
use crate::records::{
    Bound, CheckpointMeta, CheckpointRecord, LogEntry, ModuleRecord, ProcessRecord, ResultRecord,
    ResultsPage, ResultsQuery, Sort,
};
use crate::rows::{self, CHECKPOINT_COLS, LOG_COLS, MODULE_COLS, PROCESS_COLS, RESULT_COLS};
use crate::s3::{S3Bucket, S3Config};
use crate::schema;
use crate::writer::{self, Done, Job, Stats};

/// The database file's name inside the store directory.
pub const DB_FILE: &str = "ao-cu.sqlite";

/// Idle read connections kept for reuse; more may exist while many threads read at once.
const MAX_IDLE_READERS: usize = 8;

/// The condition of a lookup by message id; it uses the `(process_id, message_id)` index. There is no
/// `ORDER BY pos LIMIT 1` to pick the first of several entries of one message id: SQLite walked the primary
/// key in `pos` order for it (scanning every row of the process) unless told `+pos`, and with any ordering
/// it compiled the statement again whenever the bound message id changed (20% of the node's CPU under
/// `GET /result` load). The rows (almost always one) are read and the first position is picked in Rust.
pub(crate) const BY_MESSAGE: &str = "WHERE process_id = ?1 AND message_id = ?2";

/// Which database engine holds the store's tables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// SQLite in `<dir>/ao-cu.sqlite` (WAL): the embedded default.
    #[default]
    Sqlite,
    /// PostgreSQL at a `postgres://user:password@host:port/dbname` URL (libpq's key=value form works too),
    /// for nodes that share one database. The tables are created on first use. Checkpoint blobs stay in the
    /// store directory.
    Postgres {
        /// The connection URL.
        url: String,
    },
}

impl Database {
    /// `postgres://…` or `postgresql://…` gives [`Database::Postgres`]; anything else is refused with a
    /// message naming what is accepted. (`DB_URL` of the reference CU takes the same URLs.)
    pub fn from_url(url: &str) -> Result<Database, String> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(format!(
                "unsupported database URL {url:?}: expected postgres://user:password@host:port/dbname \
                 (leave it unset for the embedded SQLite store)"
            ));
        }
        url.parse::<postgres::Config>()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        Ok(Database::Postgres { url: url.to_owned() })
    }

    /// This PostgreSQL database with its tables in schema `schema` (created if missing) instead of the
    /// server's default search path: several stores (benchmark rows, test directories) side by side in one
    /// database. `schema` is `[a-z0-9_]`, 1 to 63 characters. SQLite is returned as it is.
    pub fn in_schema(&self, schema: &str) -> Result<Database, StoreError> {
        let Database::Postgres { url } = self else {
            return Ok(Database::Sqlite);
        };
        let valid = (1..=63).contains(&schema.len())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::BadId {
                id: schema.to_owned(),
                reason: "a schema name is 1 to 63 characters of [a-z0-9_]",
            });
        }
        let label = PathBuf::from(schema::redact_url(url));
        schema::pg_connect(url, &label)?
            .batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .map_err(|e| {
                StoreError::db(
                    format!("creating schema {schema} (database {})", label.display()),
                    e,
                )
            })?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(Database::Postgres {
            url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        })
    }

    /// Drops schema `schema` and everything in it (what [`Database::in_schema`] made for a benchmark row).
    pub fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        let Database::Postgres { url } = self else {
            return Ok(());
        };
        let label = PathBuf::from(schema::redact_url(url));
        schema::pg_connect(url, &label)?
            .batch(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .map_err(|e| {
                StoreError::db(
                    format!("dropping schema {schema} (database {})", label.display()),
                    e,
                )
            })
    }
}

/// How the store commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine holding the tables ([`Database::Sqlite`] by default).
    pub database: Database,
    /// Checkpoint blobs in this S3-compatible bucket instead of files under the store directory.
    pub checkpoint_bucket: Option<S3Config>,
    /// Take the store lease before writing (PostgreSQL only; see [`crate::lease`]): one writing node at a
    /// time on a shared database, fenced.
    pub lease: Option<LeaseOptions>,
    /// Take part in process ownership (PostgreSQL only; see [`crate::ownership`]): every write of a process
    /// needs its lease, checked in the write's transaction.
    pub ownership: Option<OwnershipOptions>,
    /// Power-cut safety: `synchronous=FULL` (every commit fsynced) and the store directories fsynced on open.
    /// Without it commits survive a crash or `kill -9` of the process but not a power cut (`synchronous=NORMAL`
    /// in WAL mode). Checkpoint files and their directory are fsynced either way.
    pub fsync: bool,
    /// Most jobs (results, checkpoint rows, other writes) committed in one transaction. The writer's queue
    /// holds 4 times as many; a full queue blocks the caller.
    pub group_commit_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            database: Database::Sqlite,
            checkpoint_bucket: None,
            lease: None,
            ownership: None,
            fsync: false,
            group_commit_max: 1024,
        }
    }
}

/// The persistence of ao-cu: one SQLite database (`<dir>/ao-cu.sqlite`, WAL) plus checkpoint files under
/// `<dir>/checkpoints/`.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`. All writes go through one writer thread that commits
/// whatever is queued in a single transaction (group commit); reads use a pool of separate connections and
/// never wait for the writer. Dropping the last clone commits what is still queued and stops the writer
/// thread (joining it, unless the last clone is dropped by a callback on the writer thread itself).
///
/// Write callbacks (`put_result`'s `done`) run on the writer thread: they must be short, and a write made from
/// inside one fails with [`StoreError::Reentrant`] instead of deadlocking. Reads from a callback are fine.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// The database, for messages: the SQLite file, or the PostgreSQL URL without its password.
    db: PathBuf,
    database: Database,
    blobs: Blobs,
    lease: Option<Arc<LeaseState>>,
    renewal: Option<JoinHandle<()>>,
    ownership: Option<Arc<Ownership>>,
    owner_renewal: Option<JoinHandle<()>>,
    sender: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    writer_id: ThreadId,
    stats: Arc<Stats>,
    readers: Mutex<Vec<Conn>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain the queue, commit it and return.
        drop(self.sender.take());
        if let Some(handle) = self.writer.take()
            && handle.thread().id() != thread::current().id()
            && handle.join().is_err()
        {
            tracing::error!(dir = %self.dir.display(), "the cu-store writer thread panicked");
        }
        // After the last commit: release the lease (the renewal thread does it) for a standby.
        if let Some(lease) = &self.lease {
            lease::stop(lease);
        }
        if let Some(handle) = self.renewal.take() {
            let _ = handle.join();
        }
        if let Some(ownership) = &self.ownership {
            ownership::stop(ownership, ownership::Stop::Release);
        }
        if let Some(handle) = self.owner_renewal.take() {
            let _ = handle.join();
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Creates `dir` if needed and checks that files can be created in it.
fn ensure_writable_dir(dir: &Path) -> Result<(), StoreError> {
    static PROBE: AtomicU64 = AtomicU64::new(0);
    let not_writable = |path: &Path, e: std::io::Error| StoreError::NotWritable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    fs::create_dir_all(dir).map_err(|e| not_writable(dir, e))?;
    if !dir.is_dir() {
        return Err(StoreError::NotWritable {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let probe = dir.join(format!(
        ".write-probe-{}-{}",
        std::process::id(),
        PROBE.fetch_add(1, Ordering::Relaxed)
    ));
    fs::File::create(&probe).map_err(|e| not_writable(dir, e))?;
    fs::remove_file(&probe).map_err(|e| not_writable(dir, e))?;
    Ok(())
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A bound for `pos >= from` / `pos > after` comparisons: values above `i64::MAX` clamp (no row is that big).
fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens or creates `<dir>/ao-cu.sqlite` (and `<dir>/checkpoints/`) and applies the schema (versioned with
    /// `PRAGMA user_version`; a newer version is refused with [`StoreError::SchemaTooNew`]). A directory that
    /// cannot be created or written gives [`StoreError::NotWritable`].
    ///
    /// With [`Database::Postgres`] in `options` the tables live in that database (created there on first
    /// use, versioned in its `cu_schema` table) and `dir` holds only the checkpoint files; a server that
    /// cannot be reached gives [`StoreError::NotWritable`].
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let database = &options.database;
        ensure_writable_dir(dir)?;
        let blobs = match &options.checkpoint_bucket {
            None => Blobs::Files(dir.to_path_buf()),
            Some(config) => {
                let failed = |reason: String| StoreError::ObjectStore {
                    object: format!("s3://{}/{}", config.bucket, config.prefix),
                    reason,
                };
                let bucket = S3Bucket::new(config.clone()).map_err(failed)?;
                // Fail at start, not at the first checkpoint, when the bucket cannot be used.
                bucket
                    .check()
                    .map_err(|e| failed(format!("the bucket cannot be listed: {e}")))?;
                Blobs::S3(Box::new(bucket))
            }
        };
        let checkpoints = dir.join(CHECKPOINT_DIR);
        ensure_writable_dir(&checkpoints)?;
        let (db, conn, reconnect): (PathBuf, Conn, writer::Reconnect) = match database {
            Database::Sqlite => {
                let db = dir.join(DB_FILE);
                let conn = Conn::Sqlite(schema::open_writer(&db, options.fsync)?);
                let label = db.clone();
                let reconnect: writer::Reconnect =
                    Box::new(move || Ok(Conn::Sqlite(schema::open_writer(&label, options.fsync)?)));
                (db, conn, reconnect)
            }
            Database::Postgres { url } => {
                let db = PathBuf::from(schema::redact_url(url));
                let idle = [
                    options.lease.as_ref().map(|l| l.ttl),
                    options.ownership.as_ref().map(|o| o.ttl),
                ]
                .into_iter()
                .flatten()
                .min();
                let conn = schema::pg_open_writer(url, &db, options.fsync, idle)?;
                let (url, label, fsync) = (url.clone(), db.clone(), options.fsync);
                let reconnect: writer::Reconnect =
                    Box::new(move || schema::pg_open_writer(&url, &label, fsync, idle));
                (db, conn, reconnect)
            }
        };
        if options.fsync {
            blobs::fsync_dir(dir)?;
            blobs::fsync_dir(&checkpoints)?;
        }
        let (lease, renewal) = match (&options.lease, database) {
            (None, _) => (None, None),
            (Some(_), Database::Sqlite) => {
                return Err(StoreError::Config {
                    reason: "a store lease needs a shared PostgreSQL database (--db-url)".into(),
                });
            }
            (Some(opts), Database::Postgres { url }) => {
                let state = lease::acquire(&conn, &db, opts)?;
                let (url, label) = (url.clone(), db.clone());
                let open: Box<dyn Fn() -> Result<Conn, StoreError> + Send> =
                    Box::new(move || schema::pg_connect(&url, &label));
                let handle = lease::spawn_renewal(Arc::clone(&state), open, db.clone(), opts.ttl)
                    .map_err(|e| StoreError::io(dir, e))?;
                (Some(state), Some(handle))
            }
        };
        let (ownership, owner_renewal) = match (&options.ownership, database) {
            (None, _) => (None, None),
            (Some(_), Database::Sqlite) => {
                return Err(StoreError::Config {
                    reason: "process ownership needs a shared PostgreSQL database (--db-url)".into(),
                });
            }
            (Some(opts), Database::Postgres { url }) => {
                let (url, label) = (url.clone(), db.clone());
                let state = Ownership::new(
                    opts,
                    db.clone(),
                    Box::new(move || schema::pg_connect(&url, &label)),
                )?;
                let handle =
                    ownership::spawn_renewal(Arc::clone(&state)).map_err(|e| StoreError::io(dir, e))?;
                (Some(state), Some(handle))
            }
        };
        let writer_lease = lease.clone();
        let writer_ownership = ownership.clone();
        let group_max = options.group_commit_max.max(1);
        let (sender, receiver) = mpsc::sync_channel(group_max.saturating_mul(4));
        let writer_db = db.clone();
        let stats = Arc::new(Stats::default());
        let writer_stats = Arc::clone(&stats);
        let handle = thread::Builder::new()
            .name("cu-store-writer".into())
            .spawn(move || {
                writer::run(
                    conn,
                    reconnect,
                    writer::WriterFences {
                        lease: writer_lease,
                        ownership: writer_ownership,
                    },
                    receiver,
                    group_max,
                    writer_db,
                    writer_stats,
                )
            })
            .map_err(|e| StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        let writer_id = handle.thread().id();
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db,
                database: database.clone(),
                blobs,
                lease,
                renewal,
                ownership,
                owner_renewal,
                sender: Some(sender),
                writer: Some(handle),
                writer_id,
                stats,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This node's process leases, when the store was opened with [`StoreOptions::ownership`].
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.inner.ownership.as_ref()
    }

    /// The fencing check of process writes, for the writer's ops (`None` without ownership).
    pub(crate) fn fence(&self) -> Fence {
        Fence(self.inner.ownership.clone())
    }

    /// The store lease this store holds, when it was opened with one.
    pub fn lease(&self) -> Option<&LeaseState> {
        self.inner.lease.as_deref()
    }

    /// The database engine.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Transactions the writer has committed so far, and jobs (writes, flushes) it has completed: their
    /// ratio is the group-commit factor (for benchmarks and tests).
    pub fn writer_stats(&self) -> (u64, u64) {
        (
            self.inner.stats.commits.load(Ordering::Relaxed),
            self.inner.stats.jobs.load(Ordering::Relaxed),
        )
    }

    // ---------------------------------------------------------------- plumbing

    /// Jobs handed to the writer's queue so far (tests wait on it).
    #[cfg(test)]
    pub(crate) fn inner_queued(&self) -> u64 {
        self.inner.stats.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn ctx(&self, what: impl fmt::Display) -> String {
        format!("{what} (database {})", self.inner.db.display())
    }

    fn readers(&self) -> MutexGuard<'_, Vec<Conn>> {
        // The pool is a plain list of connections: a panic while it was locked leaves nothing inconsistent.
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on a read connection from the pool (opening one if none is idle).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.readers().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        let mut pool = self.readers();
        if pool.len() < MAX_IDLE_READERS && !conn.is_closed() {
            pool.push(conn);
        }
        out
    }

    /// A new read connection of the store's engine.
    pub(crate) fn open_reader(&self) -> Result<Conn, StoreError> {
        open_reader(&self.inner.database, &self.inner.db)
    }

    /// The database's name in messages (the SQLite file, or the PostgreSQL URL without its password).
    pub(crate) fn db_label(&self) -> &Path {
        &self.inner.db
    }

    /// Queues a job; its callback gets the error if the writer cannot take it.
    pub(crate) fn submit(&self, job: Job) {
        let stopped = || StoreError::WriterStopped {
            path: self.inner.dir.clone(),
        };
        if thread::current().id() == self.inner.writer_id {
            (job.done)(Err(StoreError::Reentrant {
                path: self.inner.dir.clone(),
            }));
            return;
        }
        match &self.inner.sender {
            Some(sender) => {
                self.inner.stats.queued.fetch_add(1, Ordering::Relaxed);
                if let Err(SendError(job)) = sender.send(job) {
                    (job.done)(Err(stopped()));
                }
            }
            None => (job.done)(Err(stopped())),
        }
    }

    /// Queues a job and waits for its commit.
    pub(crate) fn submit_wait(&self, make: impl FnOnce(Done) -> Job) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(make(Box::new(move |outcome| {
            // The waiter is blocked in recv below; it cannot be gone.
            let _ = tx.send(outcome);
        })));
        // A closed channel means the writer dropped the job without running it (it panicked).
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::WriterStopped {
                path: self.inner.dir.clone(),
            })
        })
    }

    // ---------------------------------------------------------------- modules

    /// Stores a module. Storing an id that already exists does nothing (module ids are content-addressed
    /// transaction ids). Durable on return.
    pub fn put_module(&self, m: &ModuleRecord) -> Result<(), StoreError> {
        let tags = serde_json::to_string(&m.tags).map_err(|e| StoreError::Json {
            context: format!("encoding the tags of module {}", m.id),
            source: e,
        })?;
        let m = m.clone();
        let ctx = self.ctx(format_args!("storing module {}", m.id));
        self.submit_wait(|done| {
            Job::single(
                Box::new(move |conn| {
                    conn.execute(
                        "INSERT INTO modules (id, format, owner, tags, wasm, owner_key) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                        args![&m.id, &m.format, &m.owner, &tags, &m.wasm, &m.owner_key],
                    )
                    .map(|_| ())
                    .map_err(|e| StoreError::db(ctx.clone(), e))
                }),
                done,
            )
        })
    }

    /// The module with this id.
    pub fn module(&self, id: &str) -> Result<Option<ModuleRecord>, StoreError> {
        self.read(|conn| {
            conn.query_opt(
                &format!("SELECT {MODULE_COLS} FROM modules WHERE id = ?1"),
                args![id],
                rows::module,
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("reading module {id}")), e))
        })
    }

    /// The ids of all stored modules, sorted.
    pub fn module_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            conn.query("SELECT id FROM modules ORDER BY id", &[], |row| row.text(0))
                .map_err(|e| StoreError::db(self.ctx("listing modules"), e))
        })
    }

    // ---------------------------------------------------------------- processes

    /// Stores a new process. An id that exists already gives [`StoreError::Exists`] and writes nothing; an id
    /// that is not `[A-Za-z0-9_-]{1,64}` gives [`StoreError::BadId`] (process ids name checkpoint folders).
    /// Durable on return.
    pub fn put_process(&self, p: &ProcessRecord) -> Result<(), StoreError> {
        blobs::validate_process_id(&p.id)?;
        // Checked before queuing (the insert itself clamps), so an out-of-range number is refused here.
        to_sql_int("block_height", p.block_height)?;
        to_sql_int("timestamp", p.timestamp)?;
        let p = p.clone();
        let ctx = self.ctx(format_args!("storing process {}", p.id));
        let fence = self.fence();
        self.submit_wait(|done| {
            Job::single(
                Box::new(move |conn| {
                    fence.check(conn, [p.id.as_str()])?;
                    crate::schedule::insert_process(conn, &p, &ctx)
                }),
                done,
            )
        })
    }

    /// The process with this id.
    pub fn process(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError> {
        self.read(|conn| {
            conn.query_opt(
                &format!("SELECT {PROCESS_COLS} FROM processes WHERE id = ?1"),
                args![id],
                rows::process,
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("reading process {id}")), e))
        })
    }

    /// The ids of all stored processes, sorted.
    pub fn process_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            conn.query("SELECT id FROM processes ORDER BY id", &[], |row| row.text(0))
                .map_err(|e| StoreError::db(self.ctx("listing processes"), e))
        })
    }

    // ---------------------------------------------------------------- message log

    /// Appends entries (of any processes) in one transaction, durable on return. Each entry's `pos` must be
    /// exactly `last_pos(process) + 1`, counting entries earlier in the same batch, else
    /// [`StoreError::OutOfOrder`]; its process must exist, else [`StoreError::UnknownProcess`]. On any error
    /// nothing of the batch is written.
    pub fn append(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in entries {
            check_log_entry(e)?;
        }
        let entries = entries.to_vec();
        let db = self.inner.db.clone();
        let fence = self.fence();
        self.submit_wait(|done| {
            Job::atomic(
                Box::new(move |conn| {
                    fence.check(conn, entries.iter().map(|e| e.process_id.as_str()))?;
                    insert_log(conn, &db, &entries)
                }),
                done,
            )
        })
    }

    /// Up to `limit` log entries of a process with `pos >= from_pos`, ascending.
    pub fn log_range(
        &self,
        process_id: &str,
        from_pos: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.read(|conn| {
            conn.query(
                &format!(
                    "SELECT {LOG_COLS} FROM log WHERE process_id = ?1 AND pos >= ?2 ORDER BY pos LIMIT ?3"
                ),
                args![process_id, clamp_i64(from_pos), limit_i64(limit)],
                rows::log_entry,
            )
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("reading the log of process {process_id}")),
                    e,
                )
            })
        })
    }

    /// The last position in a process's log; 0 when the log is empty.
    pub fn last_pos(&self, process_id: &str) -> Result<u64, StoreError> {
        self.max_pos("log", process_id)
    }

    fn max_pos(&self, table: &str, process_id: &str) -> Result<u64, StoreError> {
        let max: i64 = self.read(|conn| {
            conn.query_opt(
                &format!("SELECT COALESCE(MAX(pos), 0) FROM {table} WHERE process_id = ?1"),
                args![process_id],
                |row| row.int(0),
            )
            .map(|max| max.unwrap_or(0))
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!(
                        "reading the last {table} pos of process {process_id}"
                    )),
                    e,
                )
            })
        })?;
        u64::try_from(max).map_err(|_| StoreError::Corrupt {
            path: self.inner.db.clone(),
            reason: format!("negative {table} position {max} for process {process_id}"),
        })
    }

    /// The log entry of a message (the first one, should a message id occur twice).
    pub fn log_entry_by_message(
        &self,
        process_id: &str,
        message_id: &str,
    ) -> Result<Option<LogEntry>, StoreError> {
        self.read(|conn| {
            conn.query(
                &format!("SELECT {LOG_COLS} FROM log {BY_MESSAGE}"),
                args![process_id, message_id],
                rows::log_entry,
            )
            .map(|rows| first_by_pos(rows, |e| e.pos))
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!(
                        "reading the log entry of message {message_id} of process {process_id}"
                    )),
                    e,
                )
            })
        })
    }

    // ---------------------------------------------------------------- results

    /// Queues a result to the writer; `done` runs (on the writer thread) after the transaction holding it
    /// committed, or with the error. `INSERT OR IGNORE` on `(process_id, pos)`: rewriting a result after a
    /// crash is harmless. Blocks while the writer's queue is full (backpressure).
    pub fn put_result(&self, r: ResultRecord, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        let ints = (|| {
            Ok::<_, StoreError>((
                to_sql_int("pos", r.pos)?,
                r.nonce.map(|n| to_sql_int("nonce", n)).transpose()?,
                to_sql_int("timestamp", r.timestamp)?,
                to_sql_int("block_height", r.block_height)?,
            ))
        })();
        let (pos, nonce, timestamp, block_height) = match ints {
            Ok(ints) => ints,
            Err(e) => return done(Err(e)),
        };
        let db = self.inner.db.clone();
        let fence = self.fence();
        self.submit(Job::single(
            Box::new(move |conn| {
                fence.check(conn, [r.process_id.as_str()])?;
                conn.execute(
                    "INSERT INTO results (process_id, pos, message_id, nonce, timestamp, block_height, \
                     cron, has_error, output_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT DO NOTHING",
                    args![
                        &r.process_id,
                        pos,
                        &r.message_id,
                        nonce,
                        timestamp,
                        block_height,
                        &r.cron,
                        r.has_error,
                        &r.output_json
                    ],
                )
                .map(|_| ())
                .map_err(|e| {
                    StoreError::db(
                        format!(
                            "storing result {} of process {} (database {})",
                            r.pos,
                            r.process_id,
                            db.display()
                        ),
                        e,
                    )
                })
            }),
            done,
        ));
    }

    /// [`Store::put_result`], waiting for the commit.
    pub fn put_result_sync(&self, r: ResultRecord) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.put_result(
            r,
            Box::new(move |outcome| {
                // The waiter is blocked in recv below; it cannot be gone.
                let _ = tx.send(outcome);
            }),
        );
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::WriterStopped {
                path: self.inner.dir.clone(),
            })
        })
    }

    /// Waits until everything queued before this call is committed (and its callbacks ran).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.submit_wait(Job::flush)
    }

    /// The result at a log position.
    pub fn result(&self, process_id: &str, pos: u64) -> Result<Option<ResultRecord>, StoreError> {
        let Ok(pos) = i64::try_from(pos) else {
            return Ok(None);
        };
        self.read(|conn| {
            conn.query_opt(
                &format!("SELECT {RESULT_COLS} FROM results WHERE process_id = ?1 AND pos = ?2"),
                args![process_id, pos],
                rows::result,
            )
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("reading result {pos} of process {process_id}")),
                    e,
                )
            })
        })
    }

    /// The result of a message (the first one, should a message id occur twice).
    pub fn result_by_message(
        &self,
        process_id: &str,
        message_id: &str,
    ) -> Result<Option<ResultRecord>, StoreError> {
        self.read(|conn| {
            conn.query(
                &format!("SELECT {RESULT_COLS} FROM results {BY_MESSAGE}"),
                args![process_id, message_id],
                rows::result,
            )
            .map(|rows| first_by_pos(rows, |r| r.pos))
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!(
                        "reading the result of message {message_id} of process {process_id}"
                    )),
                    e,
                )
            })
        })
    }

    /// The highest position with a stored result; 0 when there is none.
    pub fn last_result_pos(&self, process_id: &str) -> Result<u64, StoreError> {
        self.max_pos("results", process_id)
    }

    /// The reference's `/results` and `/cron` queries: results with `after` < key <= `upto` in pos order
    /// (ascending or descending), at most `limit` items; `has_next_page` says whether more match (computed by
    /// fetching `limit + 1`). `only_cron` keeps cron results, `skip_errors` drops results with `has_error`.
    /// A [`Bound::Timestamp`] `t` puts every result with `timestamp <= t` at or before the bound.
    pub fn results(&self, process_id: &str, q: &ResultsQuery) -> Result<ResultsPage, StoreError> {
        let mut sql = format!("SELECT {RESULT_COLS} FROM results WHERE process_id = ?");
        let mut args: Vec<Arg<'_>> = vec![Arg::from(process_id)];
        match q.after {
            None => {}
            Some(Bound::Pos(p)) => {
                sql.push_str(" AND pos > ?");
                args.push(Arg::from(clamp_i64(p)));
            }
            Some(Bound::Timestamp(t)) => {
                sql.push_str(" AND timestamp > ?");
                args.push(Arg::from(clamp_i64(t)));
            }
        }
        match q.upto {
            None => {}
            Some(Bound::Pos(p)) => {
                sql.push_str(" AND pos <= ?");
                args.push(Arg::from(clamp_i64(p)));
            }
            Some(Bound::Timestamp(t)) => {
                sql.push_str(" AND timestamp <= ?");
                args.push(Arg::from(clamp_i64(t)));
            }
        }
        if q.only_cron {
            sql.push_str(" AND cron IS NOT NULL");
        }
        if q.skip_errors {
            sql.push_str(" AND has_error = 0");
        }
        sql.push_str(match q.sort {
            Sort::Asc => " ORDER BY pos ASC LIMIT ?",
            Sort::Desc => " ORDER BY pos DESC LIMIT ?",
        });
        args.push(Arg::from(limit_i64(q.limit.saturating_add(1))));
        let mut items: Vec<ResultRecord> = self.read(|conn| {
            conn.query(&sql, &args, rows::result).map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("querying results of process {process_id}")),
                    e,
                )
            })
        })?;
        let has_next_page = items.len() > q.limit;
        items.truncate(q.limit);
        Ok(ResultsPage { items, has_next_page })
    }

    /// All results of a process in pos order.
    pub fn all_results(&self, process_id: &str) -> Result<Vec<ResultRecord>, StoreError> {
        self.read(|conn| {
            conn.query(
                &format!("SELECT {RESULT_COLS} FROM results WHERE process_id = ?1 ORDER BY pos"),
                args![process_id],
                rows::result,
            )
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("reading results of process {process_id}")),
                    e,
                )
            })
        })
    }

    // ---------------------------------------------------------------- checkpoints

    /// Writes the blob atomically to `checkpoints/<process_id>/<seq:020>.ckpt` (temporary file, fsync, rename,
    /// directory fsync), then queues the index row through the writer (so it commits with or after every
    /// result queued before) and waits for its commit. A checkpoint `(process_id, seq)` that is already indexed
    /// gives [`StoreError::Exists`] and touches nothing. If the row cannot be committed, the file stays (it
    /// is unreferenced, overwritten by a retry and removed by pruning).
    pub fn write_checkpoint(
        &self,
        meta: CheckpointMeta,
        blob: &[u8],
    ) -> Result<CheckpointRecord, StoreError> {
        blobs::validate_process_id(&meta.process_id)?;
        let seq = to_sql_int("seq", meta.seq)?;
        let pos = to_sql_int("pos", meta.pos)?;
        let parent = meta.parent.map(|p| to_sql_int("parent", p)).transpose()?;
        let memory_len = to_sql_int("memory_len", meta.memory_len)?;
        let bytes = blob.len() as u64;
        let bytes_i = to_sql_int("bytes", bytes)?;
        let id = || format!("{}/{}", meta.process_id, meta.seq);
        let exists = self.read(|conn| {
            conn.exists(
                "SELECT 1 FROM checkpoints WHERE process_id = ?1 AND seq = ?2",
                args![&meta.process_id, seq],
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("looking up checkpoint {}", id())), e))
        })?;
        if exists {
            return Err(StoreError::Exists {
                kind: "checkpoint",
                id: id(),
            });
        }
        let file = self.inner.blobs.write(&meta.process_id, meta.seq, blob)?;
        let rec = CheckpointRecord {
            process_id: meta.process_id,
            seq: meta.seq,
            pos: meta.pos,
            kind: meta.kind,
            parent: meta.parent,
            memory_len: meta.memory_len,
            file,
            blake3: blake3::hash(blob).to_hex().to_string(),
            bytes,
        };
        let row = rec.clone();
        let ctx = self.ctx(format_args!("indexing checkpoint {}/{}", rec.process_id, rec.seq));
        let fence = self.fence();
        self.submit_wait(|done| {
            Job::single(
                Box::new(move |conn| {
                    fence.check(conn, [row.process_id.as_str()])?;
                    conn.execute(
                        "INSERT INTO checkpoints (process_id, seq, pos, kind, parent, memory_len, file, blake3, \
                         bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        args![
                            &row.process_id,
                            seq,
                            pos,
                            row.kind.as_str(),
                            parent,
                            memory_len,
                            &row.file,
                            &row.blake3,
                            bytes_i
                        ],
                    )
                    .map(|_| ())
                    .map_err(|e| StoreError::db(ctx.clone(), e))
                }),
                done,
            )
        })?;
        Ok(rec)
    }

    /// The indexed checkpoints of a process, seq ascending.
    pub fn checkpoints(&self, process_id: &str) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.read(|conn| {
            conn.query(
                &format!("SELECT {CHECKPOINT_COLS} FROM checkpoints WHERE process_id = ?1 ORDER BY seq"),
                args![process_id],
                rows::checkpoint,
            )
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("reading checkpoints of process {process_id}")),
                    e,
                )
            })
        })
    }

    /// Reads a checkpoint's blob and checks its length and BLAKE3 against the record
    /// ([`StoreError::Corrupt`] otherwise, also for a missing file).
    pub fn read_checkpoint(&self, rec: &CheckpointRecord) -> Result<Vec<u8>, StoreError> {
        blobs::validate_process_id(&rec.process_id)?;
        self.inner.blobs.read_verified(rec)
    }

    /// [`Store::read_checkpoint`] as a stream: `use_stream` reads the file (e.g. decodes it) from a
    /// buffered reader, given the file's length, while the bytes are hashed; no buffer of the whole file
    /// is made. When the length or the BLAKE3 disagrees with the index, what `use_stream` returned is
    /// dropped and the error returned.
    pub fn read_checkpoint_stream<T>(
        &self,
        rec: &CheckpointRecord,
        use_stream: impl FnOnce(&mut dyn std::io::BufRead, u64) -> T,
    ) -> Result<T, StoreError> {
        blobs::validate_process_id(&rec.process_id)?;
        self.inner.blobs.read_verified_stream(rec, use_stream)
    }

    /// Removes the index rows and files of the process's checkpoints with seq < `seq`. Rows go first (durable
    /// on return), then files; files already missing are fine, and files left over by an earlier interrupted
    /// prune are removed too.
    pub fn delete_checkpoints_before(&self, process_id: &str, seq: u64) -> Result<(), StoreError> {
        blobs::validate_process_id(process_id)?;
        let pid = process_id.to_owned();
        let ctx = self.ctx(format_args!(
            "pruning checkpoints of process {process_id} before {seq}"
        ));
        let fence = self.fence();
        self.submit_wait(|done| {
            Job::single(
                Box::new(move |conn| {
                    fence.check(conn, [pid.as_str()])?;
                    match i64::try_from(seq) {
                        Ok(seq) => conn.execute(
                            "DELETE FROM checkpoints WHERE process_id = ?1 AND seq < ?2",
                            args![&pid, seq],
                        ),
                        // Every stored seq fits an i64, so all of them are below this one.
                        Err(_) => conn.execute("DELETE FROM checkpoints WHERE process_id = ?1", args![&pid]),
                    }
                    .map(|_| ())
                    .map_err(|e| StoreError::db(ctx.clone(), e))
                }),
                done,
            )
        })?;
        self.inner.blobs.remove_before(process_id, seq)
    }

    /// Bytes used by the files in a process's checkpoint folder (0 when it has none).
    pub fn checkpoint_bytes(&self, process_id: &str) -> Result<u64, StoreError> {
        blobs::validate_process_id(process_id)?;
        self.inner.blobs.bytes_used(process_id)
    }
}

/// The row with the lowest position among `rows` (the first entry of a message id that occurs twice).
fn first_by_pos<T>(rows: Vec<T>, pos: impl Fn(&T) -> u64) -> Option<T> {
    let mut first: Option<T> = None;
    for row in rows {
        if first.as_ref().is_none_or(|f| pos(&row) < pos(f)) {
            first = Some(row);
        }
    }
    first
}

/// A new read connection to `database` (`db` names it in errors).
pub(crate) fn open_reader(database: &Database, db: &Path) -> Result<Conn, StoreError> {
    match database {
        Database::Sqlite => Ok(Conn::Sqlite(schema::open_reader(db)?)),
        Database::Postgres { url } => schema::pg_connect(url, db),
    }
}

/// Refuses, before anything is queued, a log entry whose numbers do not fit the database's integers.
pub(crate) fn check_log_entry(e: &LogEntry) -> Result<(), StoreError> {
    to_sql_int("pos", e.pos)?;
    if let Some(nonce) = e.nonce {
        to_sql_int("nonce", nonce)?;
    }
    to_sql_int("timestamp", e.timestamp)?;
    to_sql_int("block_height", e.block_height)?;
    Ok(())
}

/// The one write path of the message log ([`Store::append`] and the scheduler's batches): inside the
/// caller's transaction, checks that every entry's process exists ([`StoreError::UnknownProcess`]) and that
/// its position follows the last one, counting entries earlier in `entries` ([`StoreError::OutOfOrder`]),
/// and inserts it. The caller's savepoint undoes the whole batch on an error.
pub(crate) fn insert_log<'e>(
    conn: &Conn,
    db: &Path,
    entries: impl IntoIterator<Item = &'e LogEntry>,
) -> Result<(), StoreError> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in entries {
        let sql = |err: DbError| {
            StoreError::db(
                format!(
                    "appending pos {} of process {} (database {})",
                    e.pos,
                    e.process_id,
                    db.display()
                ),
                err,
            )
        };
        let prev = match last.get(e.process_id.as_str()) {
            Some(prev) => *prev,
            None => {
                let exists = conn
                    .exists("SELECT 1 FROM processes WHERE id = ?1", args![&e.process_id])
                    .map_err(sql)?;
                if !exists {
                    return Err(StoreError::UnknownProcess {
                        process_id: e.process_id.clone(),
                    });
                }
                let max = conn
                    .query_opt(
                        "SELECT COALESCE(MAX(pos), 0) FROM log WHERE process_id = ?1",
                        args![&e.process_id],
                        |r| r.int(0),
                    )
                    .map_err(sql)?
                    .unwrap_or(0);
                u64::try_from(max).map_err(|_| StoreError::Corrupt {
                    path: db.to_path_buf(),
                    reason: format!("negative log position {max} for process {}", e.process_id),
                })?
            }
        };
        let expected = prev.saturating_add(1);
        if e.pos != expected {
            return Err(StoreError::OutOfOrder {
                process_id: e.process_id.clone(),
                expected,
                got: e.pos,
            });
        }
        conn.execute(
            "INSERT INTO log (process_id, pos, message_id, nonce, timestamp, block_height, cron, msg_json) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                &e.process_id,
                to_sql_int("pos", e.pos)?,
                &e.message_id,
                e.nonce.map(|n| to_sql_int("nonce", n)).transpose()?,
                to_sql_int("timestamp", e.timestamp)?,
                to_sql_int("block_height", e.block_height)?,
                &e.cron,
                &e.msg_json
            ],
        )
        .map_err(sql)?;
        last.insert(e.process_id.as_str(), e.pos);
    }
    Ok(())
}

/// The fencing check of process writes ([`crate::ownership`]), carried into the writer's ops: nothing
/// without ownership.
#[derive(Clone)]
pub(crate) struct Fence(Option<Arc<Ownership>>);

impl Fence {
    /// Checks that this node holds the lease of every process in `processes`, in `conn`'s transaction.
    pub(crate) fn check<'p>(
        &self,
        conn: &Conn,
        processes: impl IntoIterator<Item = &'p str>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            None => Ok(()),
            Some(ownership) => ownership.check(conn, &processes.into_iter().collect::<Vec<_>>()),
        }
    }
}
