//! Host imports, one file per family, linked by name against a module's import section.
//!
//! Every import of a module is resolved here once per compiled module (the result is an `InstancePre`).
//! Host functions are written once for every format: they read their arguments as untyped integers
//! ([`Args`]) and write their result in whatever type the module declared ([`set_result`]), so the
//! wasm32 (`i32` pointers) and wasm64 (`i64` pointers) signatures of the same import share one body.
//! Names resolve under `env`, `wasi_snapshot_preview1` and, for the minified format, `a` (see
//! [`minified_name`]), exactly as the reference glue passes one object under both module names.
//!
//! Families: [`emscripten`] (runtime, heap, longjmp, abort/exit, system), [`clock`] (the fake clocks, time
//! zone and `strftime`), [`wasi`] (`fd_*`, `environ_*`), [`fs`] (the in-memory file system and the
//! `__syscall_*` imports), [`metering`] (`metering.usegas`, `metering_gasUsed`), [`weavedrive`], and [`tensor`]
//! (the `ao_tensor` module: int8 tensor operations on the process's `cu_gpu::TensorDevice`), and [`model`]
//! (its `model_*` functions: language models the node holds, `crate::models`).

pub mod clock;
pub mod emscripten;
pub mod fs;
pub mod metering;
pub mod model;
pub mod tensor;
pub mod wasi;
pub mod weavedrive;

use wasmtime::{AsContextMut, Caller, Extern, Func, Linker, Memory, Module, Val, ValType};

use crate::error::WasmError;
use crate::state::HostState;

/// The signature every dynamically linked host function has.
pub type HostFn = fn(&mut Caller<'_, HostState>, &[Val], &mut [Val]) -> wasmtime::Result<()>;

/// A trap raised by the host, turned into the message's `Error` text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostTrap {
    /// `metering.usegas` or fuel went past the message's gas limit.
    #[error("out of gas!")]
    OutOfGas,
    /// `_emscripten_throw_longjmp`: caught by the nearest `invoke_*`, otherwise an uncaught longjmp.
    #[error("longjmp")]
    Longjmp,
    /// `exit(status)` from the module.
    #[error("Program terminated with exit({0})")]
    Exit(i32),
    /// `abort`, `_abort_js`, `__assert_fail`, `_dlopen_js` and similar; the text after `RuntimeError: `.
    #[error("RuntimeError: {0}")]
    Abort(String),
    /// A pointer passed to the host points outside linear memory.
    #[error("RuntimeError: memory access out of bounds")]
    OutOfBounds,
    /// A WeaveDrive call the module got wrong (a bad descriptor): the message's `Error`.
    #[error("{0}")]
    WeaveDrive(String),
    /// WeaveDrive cannot answer (data not admissible or not found, the source unreachable): the
    /// evaluation halts without a result ([`crate::WasmError::Halted`]; see [`crate::drive`]).
    #[error("{0}")]
    Halt(String),
    /// An `ao_tensor` call failed (bad pointer or size, bad parameter): `ao_tensor.<import>: <detail>`.
    #[error("ao_tensor.{import}: {detail}")]
    Tensor {
        /// The import's name.
        import: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A module export the host needs is missing.
    #[error("RuntimeError: the module does not export {0}")]
    MissingExport(&'static str),
    /// The process's watch stopped the evaluation from outside (never a message result: see
    /// [`crate::watch`]).
    #[error("the evaluation was stopped: {0}")]
    Interrupted(crate::watch::Stop),
}

/// Looks up the host function for an import name (already un-minified).
fn lookup(name: &str) -> Option<HostFn> {
    emscripten::lookup(name)
        .or_else(|| clock::lookup(name))
        .or_else(|| wasi::lookup(name))
        .or_else(|| fs::lookup(name))
        .or_else(|| metering::lookup(name))
        .or_else(|| weavedrive::lookup(name))
}

/// The import names of the minified `wasm32-unknown-emscripten` glue (module `a`).
pub fn minified_name(letter: &str) -> Option<&'static str> {
    Some(match letter {
        "a" => "_emscripten_date_now",
        "b" => "setTempRet0",
        "c" => "fd_close",
        "d" => "__syscall_fcntl64",
        "e" => "__syscall_unlinkat",
        "f" => "fd_write",
        "g" => "__syscall_openat",
        "h" => "getTempRet0",
        "i" => "_mktime_js",
        "j" => "_tzset_js",
        "k" => "emscripten_memcpy_big",
        "l" => "exit",
        "m" => "system",
        "n" => "strftime",
        "o" => "fd_seek",
        "p" => "_emscripten_throw_longjmp",
        "q" => "emscripten_resize_heap",
        "r" => "__syscall_lstat64",
        "s" => "__syscall_renameat",
        "t" => "__syscall_rmdir",
        "u" => "environ_get",
        "v" => "environ_sizes_get",
        "w" => "__syscall_dup3",
        "x" => "invoke_vii",
        "y" => "fd_read",
        "z" => "__syscall_ioctl",
        "A" => "_emscripten_get_now_is_monotonic",
        "B" => "_gmtime_js",
        "C" => "_localtime_js",
        "D" => "abort",
        _ => return None,
    })
}

/// Defines every import of `module` in `linker`, or explains the first one that cannot be provided.
pub fn link(linker: &mut Linker<HostState>, module: &Module, minified: bool) -> Result<(), WasmError> {
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            return Err(WasmError::UnsupportedImport {
                module: module_name.into(),
                name: name.into(),
                reason:
                    "only function imports are provided (the module must define its own memory and table)"
                        .into(),
            });
        };
        if module_name == "metering" && name == "usegas" {
            metering::define_usegas(linker, &ty)?;
            continue;
        }
        if module_name == tensor::MODULE {
            tensor::define(linker, name, &ty)?;
            continue;
        }
        let canonical = match module_name {
            "a" if minified => minified_name(name).ok_or_else(|| WasmError::UnsupportedImport {
                module: module_name.into(),
                name: name.into(),
                reason: "not an import of the minified wasm32-unknown-emscripten glue".into(),
            })?,
            "env" | "wasi_snapshot_preview1" => name,
            _ => {
                return Err(WasmError::UnsupportedImport {
                    module: module_name.into(),
                    name: name.into(),
                    reason: "unknown import module".into(),
                });
            }
        };
        let define = |linker: &mut Linker<HostState>, f: HostFn| {
            // Result slots are typed from the import's declaration so that host functions can write
            // the value in the type the module expects (see `set_result`).
            let result_types: Vec<Val> = ty.results().map(|t| zero(&t)).collect();
            linker
                .func_new(module_name, name, ty.clone(), move |mut caller, args, results| {
                    results.clone_from_slice(&result_types);
                    f(&mut caller, args, results)
                })
                .map(|_| ())
                .map_err(|e| WasmError::Link(e.to_string()))
        };
        if let Some(sig) = canonical.strip_prefix("invoke_") {
            emscripten::check_invoke_signature(sig, &ty).map_err(|reason| WasmError::UnsupportedImport {
                module: module_name.into(),
                name: name.into(),
                reason,
            })?;
            define(linker, emscripten::invoke)?;
            continue;
        }
        // The minified glue has no file system: its syscall stubs return `undefined`, which is 0.
        let found = if minified && canonical.starts_with("__syscall_") {
            Some(
                (|_, _, results| {
                    set_result(results, 0);
                    Ok(())
                }) as HostFn,
            )
        } else {
            lookup(canonical)
        };
        match found {
            Some(f) => define(linker, f)?,
            None => {
                return Err(WasmError::UnsupportedImport {
                    module: module_name.into(),
                    name: name.into(),
                    reason: "no AO module format provides this import".into(),
                });
            }
        }
    }
    Ok(())
}

/// Untyped access to host function arguments.
pub trait Args {
    /// Argument `i` as an unsigned integer (`i32` zero-extended): pointers and sizes.
    fn u(&self, i: usize) -> u64;
    /// Argument `i` as a signed integer (`i32` sign-extended): file descriptors, flags, offsets.
    fn s(&self, i: usize) -> i64;
    /// Argument `i` as a double.
    fn f(&self, i: usize) -> f64;
}

impl Args for [Val] {
    fn u(&self, i: usize) -> u64 {
        match self.get(i) {
            Some(Val::I32(v)) => *v as u32 as u64,
            Some(Val::I64(v)) => *v as u64,
            Some(Val::F64(bits)) => f64::from_bits(*bits) as u64,
            _ => 0,
        }
    }
    fn s(&self, i: usize) -> i64 {
        match self.get(i) {
            Some(Val::I32(v)) => *v as i64,
            Some(Val::I64(v)) => *v,
            Some(Val::F64(bits)) => f64::from_bits(*bits) as i64,
            _ => 0,
        }
    }
    fn f(&self, i: usize) -> f64 {
        match self.get(i) {
            Some(Val::F64(bits)) => f64::from_bits(*bits),
            Some(Val::F32(bits)) => f32::from_bits(*bits) as f64,
            Some(Val::I32(v)) => *v as f64,
            Some(Val::I64(v)) => *v as f64,
            _ => f64::NAN,
        }
    }
}

/// Writes an integer result in the type the import declared (`i32` wraps, `f64` converts).
pub fn set_result(results: &mut [Val], value: i64) {
    if let Some(slot) = results.first_mut() {
        *slot = match slot {
            Val::I64(_) => Val::I64(value),
            Val::F64(_) => Val::F64((value as f64).to_bits()),
            Val::F32(_) => Val::F32((value as f32).to_bits()),
            _ => Val::I32(value as i32),
        };
    }
}

/// Writes a floating-point result in the type the import declared.
pub fn set_result_f64(results: &mut [Val], value: f64) {
    if let Some(slot) = results.first_mut() {
        *slot = match slot {
            Val::F64(_) => Val::F64(value.to_bits()),
            Val::F32(_) => Val::F32((value as f32).to_bits()),
            Val::I64(_) => Val::I64(value as i64),
            _ => Val::I32(value as i32),
        };
    }
}

/// The default value of a type, used to pre-fill result slots.
pub fn zero(ty: &ValType) -> Val {
    match ty {
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::V128 => Val::V128(0u128.into()),
        _ => Val::I32(0),
    }
}

/// The module's linear memory, recorded at instantiation.
pub fn memory(caller: &Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    caller
        .data()
        .exports
        .as_ref()
        .map(|e| e.memory)
        .ok_or_else(|| HostTrap::MissingExport("memory").into())
}

/// Bounds-checked access to linear memory from a host function.
pub struct Mem<'a> {
    /// The whole linear memory.
    pub data: &'a mut [u8],
    /// Pointer width of the module (4 or 8 bytes).
    pub ptr_size: u64,
}

impl<'a> Mem<'a> {
    /// Borrows the memory of the calling instance.
    pub fn of(caller: &'a mut Caller<'_, HostState>) -> wasmtime::Result<Self> {
        let memory = memory(caller)?;
        let ptr_size = caller.data().format.pointer_size();
        Ok(Mem {
            data: memory.data_mut(caller),
            ptr_size,
        })
    }

    fn range(&self, ptr: u64, len: u64) -> wasmtime::Result<std::ops::Range<usize>> {
        let end = ptr.checked_add(len).ok_or(HostTrap::OutOfBounds)?;
        if end > self.data.len() as u64 {
            return Err(HostTrap::OutOfBounds.into());
        }
        Ok(ptr as usize..end as usize)
    }

    /// `len` bytes at `ptr`.
    pub fn bytes(&self, ptr: u64, len: u64) -> wasmtime::Result<&[u8]> {
        let r = self.range(ptr, len)?;
        Ok(&self.data[r])
    }

    /// Copies `bytes` to `ptr`.
    pub fn write(&mut self, ptr: u64, bytes: &[u8]) -> wasmtime::Result<()> {
        let r = self.range(ptr, bytes.len() as u64)?;
        self.data[r].copy_from_slice(bytes);
        Ok(())
    }

    /// A little-endian `i32` at `ptr`.
    pub fn i32(&self, ptr: u64) -> wasmtime::Result<i32> {
        let b = self.bytes(ptr, 4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian `i64` at `ptr`.
    pub fn i64(&self, ptr: u64) -> wasmtime::Result<i64> {
        let b = self.bytes(ptr, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// A pointer-sized unsigned value at `ptr`.
    pub fn ptr(&self, ptr: u64) -> wasmtime::Result<u64> {
        if self.ptr_size == 8 {
            self.i64(ptr).map(|v| v as u64)
        } else {
            self.i32(ptr).map(|v| v as u32 as u64)
        }
    }

    /// Writes a little-endian `i32`.
    pub fn set_i32(&mut self, ptr: u64, v: i32) -> wasmtime::Result<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// Writes a little-endian `i64`.
    pub fn set_i64(&mut self, ptr: u64, v: i64) -> wasmtime::Result<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// Writes a pointer-sized value.
    pub fn set_ptr(&mut self, ptr: u64, v: u64) -> wasmtime::Result<()> {
        if self.ptr_size == 8 {
            self.set_i64(ptr, v as i64)
        } else {
            self.set_i32(ptr, v as u32 as i32)
        }
    }

    /// The NUL-terminated string at `ptr`, decoded as UTF-8 with U+FFFD for invalid bytes (`UTF8ToString`).
    pub fn c_string(&self, ptr: u64) -> wasmtime::Result<String> {
        if ptr >= self.data.len() as u64 {
            return Err(HostTrap::OutOfBounds.into());
        }
        let tail = &self.data[ptr as usize..];
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
    }
}

/// Calls a module function the host needs (stack helpers, `setThrew`, `malloc`, Asyncify) with integer
/// arguments converted to its parameter types (`i64` for wasm64 pointers, `i32` otherwise); returns its
/// first result as an unsigned integer (0 when it has none).
pub fn call_int(
    mut ctx: impl AsContextMut<Data = HostState>,
    f: &Func,
    args: &[u64],
) -> wasmtime::Result<u64> {
    let ty = f.ty(&ctx);
    let params: Vec<Val> = ty
        .params()
        .zip(args)
        .map(|(t, v)| match t {
            ValType::I64 => Val::I64(*v as i64),
            _ => Val::I32(*v as i32),
        })
        .collect();
    let mut results: Vec<Val> = ty.results().map(|t| zero(&t)).collect();
    f.call(&mut ctx, &params, &mut results)?;
    Ok(results.as_slice().u(0))
}

/// Reads export `name` of kind function from the caller's instance, if present.
pub fn export_func(caller: &mut Caller<'_, HostState>, name: &str) -> Option<Func> {
    caller.get_export(name).and_then(Extern::into_func)
}
