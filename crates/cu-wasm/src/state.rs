//! Per-process host state: everything outside linear memory that the module can observe.
//!
//! The fake clock, the random sequence, `tempRet0`, the time-zone flag and the in-memory file system are
//! part of the process state, so they are saved in every snapshot and restored with it (the reference
//! keeps them in JavaScript globals; its shared clock is a bug we do not copy).

use cu_gpu::TensorDevice;
use cu_types::ModuleFormat;
use serde::{Deserialize, Serialize};
use wasmtime::{Func, Memory, ResourceLimiter, Table};

use crate::host::fs::MemFs;

/// The first value of the fake `Date.now()` clock in the reference glue.
pub const CLOCK_START_MS: f64 = 10_000.0;

/// How much of the module's stdout/stderr is kept for diagnostics (never printed by a server).
pub const STDOUT_KEEP: usize = 64 * 1024;

/// Exports of the instance that host functions call back into.
#[derive(Clone, Copy)]
pub struct Exports {
    /// Linear memory (`memory`, or `E` in the minified format).
    pub memory: Memory,
    /// `__indirect_function_table` (`I`), used by `invoke_*`.
    pub table: Option<Table>,
    /// The format's `stackSave` equivalent.
    pub stack_save: Option<Func>,
    /// The format's `stackRestore` equivalent.
    pub stack_restore: Option<Func>,
    /// The format's `stackAlloc` equivalent.
    pub stack_alloc: Option<Func>,
    /// `setThrew(threw, value)`, called when a longjmp is caught.
    pub set_threw: Option<Func>,
    /// `malloc`, used by the emscripten 2 time-zone glue.
    pub malloc: Option<Func>,
    /// `__errno_location`, used to set `errno` (ENOSYS from `system`).
    pub errno_location: Option<Func>,
    /// `free`, used to release the Asyncify data area.
    pub free: Option<Func>,
    /// The Asyncify exports `start_unwind`, `stop_unwind`, `start_rewind`, `stop_rewind` (formats 4/wasm64).
    pub asyncify: Option<[Func; 4]>,
}

/// Where an emulated Asyncify suspension stands (see `host::weavedrive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Asyncify {
    /// No suspension.
    #[default]
    Normal,
    /// An import started an unwind; `handle` must be re-entered to rewind (every WeaveDrive import
    /// suspends this way, as `Asyncify.handleAsync` always does).
    Unwinding {
        /// The data area given to `asyncify_start_unwind`.
        data: u64,
        /// What the import returns once rewound.
        value: i64,
    },
    /// `handle` was re-entered; the import that unwound will be called again and return `value`.
    Rewinding {
        /// The data area.
        data: u64,
        /// What the import returns.
        value: i64,
    },
}

/// The state of the glue that persists across messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlueState {
    /// The fake `Date.now()`: starts at 10000 and is incremented by every read.
    pub clock_ms: f64,
    /// The reference's `Math.random` replacement state (`MAGIC`).
    pub random: f64,
    /// The emscripten 1/2 `tempRet0` register.
    pub temp_ret0: i32,
    /// `_tzset_js` runs once (it allocates the zone names in emscripten 2).
    pub tz_initialised: bool,
    /// The in-memory file system.
    pub fs: MemFs,
}

impl GlueState {
    /// The state of a freshly instantiated module.
    pub fn new(format: ModuleFormat) -> Self {
        GlueState {
            clock_ms: CLOCK_START_MS + format.clock_ticks_at_start() as f64,
            random: 0.0,
            temp_ret0: 0,
            tz_initialised: false,
            fs: MemFs::new(format.has_filesystem()),
        }
    }

    /// `Date.now()`: returns the clock and advances it by one millisecond.
    pub fn tick(&mut self) -> f64 {
        let now = self.clock_ms;
        self.clock_ms += 1.0;
        now
    }

    /// The reference's deterministic `Math.random`: `MAGIC = (MAGIC + 1.8912)^3 % 1`.
    pub fn next_random(&mut self) -> f64 {
        self.random = (self.random + 1.8912).powi(3) % 1.0;
        self.random
    }
}

/// Gas accounting for one message, as the reference glue keeps it (a double).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gas {
    /// Gas used since the last refill.
    pub used: f64,
    /// The limit; going past it traps with `out of gas!`.
    pub limit: f64,
}

/// Everything a host function can reach.
pub struct HostState {
    /// The module's format.
    pub format: ModuleFormat,
    /// Exports, recorded after instantiation.
    pub exports: Option<Exports>,
    /// Glue state saved in snapshots.
    pub glue: GlueState,
    /// Gas of the current call.
    pub gas: Gas,
    /// The most bytes linear memory may grow to (declared maximum, format heap maximum, `Memory-Limit`).
    pub memory_cap: u64,
    /// `argv[0]` and the `_` environment variable.
    pub this_program: String,
    /// The tail of what the module wrote to stdout and stderr.
    pub stdout: Vec<u8>,
    /// Emulated Asyncify suspension (always `Normal` between messages).
    pub asyncify: Asyncify,
    /// The device `ao_tensor` calls compute on (`ProcessConfig::tensor`).
    pub tensor: TensorDevice,
    /// Called about every epoch tick while the module runs (`ProcessConfig::watch`); never seen by it.
    pub watch: Option<crate::watch::Watch>,
    /// WeaveDrive (`ProcessConfig::drive`); `None`: the module has no `Module.WeaveDrive`.
    pub drive: Option<crate::drive::Drive>,
    /// The text of the message being evaluated, kept for processes with WeaveDrive only: its
    /// `Block-Height` is read from it when an admissibility check needs it (rarely), not per message.
    pub msg: String,
    /// The node's models (`ProcessConfig::models`); `None`: `model_open` traps.
    pub model_host: Option<crate::models::ModelHost>,
    /// The models the current message opened (cleared around every message).
    pub models: crate::models::OpenModels,
}

impl HostState {
    /// A fresh state for a module of `format`.
    pub fn new(format: ModuleFormat, memory_cap: u64, this_program: String, gas_limit: u64) -> Self {
        HostState {
            format,
            exports: None,
            glue: GlueState::new(format),
            gas: Gas {
                used: 0.0,
                limit: gas_limit as f64,
            },
            memory_cap,
            this_program,
            stdout: Vec::new(),
            asyncify: Asyncify::Normal,
            tensor: crate::host::tensor::default_device(),
            watch: None,
            drive: None,
            msg: String::new(),
            model_host: None,
            models: crate::models::OpenModels::default(),
        }
    }

    /// Appends module output to the captured tail.
    pub fn capture_stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
        if self.stdout.len() > STDOUT_KEEP {
            let cut = self.stdout.len() - STDOUT_KEEP;
            self.stdout.drain(..cut);
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= self.memory_cap)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000_000)
    }
}
