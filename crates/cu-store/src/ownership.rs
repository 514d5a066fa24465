//! Process ownership: in a cluster of nodes on one PostgreSQL database, every process is owned by one node
//! at a time, through a lease with a fencing token (table `cu_owner`, one row per process).
//!
//! - [`Ownership::claim`] takes a process whose lease is free (never taken, released, or expired in the
//!   database server's clock) with the next token, keeps one this node holds, or names the node that holds
//!   it and the URL it advertised, so a request can be forwarded there.
//! - A renewal thread extends every lease of this node in one statement every third of the time to live;
//!   a lease missing from its answer (taken over while this node was paused) is *lost*: it is dropped here
//!   and the [`Ownership::on_lost`] callback runs (the node forgets what it cached of that process).
//! - **Fencing**: every write of the store that touches a process first reads that process's lease row
//!   `FOR SHARE` in the same transaction and checks that node and token are still this node's
//!   ([`StoreError::Fenced`] otherwise). The share lock lasts until the commit, so a takeover (an `UPDATE`
//!   of the row) either waits for the write or comes first and fails it: a node that lost a process can
//!   never write a log entry, an assignment, a result or a checkpoint of it again.
//! - [`Ownership::release`] hands a process back (it is dropped here first, so no later write passes the
//!   fence, then the row's expiry is set to the past, which waits for the writes in flight); a store that
//!   is dropped releases all it holds.
//!
//! A node's name in the table is its operator-given name with its start time and process id
//! (`node-a@1733630000000.4242`): a node that restarts under the same name is a new owner with new tokens,
//! so the writes of a frozen earlier incarnation stay fenced off.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::{Conn, args};
use crate::error::StoreError;
use crate::lease::{NOW_MS, ttl_ms};

/// How a store takes part in process ownership (PostgreSQL only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipOptions {
    /// This node's name (the operator's; the store adds its start time and process id).
    pub node: String,
    /// Where other nodes forward the requests of the processes this node owns (its HTTP base URL).
    pub url: String,
    /// How long a lease lasts without renewal: a crashed node's processes move after it.
    pub ttl: Duration,
}

/// The answer of [`Ownership::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the process.
    Held {
        /// The fencing token of this tenure.
        token: i64,
        /// Whether the lease was taken now (this node did not hold it just before): whatever the node kept
        /// of the process from an earlier tenure may be stale.
        fresh: bool,
    },
    /// Another node owns it.
    Other {
        /// That node's name.
        node: String,
        /// The URL it advertised.
        url: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    /// When the lease was taken (renewals only judge the leases taken before they began).
    claimed: Instant,
    /// Until when this node may act as owner without asking the database again (its last confirmed
    /// renewal's start plus the time to live, less a margin for the clocks' rates).
    valid_until: Instant,
}

type LostCallback = Box<dyn Fn(&str) + Send + Sync>;

/// This node's process leases (see the module documentation).
pub struct Ownership {
    node: String,
    url: String,
    ttl: Duration,
    db: PathBuf,
    held: Mutex<HashMap<String, Held>>,
    /// The last token of each process this node held and lost or released (for the fencing error).
    gone: Mutex<HashMap<String, i64>>,
    /// The processes whose lease row the writer's current transaction has share-locked, while it runs a
    /// group on its fast path (no savepoints, so each lock lasts to the commit and one check per process
    /// and transaction is enough); `None` otherwise (every write checks).
    locked: Mutex<Option<HashSet<String>>>,
    conn: Mutex<Option<Conn>>,
    open: Box<dyn Fn() -> Result<Conn, StoreError> + Send + Sync>,
    on_lost: OnceLock<LostCallback>,
    stop: Mutex<Option<Stop>>,
    wake: Condvar,
}

/// How the renewal thread stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Release every lease (a clean stop).
    Release,
    /// Just stop renewing, as a crashed node does (tests).
    #[cfg(test)]
    Abandon,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("node", &self.node)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Ownership {
    pub(crate) fn new(
        options: &OwnershipOptions,
        db: PathBuf,
        open: Box<dyn Fn() -> Result<Conn, StoreError> + Send + Sync>,
    ) -> Result<Arc<Ownership>, StoreError> {
        if options.node.is_empty() || options.url.is_empty() {
            return Err(StoreError::Config {
                reason: "process ownership needs this node's name and its advertised URL".into(),
            });
        }
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let conn = open()?;
        Ok(Arc::new(Ownership {
            node: format!("{}@{started}.{}", options.node, std::process::id()),
            url: options.url.trim_end_matches('/').to_string(),
            ttl: options.ttl.max(Duration::from_millis(10)),
            db,
            held: Mutex::new(HashMap::new()),
            gone: Mutex::new(HashMap::new()),
            locked: Mutex::new(None),
            conn: Mutex::new(Some(conn)),
            open,
            on_lost: OnceLock::new(),
            stop: Mutex::new(None),
            wake: Condvar::new(),
        }))
    }

    /// This node's name in the lease table (the operator's name with start time and process id).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The URL this node advertises to the others.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The leases' time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Sets what runs when a lease is lost or released (once; a second call is ignored).
    pub fn on_lost(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_lost.set(Box::new(f));
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node holds `process`'s lease, as far as it knows without asking the database.
    pub fn holds(&self, process: &str) -> bool {
        self.held()
            .get(process)
            .is_some_and(|h| Instant::now() < h.valid_until)
    }

    /// The processes this node holds.
    pub fn held_processes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.held().keys().cloned().collect();
        v.sort();
        v
    }

    /// How long this node has held `process`'s lease (in this tenure), if it holds it.
    pub fn tenure(&self, process: &str) -> Option<Duration> {
        self.held().get(process).map(|h| h.claimed.elapsed())
    }

    /// Up to `limit` processes whose lease ran out without being released (their node crashed or was
    /// cut off), oldest expiry first: work for the living nodes.
    pub fn orphaned(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn("listing processes whose lease ran out", |c| {
            c.query(
                &format!(
                    "SELECT process_id FROM cu_owner WHERE expires_ms > 0 AND expires_ms < {NOW_MS} \
                     ORDER BY expires_ms LIMIT ?1"
                ),
                args![limit],
                |r| r.text(0),
            )
        })
    }

    /// The margin kept before a lease's expiry: this node stops acting as owner that long before.
    fn margin(&self) -> Duration {
        self.ttl / 5
    }

    fn with_conn<T>(
        &self,
        what: &str,
        f: impl Fn(&Conn) -> Result<T, crate::db::DbError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match guard.take() {
            Some(c) if !c.is_closed() => guard.insert(c),
            _ => guard.insert((self.open)()?),
        };
        f(conn).map_err(|e| StoreError::db(format!("{what} (database {})", self.db.display()), e))
    }

    /// Takes `process`'s lease if it is free, keeps it if this node holds it, or names its owner.
    pub fn claim(&self, process: &str) -> Result<Claim, StoreError> {
        if let Some(h) = self.held().get(process)
            && Instant::now() < h.valid_until
        {
            return Ok(Claim::Held {
                token: h.token,
                fresh: false,
            });
        }
        // Held by a live other node: answered from a plain read, without the upsert (which would lock the
        // row and so wait for the owner's write transactions).
        if let Some((node, url, true)) = self.owner(process)?
            && node != self.node
        {
            return Ok(Claim::Other { node, url });
        }
        let started = Instant::now();
        let ttl = ttl_ms(self.ttl);
        let taken = self.with_conn(&format!("claiming process {process}"), |c| {
            c.query_opt(
                &format!(
                    "INSERT INTO cu_owner (process_id, node, url, token, expires_ms) \
                     VALUES (?1, ?2, ?3, 1, {NOW_MS} + ?4) \
                     ON CONFLICT (process_id) DO UPDATE SET node = excluded.node, url = excluded.url, \
                     token = CASE WHEN cu_owner.node = excluded.node THEN cu_owner.token \
                     ELSE cu_owner.token + 1 END, expires_ms = excluded.expires_ms \
                     WHERE cu_owner.node = excluded.node OR cu_owner.expires_ms < {NOW_MS} RETURNING token"
                ),
                args![process, &self.node, &self.url, ttl],
                |r| r.int(0),
            )
        })?;
        if let Some(token) = taken {
            let mut held = self.held();
            let fresh = held.get(process).is_none_or(|h| h.token != token);
            held.insert(
                process.to_string(),
                Held {
                    token,
                    claimed: started,
                    valid_until: started + self.ttl.saturating_sub(self.margin()),
                },
            );
            self.gone().remove(process);
            if fresh {
                tracing::info!(process, token, node = %self.node, "took the lease of a process");
            }
            return Ok(Claim::Held { token, fresh });
        }
        match self.owner(process)? {
            Some((node, url, _)) => Ok(Claim::Other { node, url }),
            // Released between the two statements: try again.
            None => self.claim(process),
        }
    }

    /// `process`'s lease row: its node, its URL, and whether it is live (not expired).
    fn owner(&self, process: &str) -> Result<Option<(String, String, bool)>, StoreError> {
        self.with_conn(&format!("reading the owner of process {process}"), |c| {
            c.query_opt(
                &format!(
                    "SELECT node, url, CASE WHEN expires_ms > {NOW_MS} THEN 1 ELSE 0 END FROM cu_owner \
                     WHERE process_id = ?1"
                ),
                args![process],
                |r| Ok((r.text(0)?, r.text(1)?, r.int(2)? != 0)),
            )
        })
    }

    /// Hands `process` back: no write of it passes the fence from now on, and another node may take it
    /// at once. Returns whether this node held it.
    pub fn release(&self, process: &str) -> Result<bool, StoreError> {
        let Some(h) = self.held().remove(process) else {
            return Ok(false);
        };
        self.lost(process, h.token);
        self.with_conn(&format!("releasing process {process}"), |c| {
            c.execute(
                "UPDATE cu_owner SET expires_ms = 0 WHERE process_id = ?1 AND node = ?2 AND token = ?3",
                args![process, &self.node, h.token],
            )
        })?;
        tracing::info!(process, token = h.token, "released the lease of a process");
        Ok(true)
    }

    fn gone(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.gone.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lost(&self, process: &str, token: i64) {
        self.gone().insert(process.to_string(), token);
        if let Some(f) = self.on_lost.get() {
            f(process);
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Option<HashSet<String>>> {
        self.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer starts a group on its fast path (one transaction, no savepoints).
    pub(crate) fn begin_group(&self) {
        *self.locked() = Some(HashSet::new());
    }

    /// The writer's fast-path group ended (committed or rolled back).
    pub(crate) fn end_group(&self) {
        *self.locked() = None;
    }

    /// The fencing check of a write transaction (see the module documentation): each process must be
    /// held by this node, with its token, in the database.
    pub(crate) fn check(&self, conn: &Conn, processes: &[&str]) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for &process in processes {
            if !seen.insert(process) {
                continue;
            }
            let Some(h) = self.held().get(process).copied() else {
                let token = self.gone().get(process).copied();
                return Err(self.fenced(process, token));
            };
            if self.locked().as_ref().is_some_and(|l| l.contains(process)) {
                continue;
            }
            let ok = conn
                .exists(
                    "SELECT 1 FROM cu_owner WHERE process_id = ?1 AND node = ?2 AND token = ?3 FOR SHARE",
                    args![process, &self.node, h.token],
                )
                .map_err(|e| {
                    StoreError::db(
                        format!(
                            "checking the lease of process {process} (database {})",
                            self.db.display()
                        ),
                        e,
                    )
                })?;
            if !ok {
                self.drop_lost(process, h.token);
                return Err(self.fenced(process, Some(h.token)));
            }
            if let Some(locked) = self.locked().as_mut() {
                locked.insert(process.to_string());
            }
        }
        Ok(())
    }

    fn fenced(&self, process: &str, token: Option<i64>) -> StoreError {
        StoreError::NotOwner {
            process: process.to_string(),
            node: self.node.clone(),
            token,
        }
    }

    /// Drops a lease found lost (if it is still the one with `token`) and runs the callback.
    fn drop_lost(&self, process: &str, token: i64) {
        let removed = {
            let mut held = self.held();
            match held.get(process) {
                Some(h) if h.token == token => held.remove(process).is_some(),
                _ => false,
            }
        };
        if removed {
            tracing::warn!(process, token, node = %self.node, "lost the lease of a process to another node");
            self.lost(process, token);
        }
    }

    /// One renewal round: extends every lease of this node; drops the ones the database no longer gives
    /// this node (taken before the round began).
    fn renew(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let ttl = ttl_ms(self.ttl);
        let rows = self.with_conn("renewing process leases", |c| {
            c.query(
                &format!(
                    "UPDATE cu_owner SET expires_ms = {NOW_MS} + ?2 WHERE node = ?1 AND expires_ms > 0 \
                     RETURNING process_id, token"
                ),
                args![&self.node, ttl],
                |r| Ok((r.text(0)?, r.int(1)?)),
            )
        })?;
        let renewed: HashMap<String, i64> = rows.into_iter().collect();
        let mut lost = Vec::new();
        {
            let mut held = self.held();
            for (process, h) in held.iter_mut() {
                match renewed.get(process) {
                    Some(&token) if token == h.token => {
                        h.valid_until = started + self.ttl.saturating_sub(self.margin());
                    }
                    _ if h.claimed >= started => {}
                    _ => lost.push((process.clone(), h.token)),
                }
            }
        }
        for (process, token) in lost {
            self.drop_lost(&process, token);
        }
        Ok(())
    }

    /// Releases every lease this node holds (at a clean stop).
    fn release_all(&self) {
        let processes: Vec<String> = self.held().keys().cloned().collect();
        for p in processes {
            if let Err(e) = self.release(&p) {
                tracing::warn!(process = %p, "could not release a process lease (it expires by itself): {e}");
            }
        }
    }
}

impl crate::Store {
    /// The outbox item `item` of `process`'s result at `pos`, signed for a target another node owns: the
    /// first one kept (by [`Store::keep_signed_outbox_item`]), so that every try hands over the same item
    /// (the same id, which the target's scheduler schedules once).
    pub fn keep_signed_outbox_item(
        &self,
        process: &str,
        pos: u64,
        item: &str,
        raw: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let pos_i = i64::try_from(pos).map_err(|_| StoreError::Config {
            reason: format!("log position {pos} does not fit"),
        })?;
        let (pid, key, bytes) = (process.to_string(), item.to_string(), raw.to_vec());
        let fence = self.fence();
        let ctx = self.ctx(format_args!("keeping outbox item {item} of {process}/{pos}"));
        self.submit_wait(|done| {
            crate::writer::Job::single(
                Box::new(move |conn| {
                    fence.check(conn, [pid.as_str()])?;
                    conn.execute(
                        "INSERT INTO cu_outbox_signed (process_id, pos, item, raw) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT DO NOTHING",
                        args![&pid, pos_i, &key, bytes.as_slice()],
                    )
                    .map(|_| ())
                    .map_err(|e| StoreError::db(ctx.clone(), e))
                }),
                done,
            )
        })?;
        self.read(|conn| {
            conn.query_opt(
                "SELECT raw FROM cu_outbox_signed WHERE process_id = ?1 AND pos = ?2 AND item = ?3",
                args![process, pos_i, item],
                |r| r.bytes(0),
            )
            .map_err(|e| {
                StoreError::db(
                    self.ctx(format_args!("reading outbox item {item} of {process}")),
                    e,
                )
            })
        })?
        .ok_or_else(|| StoreError::Config {
            reason: format!("outbox item {item} of {process}/{pos} was not kept"),
        })
    }
}

/// Runs the renewal rounds until [`stop`]; then releases every lease.
pub(crate) fn spawn_renewal(ownership: Arc<Ownership>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cu-store-owner".into())
        .spawn(move || {
            let stop = loop {
                {
                    let stop = ownership.stop.lock().unwrap_or_else(|p| p.into_inner());
                    let (stop, _) = ownership
                        .wake
                        .wait_timeout_while(stop, ownership.ttl / 3, |stop| stop.is_none())
                        .unwrap_or_else(|p| p.into_inner());
                    if let Some(how) = *stop {
                        break how;
                    }
                }
                if let Err(e) = ownership.renew() {
                    tracing::warn!(node = %ownership.node, "renewing process leases failed: {e}");
                }
            };
            if stop == Stop::Release {
                ownership.release_all();
            }
        })
}

/// Stops the renewal thread (which then releases every lease, for [`Stop::Release`]).
pub(crate) fn stop(ownership: &Ownership, how: Stop) {
    *ownership.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(how);
    ownership.wake.notify_all();
}
