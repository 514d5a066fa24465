//! [`Scheduler`]: per-process nonces, timestamps, block heights, the hash chain, signed assignments and
//! interleaved cron messages, committed durably before a call returns.
//!
//! A process's lock is held while its next assignment is prepared and signed (each assignment's hash
//! chain follows from the previous one, so this part is serial per process) and while the batch is
//! queued at the store's writer; it is released before the commit is waited for, so the next message
//! of the process is signed while this one commits (and the writer commits both in one group). Until
//! its commit is known, a message is *pending*: a duplicate of it waits for that commit and answers the
//! same assignment. A commit that fails drops the process's in-memory state (it is reloaded from the
//! store); batches queued behind it fail too (their positions no longer follow), so nothing is stored
//! out of order and no slot is signed twice into the store.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cu_ans104::Wallet;
use cu_store::schedule::{DeliveryMark, ScheduleBatch, ScheduleReads, ScheduleRecord, ScheduledEntry};
use cu_store::{LogEntry, ProcessRecord, Store};
use serde_json::{Map, Value, json};

use crate::chain::{block_height, hash_chain};
use crate::cron::{Cron, Point, parse_crons, ticks};
use crate::error::SchedError;

/// What the scheduler assigned to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The process.
    pub process_id: String,
    /// The message id.
    pub message_id: String,
    /// Nonce (0 = the process itself).
    pub nonce: u64,
    /// Epoch (always 0).
    pub epoch: u64,
    /// Timestamp (ms), strictly increasing per process.
    pub timestamp: u64,
    /// Local block height of the timestamp.
    pub block_height: u64,
    /// The hash chain value.
    pub hash_chain: String,
    /// The assignment data item's id.
    pub assignment_id: String,
    /// Log position of the message.
    pub pos: u64,
}

/// The outcome of [`Scheduler::schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The assignment.
    pub assigned: Assigned,
    /// Cron messages appended before the message.
    pub crons: usize,
}

/// A message to schedule.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRequest {
    /// The process it is scheduled on.
    pub process_id: String,
    /// The message's id (the process id for a spawn).
    pub message_id: String,
    /// The message data item; `None` to assign a message stored earlier (an `Assignments` entry).
    pub message: Option<Vec<u8>>,
    /// For a spawn: the new process, created in the same transaction as its nonce 0 (its `timestamp`,
    /// `block_height` and `spawn_json` are set from the assignment).
    pub spawn: Option<ProcessRecord>,
    /// Outbox items this scheduling delivers (committed with it).
    pub delivered: Vec<DeliveryMark>,
}

#[derive(Debug, Clone)]
struct Last {
    nonce: u64,
    timestamp: u64,
    block_height: u64,
    hash_chain: String,
    assignment_id: String,
}

#[derive(Debug, Clone)]
struct ProcState {
    last: Option<Last>,
    pos: u64,
    cron_mark: u64,
    origin: Point,
    owner: String,
    crons: Vec<Cron>,
}

/// A message whose batch is queued at the writer, its commit not yet known.
#[derive(Debug)]
struct Pending {
    assigned: Assigned,
    outcome: Mutex<Option<Result<(), String>>>,
    known: Condvar,
}

impl Pending {
    fn publish(&self, outcome: Result<(), String>) {
        *lock(&self.outcome) = Some(outcome);
        self.known.notify_all();
    }

    fn wait(&self) -> Result<(), String> {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(o) = &*outcome {
                return o.clone();
            }
            outcome = self.known.wait(outcome).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The scheduler's view of one process.
#[derive(Debug, Default)]
struct SlotState {
    /// The state after the last queued batch (`None`: load it from the store).
    state: Option<ProcState>,
    /// Bumped whenever `state` is dropped after a failed commit, so a later failure of a batch queued
    /// before the drop does not drop the state reloaded since.
    generation: u64,
    /// Messages queued but not yet committed, by message id.
    pending: HashMap<String, Arc<Pending>>,
}

type Slot = Arc<Mutex<SlotState>>;

/// The embedded scheduler. Cheap to share (`Arc` it); one lock per process, so processes are scheduled
/// in parallel.
pub struct Scheduler {
    store: Store,
    reads: ScheduleReads,
    wallet: Arc<Wallet>,
    cron: bool,
    procs: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("address", &self.wallet.address())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cron message as the reference CU builds it (`messageSchema` key order).
pub fn cron_msg_json(
    process_id: &str,
    owner: &str,
    tags: &[(String, String)],
    timestamp: u64,
    height: u64,
) -> String {
    let tags: Vec<Value> = tags
        .iter()
        .filter(|(n, _)| n != "From" && n != "Owner")
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let mut m = Map::new();
    m.insert("Owner".into(), owner.into());
    m.insert("Target".into(), process_id.into());
    m.insert("From".into(), owner.into());
    m.insert("Tags".into(), Value::Array(tags));
    m.insert("Timestamp".into(), timestamp.into());
    m.insert("Block-Height".into(), height.into());
    m.insert("Cron".into(), true.into());
    m.insert("Read-Only".into(), false.into());
    Value::Object(m).to_string()
}

impl Scheduler {
    /// A scheduler over `store`, signing assignments with `wallet`; `cron` turns cron generation on.
    pub fn new(store: Store, wallet: Arc<Wallet>, cron: bool) -> Scheduler {
        Scheduler {
            reads: ScheduleReads::new(&store),
            store,
            wallet,
            cron,
            procs: Mutex::new(HashMap::new()),
        }
    }

    /// Drops what the scheduler keeps of `pid` (its last assignment): another node may schedule it now,
    /// so it is read from the store again at its next message.
    pub fn forget(&self, pid: &str) {
        let slot = self.slot(pid);
        let mut guard = lock(&slot);
        guard.state = None;
        guard.generation += 1;
    }

    /// The schedule reads (SU read routes).
    pub fn reads(&self) -> &ScheduleReads {
        &self.reads
    }

    /// The signing wallet.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    fn slot(&self, pid: &str) -> Slot {
        lock(&self.procs).entry(pid.to_string()).or_default().clone()
    }

    fn load(&self, pid: &str, record: Option<&ProcessRecord>) -> Result<ProcState, SchedError> {
        let stored;
        let record = match record {
            Some(r) => r,
            None => {
                stored = self
                    .store
                    .process(pid)?
                    .ok_or_else(|| SchedError::UnknownProcess(pid.to_string()))?;
                &stored
            }
        };
        let last = self.reads.last(pid)?.map(|r| Last {
            nonce: r.nonce,
            timestamp: r.timestamp,
            block_height: r.block_height,
            hash_chain: r.hash_chain,
            assignment_id: r.assignment_id,
        });
        let tags: Vec<(String, String)> = record
            .tags
            .iter()
            .map(|t| (t.name.clone(), t.value.clone()))
            .collect();
        // A process whose cron tags do not parse has no crons (the reference fails its evaluations).
        let crons = if self.cron {
            parse_crons(&tags).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(ProcState {
            pos: self.store.last_pos(pid)?,
            cron_mark: self.reads.cron_mark(pid)?.unwrap_or(0),
            origin: Point {
                height: record.block_height,
                timestamp: record.timestamp,
            },
            owner: record.owner.clone(),
            crons,
            last,
        })
    }

    /// Cron entries of the open segment of `st` in `[st.cron_mark, to)` (segment end `right`).
    fn cron_entries(
        &self,
        pid: &str,
        st: &ProcState,
        right: Option<u64>,
        to: u64,
        pos: &mut u64,
    ) -> Vec<ScheduledEntry> {
        let Some(last) = &st.last else { return Vec::new() };
        if st.crons.is_empty() {
            return Vec::new();
        }
        let left = Point {
            height: last.block_height,
            timestamp: last.timestamp,
        };
        ticks(
            &st.crons,
            st.origin,
            left,
            right,
            st.cron_mark.max(last.timestamp),
            to,
        )
        .into_iter()
        .map(|t| {
            *pos += 1;
            let tags = st.crons.get(t.cron).map(|c| c.tags.as_slice()).unwrap_or(&[]);
            ScheduledEntry {
                entry: LogEntry {
                    process_id: pid.to_string(),
                    pos: *pos,
                    message_id: None,
                    nonce: None,
                    timestamp: t.timestamp,
                    block_height: t.block_height,
                    cron: Some(t.name),
                    msg_json: cron_msg_json(pid, &st.owner, tags, t.timestamp, t.block_height),
                },
                schedule: None,
            }
        })
        .collect()
    }

    /// Schedules one message at `now` (ms) (a message already scheduled on the process is answered with
    /// its existing assignment, nothing is written): appends the cron messages due before it, assigns the next
    /// nonce, a timestamp `> previous` (and past generated crons), the local block height and the hash
    /// chain, signs the assignment, builds the msg with `build_msg` and commits it all in one transaction.
    pub fn schedule(
        &self,
        mut req: ScheduleRequest,
        now: u64,
        build_msg: impl FnOnce(&Assigned) -> Result<String, SchedError>,
    ) -> Result<Scheduled, SchedError> {
        let pid = req.process_id.clone();
        let slot = self.slot(&pid);
        let mut guard = lock(&slot);
        // A message queued but not yet committed (a retried push racing its first): wait for that
        // commit and answer its assignment.
        if let Some(p) = guard.pending.get(&req.message_id).cloned() {
            drop(guard);
            p.wait().map_err(SchedError::Commit)?;
            return Ok(Scheduled {
                assigned: p.assigned.clone(),
                crons: 0,
            });
        }
        let mut st = match (&guard.state, &req.spawn) {
            (Some(st), None) => st.clone(),
            (None, None) => self.load(&pid, None)?,
            (_, Some(p)) => {
                if p.id != pid {
                    return Err(SchedError::Invalid(
                        "spawn record id differs from the process id".into(),
                    ));
                }
                // Origin is set below from the assignment.
                self.load_new(p)?
            }
        };
        // A message is scheduled at most once per process (retried pushes, duplicate assignments).
        if req.spawn.is_none()
            && let Some(r) = self.reads.by_message(&pid, &req.message_id)?
        {
            return Ok(Scheduled {
                assigned: Assigned {
                    process_id: pid,
                    message_id: r.message_id,
                    nonce: r.nonce,
                    epoch: r.epoch,
                    timestamp: r.timestamp,
                    block_height: r.block_height,
                    hash_chain: r.hash_chain,
                    assignment_id: r.assignment_id,
                    pos: r.pos,
                },
                crons: 0,
            });
        }
        let mut timestamp = now;
        if let Some(last) = &st.last {
            timestamp = timestamp.max(last.timestamp + 1);
            if st.cron_mark > last.timestamp {
                timestamp = timestamp.max(st.cron_mark + 1000);
            }
        }
        let height = block_height(timestamp);
        let mut pos = st.pos;
        let crons = if self.cron {
            self.cron_entries(&pid, &st, Some(timestamp), timestamp, &mut pos)
        } else {
            Vec::new()
        };
        let n_crons = crons.len();
        let (nonce, chain) = match &st.last {
            None => (0, hash_chain(&pid, None)?),
            Some(l) => (l.nonce + 1, hash_chain(&l.hash_chain, Some(&l.assignment_id))?),
        };
        let nonce_s = nonce.to_string();
        let ts_s = timestamp.to_string();
        let height_s = format!("{height:012}");
        let mut tags: Vec<(&str, &str)> = vec![
            ("Process", &pid),
            ("Epoch", "0"),
            ("Nonce", &nonce_s),
            ("Hash-Chain", &chain),
            ("Block-Height", &height_s),
            ("Timestamp", &ts_s),
            ("Data-Protocol", "ao"),
            ("Type", "Assignment"),
            ("Variant", "ao.TN.1"),
        ];
        tags.push(("Message", &req.message_id));
        let raw = self
            .wallet
            .sign_data_item(&[], &tags, None, None)
            .map_err(|e| SchedError::Sign(e.to_string()))?;
        let item = cu_ans104::DataItem::parse(&raw).map_err(|e| SchedError::Sign(e.to_string()))?;
        pos += 1;
        let assigned = Assigned {
            process_id: pid.clone(),
            message_id: req.message_id.clone(),
            nonce,
            epoch: 0,
            timestamp,
            block_height: height,
            hash_chain: chain,
            assignment_id: item.id(),
            pos,
        };
        let msg_json = build_msg(&assigned)?;
        if let Some(p) = req.spawn.as_mut() {
            p.timestamp = timestamp;
            p.block_height = height;
            p.spawn_json = msg_json.clone();
        }
        let mut entries = crons;
        entries.push(ScheduledEntry {
            entry: LogEntry {
                process_id: pid.clone(),
                pos,
                message_id: Some(req.message_id.clone()),
                nonce: Some(nonce),
                timestamp,
                block_height: height,
                cron: None,
                msg_json,
            },
            schedule: Some(ScheduleRecord {
                process_id: pid.clone(),
                nonce,
                epoch: 0,
                message_id: req.message_id.clone(),
                assignment_id: assigned.assignment_id.clone(),
                timestamp,
                block_height: height,
                hash_chain: assigned.hash_chain.clone(),
                pos,
                assignment: raw,
                message: req.message.take(),
            }),
        });
        let batch = ScheduleBatch {
            process: req.spawn.clone(),
            entries,
            cron_marks: vec![(pid.clone(), timestamp)],
            delivered: std::mem::take(&mut req.delivered),
            outbox_cursors: Vec::new(),
            upstream: Vec::new(),
            adopted: None,
        };
        let queued = self.store.submit_schedule(batch)?;
        if let Some(p) = &req.spawn {
            st.origin = Point {
                height: p.block_height,
                timestamp: p.timestamp,
            };
        }
        st.pos = pos;
        st.cron_mark = timestamp;
        st.last = Some(Last {
            nonce,
            timestamp,
            block_height: height,
            hash_chain: assigned.hash_chain.clone(),
            assignment_id: assigned.assignment_id.clone(),
        });
        guard.state = Some(st);
        let generation = guard.generation;
        let pending = Arc::new(Pending {
            assigned: assigned.clone(),
            outcome: Mutex::new(None),
            known: Condvar::new(),
        });
        guard
            .pending
            .insert(assigned.message_id.clone(), Arc::clone(&pending));
        drop(guard);

        let outcome = queued.wait();
        let mut guard = lock(&slot);
        guard.pending.remove(&assigned.message_id);
        if outcome.is_err() && guard.generation == generation {
            guard.state = None;
            guard.generation += 1;
        }
        drop(guard);
        pending.publish(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
        outcome?;
        Ok(Scheduled {
            assigned,
            crons: n_crons,
        })
    }

    fn load_new(&self, p: &ProcessRecord) -> Result<ProcState, SchedError> {
        if self.store.process(&p.id)?.is_some() {
            return Err(SchedError::Invalid(format!("process {} already exists", p.id)));
        }
        let tags: Vec<(String, String)> = p.tags.iter().map(|t| (t.name.clone(), t.value.clone())).collect();
        let crons = if self.cron {
            parse_crons(&tags)?
        } else {
            Vec::new()
        };
        Ok(ProcState {
            last: None,
            pos: 0,
            cron_mark: 0,
            origin: Point {
                height: p.block_height,
                timestamp: p.timestamp,
            },
            owner: p.owner.clone(),
            crons,
        })
    }

    /// Appends the cron messages of `process_id` due before `now - 1000` (a tick is final once its whole
    /// second has passed); returns the process's last log position.
    pub fn tick_crons(&self, process_id: &str, now: u64) -> Result<u64, SchedError> {
        let slot = self.slot(process_id);
        let mut guard = lock(&slot);
        let mut st = match &guard.state {
            Some(st) => st.clone(),
            None => self.load(process_id, None)?,
        };
        let to = now.saturating_sub(1000);
        let mut pos = st.pos;
        let entries = if self.cron {
            self.cron_entries(process_id, &st, None, to, &mut pos)
        } else {
            Vec::new()
        };
        if to > st.cron_mark && st.last.is_some() && !st.crons.is_empty() {
            // Committed under the lock: it follows whatever is queued for the process, and fails if
            // an earlier queued batch failed (then the state is reloaded next time).
            let committed = self.store.commit_schedule(ScheduleBatch {
                entries,
                cron_marks: vec![(process_id.to_string(), to)],
                ..ScheduleBatch::default()
            });
            if let Err(e) = committed {
                guard.state = None;
                guard.generation += 1;
                return Err(e.into());
            }
            st.pos = pos;
            st.cron_mark = to;
        }
        let last = st.pos;
        guard.state = Some(st);
        Ok(last)
    }

    /// Whether `process_id` has crons (and cron generation is on).
    pub fn has_crons(&self, process_id: &str) -> Result<bool, SchedError> {
        let slot = self.slot(process_id);
        let mut guard = lock(&slot);
        if guard.state.is_none() {
            guard.state = Some(self.load(process_id, None)?);
        }
        Ok(guard.state.as_ref().is_some_and(|s| !s.crons.is_empty()))
    }

    /// The last assignment of a process.
    pub fn latest(&self, process_id: &str) -> Result<Option<ScheduleRecord>, SchedError> {
        Ok(self.reads.last(process_id)?)
    }
}
