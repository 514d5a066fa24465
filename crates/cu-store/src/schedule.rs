//! What the embedded scheduler (`cu-scheduler`) and the node's outbox persist (schema version 2).
//!
//! - `schedule`: one row per assignment (nonce) of a process: the assignment data item the node signed, the
//!   message data item it assigns (`None` when an existing message is assigned), the hash chain and the log
//!   position the message was appended at.
//! - `cron_marks`: per process, the timestamp (ms, exclusive) up to which cron ticks were generated.
//! - `outbox` / `outbox_cursor`: outbox items of a result already delivered, and the last result position
//!   whose outbox was delivered completely. Delivery marks commit in the same transaction as what they
//!   delivered, so a restart never delivers twice.
//!
//! - `upstream`: per process computed from a remote SU (network mode), the SU's URL, the page cursor
//!   and the nonce of the last slot appended, and that slot's assignment id and hash chain (what the
//!   next slot must follow from). It commits in the same transaction as the slots it covers.
//!
//! [`Store::commit_schedule`] writes a [`ScheduleBatch`] (a new process, log entries with their
//! assignments, a cron mark, delivery marks) all or nothing, durable on return;
//! [`Store::submit_schedule`] queues one and returns a [`Queued`] to wait on, so the scheduler can sign
//! the next assignment while the writer commits this one. Reads go through
//! [`ScheduleReads`], which keeps its own read connections.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, mpsc};

use crate::blobs;
use crate::db::{Conn, DbError, Row, args};
use crate::error::StoreError;
use crate::records::{LogEntry, ProcessRecord};
use crate::store::{Database, Store, check_log_entry, insert_log};
use crate::writer::Job;

/// One assignment of the embedded scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// The process the message is scheduled on.
    pub process_id: String,
    /// The nonce (0 = the process itself).
    pub nonce: u64,
    /// The epoch (always 0 here).
    pub epoch: u64,
    /// The scheduled message's id (the process id for nonce 0).
    pub message_id: String,
    /// The assignment data item's id.
    pub assignment_id: String,
    /// Timestamp (ms).
    pub timestamp: u64,
    /// Block height.
    pub block_height: u64,
    /// The SU hash chain value of this assignment.
    pub hash_chain: String,
    /// The log position the message was appended at.
    pub pos: u64,
    /// The signed assignment data item.
    pub assignment: Vec<u8>,
    /// The message data item; `None` when an existing message is assigned.
    pub message: Option<Vec<u8>>,
}

/// One log entry to append, with the assignment that scheduled it (`None` for cron messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledEntry {
    /// The log entry.
    pub entry: LogEntry,
    /// Its assignment.
    pub schedule: Option<ScheduleRecord>,
}

/// An outbox item delivered: result `pos` of `process_id`, item key (e.g. `m0`, `s1`, `a2:<pid>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMark {
    /// The process whose result held the item.
    pub process_id: String,
    /// The result's log position.
    pub pos: u64,
    /// The item's key within the result.
    pub item: String,
}

/// Everything one scheduling step writes, committed all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleBatch {
    /// A process to create first (a spawn); [`StoreError::Exists`] if it exists.
    pub process: Option<ProcessRecord>,
    /// Log entries (positions must follow the process's last one) and their assignments.
    pub entries: Vec<ScheduledEntry>,
    /// New cron high-water marks `(process, upto)`.
    pub cron_marks: Vec<(String, u64)>,
    /// Outbox items this batch delivers.
    pub delivered: Vec<DeliveryMark>,
    /// New outbox cursors `(process, pos)`.
    pub outbox_cursors: Vec<(String, u64)>,
    /// Where remote schedules were read up to (inserted or replaced).
    pub upstream: Vec<UpstreamCursor>,
    /// Marks the batch's process as beginning after an adopted checkpoint ([`crate::items::Adopted`]).
    pub adopted: Option<crate::items::Adopted>,
}

impl ScheduleBatch {
    /// Every process the batch writes for (the fencing check of process ownership).
    fn processes(&self) -> impl Iterator<Item = &str> {
        self.process
            .iter()
            .map(|p| p.id.as_str())
            .chain(self.entries.iter().map(|e| e.entry.process_id.as_str()))
            .chain(self.cron_marks.iter().map(|(p, _)| p.as_str()))
            .chain(self.delivered.iter().map(|d| d.process_id.as_str()))
            .chain(self.outbox_cursors.iter().map(|(p, _)| p.as_str()))
            .chain(self.upstream.iter().map(|u| u.process_id.as_str()))
            .chain(self.adopted.iter().map(|a| a.process_id.as_str()))
    }
}

/// How far a remote SU's schedule of a process was read and appended (network mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCursor {
    /// The process.
    pub process_id: String,
    /// The SU it is read from.
    pub su_url: String,
    /// The page cursor of the last slot appended (the next page's `from`).
    pub cursor: String,
    /// The nonce of the last slot appended.
    pub nonce: u64,
    /// Its assignment id.
    pub assignment_id: String,
    /// Its `Hash-Chain` (`None` when the SU does not chain).
    pub hash_chain: Option<String>,
}

const SCHEDULE_COLS: &str = "process_id, nonce, epoch, message_id, assignment_id, timestamp, block_height, \
                             hash_chain, pos, assignment, message";

/// [`ScheduleReads::page`]'s condition and order (see there why by timestamp).
pub(crate) const PAGE_BY_TIMESTAMP: &str =
    "WHERE process_id = ?1 AND timestamp > ?2 AND timestamp <= ?3 ORDER BY timestamp LIMIT ?4";
/// [`ScheduleReads::from_nonce`]'s condition and order.
pub(crate) const PAGE_BY_NONCE: &str = "WHERE process_id = ?1 AND nonce >= ?2 ORDER BY nonce LIMIT ?3";

fn schedule_row(row: &Row<'_>) -> Result<ScheduleRecord, DbError> {
    Ok(ScheduleRecord {
        process_id: row.text(0)?,
        nonce: row.u64(1)?,
        epoch: row.u64(2)?,
        message_id: row.text(3)?,
        assignment_id: row.text(4)?,
        timestamp: row.u64(5)?,
        block_height: row.u64(6)?,
        hash_chain: row.text(7)?,
        pos: row.u64(8)?,
        assignment: row.bytes(9)?,
        message: row.opt_bytes(10)?,
    })
}

/// Inserts a new process (`Exists` if the id is taken); `context` names the operation in errors. Shared by
/// [`crate::Store::put_process`] and the scheduler's batches.
pub(crate) fn insert_process(conn: &Conn, p: &ProcessRecord, context: &str) -> Result<(), StoreError> {
    let sql = |e| StoreError::db(context.to_string(), e);
    let exists = conn
        .exists("SELECT 1 FROM processes WHERE id = ?1", args![&p.id])
        .map_err(sql)?;
    if exists {
        return Err(StoreError::Exists {
            kind: "process",
            id: p.id.clone(),
        });
    }
    let tags = serde_json::to_string(&p.tags).map_err(|e| StoreError::Json {
        context: format!("encoding the tags of process {}", p.id),
        source: e,
    })?;
    conn.execute(
        "INSERT INTO processes (id, module_id, owner, tags, env_json, block_height, timestamp, spawn_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![
            &p.id,
            &p.module_id,
            &p.owner,
            &tags,
            &p.env_json,
            to_i64(p.block_height),
            to_i64(p.timestamp),
            &p.spawn_json
        ],
    )
    .map(|_| ())
    .map_err(sql)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn write_batch(conn: &Conn, db: &std::path::Path, batch: &ScheduleBatch) -> Result<(), StoreError> {
    if let Some(p) = &batch.process {
        insert_process(conn, p, &format!("creating process {}", p.id))?;
    }
    insert_log(conn, db, batch.entries.iter().map(|s| &s.entry))?;
    for r in batch.entries.iter().filter_map(|s| s.schedule.as_ref()) {
        conn.execute(
            &format!(
                "INSERT INTO schedule ({SCHEDULE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            args![
                &r.process_id,
                to_i64(r.nonce),
                to_i64(r.epoch),
                &r.message_id,
                &r.assignment_id,
                to_i64(r.timestamp),
                to_i64(r.block_height),
                &r.hash_chain,
                to_i64(r.pos),
                &r.assignment,
                &r.message
            ],
        )
        .map_err(|err| {
            StoreError::db(
                format!("storing nonce {} of process {}", r.nonce, r.process_id),
                err,
            )
        })?;
    }
    for (pid, upto) in &batch.cron_marks {
        conn.execute(
            "INSERT INTO cron_marks (process_id, upto) VALUES (?1, ?2) ON CONFLICT (process_id) DO UPDATE \
             SET upto = CASE WHEN excluded.upto > cron_marks.upto THEN excluded.upto ELSE cron_marks.upto END",
            args![pid, to_i64(*upto)],
        )
        .map_err(|e| StoreError::db(format!("storing the cron mark of {pid}"), e))?;
    }
    for d in &batch.delivered {
        conn.execute(
            "INSERT INTO outbox (process_id, pos, item) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![&d.process_id, to_i64(d.pos), &d.item],
        )
        .map_err(|e| StoreError::db(format!("marking outbox item of {}", d.process_id), e))?;
    }
    for (pid, pos) in &batch.outbox_cursors {
        conn.execute(
            "INSERT INTO outbox_cursor (process_id, pos) VALUES (?1, ?2) ON CONFLICT (process_id) DO UPDATE \
             SET pos = CASE WHEN excluded.pos > outbox_cursor.pos THEN excluded.pos ELSE outbox_cursor.pos END",
            args![pid, to_i64(*pos)],
        )
        .map_err(|e| StoreError::db(format!("storing the outbox cursor of {pid}"), e))?;
    }
    if let Some(a) = &batch.adopted {
        crate::items::write_adopted(conn, a)?;
    }
    for u in &batch.upstream {
        conn.execute(
            "INSERT INTO upstream (process_id, su_url, cursor, nonce, assignment_id, hash_chain) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (process_id) DO UPDATE SET su_url = excluded.su_url, \
             cursor = excluded.cursor, nonce = excluded.nonce, assignment_id = excluded.assignment_id, \
             hash_chain = excluded.hash_chain",
            args![
                &u.process_id,
                &u.su_url,
                &u.cursor,
                to_i64(u.nonce),
                &u.assignment_id,
                &u.hash_chain
            ],
        )
        .map_err(|e| StoreError::db(format!("storing the upstream cursor of {}", u.process_id), e))?;
    }
    Ok(())
}

/// A [`ScheduleBatch`] queued at the writer ([`Store::submit_schedule`]); [`Queued::wait`] tells when it is
/// durable (or why it failed). Batches commit in the order they were queued.
#[derive(Debug)]
#[must_use = "a queued batch is durable only once `wait` returns Ok"]
pub struct Queued {
    rx: mpsc::Receiver<Result<(), StoreError>>,
    dir: PathBuf,
}

impl Queued {
    /// Blocks until the batch committed (`Ok`) or failed; a failed batch wrote nothing.
    pub fn wait(self) -> Result<(), StoreError> {
        // A closed channel means the writer dropped the job without running it (it panicked).
        self.rx
            .recv()
            .unwrap_or(Err(StoreError::WriterStopped { path: self.dir }))
    }
}

impl Store {
    /// Writes `batch` in one transaction (all or nothing), durable on return. Log positions must follow
    /// the last one of their process ([`StoreError::OutOfOrder`]); the process must exist or be created
    /// by the batch ([`StoreError::UnknownProcess`]); a batch process that exists is [`StoreError::Exists`].
    pub fn commit_schedule(&self, batch: ScheduleBatch) -> Result<(), StoreError> {
        self.submit_schedule(batch)?.wait()
    }

    /// Queues `batch` at the writer and returns at once (values that cannot be stored are refused
    /// here); the batch is checked and written as [`Store::commit_schedule`] does, in queue order, so
    /// a batch that follows a failed one of the same process fails too (its positions no longer
    /// follow). This lets a caller prepare the next batch while this one commits.
    pub fn submit_schedule(&self, batch: ScheduleBatch) -> Result<Queued, StoreError> {
        if let Some(p) = &batch.process {
            blobs::validate_process_id(&p.id)?;
        }
        for s in &batch.entries {
            check_log_entry(&s.entry)?;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let db = self.db_label().to_path_buf();
        let fence = self.fence();
        self.submit(Job::atomic(
            Box::new(move |conn| {
                fence.check(conn, batch.processes())?;
                write_batch(conn, &db, &batch)
            }),
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        ));
        Ok(Queued {
            rx,
            dir: self.dir().to_path_buf(),
        })
    }
}

/// Reads of the schedule tables, on read connections of its own.
pub struct ScheduleReads {
    db: PathBuf,
    database: Database,
    readers: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for ScheduleReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleReads")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl ScheduleReads {
    /// Reads over `store`'s database.
    pub fn new(store: &Store) -> ScheduleReads {
        ScheduleReads {
            db: store.db_label().to_path_buf(),
            database: store.database().clone(),
            readers: Mutex::new(Vec::new()),
        }
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read<T>(&self, what: &str, f: impl FnOnce(&Conn) -> Result<T, DbError>) -> Result<T, StoreError> {
        let idle = self.pool().pop();
        let conn = match idle {
            Some(c) => c,
            None => crate::store::open_reader(&self.database, &self.db)?,
        };
        let out = f(&conn).map_err(|e| StoreError::db(format!("{what} (database {})", self.db.display()), e));
        let mut pool = self.pool();
        if pool.len() < 8 && !conn.is_closed() {
            pool.push(conn);
        }
        out
    }

    /// The assignment with the highest nonce of a process.
    pub fn last(&self, process_id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        self.read("reading the last assignment", |c| {
            c.query_opt(
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedule WHERE process_id = ?1 ORDER BY nonce DESC LIMIT 1"
                ),
                args![process_id],
                schedule_row,
            )
        })
    }

    /// The assignment of `nonce`.
    pub fn by_nonce(&self, process_id: &str, nonce: u64) -> Result<Option<ScheduleRecord>, StoreError> {
        self.read("reading an assignment", |c| {
            c.query_opt(
                &format!("SELECT {SCHEDULE_COLS} FROM schedule WHERE process_id = ?1 AND nonce = ?2"),
                args![process_id, to_i64(nonce)],
                schedule_row,
            )
        })
    }

    /// Up to `limit` assignments of a process from nonce `from` on, ascending (a walk of the primary key).
    pub fn from_nonce(
        &self,
        process_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("reading assignments from a nonce", |c| {
            c.query(
                &format!("SELECT {SCHEDULE_COLS} FROM schedule {PAGE_BY_NONCE}"),
                args![process_id, to_i64(from), limit],
                schedule_row,
            )
        })
    }

    /// The (first) assignment of a message on a process.
    pub fn by_message(
        &self,
        process_id: &str,
        message_id: &str,
    ) -> Result<Option<ScheduleRecord>, StoreError> {
        self.read("reading the assignment of a message", |c| {
            c.query_opt(
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedule WHERE process_id = ?1 AND message_id = ?2 \
                     ORDER BY +nonce LIMIT 1"
                ),
                args![process_id, message_id],
                schedule_row,
            )
        })
    }

    /// The data item of a message scheduled on any process (the first stored copy).
    pub fn message_item(&self, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read("reading a message item", |c| {
            c.query_opt(
                "SELECT message FROM schedule WHERE message_id = ?1 AND message IS NOT NULL LIMIT 1",
                args![message_id],
                |r| r.bytes(0),
            )
        })
    }

    /// Up to `limit` assignments of a process with `after < timestamp <= upto`, ascending.
    ///
    /// Ordered by timestamp, which is nonce order: the scheduler gives every assignment a timestamp
    /// greater than the previous one's. So SQLite walks `schedule_by_timestamp` and stops after `limit`
    /// rows; `ORDER BY nonce` here sorted every later assignment of the process (blobs included) in a
    /// temporary B-tree for each page, which made reading a long schedule quadratic.
    pub fn page(
        &self,
        process_id: &str,
        after: Option<u64>,
        upto: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let after = after.map_or(-1, to_i64);
        let upto = upto.map_or(i64::MAX, to_i64);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("reading a page of assignments", |c| {
            c.query(
                &format!("SELECT {SCHEDULE_COLS} FROM schedule {PAGE_BY_TIMESTAMP}"),
                args![process_id, after, upto, limit],
                schedule_row,
            )
        })
    }

    /// The cron high-water mark of a process.
    pub fn cron_mark(&self, process_id: &str) -> Result<Option<u64>, StoreError> {
        self.read("reading a cron mark", |c| {
            c.query_opt(
                "SELECT upto FROM cron_marks WHERE process_id = ?1",
                args![process_id],
                |r| r.u64(0),
            )
        })
    }

    /// Whether an outbox item was delivered.
    pub fn delivered(&self, process_id: &str, pos: u64, item: &str) -> Result<bool, StoreError> {
        self.read("reading an outbox mark", |c| {
            c.exists(
                "SELECT 1 FROM outbox WHERE process_id = ?1 AND pos = ?2 AND item = ?3",
                args![process_id, to_i64(pos), item],
            )
        })
    }

    /// Where the remote schedule of `process_id` was read up to; `None` for a process not read from a
    /// remote SU.
    pub fn upstream_cursor(&self, process_id: &str) -> Result<Option<UpstreamCursor>, StoreError> {
        self.read("reading an upstream cursor", |c| {
            c.query_opt(
                "SELECT process_id, su_url, cursor, nonce, assignment_id, hash_chain FROM upstream \
                 WHERE process_id = ?1",
                args![process_id],
                |r| {
                    Ok(UpstreamCursor {
                        process_id: r.text(0)?,
                        su_url: r.text(1)?,
                        cursor: r.text(2)?,
                        nonce: r.u64(3)?,
                        assignment_id: r.text(4)?,
                        hash_chain: r.opt_text(5)?,
                    })
                },
            )
        })
    }

    /// The processes read from remote SUs, sorted.
    pub fn upstream_processes(&self) -> Result<Vec<String>, StoreError> {
        self.read("listing upstream processes", |c| {
            c.query("SELECT process_id FROM upstream ORDER BY process_id", &[], |r| {
                r.text(0)
            })
        })
    }

    /// The last result position whose outbox was delivered completely (0 if none).
    pub fn outbox_cursor(&self, process_id: &str) -> Result<u64, StoreError> {
        self.read("reading an outbox cursor", |c| {
            c.query_opt(
                "SELECT pos FROM outbox_cursor WHERE process_id = ?1",
                args![process_id],
                |r| r.u64(0),
            )
            .map(|p| p.unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{DB_FILE, SCHEMA_VERSION, StoreOptions};
    use rusqlite::Connection;

    fn process(id: &str) -> ProcessRecord {
        ProcessRecord {
            id: id.into(),
            module_id: "m".into(),
            owner: "o".into(),
            tags: vec![],
            env_json: "{}".into(),
            block_height: 1,
            timestamp: 2,
            spawn_json: "{}".into(),
        }
    }

    fn entry(pid: &str, pos: u64, nonce: u64) -> ScheduledEntry {
        ScheduledEntry {
            entry: LogEntry {
                process_id: pid.into(),
                pos,
                message_id: Some(format!("msg{nonce}")),
                nonce: Some(nonce),
                timestamp: 1000 + nonce,
                block_height: 1,
                cron: None,
                msg_json: "{}".into(),
            },
            schedule: Some(ScheduleRecord {
                process_id: pid.into(),
                nonce,
                epoch: 0,
                message_id: format!("msg{nonce}"),
                assignment_id: format!("a{nonce}"),
                timestamp: 1000 + nonce,
                block_height: 1,
                hash_chain: "h".into(),
                pos,
                assignment: vec![1, 2, 3],
                message: Some(vec![nonce as u8]),
            }),
        }
    }

    #[test]
    fn batches_are_all_or_nothing_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_db::open(dir.path(), StoreOptions::default());
        let reads = ScheduleReads::new(&store);
        // A batch with a gap in positions writes nothing, not even its process.
        let err = store
            .commit_schedule(ScheduleBatch {
                process: Some(process("p1")),
                entries: vec![entry("p1", 1, 0), entry("p1", 3, 1)],
                ..ScheduleBatch::default()
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::OutOfOrder { .. }), "{err}");
        assert!(store.process("p1").unwrap().is_none());
        assert!(reads.last("p1").unwrap().is_none());
        store
            .commit_schedule(ScheduleBatch {
                process: Some(process("p1")),
                entries: vec![entry("p1", 1, 0), entry("p1", 2, 1)],
                cron_marks: vec![("p1".into(), 5000)],
                delivered: vec![DeliveryMark {
                    process_id: "p0".into(),
                    pos: 7,
                    item: "m0".into(),
                }],
                outbox_cursors: vec![("p0".into(), 7)],
                upstream: Vec::new(),
                adopted: None,
            })
            .unwrap();
        assert_eq!(store.last_pos("p1").unwrap(), 2);
        assert_eq!(reads.last("p1").unwrap().unwrap().nonce, 1);
        assert_eq!(reads.by_message("p1", "msg0").unwrap().unwrap().pos, 1);
        assert_eq!(reads.message_item("msg1").unwrap(), Some(vec![1]));
        assert_eq!(reads.page("p1", Some(1000), None, 10).unwrap().len(), 1);
        assert_eq!(reads.page("p1", None, Some(1000), 10).unwrap().len(), 1);
        assert_eq!(reads.cron_mark("p1").unwrap(), Some(5000));
        assert!(reads.delivered("p0", 7, "m0").unwrap());
        assert!(!reads.delivered("p0", 7, "m1").unwrap());
        assert_eq!(reads.outbox_cursor("p0").unwrap(), 7);
        // A process that exists is refused.
        let err = store
            .commit_schedule(ScheduleBatch {
                process: Some(process("p1")),
                ..ScheduleBatch::default()
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Exists { .. }));
    }

    #[test]
    fn version_1_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "DROP TABLE schedule; DROP TABLE cron_marks; DROP TABLE outbox; DROP TABLE outbox_cursor; \
                 DROP TABLE upstream; ALTER TABLE modules DROP COLUMN owner_key; DROP TABLE items; \
                 DROP TABLE item_tags; DROP TABLE adopted; PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let reads = ScheduleReads::new(&store);
        assert!(reads.last("p").unwrap().is_none());
        assert_eq!(reads.outbox_cursor("p").unwrap(), 0);
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 5);
    }

    #[test]
    fn version_4_databases_gain_the_items_by_height_index() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let index = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'items_by_height'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch("DROP INDEX items_by_height; PRAGMA user_version = 4;")
                .unwrap();
            assert_eq!(index(&conn), 0);
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(store.items_at_height(3, 10).unwrap().is_empty());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        assert_eq!(index(&conn), 1);
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 5);
    }

    #[test]
    fn version_2_databases_gain_the_upstream_table_and_cursors_commit_with_their_slots() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "DROP TABLE upstream; ALTER TABLE modules DROP COLUMN owner_key; DROP TABLE items; \
                 DROP TABLE item_tags; DROP TABLE adopted; \
                 INSERT INTO modules (id, format, owner, tags, wasm) VALUES ('m2', 'f', 'o', '[]', x'00'); \
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // A module stored by version 2 reads with no owner key.
        let m2 = store.module("m2").unwrap().unwrap();
        assert_eq!((m2.owner.as_str(), m2.owner_key), ("o", None));
        let reads = ScheduleReads::new(&store);
        assert!(reads.upstream_cursor("p").unwrap().is_none());
        let cursor = UpstreamCursor {
            process_id: "p".into(),
            su_url: "http://su".into(),
            cursor: "17".into(),
            nonce: 0,
            assignment_id: "a0".into(),
            hash_chain: Some("h0".into()),
        };
        // An entry for an unknown process fails the batch: the cursor is not written either.
        let entry = |pos: u64| ScheduledEntry {
            entry: LogEntry {
                process_id: "p".into(),
                pos,
                message_id: Some(format!("m{pos}")),
                nonce: Some(pos - 1),
                timestamp: 17,
                block_height: 1,
                cron: None,
                msg_json: "{}".into(),
            },
            schedule: None,
        };
        let failed = store.commit_schedule(ScheduleBatch {
            entries: vec![entry(1)],
            upstream: vec![cursor.clone()],
            ..Default::default()
        });
        assert!(failed.is_err());
        assert!(reads.upstream_cursor("p").unwrap().is_none());
        store
            .commit_schedule(ScheduleBatch {
                process: Some(crate::ProcessRecord {
                    id: "p".into(),
                    module_id: "m".into(),
                    owner: "o".into(),
                    tags: Vec::new(),
                    env_json: "{}".into(),
                    block_height: 1,
                    timestamp: 17,
                    spawn_json: String::new(),
                }),
                entries: vec![entry(1)],
                upstream: vec![cursor.clone()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(reads.upstream_cursor("p").unwrap(), Some(cursor.clone()));
        let moved = UpstreamCursor {
            cursor: "18".into(),
            nonce: 1,
            hash_chain: None,
            ..cursor
        };
        store
            .commit_schedule(ScheduleBatch {
                entries: vec![entry(2)],
                upstream: vec![moved.clone()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(reads.upstream_cursor("p").unwrap(), Some(moved));
        assert_eq!(reads.upstream_processes().unwrap(), vec!["p".to_string()]);
    }
}
