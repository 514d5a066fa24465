//! Network mode: computing processes a remote Scheduler Unit schedules (`ao-cu serve --roles cu
//! --gateway URL`), read the way the reference CU reads them (`reference/ao-cu.md` §2.2–2.7).
//!
//! A process this node does not schedule is looked up upstream on its first read: its SU is located
//! through the gateway's `Scheduler-Location` records (or a pinned SU URL), the process is read from the
//! SU, its module from the gateway (`/raw/:id` + GraphQL tags, kept in the store and the AOT cache), and
//! its schedule page by page. Every slot is checked before anything is stored: the assignment's tags,
//! the nonce following the last one, the hash chain (for processes from block height 1,440,000 on, as
//! the reference), and assigned messages are hydrated from the gateway. Each page commits in one
//! transaction with the cursor it reached (`upstream` table), so a restart resumes where it stopped and a
//! failed page leaves nothing half-stored; a break in the schedule stops the sync at the break with a
//! clear 422, and the engine never evaluates past it.
//!
//! A new remote process may instead begin from the newest trusted Arweave checkpoint of it
//! ([`crate::checkpoints`]): its memory is adopted and the schedule is read after the checkpoint's nonce.
//!
//! Reads (`/result`, `/results`, `/dry-run`, `/state`) sync lazily; a background thread keeps every
//! remote process caught up. Upstream failures answer 503 (unreachable) or 502 (a bad answer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cu_store::schedule::{ScheduleBatch, ScheduledEntry, UpstreamCursor};
use cu_store::{LogEntry, ModuleRecord, ProcessRecord, Tag};
use cu_upstream::chain::{CHAIN_FROM_HEIGHT, ChainLink, check_link};
use cu_upstream::wire::{Scheduled, SuProcess, tag};
use cu_upstream::{Upstream, UpstreamConfig, UpstreamError, msg};

use crate::error::NodeError;
use crate::node::{Node, check_limits};

/// How a node reads the network.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The gateway and SU clients.
    pub upstream: UpstreamConfig,
    /// Background catch-up interval of every remote process; `None`: only on reads.
    pub poll: Option<Duration>,
    /// A read within this long of the last sync of its process does not ask the SU again.
    pub fresh_for: Duration,
    /// Cold-start new remote processes from Arweave checkpoints ([`crate::checkpoints`]); `None`: always
    /// compute from the start of the schedule.
    pub checkpoints: Option<crate::CheckpointColdStart>,
}

impl Network {
    /// The upstream clients.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

impl From<UpstreamError> for NodeError {
    fn from(e: UpstreamError) -> Self {
        match e.status() {
            404 => NodeError::NotFound(e.to_string()),
            422 => NodeError::Unprocessable(e.to_string()),
            502 => NodeError::BadGateway(e.to_string()),
            503 => NodeError::Unavailable(e.to_string()),
            _ => NodeError::Internal(e.to_string()),
        }
    }
}

/// Counters of the upstream reads (on `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct NetworkStats {
    pub(crate) pages: AtomicU64,
    pub(crate) slots: AtomicU64,
    pub(crate) failures: AtomicU64,
}

/// The node's network side.
pub(crate) struct Network {
    upstream: Upstream,
    poll: Option<Duration>,
    fresh_for: Duration,
    checkpoints: Option<crate::CheckpointColdStart>,
    /// One sync at a time per process.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// When each process was last synced to the end of its schedule.
    synced: Mutex<HashMap<String, Instant>>,
    pub(crate) stats: NetworkStats,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig) -> Result<Network, NodeError> {
        Ok(Network {
            upstream: Upstream::new(config.upstream)?,
            poll: config.poll,
            fresh_for: config.fresh_for,
            checkpoints: config.checkpoints,
            locks: Mutex::default(),
            synced: Mutex::default(),
            stats: NetworkStats::default(),
        })
    }

    fn lock_for(&self, pid: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(pid.to_owned()).or_default().clone()
    }

    fn is_fresh(&self, pid: &str) -> bool {
        let synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        synced.get(pid).is_some_and(|t| t.elapsed() < self.fresh_for)
    }

    fn mark_synced(&self, pid: &str) {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if synced.len() > 100_000 {
            synced.clear();
        }
        synced.insert(pid.to_owned(), Instant::now());
    }
}

/// Where checked edges go.
#[derive(Clone, Copy)]
struct Edges<'a> {
    pid: &'a str,
    su_url: &'a str,
    /// Check the hash chain.
    chained: bool,
    /// A cold start that does not begin with the process itself: prepend its boot message.
    boot: Option<&'a SuProcess>,
}

/// When a read asks upstream first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh<'a> {
    /// Unless the process was synced within `fresh_for`.
    IfStale,
    /// Unless this message is already in the local log.
    UnlessKnown(&'a str),
}

fn schedule_error(e: impl std::fmt::Display) -> NodeError {
    NodeError::BadGateway(format!("the SU served a malformed slot: {e}"))
}

impl Node {
    /// Whether `pid` is computed from a remote SU (or would be: network mode on and not a process of
    /// this node's own scheduler or of hbu).
    fn is_remote(&self, pid: &str) -> Result<bool, NodeError> {
        if self.inner.network.is_none() {
            return Ok(false);
        }
        let reads = self.inner.scheduler.reads();
        Ok(reads.upstream_cursor(pid)?.is_some() || self.inner.store.process(pid)?.is_none())
    }

    /// Brings a remote process's log up to its SU's schedule before a read (see [`Refresh`]); a
    /// no-op for local processes and outside network mode. Runs the blocking reads off the async
    /// worker.
    pub(crate) async fn refresh_remote(&self, pid: &str, when: Refresh<'_>) -> Result<(), NodeError> {
        let Some(net) = &self.inner.network else {
            return Ok(());
        };
        if when == Refresh::IfStale && net.is_fresh(pid) {
            return Ok(());
        }
        let node = self.clone();
        let pid = pid.to_owned();
        let known = match when {
            Refresh::UnlessKnown(m) => Some(m.to_owned()),
            Refresh::IfStale => None,
        };
        tokio::task::spawn_blocking(move || {
            if !node.is_remote(&pid)? {
                return Ok(());
            }
            let Some(m) = known else {
                return node.sync_remote(&pid).map(|_| ());
            };
            if node.inner.store.log_entry_by_message(&pid, &m)?.is_some() {
                return Ok(());
            }
            match node.sync_remote(&pid) {
                // The sync stopped later in the schedule (a break, an unreachable SU) but brought
                // this message: its result stands on verified slots.
                Err(_) if node.inner.store.log_entry_by_message(&pid, &m)?.is_some() => Ok(()),
                other => other.map(|_| ()),
            }
        })
        .await
        .map_err(|e| NodeError::Internal(format!("the upstream sync task failed: {e}")))?
    }

    /// Where `pid`'s schedule ends, as `<nonce>:<timestamp or cursor>:<assignment id>` (the dry-run
    /// cache key: a dry-run evaluates on the state after it). A remote process is synced first (unless
    /// fresh) and answered from its upstream cursor; a local one from its latest assignment.
    pub async fn schedule_position(&self, pid: &str) -> Result<String, NodeError> {
        self.refresh_remote(pid, Refresh::IfStale).await?;
        let node = self.clone();
        let pid = pid.to_owned();
        tokio::task::spawn_blocking(move || {
            if let Some(c) = node.inner.scheduler.reads().upstream_cursor(&pid)? {
                return Ok(format!("{}:{}:{}", c.nonce, c.cursor, c.assignment_id));
            }
            let latest = node
                .inner
                .scheduler
                .latest(&pid)?
                .ok_or_else(|| NodeError::NotFound(format!("Process {pid} not found")))?;
            Ok(format!(
                "{}:{}:{}",
                latest.nonce, latest.timestamp, latest.assignment_id
            ))
        })
        .await
        .map_err(|e| NodeError::Internal(format!("the schedule position task failed: {e}")))?
    }

    /// The blocking form of [`Node::refresh_remote`] with [`Refresh::IfStale`], for sync reads.
    pub(crate) fn refresh_remote_blocking(&self, pid: &str) -> Result<(), NodeError> {
        match &self.inner.network {
            Some(net) if !net.is_fresh(pid) && self.is_remote(pid)? => self.sync_remote(pid).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Reads the remote schedule of `pid` from where this node stopped to its end, checks and appends
    /// it (one transaction per page) and wakes the engine; returns the slots appended. The first time,
    /// the process and its module are read too. Blocking.
    pub fn sync_remote(&self, pid: &str) -> Result<u64, NodeError> {
        let Some(net) = &self.inner.network else {
            return Err(NodeError::NotFound(format!("Process {pid} was not found")));
        };
        let lock = net.lock_for(pid);
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let out = self.sync_locked(net, pid);
        match &out {
            Ok(_) => net.mark_synced(pid),
            Err(e) => {
                net.stats.failures.fetch_add(1, Relaxed);
                tracing::warn!(process = %pid, error = %e, "upstream sync");
            }
        }
        out
    }

    fn sync_locked(&self, net: &Network, pid: &str) -> Result<u64, NodeError> {
        let store = &self.inner.store;
        let mut cursor = self.inner.scheduler.reads().upstream_cursor(pid)?;
        let (su_url, chained, mut fresh) = match &cursor {
            Some(c) => {
                let height = store.process(pid)?.map_or(u64::MAX, |p| p.block_height);
                (c.su_url.clone(), height >= CHAIN_FROM_HEIGHT, None)
            }
            None => {
                if store.process(pid)?.is_some() {
                    // Scheduled here, or through hbu: not read from an SU.
                    return Ok(0);
                }
                let su_url = net.upstream.locate(pid)?;
                let process = net.upstream.process(&su_url, pid)?;
                let record = self.remote_process_record(net, &process)?;
                (
                    su_url,
                    process.block >= CHAIN_FROM_HEIGHT,
                    Some((process, record)),
                )
            }
        };
        // A new remote process may start from a trusted checkpoint instead of its first slot.
        let mut adopted = None;
        if let (Some((_, record)), Some(config)) = (&fresh, &net.checkpoints)
            && let Some((mark, tags)) =
                self.cold_start_from_checkpoint(net.upstream.gateway(), config, record)?
        {
            cursor = Some(crate::checkpoints::resume_cursor(&su_url, pid, &tags));
            adopted = Some(mark);
        }
        let from_checkpoint = adopted.is_some();
        let mut link = cursor.as_ref().and_then(|c| {
            Some(ChainLink {
                assignment_id: c.assignment_id.clone(),
                hash_chain: c.hash_chain.clone()?,
            })
        });
        let mut pos = store.last_pos(pid)?;
        let mut appended = 0;
        loop {
            let page = net
                .upstream
                .page(&su_url, pid, cursor.as_ref().map(|c| c.cursor.as_str()))?;
            net.stats.pages.fetch_add(1, Relaxed);
            let boot = fresh.as_ref().filter(|_| !from_checkpoint).map(|(p, _)| p);
            let (entries, next, broken) = self.check_edges(
                net,
                Edges {
                    pid,
                    su_url: &su_url,
                    chained,
                    boot,
                },
                &page.edges,
                cursor.as_ref(),
                &mut link,
                &mut pos,
            );
            let count = entries.len() as u64;
            if count > 0 || adopted.is_some() {
                store.commit_schedule(ScheduleBatch {
                    process: fresh.take().map(|(_, record)| record),
                    entries,
                    upstream: next.clone().into_iter().collect(),
                    adopted: adopted.take(),
                    ..Default::default()
                })?;
                appended += count;
                net.stats.slots.fetch_add(count, Relaxed);
                let _ = self.inner.engine.advance(pid);
                self.inner.bells.ring(pid);
            }
            if let Some(e) = broken {
                return Err(e);
            }
            let progressed = next != cursor;
            cursor = next;
            if !page.page_info.has_next_page || !progressed {
                break;
            }
        }
        Ok(appended)
    }

    /// Checks `edges` in order after `last` (the stored cursor) and builds their log entries (from
    /// `pos` on); returns the entries, the cursor after the last good one, and the error that stopped
    /// the check early, if one did (the entries before it stand on verified slots).
    #[allow(clippy::too_many_arguments)]
    fn check_edges(
        &self,
        net: &Network,
        at: Edges<'_>,
        edges: &[cu_upstream::wire::SuEdge],
        last: Option<&UpstreamCursor>,
        link: &mut Option<ChainLink>,
        pos: &mut u64,
    ) -> (Vec<ScheduledEntry>, Option<UpstreamCursor>, Option<NodeError>) {
        let pid = at.pid;
        let mut entries = Vec::new();
        let mut next = last.cloned();
        for edge in edges {
            let (s, msg_json) =
                match self.check_slot(net, pid, edge, next.as_ref(), link.as_ref(), at.chained) {
                    Ok(Some(slot)) => slot,
                    Ok(None) => continue,
                    Err(e) => return (entries, next, Some(e)),
                };
            if let Some(process) = at.boot
                && entries.is_empty()
                && !starts_with_process(&s, pid)
            {
                *pos += 1;
                match self.boot_entry(net, process, *pos) {
                    Ok(e) => entries.push(e),
                    Err(e) => return (Vec::new(), last.cloned(), Some(e)),
                }
            }
            *pos += 1;
            entries.push(ScheduledEntry {
                entry: LogEntry {
                    process_id: pid.to_owned(),
                    pos: *pos,
                    message_id: Some(s.message_id().to_owned()),
                    nonce: Some(s.nonce),
                    timestamp: s.timestamp,
                    block_height: s.block_height,
                    cron: None,
                    msg_json,
                },
                schedule: None,
            });
            *link = ChainLink::of(&s);
            next = Some(UpstreamCursor {
                process_id: pid.to_owned(),
                su_url: at.su_url.to_owned(),
                cursor: s.cursor.clone(),
                nonce: s.nonce,
                assignment_id: s.assignment_id.clone(),
                hash_chain: s.hash_chain.clone(),
            });
        }
        (entries, next, None)
    }

    /// Where a pushed schedule (a QUIC subscription) of remote process `pid` resumes: its SU's URL
    /// and the first nonce not stored. `None` until the process was first read over HTTP (its
    /// process record, module and first page), or for a process not computed from an SU.
    pub fn remote_resume_point(&self, pid: &str) -> Result<Option<(String, u64)>, NodeError> {
        if self.inner.network.is_none() {
            return Ok(None);
        }
        Ok(self
            .inner
            .scheduler
            .reads()
            .upstream_cursor(pid)?
            .map(|c| (c.su_url, c.nonce + 1)))
    }

    /// The remote processes this node computes (network mode).
    pub fn remote_processes(&self) -> Result<Vec<String>, NodeError> {
        if self.inner.network.is_none() {
            return Ok(Vec::new());
        }
        Ok(self.inner.scheduler.reads().upstream_processes()?)
    }

    /// Appends slots of remote process `pid` pushed by its SU (a QUIC subscription), checked exactly
    /// as a page read over HTTP is (order, assignment tags, hash chain, hydration) and committed in
    /// one transaction with the cursor; returns the slots appended. Slots already stored are skipped;
    /// a gap or a break stores the good slots before it and answers the error. Blocking.
    pub fn apply_remote_slots(
        &self,
        pid: &str,
        edges: &[cu_upstream::wire::SuEdge],
    ) -> Result<u64, NodeError> {
        let Some(net) = &self.inner.network else {
            return Err(NodeError::NotFound(format!("Process {pid} was not found")));
        };
        let lock = net.lock_for(pid);
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let store = &self.inner.store;
        let cursor = self
            .inner
            .scheduler
            .reads()
            .upstream_cursor(pid)?
            .ok_or_else(|| {
                NodeError::Unprocessable(format!("process {pid} has not been read from its SU yet"))
            })?;
        let chained = store.process(pid)?.map_or(u64::MAX, |p| p.block_height) >= CHAIN_FROM_HEIGHT;
        let mut link = cursor.hash_chain.clone().map(|hash_chain| ChainLink {
            assignment_id: cursor.assignment_id.clone(),
            hash_chain,
        });
        let mut pos = store.last_pos(pid)?;
        let (entries, next, broken) = self.check_edges(
            net,
            Edges {
                pid,
                su_url: &cursor.su_url,
                chained,
                boot: None,
            },
            edges,
            Some(&cursor),
            &mut link,
            &mut pos,
        );
        let count = entries.len() as u64;
        if count > 0 {
            store.commit_schedule(ScheduleBatch {
                entries,
                upstream: next.into_iter().collect(),
                ..Default::default()
            })?;
            net.stats.slots.fetch_add(count, Relaxed);
            let _ = self.inner.engine.advance(pid);
            self.inner.bells.ring(pid);
        }
        match broken {
            Some(e) => {
                net.stats.failures.fetch_add(1, Relaxed);
                Err(e)
            }
            None => Ok(count),
        }
    }

    /// A pushed schedule reached the end of what its SU has scheduled: reads need not ask the SU.
    pub fn mark_remote_caught_up(&self, pid: &str) {
        if let Some(net) = &self.inner.network {
            net.mark_synced(pid);
        }
    }

    /// Checks one edge against what came before it: `None` for a slot already appended (pages may
    /// overlap), else the slot and its msg.
    fn check_slot(
        &self,
        net: &Network,
        pid: &str,
        edge: &cu_upstream::wire::SuEdge,
        last: Option<&UpstreamCursor>,
        link: Option<&ChainLink>,
        chained: bool,
    ) -> Result<Option<(Scheduled, String)>, NodeError> {
        let s = Scheduled::from_edge(edge).map_err(schedule_error)?;
        if s.process_id != pid {
            return Err(schedule_error(format!(
                "assignment {} is for process {}",
                s.assignment_id, s.process_id
            )));
        }
        if let Some(last) = last {
            if s.nonce <= last.nonce {
                return Ok(None);
            }
            if s.nonce != last.nonce + 1 {
                return Err(NodeError::Unprocessable(format!(
                    "the schedule of process {pid} has a gap: slot {} follows slot {}",
                    s.nonce, last.nonce
                )));
            }
        }
        if chained {
            check_link(link, &s)?;
        }
        let message = match &s.message {
            Some(m) => m.clone(),
            None => net.upstream.hydrate(s.message_id(), &s.exclude)?,
        };
        let msg_json = msg::slot_msg(&s, &message);
        Ok(Some((s, msg_json)))
    }

    /// The aop-6 boot message (not an SU slot: no nonce), for a schedule that does not begin with the
    /// process itself.
    fn boot_entry(&self, net: &Network, p: &SuProcess, pos: u64) -> Result<ScheduledEntry, NodeError> {
        let data = net.upstream.gateway().raw(&p.process_id)?;
        Ok(ScheduledEntry {
            entry: LogEntry {
                process_id: p.process_id.clone(),
                pos,
                message_id: Some(p.process_id.clone()),
                nonce: None,
                timestamp: p.timestamp,
                block_height: p.block,
                cron: None,
                msg_json: msg::boot_msg(p, &String::from_utf8_lossy(&data)),
            },
            schedule: None,
        })
    }

    /// The process record of a remote process, with its module loaded (from the store, or the
    /// gateway) and its limits checked as the reference does.
    fn remote_process_record(&self, net: &Network, p: &SuProcess) -> Result<ProcessRecord, NodeError> {
        let module_id = tag(&p.tags, "Module").ok_or_else(|| {
            NodeError::BadGateway(format!("process {}: Tag 'Module': was not found", p.process_id))
        })?;
        let module = match self.inner.store.module(module_id)? {
            Some(m) => m,
            None => self.fetch_module(net, module_id)?,
        };
        let ptags: Vec<(String, String)> = p.tags.iter().map(|t| (t.name.clone(), t.value.clone())).collect();
        check_limits(&ptags, &module.tags, &self.inner.limits)?;
        let mtags: Vec<cu_upstream::wire::Tag> = module
            .tags
            .iter()
            .map(|t| cu_upstream::wire::Tag {
                name: t.name.clone(),
                value: t.value.clone(),
            })
            .collect();
        Ok(ProcessRecord {
            id: p.process_id.clone(),
            module_id: module.id.clone(),
            owner: p.owner.address_from(),
            tags: p
                .tags
                .iter()
                .map(|t| Tag {
                    name: t.name.clone(),
                    value: t.value.clone(),
                })
                .collect(),
            env_json: msg::env_json(p, &module.id, &module.owner, &mtags),
            block_height: p.block,
            timestamp: p.timestamp,
            spawn_json: String::new(),
        })
    }

    /// Reads a module from the gateway and stores it, checked as the reference's `loadModule` does
    /// (`Module-Format` supported, `Input-Encoding` and `Output-Encoding` present).
    fn fetch_module(&self, net: &Network, module_id: &str) -> Result<ModuleRecord, NodeError> {
        let (meta, wasm) = net.upstream.module(module_id)?;
        let format = tag(&meta.tags, "Module-Format").ok_or_else(|| {
            NodeError::Unprocessable(format!("module {module_id}: Tag 'Module-Format': was not found"))
        })?;
        let format = format
            .trim()
            .parse::<cu_types::ModuleFormat>()
            .map_err(|e| NodeError::Unprocessable(format!("module {module_id}: {e}")))?;
        for t in ["Input-Encoding", "Output-Encoding"] {
            if tag(&meta.tags, t).is_none() {
                return Err(NodeError::Unprocessable(format!(
                    "module {module_id}: Tag '{t}': was not found"
                )));
            }
        }
        let record = ModuleRecord {
            id: module_id.to_owned(),
            format: format.to_string(),
            owner: meta.owner.address_from(),
            owner_key: meta.owner.key.clone(),
            tags: meta
                .tags
                .iter()
                .map(|t| Tag {
                    name: t.name.clone(),
                    value: t.value.clone(),
                })
                .collect(),
            wasm,
        };
        self.inner.store.put_module(&record)?;
        Ok(record)
    }

    /// Starts the background catch-up of every remote process (network mode with a poll interval).
    pub(crate) fn start_catch_up(&self) -> Result<(), NodeError> {
        let Some(poll) = self.inner.network.as_ref().and_then(|n| n.poll) else {
            return Ok(());
        };
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cu-node-upstream".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(poll);
                    let Some(inner) = weak.upgrade() else { break };
                    let node = Node { inner };
                    let pids = match node.inner.scheduler.reads().upstream_processes() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "listing remote processes");
                            continue;
                        }
                    };
                    for pid in pids {
                        if node.inner.network.as_ref().is_some_and(|n| n.is_fresh(&pid)) {
                            continue;
                        }
                        // Failures are counted and logged by sync_remote; the next round retries.
                        let _ = node.sync_remote(&pid);
                    }
                }
            })
            .map_err(|e| NodeError::Internal(format!("cannot start the upstream thread: {e}")))?;
        Ok(())
    }

    /// Upstream counters, `(pages, slots, failures)`; zeros outside network mode.
    pub(crate) fn network_stats(&self) -> Option<(u64, u64, u64)> {
        self.inner.network.as_ref().map(|n| {
            (
                n.stats.pages.load(Relaxed),
                n.stats.slots.load(Relaxed),
                n.stats.failures.load(Relaxed),
            )
        })
    }
}

/// Whether the first slot of a cold start is the process itself (newer SUs schedule it as nonce 0);
/// otherwise the boot message is prepended, as the reference's `maybePrependProcessMessage` does.
fn starts_with_process(s: &Scheduled, pid: &str) -> bool {
    s.message
        .as_ref()
        .is_some_and(|m| m.id == pid || tag(&m.tags, "Type") == Some("Process"))
}
