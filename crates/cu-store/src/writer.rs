//! The writer thread: the only owner of the write connection, committing queued jobs in groups.
//!
//! Jobs arrive through a bounded channel (a full channel blocks the sender: backpressure). The thread takes
//! everything queued (up to `group_commit_max` jobs), runs them in ONE transaction, commits, and only then runs
//! their callbacks, in queue order. A job that fails is undone on its own (a savepoint for multi-statement jobs,
//! SQLite's statement rollback for single statements) and its callback gets the error; the others still
//! commit. On PostgreSQL, where any error aborts the whole transaction, a group first runs without savepoints
//! (the fast path: one round trip per statement); if a job fails, all of it is rolled back and the group runs
//! again with every job in a savepoint, so the outcome is the same as SQLite's.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use crate::db::{Conn, Engine};
use crate::error::StoreError;
use crate::lease::LeaseState;
use crate::ownership::Ownership;

/// Runs once the job's transaction committed (with `Ok`) or failed (with the error).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The database work of a job, run on the write connection inside the group's transaction. It may run
/// twice: on PostgreSQL a group first runs without savepoints, and is run again job by job in savepoints
/// when one of its jobs fails (everything of the first try rolled back).
pub type Op = Box<dyn Fn(&Conn) -> Result<(), StoreError> + Send>;

/// Opens a new write connection (PostgreSQL: after the server closed the old one).
pub type Reconnect = Box<dyn Fn() -> Result<Conn, StoreError> + Send>;

/// One queued unit of work.
pub struct Job {
    /// The writes; `None` for a flush (only waits for the commit of what was queued before).
    pub op: Option<Op>,
    /// Whether `op` runs several statements that must be undone together if one fails.
    pub atomic: bool,
    /// The callback.
    pub done: Done,
}

impl Job {
    /// A job with a single-statement (or read-then-write) op.
    pub fn single(op: Op, done: Done) -> Job {
        Job {
            op: Some(op),
            atomic: false,
            done,
        }
    }

    /// A job whose op runs several statements, undone together when it fails.
    pub fn atomic(op: Op, done: Done) -> Job {
        Job {
            op: Some(op),
            atomic: true,
            done,
        }
    }

    /// A flush marker.
    pub fn flush(done: Done) -> Job {
        Job {
            op: None,
            atomic: false,
            done,
        }
    }
}

/// Counters kept by the writer thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Jobs (writes and flushes) completed, successfully or not.
    pub jobs: AtomicU64,
    /// Jobs handed to the queue (counted just before they are sent).
    pub queued: AtomicU64,
}

/// The writer thread's loop; returns when every sender is gone and the queue is drained.
pub fn run(
    mut conn: Conn,
    reconnect: Reconnect,
    fences: WriterFences,
    rx: Receiver<Job>,
    group_max: usize,
    db: PathBuf,
    stats: Arc<Stats>,
) {
    let group_max = group_max.max(1);
    let mut group = Vec::with_capacity(group_max.min(4096));
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < group_max {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if conn.is_closed() {
            // The PostgreSQL server dropped the connection (restart, failover): open a new one for this
            // group; if that fails too, this group's jobs fail with the reason and the next group retries.
            match reconnect() {
                Ok(fresh) => conn = fresh,
                Err(e) => tracing::error!(db = %db.display(), "cannot reconnect the cu-store writer: {e}"),
            }
        }
        let outcomes = commit_group(&conn, &db, &fences, group.drain(..), &stats);
        for (done, outcome) in outcomes {
            // A panicking callback must not take the writer (and every later write) down with it.
            if catch_unwind(AssertUnwindSafe(|| done(outcome))).is_err() {
                tracing::error!(db = %db.display(), "a cu-store write callback panicked");
            }
        }
    }
    // Dropping the connection closes it; in WAL mode the last close checkpoints the log.
    drop(conn);
}

fn commit_failed(db: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::CommitFailed {
        path: db.to_path_buf(),
        reason: reason.into(),
    }
}

/// What fences the writer's transactions: the store lease (`crate::lease`) and process ownership
/// (`crate::ownership`), each when the store has it.
pub struct WriterFences {
    /// The store lease.
    pub lease: Option<Arc<LeaseState>>,
    /// This node's process leases.
    pub ownership: Option<Arc<Ownership>>,
}

/// Runs the jobs in one transaction and commits; returns each callback with its outcome, in queue order.
fn commit_group(
    conn: &Conn,
    db: &Path,
    fences: &WriterFences,
    jobs: impl Iterator<Item = Job>,
    stats: &Stats,
) -> Vec<(Done, Result<(), StoreError>)> {
    let lease = fences.lease.as_deref();
    let jobs: Vec<Job> = jobs.collect();
    if conn.engine() == Engine::Postgres && jobs.iter().any(|j| j.op.is_some()) {
        // No savepoints on the fast path: a process's lease row, once share-locked, stays locked to the
        // end of the transaction, so it is checked once per group.
        if let Some(o) = &fences.ownership {
            o.begin_group();
        }
        let outcome = fast_group(conn, db, lease, &jobs);
        if let Some(o) = &fences.ownership {
            o.end_group();
        }
        if let Some(outcome) = outcome {
            stats.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            if outcome.is_ok() {
                stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            return every_job(jobs, outcome, db);
        }
        // A job failed: everything was rolled back; run the group again, each job in a savepoint.
    }
    let mut out: Vec<(Done, Result<(), StoreError>)> = Vec::new();
    let mut in_tx = false;
    // Index into `out` of the first job of the currently open transaction.
    let mut tx_start = 0;
    for job in jobs {
        let Some(op) = &job.op else {
            out.push((job.done, Ok(())));
            continue;
        };
        if !in_tx {
            if let Err(e) = begin(conn, db, lease) {
                out.push((job.done, Err(e)));
                continue;
            }
            in_tx = true;
            tx_start = out.len();
        }
        let outcome = if job.atomic || conn.engine() == Engine::Postgres {
            run_atomic(conn, db, op)
        } else {
            op(conn)
        };
        if let Err(e) = &outcome
            && conn.is_autocommit()
        {
            // The error aborted the whole transaction (e.g. SQLITE_FULL, I/O error): the earlier jobs of
            // this transaction are lost too.
            let reason = format!("the transaction was rolled back by a failing write: {e}");
            for (_, earlier) in out[tx_start..].iter_mut() {
                if earlier.is_ok() {
                    *earlier = Err(commit_failed(db, reason.clone()));
                }
            }
            in_tx = false;
        }
        out.push((job.done, outcome));
    }
    if !in_tx {
        stats.jobs.fetch_add(out.len() as u64, Ordering::Relaxed);
        return out;
    }
    match conn.batch("COMMIT") {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            let reason = format!("COMMIT failed: {e}");
            if !conn.is_autocommit() {
                // Leave the connection usable for the next group; the COMMIT error is what gets reported.
                let _ = conn.batch("ROLLBACK");
            }
            for (_, outcome) in out[tx_start..].iter_mut() {
                if outcome.is_ok() {
                    *outcome = Err(commit_failed(db, reason.clone()));
                }
            }
        }
    }
    stats.jobs.fetch_add(out.len() as u64, Ordering::Relaxed);
    out
}

/// Opens the group's transaction and, with a lease, checks it: the lease row stays share-locked until the
/// transaction ends (fencing). A fenced transaction is rolled back.
fn begin(conn: &Conn, db: &Path, lease: Option<&LeaseState>) -> Result<(), StoreError> {
    let begin = match conn.engine() {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => "BEGIN",
    };
    conn.batch(begin)
        .map_err(|e| commit_failed(db, format!("cannot begin a transaction: {e}")))?;
    if let Some(lease) = lease
        && let Err(e) = lease.check(conn, db)
    {
        let _ = conn.batch("ROLLBACK");
        return Err(e);
    }
    Ok(())
}

/// The same outcome for every job of a group: `Ok`, or the error for the first job and an equal one (the
/// fencing, or the failure's message) for each of the others.
fn every_job(
    jobs: Vec<Job>,
    outcome: Result<(), StoreError>,
    db: &Path,
) -> Vec<(Done, Result<(), StoreError>)> {
    let Err(first) = outcome else {
        return jobs.into_iter().map(|job| (job.done, Ok(()))).collect();
    };
    let again = |e: &StoreError| match e {
        StoreError::Fenced { owner, token } => StoreError::Fenced {
            owner: owner.clone(),
            token: *token,
        },
        other => commit_failed(db, other.to_string()),
    };
    let rest: Vec<StoreError> = (1..jobs.len()).map(|_| again(&first)).collect();
    jobs.into_iter()
        .zip(std::iter::once(first).chain(rest))
        .map(|(job, e)| (job.done, Err(e)))
        .collect()
}

/// PostgreSQL's fast path: the whole group in one transaction with no savepoint per job (each would cost
/// two more round trips). `Some(Ok)`: committed. `Some(Err)`: the transaction could not begin, was fenced
/// or could not commit, which concerns every job alike. `None`: a job failed, the transaction was rolled
/// back, and the caller runs the group again job by job.
fn fast_group(
    conn: &Conn,
    db: &Path,
    lease: Option<&LeaseState>,
    jobs: &[Job],
) -> Option<Result<(), StoreError>> {
    if let Err(e) = begin(conn, db, lease) {
        return Some(Err(e));
    }
    for op in jobs.iter().filter_map(|j| j.op.as_ref()) {
        if op(conn).is_err() {
            let _ = conn.batch("ROLLBACK");
            return None;
        }
    }
    match conn.batch("COMMIT") {
        Ok(()) => Some(Ok(())),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Some(Err(commit_failed(db, format!("COMMIT failed: {e}"))))
        }
    }
}

/// Runs a multi-statement op inside a savepoint, undoing all of it if it fails.
fn run_atomic(conn: &Conn, db: &Path, op: &Op) -> Result<(), StoreError> {
    conn.batch("SAVEPOINT job")
        .map_err(|e| StoreError::db(format!("opening a savepoint (database {})", db.display()), e))?;
    let outcome = op(conn);
    if conn.is_autocommit() {
        // SQLite already rolled back the whole transaction; the savepoint is gone with it.
        return outcome;
    }
    let end = if outcome.is_ok() {
        "RELEASE SAVEPOINT job"
    } else {
        "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
    };
    match conn.batch(end) {
        Ok(()) => outcome,
        Err(e) => {
            // Keep the op's own error if there is one; otherwise the savepoint's.
            outcome?;
            Err(StoreError::db(
                format!("ending a savepoint (database {})", db.display()),
                e,
            ))
        }
    }
}
