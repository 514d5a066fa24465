//! A process: one resident instance of a compiled module, evaluating messages in order.
//!
//! `boot` runs the Emscripten start-up (stack init and cookie, constructors, `main` with a fixed argv);
//! `handle` marshals the two JSON strings on the wasm stack, calls `handle`, parses `{ok, response}` and
//! builds the result. Memory is never copied for a successful message. A failed message (an `Error`, a trap,
//! out of gas, or the legacy "not enough memory for buffer allocation" Output) leaves the process exactly as
//! it was before the message: the process is rebuilt from its last base snapshot and the messages since
//! are replayed (errors are rare; a new base is taken after every rollback and every `journal_limit`
//! messages, so replays stay short).

use std::sync::Arc;

use cu_types::result::parse_json_like_js;
use cu_types::{EvalOutput, Limits, StringSizeRule};
use serde_json::Value;
use wasmtime::{Extern, Func, Instance, Store, Trap, TypedFunc, UpdateDeadline, Val};

use crate::engine::{FUEL_PER_GAS, Metering};
use crate::error::WasmError;
use crate::host::{HostTrap, call_int};
use crate::module::CompiledModule;
use crate::snapshot::{GlobalValue, Snapshot};
use crate::state::{Asyncify, Exports, HostState};
use crate::watch::{Stop, Watch};

/// `argv[0]` passed to `main` (and the `_` environment variable). The reference passes the path of its
/// own Node script, which differs between deployments; ao-cu passes Emscripten's own default.
pub const THIS_PROGRAM: &str = "./this.program";

/// How a process is run.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// `Memory-Limit` and `Compute-Limit`.
    pub limits: Limits,
    /// `argv[0]`; [`THIS_PROGRAM`] unless a test reproduces another host's memory layout.
    pub this_program: String,
    /// Messages kept for replay before a new base snapshot is taken.
    pub journal_limit: usize,
    /// Bytes of message text kept for replay before a new base snapshot is taken.
    pub journal_max_bytes: usize,
    /// The device `ao_tensor` imports compute on; by default a CPU twin shared by the node
    /// ([`crate::host::tensor::default_device`]). GPU or CPU, the bytes are the same.
    pub tensor: cu_gpu::TensorDevice,
    /// Called about every [`crate::engine::EPOCH_TICK`] while the module runs (start-up included); see
    /// [`crate::watch`]. `None`: nothing watches.
    pub watch: Option<Watch>,
    /// WeaveDrive for this process ([`crate::drive`]); `None`: the module has no `Module.WeaveDrive`
    /// and every `weavedrive_open` answers NULL.
    pub drive: Option<crate::drive::Drive>,
    /// The node's language models for `ao_tensor.model_*` ([`crate::models`]); `None`: `model_open`
    /// traps ("this node serves no models").
    pub models: Option<crate::models::ModelHost>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            limits: Limits::default(),
            this_program: THIS_PROGRAM.into(),
            journal_limit: 1000,
            journal_max_bytes: 64 << 20,
            tensor: crate::host::tensor::default_device(),
            watch: None,
            drive: None,
            models: None,
        }
    }
}

/// A running process.
pub struct Process {
    module: Arc<CompiledModule>,
    config: ProcessConfig,
    store: Store<HostState>,
    instance: Instance,
    memory: wasmtime::Memory,
    abi: FastAbi,
    /// The state the journal replays from.
    base: Base,
    started: bool,
    journal: Vec<(String, String)>,
    journal_bytes: usize,
    rollbacks: u64,
    /// A fork for one dry-run: failures are not rolled back (the fork is dropped afterwards).
    disposable: bool,
}

/// The part of a process state that is not linear memory: every exported mutable global and the glue
/// state. With the memory it makes a [`Snapshot`]; checkpoints store it beside incremental memory pages.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessMeta {
    /// Exported mutable globals (the stack pointer among them).
    pub globals: Vec<(String, GlobalValue)>,
    /// Glue state (fake clock, random sequence, file system).
    pub glue: crate::state::GlueState,
}

/// Rebuilds a process state on demand (e.g. by reading it back from a checkpoint).
pub type StateSource = Arc<dyn Fn() -> Result<Snapshot, WasmError> + Send + Sync>;

/// Where a rollback starts from.
enum Base {
    /// A fresh instance (started or not, per `started`): booting copies no memory.
    Fresh,
    /// A snapshot held in memory.
    Held(Snapshot),
    /// A state read back when a rollback needs it (a restored process holds no copy of its memory).
    Source(StateSource),
}

/// A message failure, before it becomes the result's `Error`.
enum CallError {
    /// The message failed; this is its `Error` value.
    Message(Value),
    /// The host itself failed (cannot happen for a healthy instance).
    Host(WasmError),
    /// The watch stopped the evaluation.
    Stopped(Stop),
}

impl Process {
    /// Instantiates the module and runs its start-up.
    pub fn boot(module: Arc<CompiledModule>, config: ProcessConfig) -> Result<Self, WasmError> {
        let (mut store, instance, handle) = instantiate(&module, &config)?;
        start(&module, &config, &mut store, &instance).map_err(|e| match stopped(&e) {
            Some(stop) => WasmError::Interrupted(stop),
            None => WasmError::Boot(error_value(&e).to_string()),
        })?;
        Self::assemble(module, config, (store, instance, handle), Base::Fresh, true)
    }

    /// Instantiates the module without running its start-up (for benchmarks and tools that measure
    /// instantiation alone; a process for messages comes from [`Process::boot`] or [`Process::restore`]).
    pub fn instantiate(module: Arc<CompiledModule>, config: ProcessConfig) -> Result<Self, WasmError> {
        let parts = instantiate(&module, &config)?;
        Self::assemble(module, config, parts, Base::Fresh, false)
    }

    /// Resumes a process from a snapshot on a fresh instance (no start-up runs).
    pub fn restore(
        module: Arc<CompiledModule>,
        snapshot: Snapshot,
        config: ProcessConfig,
    ) -> Result<Self, WasmError> {
        if snapshot.format != module.format {
            return Err(WasmError::Snapshot(format!(
                "the snapshot is of format {}, the module of {}",
                snapshot.format, module.format
            )));
        }
        if snapshot.module_sha256 != module.sha256 {
            return Err(WasmError::Snapshot(
                "the snapshot belongs to another module".into(),
            ));
        }
        let parts = rebuild(&module, &config, &snapshot)?;
        Self::assemble(module, config, parts, Base::Held(snapshot), true)
    }

    /// Resumes a process on a fresh instance whose memory (`memory_len` bytes, zero-filled) is written
    /// by `fill` in place: no intermediate copy of the memory. `fill` answers the state's globals and
    /// glue, and the `source` a rollback before the next base reads the state again from.
    pub fn restore_with(
        module: Arc<CompiledModule>,
        config: ProcessConfig,
        memory_len: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(ProcessMeta, StateSource), WasmError>,
    ) -> Result<Self, WasmError> {
        let (mut store, instance, handle) = instantiate(&module, &config)?;
        let initial = exports(&store)
            .map_err(|e| WasmError::Snapshot(e.to_string()))?
            .memory
            .data_size(&store);
        let memory = grow_to(&mut store, memory_len)?;
        let data = memory.data_mut(&mut store);
        // The initial memory holds the module's data segments: clear it (grown pages are zero).
        data[..initial].fill(0);
        let (meta, source) = fill(data)?;
        set_globals(&mut store, &instance, &meta.globals)?;
        store.data_mut().glue = meta.glue;
        Self::assemble(
            module,
            config,
            (store, instance, handle),
            Base::Source(source),
            true,
        )
    }

    /// A disposable copy of this process for one dry-run: a fresh instance whose memory, globals and glue
    /// state are copied from this one (one memory copy, no intermediate buffer). The fork shares nothing
    /// with this process; a failed message on it is not rolled back (drop the fork after use).
    pub fn fork(&mut self) -> Result<Process, WasmError> {
        let meta = self.meta()?;
        let memory = self.memory.data(&self.store);
        let parts = rebuild_from(&self.module, &self.config, memory, &meta.globals, &meta.glue)?;
        let mut fork = Self::assemble(self.module.clone(), self.config.clone(), parts, Base::Fresh, true)?;
        fork.disposable = true;
        Ok(fork)
    }

    fn assemble(
        module: Arc<CompiledModule>,
        config: ProcessConfig,
        parts: (Store<HostState>, Instance, Func),
        base: Base,
        started: bool,
    ) -> Result<Self, WasmError> {
        let (store, instance, memory, abi) = live(parts, module.format)?;
        Ok(Process {
            module,
            config,
            store,
            instance,
            memory,
            abi,
            base,
            started,
            journal: Vec::new(),
            journal_bytes: 0,
            rollbacks: 0,
            disposable: false,
        })
    }

    /// The compiled module.
    pub fn module(&self) -> &Arc<CompiledModule> {
        &self.module
    }

    /// How this process is run.
    pub fn config(&self) -> &ProcessConfig {
        &self.config
    }

    /// Replaces the watch of this process (its later instances too: rollbacks, forks).
    pub fn set_watch(&mut self, watch: Option<Watch>) {
        self.store.data_mut().watch = watch.clone();
        self.config.watch = watch;
    }

    /// Evaluates one message. `msg` and `env` are the JSON texts passed to `handle`.
    /// Message failures are in the result's `Error`; `Err` means the host could not keep the process
    /// consistent (a replay diverged) or the watch stopped the evaluation
    /// ([`WasmError::Interrupted`]), and the process must be discarded.
    pub fn handle(&mut self, msg: &str, env: &str) -> Result<EvalOutput, WasmError> {
        let result = self.call(msg, env);
        let gas_used = self.store.data().gas.used.max(0.0) as u64;
        let output = match result {
            Ok(output) => output,
            Err(CallError::Message(error)) => {
                if error.is_null() {
                    // `throw undefined` in the reference: no Error, previous state kept.
                    let out = EvalOutput {
                        gas_used,
                        ..EvalOutput::failed(Value::Null, gas_used)
                    };
                    if !self.disposable {
                        self.rollback()?;
                    }
                    return Ok(EvalOutput { error: None, ..out });
                }
                EvalOutput::failed(error, gas_used)
            }
            Err(CallError::Host(e)) => return Err(e),
            Err(CallError::Stopped(stop)) => return Err(WasmError::Interrupted(stop)),
        };
        if output.keeps_previous_state() {
            if self.disposable {
                return Ok(output);
            }
            self.rollback()?;
        } else if !self.disposable {
            self.journal.push((msg.to_string(), env.to_string()));
            self.journal_bytes += msg.len() + env.len();
            if self.journal.len() >= self.config.journal_limit
                || self.journal_bytes >= self.config.journal_max_bytes
            {
                self.rebase()?;
            }
        }
        Ok(output)
    }

    /// Makes `source` the state a failed message rolls back to, in place of the base this process holds:
    /// the caller has just stored the current state (a checkpoint) and `source` reads it back. The held
    /// copy of the memory and the journal are dropped, so a checkpointed process keeps one copy of its
    /// memory, not two, and takes no in-memory base while its checkpoints come often enough.
    pub fn rebase_on(&mut self, source: StateSource) {
        if self.disposable {
            return;
        }
        self.base = Base::Source(source);
        self.journal.clear();
        self.journal_bytes = 0;
    }

    /// Loads a bare memory image the way the reference loader's reload path does (`reference/ao-cu.md`
    /// §3.1 step 3, §4.5): when the image is longer than the memory, the memory grows as the glue's
    /// `emscripten_resize_heap` grows it for that size (it may over-grow, as the reference's does), then
    /// the image overwrites the memory's prefix; a shorter image leaves the tail as it is. Globals and
    /// glue state stay as they are: a reference checkpoint holds nothing but memory, so this is how a
    /// checkpoint made by another CU resumes on a freshly booted process. The loaded state becomes the
    /// rollback base.
    pub fn load_memory_image(&mut self, image: &[u8]) -> Result<(), WasmError> {
        let have = self.memory.data_size(&self.store) as u64;
        let want = image.len() as u64;
        if want > have {
            let heap_max = self.module.format.heap_max();
            let candidates = crate::host::emscripten::heap_growth_candidates(have, want, heap_max)
                .ok_or_else(|| {
                    WasmError::Snapshot(format!(
                        "a memory image of {want} bytes is larger than the format's heap maximum ({heap_max})"
                    ))
                })?;
            let grown = candidates.into_iter().any(|size| {
                let pages = size.saturating_sub(have).div_ceil(65536);
                self.memory.grow(&mut self.store, pages).is_ok()
            });
            if !grown {
                return Err(WasmError::Snapshot(format!(
                    "cannot grow memory from {have} to {want} bytes for the image (declared maximum or \
                     memory limit)"
                )));
            }
        }
        let data = self.memory.data_mut(&mut self.store);
        data.get_mut(..image.len())
            .ok_or_else(|| WasmError::Snapshot("the memory did not grow to the image".into()))?
            .copy_from_slice(image);
        self.started = true;
        self.rebase()
    }

    /// Marks this process as a dry-run fork: failures are not rolled back and nothing is journalled.
    pub(crate) fn make_disposable(&mut self) {
        self.disposable = true;
        self.started = true;
        self.journal.clear();
        self.journal_bytes = 0;
        self.base = Base::Fresh;
    }

    /// The host address of linear memory's first byte.
    pub(crate) fn memory_base(&self) -> *mut u8 {
        self.memory.data_ptr(&self.store)
    }

    /// Grows linear memory to at least `want` bytes (a multiple of 64 KiB).
    pub(crate) fn grow_memory_to(&mut self, want: u64) -> Result<(), WasmError> {
        let have = self.memory.data_size(&self.store) as u64;
        if want > have {
            if !want.is_multiple_of(65536) {
                return Err(WasmError::Snapshot(format!(
                    "a memory of {want} bytes is not a whole number of wasm pages"
                )));
            }
            self.memory
                .grow(&mut self.store, (want - have) / 65536)
                .map_err(|e| WasmError::Snapshot(format!("cannot grow memory to {want} bytes: {e}")))?;
        }
        Ok(())
    }

    /// Sets the globals and glue state from `meta` and clears what a previous call left behind (the
    /// output tail, an Asyncify state): with the memory, the process is then in the state `meta` was
    /// taken from.
    pub(crate) fn reset_state(&mut self, meta: &ProcessMeta) -> Result<(), WasmError> {
        set_globals(&mut self.store, &self.instance, &meta.globals)?;
        let data = self.store.data_mut();
        data.glue = meta.glue.clone();
        data.stdout.clear();
        data.asyncify = Asyncify::Normal;
        Ok(())
    }

    /// The current state.
    pub fn snapshot(&mut self) -> Result<Snapshot, WasmError> {
        capture_into(&self.module, &mut self.store, &self.instance, Vec::new())
    }

    /// The globals and glue state: a [`Snapshot`] without its memory (see [`Process::memory`]).
    pub fn meta(&mut self) -> Result<ProcessMeta, WasmError> {
        let globals = capture_globals(&self.module, &mut self.store, &self.instance)?;
        Ok(ProcessMeta {
            globals,
            glue: self.store.data().glue.clone(),
        })
    }

    /// Linear memory, borrowed (no copy): checkpoints read the pages they write from here.
    pub fn memory(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    /// Bytes this process keeps resident: linear memory, the rollback base and the replay journal.
    pub fn resident_bytes(&self) -> u64 {
        let base = match &self.base {
            Base::Held(b) => b.memory.len(),
            Base::Fresh | Base::Source(_) => 0,
        };
        (self.memory.data_size(&self.store) + base + self.journal_bytes) as u64
    }

    /// BLAKE3 of linear memory, hex.
    pub fn memory_hash(&mut self) -> String {
        blake3::hash(self.memory.data(&self.store)).to_hex().to_string()
    }

    /// Size of linear memory in bytes.
    pub fn memory_size(&mut self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    /// What the module wrote to stdout/stderr recently (never printed by ao-cu itself).
    pub fn stdout(&self) -> &[u8] {
        &self.store.data().stdout
    }

    /// How many failed messages were rolled back.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    fn call(&mut self, msg: &str, env: &str) -> Result<EvalOutput, CallError> {
        let gas_limit = self.config.limits.gas_limit();
        {
            let data = self.store.data_mut();
            data.gas.used = 0.0;
            data.gas.limit = gas_limit as f64;
            data.models.clear();
        }
        if self.module.metering == Metering::Fuel {
            let fuel = gas_limit.saturating_mul(FUEL_PER_GAS);
            self.store
                .set_fuel(fuel)
                .map_err(|e| CallError::Host(WasmError::Boot(e.to_string())))?;
        }
        if self.store.data().drive.is_some() {
            let kept = &mut self.store.data_mut().msg;
            kept.clear();
            kept.push_str(msg);
        }
        let text = call_handle(&mut self.store, &self.abi, msg, env);
        // Handles end with their message, and an idle process must not keep a model in use.
        self.store.data_mut().models.clear();
        let kept = &mut self.store.data_mut().msg;
        if kept.capacity() > MSG_KEEP_CAPACITY {
            // A large message's copy is not kept resident until the next one.
            *kept = String::new();
        }
        let text = text.map_err(|e| match stopped(&e) {
            Some(stop) => CallError::Stopped(stop),
            None => match e.downcast_ref::<HostTrap>() {
                Some(HostTrap::Halt(reason)) => CallError::Host(WasmError::Halted(reason.clone())),
                _ => CallError::Message(error_value(&e)),
            },
        })?;
        let gas_used = self.store.data().gas.used.max(0.0) as u64;
        let reply = match parse_json_like_js(&text) {
            Ok(v) => v,
            Err(e) => {
                let why = if text.is_empty() {
                    "Unexpected end of JSON input".to_string()
                } else {
                    e.to_string()
                };
                return Err(CallError::Message(Value::String(format!("SyntaxError: {why}"))));
            }
        };
        let ok = reply.get("ok").is_some_and(truthy);
        let response = reply.get("response").cloned().unwrap_or(Value::Null);
        if !ok {
            return Err(CallError::Message(response));
        }
        Ok(EvalOutput::from_response(&response, gas_used))
    }

    fn rollback(&mut self) -> Result<(), WasmError> {
        self.rollbacks += 1;
        let (store, instance, handle) = match &self.base {
            Base::Held(base) => rebuild(&self.module, &self.config, base)?,
            Base::Source(source) => rebuild(&self.module, &self.config, &source()?)?,
            Base::Fresh => {
                let (mut store, instance, handle) = instantiate(&self.module, &self.config)?;
                if self.started {
                    start(&self.module, &self.config, &mut store, &instance)
                        .map_err(|e| WasmError::Replay(format!("start-up: {}", error_value(&e))))?;
                }
                (store, instance, handle)
            }
        };
        (self.store, self.instance, self.memory, self.abi) =
            live((store, instance, handle), self.module.format)?;
        let journal = std::mem::take(&mut self.journal);
        for (i, (msg, env)) in journal.iter().enumerate() {
            match self.call(msg, env) {
                Ok(out) if !out.keeps_previous_state() => {}
                Err(CallError::Stopped(stop)) => return Err(WasmError::Interrupted(stop)),
                _ => {
                    return Err(WasmError::Replay(format!(
                        "message {} of {} since the base",
                        i + 1,
                        journal.len()
                    )));
                }
            }
        }
        self.rebase()
    }

    fn rebase(&mut self) -> Result<(), WasmError> {
        // A new base overwrites the previous one's buffer in place: a fresh allocation of the whole
        // memory is zero-filled by the kernel page by page before the copy, which cost about 250 ms for
        // aos 2's 110 MB (a quarter of a millisecond per message at one base per 1,000 messages).
        let reuse = match std::mem::replace(&mut self.base, Base::Fresh) {
            Base::Held(old) => old.memory,
            Base::Fresh | Base::Source(_) => Vec::new(),
        };
        self.base = Base::Held(capture_into(
            &self.module,
            &mut self.store,
            &self.instance,
            reuse,
        )?);
        self.journal.clear();
        self.journal_bytes = 0;
        Ok(())
    }
}

/// A fresh instance ready for messages: its memory and the typed stack and `handle` functions.
fn live(
    (store, instance, handle): (Store<HostState>, Instance, Func),
    format: cu_types::ModuleFormat,
) -> Result<(Store<HostState>, Instance, wasmtime::Memory, FastAbi), WasmError> {
    let memory = exports(&store)
        .map_err(|e| WasmError::Boot(e.to_string()))?
        .memory;
    let abi = FastAbi::new(&store, &handle, format)?;
    Ok((store, instance, memory, abi))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The capacity of `HostState::msg` kept between messages; a larger copy is freed after its call.
const MSG_KEEP_CAPACITY: usize = 64 << 10;

/// The message's `Block-Height` as a JavaScript template literal renders it (`${msg['Block-Height']}`),
/// which is what WeaveDrive's admissibility query carries.
pub(crate) fn block_height_text(msg: &str) -> String {
    // `None` only when the key is absent (`undefined`); a JSON null is `Some(Null)` (`null`).
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(Some)
    }
    #[derive(serde::Deserialize)]
    struct Msg {
        #[serde(rename = "Block-Height", default, deserialize_with = "present")]
        block_height: Option<Value>,
    }
    match serde_json::from_str::<Msg>(msg).map(|m| m.block_height) {
        Ok(Some(Value::String(s))) => s,
        Ok(Some(Value::Number(n))) => n
            .as_u64()
            .map(|v| v.to_string())
            .or_else(|| n.as_i64().map(|v| v.to_string()))
            .unwrap_or_else(|| n.to_string()),
        Ok(Some(Value::Null)) => "null".into(),
        Ok(Some(Value::Bool(b))) => b.to_string(),
        // Arrays and objects never carry a height; JavaScript would render an object this way.
        Ok(Some(_)) => "[object Object]".into(),
        Ok(None) | Err(_) => "undefined".into(),
    }
}

/// Whether a call failed because its watch stopped it.
fn stopped(e: &wasmtime::Error) -> Option<Stop> {
    match e.downcast_ref::<HostTrap>() {
        Some(HostTrap::Interrupted(stop)) => Some(*stop),
        _ => None,
    }
}

/// The `Error` value of a failed call: the trap named as the reference names it.
pub fn error_value(e: &wasmtime::Error) -> Value {
    if let Some(trap) = e.downcast_ref::<HostTrap>() {
        return Value::String(match trap {
            HostTrap::Longjmp => "RuntimeError: uncaught longjmp".into(),
            other => other.to_string(),
        });
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let text = match trap {
            Trap::OutOfFuel => "out of gas!",
            Trap::StackOverflow => "RangeError: Maximum call stack size exceeded",
            Trap::MemoryOutOfBounds => "RuntimeError: memory access out of bounds",
            Trap::UnreachableCodeReached => "RuntimeError: unreachable",
            Trap::IntegerDivisionByZero => "RuntimeError: divide by zero",
            Trap::IntegerOverflow => "RuntimeError: divide result unrepresentable",
            Trap::BadConversionToInteger => "RuntimeError: float unrepresentable in integer range",
            Trap::IndirectCallToNull | Trap::BadSignature => {
                "RuntimeError: null function or function signature mismatch"
            }
            Trap::TableOutOfBounds => "RuntimeError: table index is out of bounds",
            Trap::HeapMisaligned => "RuntimeError: operation does not support unaligned accesses",
            other => return Value::String(format!("RuntimeError: {other}")),
        };
        return Value::String(text.into());
    }
    Value::String(format!("RuntimeError: {e:#}"))
}

fn memory_cap(module: &CompiledModule, limits: &Limits) -> u64 {
    let mut cap = module.format.heap_max();
    if let Some(declared) = module.declared_max_memory {
        cap = cap.min(declared);
    }
    if let Some(limit) = limits.memory_limit {
        cap = cap.min(limit);
    }
    cap
}

fn instantiate(
    module: &CompiledModule,
    config: &ProcessConfig,
) -> Result<(Store<HostState>, Instance, Func), WasmError> {
    let engine = module.module.engine();
    let mut state = HostState::new(
        module.format,
        memory_cap(module, &config.limits),
        config.this_program.clone(),
        config.limits.gas_limit(),
    );
    state.tensor = config.tensor.clone();
    state.watch = config.watch.clone();
    state.drive = config.drive.clone();
    state.model_host = config.models.clone();
    let mut store = Store::new(engine, state);
    store.limiter(|s| s);
    // Every epoch tick (the engines are built with epoch interruption) asks the watch; without one the
    // evaluation simply continues. Nothing here touches fuel, gas or anything the module can read.
    store.epoch_deadline_callback(|ctx| {
        if let Some(watch) = ctx.data().watch.clone() {
            watch.check().map_err(HostTrap::Interrupted)?;
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store.set_epoch_deadline(1);
    if module.metering == Metering::Fuel {
        let fuel = config.limits.gas_limit().saturating_mul(FUEL_PER_GAS);
        store.set_fuel(fuel).map_err(|e| WasmError::Boot(e.to_string()))?;
    }
    let instance = module
        .pre
        .instantiate(&mut store)
        .map_err(|e| WasmError::Boot(format!("{e:#}")))?;
    let names = &module.names;
    let func = |store: &mut Store<HostState>, name: &str| instance.get_func(&mut *store, name);
    let memory = instance
        .get_memory(&mut store, names.memory)
        .ok_or(WasmError::MissingExport {
            name: names.memory,
            format: module.format,
        })?;
    let exports = Exports {
        memory,
        table: instance
            .get_export(&mut store, names.table)
            .and_then(Extern::into_table),
        stack_save: func(&mut store, names.stack.0),
        stack_restore: func(&mut store, names.stack.1),
        stack_alloc: func(&mut store, names.stack.2),
        set_threw: func(&mut store, names.set_threw),
        malloc: func(&mut store, names.malloc),
        errno_location: func(&mut store, names.errno_location),
        free: func(&mut store, "free"),
        asyncify: match (
            func(&mut store, "asyncify_start_unwind"),
            func(&mut store, "asyncify_stop_unwind"),
            func(&mut store, "asyncify_start_rewind"),
            func(&mut store, "asyncify_stop_rewind"),
        ) {
            (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
            _ => None,
        },
    };
    store.data_mut().exports = Some(exports);
    let handle = func(&mut store, names.handle).ok_or(WasmError::MissingExport {
        name: names.handle,
        format: module.format,
    })?;
    Ok((store, instance, handle))
}

fn exports(store: &Store<HostState>) -> wasmtime::Result<Exports> {
    store
        .data()
        .exports
        .ok_or_else(|| HostTrap::MissingExport("memory").into())
}

/// Emscripten start-up as the glue runs it.
fn start(
    module: &CompiledModule,
    config: &ProcessConfig,
    store: &mut Store<HostState>,
    instance: &Instance,
) -> wasmtime::Result<()> {
    let names = &module.names;
    if let Some(init) = instance.get_func(&mut *store, "emscripten_stack_init") {
        call_int(&mut *store, &init, &[])?;
    }
    if let Some(end) = instance.get_func(&mut *store, "emscripten_stack_get_end") {
        // writeStackCookie: two magic words at the stack end and 'emsc' at address 0.
        let mut max = call_int(&mut *store, &end, &[])?;
        if max == 0 {
            max += 4;
        }
        let memory = exports(store)?.memory;
        let data = memory.data_mut(&mut *store);
        let mut put = |at: u64, v: u32| {
            if let Some(slot) = data.get_mut(at as usize..at as usize + 4) {
                slot.copy_from_slice(&v.to_le_bytes());
            }
        };
        put(max, 0x0213_5467);
        put(max + 4, 0x89BA_CDFE);
        put(0, 0x6373_6d65);
    }
    if let Some(ctors) = instance.get_func(&mut *store, names.ctors) {
        call_int(&mut *store, &ctors, &[])?;
    }
    let Some(main) = instance.get_func(&mut *store, names.main) else {
        return Ok(());
    };
    if module.format.main_call() == cu_types::MainCall::NotCalled {
        if module.format.creates_data_dir() {
            store.data_mut().glue.fs.create_path("/data");
        }
        return Ok(());
    }
    if module.format.main_call() == cu_types::MainCall::ProgramName {
        let e = exports(store)?;
        let alloc = e.stack_alloc.ok_or(HostTrap::MissingExport("stackAlloc"))?;
        let ptr_size = module.format.pointer_size();
        let args = [config.this_program.as_str()];
        let argv = call_int(&mut *store, &alloc, &[(args.len() as u64 + 1) * ptr_size])?;
        let mut pointers = Vec::new();
        for arg in args {
            let mut bytes = arg.as_bytes().to_vec();
            bytes.push(0);
            let p = call_int(&mut *store, &alloc, &[bytes.len() as u64])?;
            write_memory(store, p, &bytes)?;
            pointers.push(p);
        }
        pointers.push(0);
        let mut table = Vec::new();
        for p in pointers {
            if ptr_size == 8 {
                table.extend_from_slice(&p.to_le_bytes());
            } else {
                table.extend_from_slice(&(p as u32).to_le_bytes());
            }
        }
        write_memory(store, argv, &table)?;
        call_int(&mut *store, &main, &[args.len() as u64, argv])?;
    } else {
        call_int(&mut *store, &main, &[0, 0])?;
    }
    if module.format.creates_data_dir() {
        store.data_mut().glue.fs.create_path("/data");
    }
    Ok(())
}

fn write_memory(store: &mut Store<HostState>, at: u64, bytes: &[u8]) -> wasmtime::Result<()> {
    let memory = exports(store)?.memory;
    let data = memory.data_mut(&mut *store);
    let end = (at as usize)
        .checked_add(bytes.len())
        .filter(|e| *e <= data.len())
        .ok_or(HostTrap::OutOfBounds)?;
    data[at as usize..end].copy_from_slice(bytes);
    Ok(())
}

/// The stack helpers and `handle` as typed functions (cheaper than dynamic calls on the per-message path).
#[derive(Clone)]
enum FastAbi {
    Wasm32 {
        save: TypedFunc<(), i32>,
        restore: TypedFunc<i32, ()>,
        alloc: TypedFunc<i32, i32>,
        handle: TypedFunc<(i32, i32), i32>,
    },
    Wasm64 {
        save: TypedFunc<(), i64>,
        restore: TypedFunc<i64, ()>,
        alloc: TypedFunc<i64, i64>,
        handle: TypedFunc<(i64, i64), i64>,
    },
}

impl FastAbi {
    fn new(
        store: &Store<HostState>,
        handle: &Func,
        format: cu_types::ModuleFormat,
    ) -> Result<Self, WasmError> {
        let e = exports(store).map_err(|e| WasmError::Boot(e.to_string()))?;
        let missing = |name| WasmError::MissingExport { name, format };
        let (save, restore, alloc) = (
            e.stack_save.ok_or(missing("stackSave"))?,
            e.stack_restore.ok_or(missing("stackRestore"))?,
            e.stack_alloc.ok_or(missing("stackAlloc"))?,
        );
        let bad = |what: &str, err: wasmtime::Error| {
            WasmError::Link(format!(
                "{what} has a signature the {format} format does not use: {err}"
            ))
        };
        Ok(if format.is_wasm64() {
            FastAbi::Wasm64 {
                save: save.typed(store).map_err(|e| bad("the stack save export", e))?,
                restore: restore
                    .typed(store)
                    .map_err(|e| bad("the stack restore export", e))?,
                alloc: alloc.typed(store).map_err(|e| bad("the stack alloc export", e))?,
                handle: handle.typed(store).map_err(|e| bad("handle", e))?,
            }
        } else {
            FastAbi::Wasm32 {
                save: save.typed(store).map_err(|e| bad("the stack save export", e))?,
                restore: restore
                    .typed(store)
                    .map_err(|e| bad("the stack restore export", e))?,
                alloc: alloc.typed(store).map_err(|e| bad("the stack alloc export", e))?,
                handle: handle.typed(store).map_err(|e| bad("handle", e))?,
            }
        })
    }

    fn save(&self, store: &mut Store<HostState>) -> wasmtime::Result<u64> {
        match self {
            FastAbi::Wasm32 { save, .. } => save.call(store, ()).map(|v| v as u32 as u64),
            FastAbi::Wasm64 { save, .. } => save.call(store, ()).map(|v| v as u64),
        }
    }

    fn restore(&self, store: &mut Store<HostState>, sp: u64) -> wasmtime::Result<()> {
        match self {
            FastAbi::Wasm32 { restore, .. } => restore.call(store, sp as i32),
            FastAbi::Wasm64 { restore, .. } => restore.call(store, sp as i64),
        }
    }

    fn alloc(&self, store: &mut Store<HostState>, size: u64) -> wasmtime::Result<u64> {
        match self {
            FastAbi::Wasm32 { alloc, .. } => alloc.call(store, size as i32).map(|v| v as u32 as u64),
            FastAbi::Wasm64 { alloc, .. } => alloc.call(store, size as i64).map(|v| v as u64),
        }
    }

    fn handle(&self, store: &mut Store<HostState>, msg: u64, env: u64) -> wasmtime::Result<u64> {
        match self {
            FastAbi::Wasm32 { handle, .. } => handle
                .call(store, (msg as i32, env as i32))
                .map(|v| v as u32 as u64),
            FastAbi::Wasm64 { handle, .. } => handle.call(store, (msg as i64, env as i64)).map(|v| v as u64),
        }
    }
}

/// `ccall('handle', 'string', ['string', 'string'], [msg, env])`.
fn call_handle(
    store: &mut Store<HostState>,
    abi: &FastAbi,
    msg: &str,
    env: &str,
) -> wasmtime::Result<String> {
    let e = exports(store)?;
    let rule = store.data().format.string_size_rule();
    let size = |s: &str| match rule {
        StringSizeRule::Utf16UnitsTimesFour => (s.encode_utf16().count() as u64) * 4 + 1,
        StringSizeRule::Utf8Exact => s.len() as u64 + 1,
    };
    let sp = abi.save(store)?;
    let mut pointers = [0u64; 2];
    for (slot, text) in pointers.iter_mut().zip([msg, env]) {
        let p = abi.alloc(store, size(text))?;
        write_memory(store, p, text.as_bytes())?;
        write_memory(store, p + text.len() as u64, &[0])?;
        *slot = p;
    }
    store.data_mut().asyncify = Asyncify::Normal;
    let mut ret = abi.handle(store, pointers[0], pointers[1])?;
    // An import suspended through Asyncify (WeaveDrive): finish the unwind and re-enter `handle` to
    // rewind, as the glue does when the import's promise resolves.
    while let Asyncify::Unwinding { data, value } = store.data().asyncify {
        let [_, stop_unwind, start_rewind, _] = e
            .asyncify
            .ok_or(HostTrap::MissingExport("asyncify_start_unwind"))?;
        call_int(&mut *store, &stop_unwind, &[])?;
        store.data_mut().asyncify = Asyncify::Rewinding { data, value };
        call_int(&mut *store, &start_rewind, &[data])?;
        // The emscripten4 glue re-enters `handle` with no arguments (0, 0); the wasm64 glue with the
        // arguments it saved.
        let args = if store.data().format.is_wasm64() {
            pointers
        } else {
            [0, 0]
        };
        ret = abi.handle(store, args[0], args[1])?;
    }
    let text = if ret == 0 {
        String::new()
    } else {
        let memory = e.memory;
        let data = memory.data(&*store);
        let tail = data.get(ret as usize..).ok_or(HostTrap::OutOfBounds)?;
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(&tail[..end]).into_owned()
    };
    abi.restore(store, sp)?;
    Ok(text)
}

/// The state of a live instance, its memory copied into `buffer` (cleared first; its allocation is
/// reused when large enough).
fn capture_into(
    module: &CompiledModule,
    store: &mut Store<HostState>,
    instance: &Instance,
    mut buffer: Vec<u8>,
) -> Result<Snapshot, WasmError> {
    let memory = exports(store)
        .map_err(|e| WasmError::Snapshot(e.to_string()))?
        .memory;
    let globals = capture_globals(module, store, instance)?;
    buffer.clear();
    buffer.extend_from_slice(memory.data(&*store));
    Ok(Snapshot {
        format: module.format,
        module_sha256: module.sha256,
        memory: buffer,
        globals,
        glue: store.data().glue.clone(),
    })
}

fn capture_globals(
    module: &CompiledModule,
    store: &mut Store<HostState>,
    instance: &Instance,
) -> Result<Vec<(String, GlobalValue)>, WasmError> {
    let mut globals = Vec::with_capacity(module.globals.len());
    for name in &module.globals {
        let global = instance
            .get_global(&mut *store, name)
            .ok_or_else(|| WasmError::Snapshot(format!("global {name} missing")))?;
        let value = match global.get(&mut *store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            _ => {
                return Err(WasmError::Snapshot(format!(
                    "global {name} has a reference or vector type"
                )));
            }
        };
        globals.push((name.clone(), value));
    }
    Ok(globals)
}

fn rebuild(
    module: &CompiledModule,
    config: &ProcessConfig,
    snapshot: &Snapshot,
) -> Result<(Store<HostState>, Instance, Func), WasmError> {
    rebuild_from(
        module,
        config,
        &snapshot.memory,
        &snapshot.globals,
        &snapshot.glue,
    )
}

fn rebuild_from(
    module: &CompiledModule,
    config: &ProcessConfig,
    image: &[u8],
    globals: &[(String, GlobalValue)],
    glue: &crate::state::GlueState,
) -> Result<(Store<HostState>, Instance, Func), WasmError> {
    let (mut store, instance, handle) = instantiate(module, config)?;
    let memory = grow_to(&mut store, image.len() as u64)?;
    memory.data_mut(&mut store).copy_from_slice(image);
    set_globals(&mut store, &instance, globals)?;
    store.data_mut().glue = glue.clone();
    Ok((store, instance, handle))
}

/// Grows a fresh instance's memory to exactly `want` bytes.
fn grow_to(store: &mut Store<HostState>, want: u64) -> Result<wasmtime::Memory, WasmError> {
    let memory = exports(store)
        .map_err(|e| WasmError::Snapshot(e.to_string()))?
        .memory;
    let have = memory.data_size(&*store) as u64;
    if !want.is_multiple_of(65536) || want < have {
        return Err(WasmError::Snapshot(format!(
            "memory of {want} bytes cannot be restored into {have}"
        )));
    }
    if want > have {
        memory
            .grow(&mut *store, (want - have) / 65536)
            .map_err(|e| WasmError::Snapshot(format!("cannot grow memory to {want} bytes: {e}")))?;
    }
    Ok(memory)
}

fn set_globals(
    store: &mut Store<HostState>,
    instance: &Instance,
    globals: &[(String, GlobalValue)],
) -> Result<(), WasmError> {
    for (name, value) in globals {
        let global = instance
            .get_global(&mut *store, name)
            .ok_or_else(|| WasmError::Snapshot(format!("the module has no global {name}")))?;
        let v = match *value {
            GlobalValue::I32(v) => Val::I32(v),
            GlobalValue::I64(v) => Val::I64(v),
            GlobalValue::F32(v) => Val::F32(v),
            GlobalValue::F64(v) => Val::F64(v),
        };
        global
            .set(&mut *store, v)
            .map_err(|e| WasmError::Snapshot(format!("global {name}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::block_height_text;

    #[test]
    fn block_heights_render_as_a_javascript_template_literal_does() {
        assert_eq!(block_height_text(r#"{"Id":"m","Block-Height":1000}"#), "1000");
        assert_eq!(block_height_text(r#"{"Block-Height":"1439783"}"#), "1439783");
        assert_eq!(block_height_text(r#"{"Block-Height":null}"#), "null");
        assert_eq!(block_height_text(r#"{"Id":"m"}"#), "undefined");
        assert_eq!(block_height_text("not json"), "undefined");
    }
}
