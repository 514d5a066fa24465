//! Cluster mode: many nodes on one PostgreSQL store, each process owned by one node at a time
//! (`cu_store::ownership`), requests for a process served by its owner.
//!
//! - [`Node::route`] says where a process is served: here (this node holds its lease, or just took it)
//!   or at the owner's advertised URL. The HTTP layer forwards requests that land on a non-owner; the
//!   outbox hands messages for a process owned elsewhere to its owner's MU.
//! - A lease taken now (`fresh`) means another node may have scheduled and evaluated the process since
//!   this node last did: what the scheduler and the engine kept of it is dropped first, so the process is
//!   read again from the shared store (its log, its newest checkpoint), and its outbox is queued for
//!   delivery (a previous owner that died mid-delivery leaves the rest to this one).
//! - A lease lost (taken over while this node was paused) or released drops the same state, on a thread
//!   of its own: the callback runs on the store's writer thread, which must never wait for the scheduler.
//! - [`Node::hand_over`] gives a process to another node (rebalancing): its newest state is checkpointed
//!   so the next owner restores it instead of replaying its log, then the lease is released.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use cu_store::Claim;

use crate::error::NodeError;
use crate::node::{Inner, Node};

/// Where the requests of a process are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here: this node owns the process (or the node is not in a cluster).
    Local,
    /// At the node that owns it.
    Remote {
        /// The owner's name in the lease table.
        node: String,
        /// The URL it advertised.
        url: String,
    },
}

impl Node {
    /// Whether this node is one of a cluster's (its store was opened with process ownership).
    pub fn clustered(&self) -> bool {
        self.inner.store.ownership().is_some()
    }

    /// This node's name in the cluster's lease table, when it is in one.
    pub fn cluster_node(&self) -> Option<String> {
        self.inner.store.ownership().map(|o| o.node().to_string())
    }

    /// The time to live of this node's process leases, when it is in a cluster.
    pub fn cluster_ttl(&self) -> Option<std::time::Duration> {
        self.inner.store.ownership().map(|o| o.ttl())
    }

    /// Where `pid`'s requests are served: takes its lease when it is free (blocking: one database round
    /// trip unless this node already holds it).
    pub fn route(&self, pid: &str) -> Result<Route, NodeError> {
        let Some(ownership) = self.inner.store.ownership() else {
            return Ok(Route::Local);
        };
        match ownership.claim(pid)? {
            Claim::Held { fresh: false, .. } => Ok(Route::Local),
            Claim::Held { fresh: true, .. } => {
                // Whatever this node kept of the process may be stale: forget it before serving.
                self.inner.scheduler.forget(pid);
                if let Err(e) = self.inner.engine.forget(pid) {
                    // The engine could not take the command: hand the lease back rather than serve from
                    // stale state; the caller retries.
                    let _ = ownership.release(pid);
                    return Err(NodeError::Unavailable(format!(
                        "cannot take process {pid} over now: {e}"
                    )));
                }
                self.inner.cluster_moves.fetch_add(1, Relaxed);
                self.queue_outbox(pid);
                Ok(Route::Local)
            }
            Claim::Other { node, url } => Ok(Route::Remote { node, url }),
        }
    }

    /// [`Node::route`] for a request about a process that must exist already: an id the store does not
    /// know is served here (which answers 404) and no lease is taken for it.
    pub fn route_existing(&self, pid: &str) -> Result<Route, NodeError> {
        if self.clustered() && !self.owns(pid) && self.inner.store.process(pid)?.is_none() {
            return Ok(Route::Local);
        }
        self.route(pid)
    }

    /// Whether this node holds `pid`'s lease now (always, outside a cluster).
    pub(crate) fn owns(&self, pid: &str) -> bool {
        self.inner.store.ownership().is_none_or(|o| o.holds(pid))
    }

    /// Gives `pid` up so that another node can take it (the node a proxy sends its requests to, back
    /// after a restart): checkpoints its newest state (so the next owner restores it instead of
    /// replaying), then releases the lease. Refused (`false`) when this node does not hold it, or has held
    /// it for less than `min_tenure` (so a process does not bounce between nodes that disagree).
    pub fn hand_over(&self, pid: &str, min_tenure: std::time::Duration) -> Result<bool, NodeError> {
        let Some(ownership) = self.inner.store.ownership() else {
            return Ok(false);
        };
        if !ownership.holds(pid) || ownership.tenure(pid).is_none_or(|t| t < min_tenure) {
            return Ok(false);
        }
        if let Err(e) = self.inner.engine.checkpoint(pid) {
            tracing::warn!(process = pid, error = %e, "no checkpoint before handing the process over");
        }
        Ok(ownership.release(pid)?)
    }

    /// The processes this node owns now (empty outside a cluster).
    pub fn owned_processes(&self) -> Vec<String> {
        self.inner
            .store
            .ownership()
            .map(|o| o.held_processes())
            .unwrap_or_default()
    }

    /// How many processes this node took over from another node (or took back) since it started.
    pub fn cluster_moves(&self) -> u64 {
        self.inner.cluster_moves.load(Relaxed)
    }

    /// Starts the thread that forgets the processes whose leases this node lost or released.
    pub(crate) fn start_cluster(&self) -> Result<(), NodeError> {
        let Some(ownership) = self.inner.store.ownership() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cu-node-cluster".into())
            .spawn(move || {
                while let Ok(pid) = rx.recv() {
                    let Some(inner) = weak.upgrade() else { break };
                    forget(&inner, &pid);
                }
            })
            .map_err(|e| NodeError::Internal(format!("cannot start the cluster thread: {e}")))?;
        let tx = std::sync::Mutex::new(tx);
        ownership.on_lost(move |pid| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(pid.to_string());
            }
        });
        // Adopt the processes of crashed nodes, a few per round, so that their outboxes are delivered
        // even when no request names them.
        let weak = Arc::downgrade(&self.inner);
        let round = ownership.ttl() / 2;
        std::thread::Builder::new()
            .name("cu-node-adopt".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(round);
                    let Some(inner) = weak.upgrade() else { break };
                    let node = Node { inner };
                    node.adopt_orphans();
                }
            })
            .map_err(|e| NodeError::Internal(format!("cannot start the adoption thread: {e}")))?;
        Ok(())
    }

    /// One adoption round: takes up to 8 processes whose node's lease ran out.
    fn adopt_orphans(&self) {
        let Some(ownership) = self.inner.store.ownership() else {
            return;
        };
        match ownership.orphaned(8) {
            Ok(pids) => {
                for pid in pids {
                    if let Err(e) = self.route(&pid) {
                        tracing::warn!(process = %pid, error = %e, "adopting a process whose node is gone");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the processes of gone nodes"),
        }
    }
}

/// Drops what the scheduler and the engine keep of a process this node no longer owns.
fn forget(inner: &Inner, pid: &str) {
    inner.scheduler.forget(pid);
    if let Err(e) = inner.engine.forget(pid) {
        // It is dropped at the next fresh claim at the latest.
        tracing::warn!(process = pid, error = %e, "could not drop a process that moved away");
    }
}

/// The process a data item posted to the MU addresses, without verifying it: the spawned process for a
/// `Process` (with `true`: the item creates it), the target for a message; `None` for a module or an
/// item that does not parse (the MU answers those).
pub fn item_process(raw: &[u8]) -> Option<(String, bool)> {
    let item = cu_ans104::DataItem::parse(raw).ok()?;
    match crate::node::tag_of(item.tags(), "Type") {
        Some("Process") => Some((item.id(), true)),
        Some("Module") => None,
        _ => item.target().map(|t| (t, false)),
    }
}
