//! The store lease: one writing node at a time on a shared PostgreSQL database, with a fencing token.
//!
//! Nodes that share a database (an active node and standbys, `ao-cu serve --store-lease <owner>`) take
//! turns through the single row of table `cu_lease`: its owner, a fencing token that grows by one at every
//! change of owner, and an expiry in the database server's clock (so the nodes' clocks do not matter).
//!
//! - [`Store::open`](crate::Store::open) with [`LeaseOptions`] waits until the lease is free (expired or
//!   released) and takes it, with the next token. A renewal thread extends it every third of its time to
//!   live.
//! - **Fencing**: every write transaction of the store's writer first reads the lease row `FOR SHARE` and
//!   checks that owner and token are still this node's; the row stays locked until the commit, so a
//!   takeover (an `UPDATE` of that row) waits for the transaction or comes before it and fails it. A node
//!   that was paused past its lease and taken over can therefore never write again: its writes fail with
//!   [`StoreError::Fenced`], and [`LeaseState::lost`] tells its owner to stop.
//! - A node frozen in the middle of a write transaction would hold that share lock for ever; its writer
//!   session has `idle_in_transaction_session_timeout` set to the lease's time to live, so the server ends
//!   it (the frozen write is lost, never committed) and the takeover goes through.
//! - A store that is dropped releases its lease (expiry set to the past), so a standby takes over at once
//!   after a clean shutdown, and after a crash once the time to live has passed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::db::{Conn, args};
use crate::error::StoreError;

/// The database server's clock in ms (lease expiries are in it, so the nodes' clocks do not matter).
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// How a store takes the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// This node's name in the lease (shown to the nodes that wait).
    pub owner: String,
    /// How long the lease lasts without renewal; a crashed node's standby takes over after it.
    pub ttl: Duration,
}

/// The lease a store holds.
#[derive(Debug)]
pub struct LeaseState {
    /// The owner name.
    pub owner: String,
    /// The fencing token of this tenure.
    pub token: i64,
    lost: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl LeaseState {
    /// Whether the lease was lost (taken over, or a write found another token): the node must stop.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            tracing::error!(
                owner = %self.owner,
                token = self.token,
                "this node lost the store lease to another node: its writes are fenced off from now on"
            );
        }
    }

    /// The fencing check at the start of a write transaction (see the module documentation); a lease
    /// known to be lost fails without asking the database.
    pub(crate) fn check(&self, conn: &Conn, db: &Path) -> Result<(), StoreError> {
        if self.lost() {
            return Err(self.fenced());
        }
        let held = conn
            .exists(
                "SELECT 1 FROM cu_lease WHERE id = 1 AND owner = ?1 AND token = ?2 FOR SHARE",
                args![&self.owner, self.token],
            )
            .map_err(|e| {
                StoreError::db(format!("checking the store lease (database {})", db.display()), e)
            })?;
        if held {
            return Ok(());
        }
        self.mark_lost();
        Err(self.fenced())
    }

    pub(crate) fn fenced(&self) -> StoreError {
        StoreError::Fenced {
            owner: self.owner.clone(),
            token: self.token,
        }
    }
}

/// Waits for the lease and takes it (logging who holds it meanwhile); starts its renewal thread.
pub(crate) fn acquire(conn: &Conn, db: &Path, options: &LeaseOptions) -> Result<Arc<LeaseState>, StoreError> {
    let ttl_ms = ttl_ms(options.ttl);
    let ctx = |what: &str| format!("{what} (database {})", db.display());
    let mut waited = 0u32;
    loop {
        let taken = conn
            .query_opt(
                &format!(
                    "INSERT INTO cu_lease (id, owner, token, expires_ms) VALUES (1, ?1, 1, {NOW_MS} + ?2) \
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, token = cu_lease.token + 1, \
                     expires_ms = excluded.expires_ms WHERE cu_lease.expires_ms < {NOW_MS} RETURNING token"
                ),
                args![&options.owner, ttl_ms],
                |r| r.int(0),
            )
            .map_err(|e| StoreError::db(ctx("taking the store lease"), e))?;
        if let Some(token) = taken {
            tracing::info!(owner = %options.owner, token, "took the store lease");
            return Ok(Arc::new(LeaseState {
                owner: options.owner.clone(),
                token,
                lost: AtomicBool::new(false),
                stop: Mutex::new(false),
                wake: Condvar::new(),
            }));
        }
        if waited.is_multiple_of(20) {
            let holder = conn
                .query_opt(
                    &format!("SELECT owner, token, expires_ms - {NOW_MS} FROM cu_lease WHERE id = 1"),
                    &[],
                    |r| Ok((r.text(0)?, r.int(1)?, r.int(2)?)),
                )
                .map_err(|e| StoreError::db(ctx("reading the store lease"), e))?;
            if let Some((owner, token, left)) = holder {
                tracing::info!(
                    holder = %owner,
                    token,
                    expires_in_ms = left,
                    "standing by: another node holds the store lease"
                );
            }
        }
        waited = waited.wrapping_add(1);
        std::thread::sleep(poll_interval(options.ttl));
    }
}

/// A time to live in whole ms for the database (at least 1).
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn poll_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Renews the lease every third of its time to live until the store stops (then releases it) or the
/// lease is lost.
pub(crate) fn spawn_renewal(
    lease: Arc<LeaseState>,
    open: Box<dyn Fn() -> Result<Conn, StoreError> + Send>,
    db: PathBuf,
    ttl: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let ttl_ms = ttl_ms(ttl);
    std::thread::Builder::new()
        .name("cu-store-lease".into())
        .spawn(move || {
            let mut conn: Option<Conn> = None;
            loop {
                {
                    let stop = lease.stop.lock().unwrap_or_else(|p| p.into_inner());
                    let (stop, _) = lease
                        .wake
                        .wait_timeout_while(stop, ttl / 3, |stop| !*stop)
                        .unwrap_or_else(|p| p.into_inner());
                    if *stop {
                        break;
                    }
                }
                if lease.lost() {
                    return;
                }
                if conn.as_ref().is_none_or(Conn::is_closed) {
                    conn = open().ok();
                }
                let Some(c) = &conn else {
                    tracing::warn!(db = %db.display(), "cannot reach the database to renew the store lease");
                    continue;
                };
                match c.execute(
                    &format!(
                        "UPDATE cu_lease SET expires_ms = {NOW_MS} + ?3 WHERE id = 1 AND owner = ?1 AND token = ?2"
                    ),
                    args![&lease.owner, lease.token, ttl_ms],
                ) {
                    Ok(1) => {}
                    Ok(_) => {
                        lease.mark_lost();
                        return;
                    }
                    Err(e) => tracing::warn!(db = %db.display(), "renewing the store lease failed: {e}"),
                }
            }
            // Stopped: release, so a standby need not wait for the expiry.
            let released = conn
                .filter(|c| !c.is_closed())
                .map_or_else(open, Ok)
                .and_then(|c| {
                    c.execute(
                        "UPDATE cu_lease SET expires_ms = 0 WHERE id = 1 AND owner = ?1 AND token = ?2",
                        args![&lease.owner, lease.token],
                    )
                    .map_err(|e| StoreError::db("releasing the store lease", e))
                });
            match released {
                Ok(_) => tracing::info!(owner = %lease.owner, token = lease.token, "released the store lease"),
                Err(e) => tracing::warn!("could not release the store lease (it expires by itself): {e}"),
            }
        })
}

/// Stops the renewal thread (which then releases the lease).
pub(crate) fn stop(lease: &LeaseState) {
    *lease.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
    lease.wake.notify_all();
}
