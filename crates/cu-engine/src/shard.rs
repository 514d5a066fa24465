//! A shard: a set of resident processes whose messages are evaluated serially, one process at a time,
//! reading each process's log from the store and queuing results to the store's group-commit writer.
//! Commands arrive on a bounded channel.
//!
//! One thread at a time *drives* a shard: it takes commands off the queue and runs them. A command works
//! on one process, which it takes out of the shard ("away") for the time of the command, with the shard's
//! state unlocked; commands for a process that is away wait beside it and run when it is back (one owner:
//! a process's messages are evaluated by one thread at a time, in order).
//!
//! **Preemption.** A command that runs for longer than the time slice ([`EngineConfig::time_slice`]) —
//! a looping message, a long replay — must not hold up the shard's other processes. Evaluating threads
//! call their process's watch about every epoch tick (see `cu_wasm::watch`); the driver's watch sees
//! its command has outlived its slice, starts a new driver thread for the shard, and goes on with the
//! command as an ordinary thread. The new driver serves the other processes meanwhile. When the long
//! command ends, its process comes back to the shard with the commands that waited for it, and the
//! thread ends. Nothing of this reaches the module: the evaluation is never stopped or changed, only
//! continued on the same thread while another thread serves the shard, so results stay a function of
//! (module, log). The number of long commands running at once is bounded node-wide
//! ([`EngineConfig::long_evaluations`]); more wait, paused inside their watch, for a slot, which
//! long commands pass round robin every time slice ([`LongSlots`]).
//!
//! **Shutdown** checkpoints the resident processes. A process away on a long command is not waited
//! for: its evaluation is stopped at its next tick (within one epoch tick), the message's result is
//! thrown away (never stored) and the process dropped; after a restart it restores from its last
//! checkpoint and evaluates that message again from its log, with the same result.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, select_biased, unbounded};
use cu_store::{ResultRecord, Store};
use cu_types::EvalOutput;
use cu_wasm::{EVAL_THREAD_STACK, ForkImage, Process, ProcessConfig, Stop, WasmError, Watch};
use tokio::sync::oneshot;

use crate::config::{EngineConfig, LONG_QUEUE_PER_SLOT};
use crate::dryrun::{DryRunJob, Pool};
use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::modules::{Modules, drive_of, limits_of};
use crate::probe::Probe;
use crate::progress::{Progress, Waiter};
use crate::resident::{Resident, Since, restore_newest, timed};

/// How long shutdown waits for processes away on long commands to come back once they were told to
/// stop (they stop within an epoch tick; only a host call in progress can take longer).
const AWAY_GRACE: Duration = Duration::from_secs(30);

/// What a shard is asked to do.
pub enum Command {
    /// Evaluate the process's log up to `until` (or its end) and answer `waiter` when the result at
    /// `until` is durable.
    Advance {
        /// Process id.
        process: String,
        /// The log position wanted (`None`: the end of the log, no waiter).
        until: Option<u64>,
        /// Who waits for it.
        waiter: Option<Waiter>,
    },
    /// Evaluate the log to its end, fork the process and evaluate `msg` on the fork (dry-run pool).
    DryRun {
        /// Process id.
        process: String,
        /// The message JSON.
        msg: String,
        /// Where the output goes.
        reply: oneshot::Sender<Result<EvalOutput, EngineError>>,
        /// Set when the caller no longer waits (the dry-run is skipped or stopped).
        cancel: Arc<AtomicBool>,
    },
    /// Evaluate the log to its end and copy the process's linear memory (the CU API's `/state`).
    State {
        /// Process id.
        process: String,
        /// The log position and the memory.
        reply: oneshot::Sender<Result<(u64, Vec<u8>), EngineError>>,
    },
    /// Checkpoint the process now (if it is resident and changed).
    Checkpoint {
        /// Process id.
        process: String,
        /// The sequence number written, if any.
        reply: Sender<Result<Option<u64>, EngineError>>,
    },
    /// Drop the process (its instance, without a checkpoint, and what was known of its progress): another
    /// node owns it now, so what this node kept of it may be stale. Its waiters fail.
    Forget {
        /// Process id.
        process: String,
    },
    /// Checkpoint (per policy) and drop every resident process, then stop.
    Shutdown {
        /// Answered once everything is durable (a plain channel: shutdown may be called from any thread,
        /// async runtimes included).
        reply: Sender<Result<(), EngineError>>,
    },
}

impl Command {
    fn process(&self) -> Option<&str> {
        match self {
            Command::Advance { process, .. }
            | Command::DryRun { process, .. }
            | Command::State { process, .. }
            | Command::Checkpoint { process, .. }
            | Command::Forget { process } => Some(process),
            Command::Shutdown { .. } => None,
        }
    }
}

/// What shards share.
pub struct Shared {
    /// The engine configuration.
    pub config: EngineConfig,
    /// The store.
    pub store: Store,
    /// Compiled modules.
    pub modules: Modules,
    /// Counters.
    pub metrics: Metrics,
    /// The crash-test phase file, if configured.
    pub probe: Option<Probe>,
    /// The dry-run pool's queue (`None` stops a worker).
    pub dry_runs: Sender<Option<DryRunJob>>,
    /// The dry-run pool's size.
    pub dry_pool: Pool,
    /// Resident bytes per shard.
    pub resident: Vec<std::sync::atomic::AtomicU64>,
    /// Resident processes per shard.
    pub resident_count: Vec<std::sync::atomic::AtomicU64>,
    /// The process settings every process starts from (limits come from its tags).
    pub process_config: ProcessConfig,
    /// Slots for long commands, node-wide.
    pub long: LongSlots,
}

impl Shared {
    /// Whether this node owns `process` (always, outside a cluster: see `cu_store::ownership`).
    fn owns(&self, process: &str) -> bool {
        self.store.ownership().is_none_or(|o| o.holds(process))
    }

    /// Checkpoints `resident` with the engine's store, policy, counters and phase file.
    fn checkpoint(&self, resident: &mut Resident) -> Result<Option<u64>, EngineError> {
        // In a cluster, a process this node no longer owns is another node's to checkpoint.
        if !self.owns(&resident.id) {
            return Ok(None);
        }
        resident.checkpoint(
            &self.store,
            &self.config.checkpoints,
            &self.metrics,
            self.probe.as_ref(),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The node-wide bound on long commands running at once. The others wait for a slot, paused inside
/// their watch, first come first served; a command that has held a slot for a time slice gives it to the
/// next waiting one and queues again (round robin), so a short command that just crossed its slice is
/// not stuck behind one that loops for half an hour.
pub struct LongSlots {
    cap: usize,
    state: Mutex<SlotState>,
    freed: Condvar,
}

struct SlotState {
    running: usize,
    queue: VecDeque<u64>,
    next_ticket: u64,
}

impl LongSlots {
    /// `cap` long commands at once.
    pub fn new(cap: usize) -> LongSlots {
        LongSlots {
            cap: cap.max(1),
            state: Mutex::new(SlotState {
                running: 0,
                queue: VecDeque::new(),
                next_ticket: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Whether one more long command may leave its shard (the running and waiting ones leave room).
    fn room(&self) -> bool {
        let s = lock(&self.state);
        s.running + s.queue.len() < self.cap.saturating_mul(1 + LONG_QUEUE_PER_SLOT)
    }

    /// Whether a long command waits for a slot.
    fn contended(&self) -> bool {
        !lock(&self.state).queue.is_empty()
    }

    /// Waits (the evaluation paused) for a free slot, in arrival order, and takes it; `Err` when `stop`
    /// is set first.
    fn acquire(&self, stop: &AtomicBool) -> Result<(), Stop> {
        let mut s = lock(&self.state);
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.queue.push_back(ticket);
        loop {
            if s.running < self.cap && s.queue.front() == Some(&ticket) {
                s.queue.pop_front();
                s.running += 1;
                drop(s);
                // The next in line may fit too.
                self.freed.notify_all();
                return Ok(());
            }
            if stop.load(Relaxed) {
                s.queue.retain(|t| *t != ticket);
                drop(s);
                self.freed.notify_all();
                return Err(Stop::Cancelled);
            }
            s = self
                .freed
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn release(&self) {
        let mut s = lock(&self.state);
        s.running = s.running.saturating_sub(1);
        drop(s);
        self.freed.notify_all();
    }
}

/// What the current thread is to the shard whose process it evaluates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not a shard thread.
    None,
    /// The driver of generation `n`.
    Driver(u64),
    /// A former driver finishing a long command; `slot`: since when it holds a long-command slot.
    Away { slot: Option<Instant> },
}

thread_local! {
    static ROLE: Cell<Role> = const { Cell::new(Role::None) };
}

/// Which thread drives the shard, and since when it runs its current command.
struct Turn {
    driver: u64,
    since: Option<Instant>,
}

/// A process taken out of the shard by a command, and the commands that wait for it.
struct Away {
    bytes: u64,
    pending: Vec<Command>,
}

/// The shard's state, behind its lock.
struct Core {
    residents: HashMap<String, Resident>,
    away: HashMap<String, Away>,
    progress: HashMap<String, Arc<Progress>>,
    clock: u64,
    budget: u64,
}

/// One shard.
pub struct Shard {
    index: usize,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    /// Commands that waited for a process that is back (taken before new commands).
    returned: (Sender<Command>, Receiver<Command>),
    core: Mutex<Core>,
    /// Signalled when a process comes back.
    back: Condvar,
    turn: Mutex<Turn>,
    /// Set at shutdown: commands away stop at their next tick.
    stopping: AtomicBool,
    me: Weak<Shard>,
}

impl Shard {
    /// The shard `index` of `shared.config.workers`, taking commands from `commands`.
    pub fn new(index: usize, shared: Arc<Shared>, commands: Receiver<Command>) -> Arc<Self> {
        let budget = shared.config.memory_budget / shared.config.workers.max(1) as u64;
        Arc::new_cyclic(|me| Shard {
            index,
            shared,
            commands,
            returned: unbounded(),
            core: Mutex::new(Core {
                residents: HashMap::new(),
                away: HashMap::new(),
                progress: HashMap::new(),
                clock: 0,
                budget,
            }),
            back: Condvar::new(),
            turn: Mutex::new(Turn {
                driver: 1,
                since: None,
            }),
            stopping: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Runs commands as the shard's first driver until `Shutdown`, until every sender is gone, or until
    /// a long command hands the shard to another thread.
    pub fn run(self: Arc<Self>) {
        self.drive(1);
    }

    fn drive(self: Arc<Self>, generation: u64) {
        ROLE.set(Role::Driver(generation));
        loop {
            let command = select_biased! {
                recv(self.returned.1) -> c => c.ok(),
                recv(self.commands) -> c => c.ok(),
            };
            let Some(command) = command else {
                let _ = self.shutdown();
                break;
            };
            if let Command::Shutdown { reply } = command {
                let _ = reply.send(self.shutdown());
                break;
            }
            lock(&self.turn).since = Some(Instant::now());
            self.execute(command);
            if !self.still_driving(generation) {
                break;
            }
            let mut core = lock(&self.core);
            self.enforce_budget(&mut core);
            self.publish(&core);
        }
        ROLE.set(Role::None);
    }

    /// After a command: whether this thread still drives the shard (else it was handed on while the
    /// command ran long, and the thread ends, giving back its long-command slot).
    fn still_driving(&self, generation: u64) -> bool {
        let mut turn = lock(&self.turn);
        if turn.driver == generation && ROLE.get() == Role::Driver(generation) {
            turn.since = None;
            return true;
        }
        drop(turn);
        if let Role::Away { slot: Some(_) } = ROLE.get() {
            self.shared.long.release();
        }
        false
    }

    /// The watch of this shard's processes (called on the evaluating thread every epoch tick): hands
    /// the shard on when the driver's command outlived its slice, waits for a long-command slot, and
    /// stops commands still away at shutdown. It never stops a driver's evaluation.
    fn watch(&self) -> Watch {
        let me = self.me.clone();
        Watch::new(move || me.upgrade().map_or(Ok(()), |shard| shard.tick()))
    }

    fn tick(&self) -> Result<(), Stop> {
        match ROLE.get() {
            Role::None => Ok(()),
            Role::Away { slot } => {
                if self.stopping.load(Relaxed) {
                    return Err(Stop::Cancelled);
                }
                let turn_over = slot.is_some_and(|since| since.elapsed() >= self.shared.config.time_slice);
                if turn_over && self.shared.long.contended() {
                    // Round robin: the slot to the next long command, this one queues again.
                    ROLE.set(Role::Away { slot: None });
                    self.shared.long.release();
                    self.shared.long.acquire(&self.stopping)?;
                    ROLE.set(Role::Away {
                        slot: Some(Instant::now()),
                    });
                }
                Ok(())
            }
            Role::Driver(generation) => {
                let mut turn = lock(&self.turn);
                let due = turn.driver == generation
                    && turn
                        .since
                        .is_some_and(|since| since.elapsed() >= self.shared.config.time_slice);
                if !due || !self.shared.long.room() {
                    // Not yet long, or too many long commands already: go on as the driver.
                    return Ok(());
                }
                let next = generation + 1;
                turn.driver = next;
                turn.since = None;
                drop(turn);
                let Some(shard) = self.me.upgrade() else {
                    return Ok(());
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("cu-shard-{}", self.index))
                    .stack_size(EVAL_THREAD_STACK)
                    .spawn(move || shard.drive(next));
                if let Err(e) = spawned {
                    tracing::warn!(shard = self.index, error = %e, "cannot hand a busy shard to a new thread");
                    let mut turn = lock(&self.turn);
                    turn.driver = generation;
                    turn.since = Some(Instant::now());
                    return Ok(());
                }
                self.shared.metrics.preemptions.fetch_add(1, Relaxed);
                ROLE.set(Role::Away { slot: None });
                self.shared.long.acquire(&self.stopping)?;
                ROLE.set(Role::Away {
                    slot: Some(Instant::now()),
                });
                Ok(())
            }
        }
    }

    fn execute(&self, command: Command) {
        let Some(command) = self.unless_away(command) else {
            return;
        };
        match command {
            Command::Advance {
                process,
                until,
                waiter,
            } => {
                let progress = match self.progress_of(&process) {
                    Ok(p) => p,
                    Err(e) => {
                        if let Some(w) = waiter {
                            let _ = w.send(Err(e));
                        }
                        return;
                    }
                };
                if let (Some(pos), Some(w)) = (until, waiter) {
                    // Already durable: answer without touching the process.
                    if progress.committed() >= pos {
                        let _ = w.send(Ok(pos));
                        return;
                    }
                    progress.wait(pos, w);
                }
                if let Err(e) = self.with_resident(&process, |r| self.advance(r, until, &progress)) {
                    progress.fail_all(&e);
                }
            }
            Command::DryRun {
                process,
                msg,
                reply,
                cancel,
            } => {
                if cancel.load(Relaxed) {
                    return;
                }
                match self.with_resident(&process, |r| self.dry_run_image(r)) {
                    Ok((image, module, config, env)) => {
                        let job = DryRunJob {
                            process,
                            image,
                            module,
                            config,
                            msg,
                            env,
                            reply,
                            cancel,
                        };
                        if let Err(e) = self.shared.dry_runs.try_send(Some(job)) {
                            let (job, error) = match e {
                                TrySendError::Full(job) => (job, EngineError::DryRunBusy),
                                TrySendError::Disconnected(job) => (job, EngineError::Stopped),
                            };
                            if let Some(job) = job {
                                let _ = job.reply.send(Err(error));
                            }
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::State { process, reply } => {
                let state = self.with_resident(&process, |r| {
                    let progress = self.progress_of(&r.id)?;
                    self.advance(r, None, &progress)?;
                    Ok((r.pos, r.process.memory().to_vec()))
                });
                let _ = reply.send(state);
            }
            Command::Checkpoint { process, reply } => {
                let mut core = lock(&self.core);
                let result = match core.residents.get_mut(&process) {
                    Some(r) => self.shared.checkpoint(r),
                    None => Ok(None),
                };
                let _ = reply.send(result);
            }
            Command::Forget { process } => {
                let mut core = lock(&self.core);
                core.residents.remove(&process);
                if let Some(progress) = core.progress.remove(&process) {
                    progress.fail_all(&EngineError::Moved(process.clone()));
                }
                self.publish(&core);
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// The command, unless its process is away: then it waits beside it and `None` is returned.
    fn unless_away(&self, command: Command) -> Option<Command> {
        let Some(process) = command.process() else {
            return Some(command);
        };
        let mut core = lock(&self.core);
        match core.away.get_mut(process) {
            Some(away) => {
                away.pending.push(command);
                None
            }
            None => Some(command),
        }
    }

    fn progress_of(&self, process: &str) -> Result<Arc<Progress>, EngineError> {
        let mut core = lock(&self.core);
        if let Some(p) = core.progress.get(process) {
            return Ok(p.clone());
        }
        let committed = self.shared.store.last_result_pos(process)?;
        let p = Arc::new(Progress::new(committed));
        core.progress.insert(process.to_string(), p.clone());
        Ok(p)
    }

    /// Takes `process` out of the shard (making it resident first: restored from its newest checkpoint
    /// or started from its module, with the shard unlocked), runs `f` on it, and puts it back (unless an
    /// evaluation broke it) with the commands that waited for it.
    fn with_resident<T>(
        &self,
        process: &str,
        f: impl FnOnce(&mut Resident) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let resident = {
            let mut core = lock(&self.core);
            core.clock += 1;
            let clock = core.clock;
            let resident = core.residents.remove(process);
            core.away.insert(
                process.to_string(),
                Away {
                    bytes: resident.as_ref().map_or(0, Resident::resident_bytes),
                    pending: Vec::new(),
                },
            );
            resident.map(|mut r| {
                r.last_used = clock;
                r
            })
        };
        let mut resident = match resident {
            Some(r) => r,
            None => match self.load(process) {
                Ok(r) => {
                    let mut core = lock(&self.core);
                    if let Some(away) = core.away.get_mut(process) {
                        away.bytes = r.resident_bytes();
                    }
                    self.enforce_budget(&mut core);
                    r
                }
                Err(e) => {
                    self.put_back(process, None);
                    return Err(e);
                }
            },
        };
        let out = f(&mut resident);
        let keep = !resident.broken;
        self.put_back(process, keep.then_some(resident));
        out
    }

    /// Ends an away period: the process (if kept) back among the residents, the commands that waited
    /// for it queued first for the driver.
    fn put_back(&self, process: &str, resident: Option<Resident>) {
        let mut core = lock(&self.core);
        let pending = core.away.remove(process).map(|a| a.pending).unwrap_or_default();
        if let Some(mut r) = resident {
            r.last_used = core.clock;
            core.residents.insert(process.to_string(), r);
        }
        // The resident set changed: publish it now, not at the driver's next turn. A process comes back
        // on a long-command thread while the driver may already be answering the commands that waited
        // for it (a `state` reply read with `stats` right after would otherwise see its away bytes).
        self.publish(&core);
        for command in pending {
            // Unbounded, and its receiver lives as long as `self`.
            let _ = self.returned.0.send(command);
        }
        drop(core);
        self.back.notify_all();
    }

    /// Restores `process` from its newest checkpoint, or starts it from its module.
    fn load(&self, process: &str) -> Result<Resident, EngineError> {
        // In a cluster, only the owner evaluates a process (a command queued before it moved away must
        // not make it resident again).
        if !self.shared.owns(process) {
            return Err(EngineError::Moved(process.to_string()));
        }
        let store = &self.shared.store;
        let record = store
            .process(process)?
            .ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let (module, module_tags) = self.shared.modules.get(&record.module_id)?;
        let config = ProcessConfig {
            limits: limits_of(&record, &module_tags, self.shared.config.limits.default_compute)?,
            watch: Some(self.watch()),
            drive: drive_of(
                self.shared.process_config.drive.as_ref(),
                module.format,
                &record,
                &module_tags,
            ),
            ..self.shared.process_config.clone()
        };
        let resident = match restore_newest(store, process, &module, &config)? {
            Some(restored) => {
                self.shared.metrics.restores.fetch_add(1, Relaxed);
                Resident {
                    id: process.to_string(),
                    process: restored.process,
                    env: record.env_json.into(),
                    pos: restored.pos,
                    table: Some(restored.table),
                    last: Some((restored.seq, restored.pos)),
                    bases: restored.bases,
                    next_seq: restored.next_seq,
                    deltas: restored.deltas,
                    chain: restored.chain,
                    since: Since::default(),
                    last_used: 0,
                    dry_image: None,
                    broken: false,
                }
            }
            None => {
                if let Some(adopted) = store.adopted(process)? {
                    // Its log begins after that checkpoint: booting fresh and replaying would be wrong.
                    return Err(EngineError::Checkpoint(format!(
                        "process {process} starts from checkpoint {} (nonce {}), and no usable local \
                         checkpoint of it is left",
                        adopted.checkpoint_id, adopted.nonce
                    )));
                }
                let live = Process::boot(module, config).map_err(|e| match e {
                    WasmError::Interrupted(_) => EngineError::Stopped,
                    e => EngineError::Boot {
                        process: process.to_string(),
                        reason: e.to_string(),
                    },
                })?;
                self.shared.metrics.boots.fetch_add(1, Relaxed);
                let next_seq = store
                    .checkpoints(process)?
                    .iter()
                    .map(|r| r.seq + 1)
                    .max()
                    .unwrap_or(1);
                Resident {
                    id: process.to_string(),
                    process: live,
                    env: record.env_json.into(),
                    pos: 0,
                    table: None,
                    last: None,
                    bases: (None, None),
                    next_seq,
                    deltas: (0, 0, 0),
                    chain: Vec::new(),
                    since: Since::default(),
                    last_used: 0,
                    dry_image: None,
                    broken: false,
                }
            }
        };
        Ok(resident)
    }

    /// Evaluates the log of `resident` up to `until` (or its end).
    fn advance(
        &self,
        resident: &mut Resident,
        until: Option<u64>,
        progress: &Arc<Progress>,
    ) -> Result<(), EngineError> {
        let process = resident.id.clone();
        let process = process.as_str();
        let last = self.shared.store.last_pos(process)?;
        let target = until.map_or(last, |u| u.min(last));
        progress.fail_beyond(
            last,
            &EngineError::Evaluation {
                process: process.to_string(),
                reason: "no message at that position in the log".into(),
            },
        );
        let batch = self.shared.config.log_batch.max(1);
        while resident.pos < target {
            let want = (target - resident.pos).min(batch as u64) as usize;
            let entries = self.shared.store.log_range(process, resident.pos + 1, want)?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                if entry.pos != resident.pos + 1 {
                    return Err(EngineError::Store(format!(
                        "log of {process} has a gap before position {}",
                        entry.pos
                    )));
                }
                let (out, took) = timed(|| resident.process.handle(&entry.msg_json, &resident.env));
                let out = match out {
                    Ok(out) => out,
                    Err(e) => {
                        // Mid-message or inconsistent: the process is dropped (restored from its last
                        // checkpoint on its next command); the message's result is not stored.
                        resident.broken = true;
                        return Err(match e {
                            WasmError::Interrupted(_) => EngineError::Stopped,
                            WasmError::Halted(reason) => EngineError::Halted {
                                process: process.to_string(),
                                pos: entry.pos,
                                reason,
                            },
                            e => EngineError::Evaluation {
                                process: process.to_string(),
                                reason: e.to_string(),
                            },
                        });
                    }
                };
                resident.pos = entry.pos;
                resident.dry_image = None;
                resident.since.messages += 1;
                resident.since.eval_time += took;
                resident.since.gas = resident.since.gas.saturating_add(out.gas_used);
                self.shared.metrics.evaluated.fetch_add(1, Relaxed);
                let record = ResultRecord {
                    process_id: process.to_string(),
                    pos: entry.pos,
                    message_id: entry.message_id,
                    nonce: entry.nonce,
                    timestamp: entry.timestamp,
                    block_height: entry.block_height,
                    cron: entry.cron,
                    has_error: out.error.is_some(),
                    output_json: serde_json::to_string(&out).unwrap_or_default(),
                };
                let p = progress.clone();
                let shared = self.shared.clone();
                if let Some(probe) = &shared.probe {
                    probe.results(1);
                }
                let pos = entry.pos;
                self.shared.store.put_result(
                    record,
                    Box::new(move |outcome| {
                        if let Some(probe) = &shared.probe {
                            probe.results(-1);
                        }
                        p.committed_to(pos, outcome.map_err(EngineError::from));
                    }),
                );
                if resident.checkpoint_due(&self.shared.config.checkpoints) {
                    self.shared.checkpoint(resident)?;
                }
            }
        }
        Ok(())
    }

    /// Brings `resident` to the end of its log and returns a copy-on-write image of that state (made
    /// once per state: later dry-runs on the same state reuse it), with what a runner needs besides.
    #[allow(clippy::type_complexity)]
    fn dry_run_image(
        &self,
        resident: &mut Resident,
    ) -> Result<
        (
            Arc<ForkImage>,
            Arc<cu_wasm::CompiledModule>,
            ProcessConfig,
            Arc<str>,
        ),
        EngineError,
    > {
        let progress = self.progress_of(&resident.id)?;
        self.advance(resident, None, &progress)?;
        let image = match &resident.dry_image {
            Some((pos, image)) if *pos == resident.pos => image.clone(),
            _ => {
                resident.dry_image = None;
                let image = ForkImage::of(&mut resident.process).map_err(|e| EngineError::Evaluation {
                    process: resident.id.clone(),
                    reason: e.to_string(),
                })?;
                let image = Arc::new(image);
                resident.dry_image = Some((resident.pos, image.clone()));
                image
            }
        };
        Ok((
            image,
            resident.process.module().clone(),
            resident.process.config().clone(),
            resident.env.clone(),
        ))
    }

    /// Checkpoints (per policy) and drops least recently used processes until the shard is within its
    /// budget. Processes away (on a command) count with their bytes when they left and are never dropped.
    /// The node's converted language models ([`cu_wasm::models`]) count too, a share per shard.
    fn enforce_budget(&self, core: &mut Core) {
        let away: u64 = core.away.values().map(|a| a.bytes).sum();
        let models = self.shared.process_config.models.as_ref().map_or(0, |m| {
            m.registry.resident_bytes() / self.shared.config.workers.max(1) as u64
        });
        let mut total: u64 =
            away + models + core.residents.values().map(Resident::resident_bytes).sum::<u64>();
        while total > core.budget {
            let victim = core
                .residents
                .values()
                .min_by_key(|r| r.last_used)
                .map(|r| r.id.clone());
            let Some(victim) = victim else {
                break;
            };
            if let Some(mut r) = core.residents.remove(&victim) {
                total = total.saturating_sub(r.resident_bytes());
                if self.shared.config.checkpoints.on_evict
                    && let Err(e) = self.shared.checkpoint(&mut r)
                {
                    tracing::warn!(process = %victim, error = %e,
                        "checkpoint on eviction failed; the process will replay its log");
                }
                self.shared.metrics.evictions.fetch_add(1, Relaxed);
            }
        }
    }

    fn publish(&self, core: &Core) {
        let bytes: u64 = core.residents.values().map(Resident::resident_bytes).sum::<u64>()
            + core.away.values().map(|a| a.bytes).sum::<u64>();
        if let Some(slot) = self.shared.resident.get(self.index) {
            slot.store(bytes, Relaxed);
        }
        if let Some(slot) = self.shared.resident_count.get(self.index) {
            slot.store((core.residents.len() + core.away.len()) as u64, Relaxed);
        }
    }

    fn shutdown(&self) -> Result<(), EngineError> {
        // Commands away stop at their next tick; their process is dropped, its results so far are durable.
        self.stopping.store(true, Relaxed);
        let mut first_error = None;
        let mut core = lock(&self.core);
        let until = Instant::now() + AWAY_GRACE;
        while !core.away.is_empty() {
            let now = Instant::now();
            if now >= until {
                tracing::warn!(
                    shard = self.index,
                    away = core.away.len(),
                    "shutting down without processes still busy on long commands"
                );
                break;
            }
            core = self
                .back
                .wait_timeout(core, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if self.shared.config.checkpoints.on_shutdown {
            for r in core.residents.values_mut() {
                if let Err(e) = self.shared.checkpoint(r) {
                    first_error.get_or_insert(e);
                }
            }
        }
        core.residents.clear();
        core.away.clear();
        self.publish(&core);
        drop(core);
        // Commands that waited for a process that was stopped get no answer (their callers see the
        // engine stopped).
        while self.returned.1.try_recv().is_ok() {}
        if let Err(e) = self.shared.store.flush() {
            first_error.get_or_insert(e.into());
        }
        first_error.map_or(Ok(()), Err)
    }
}
