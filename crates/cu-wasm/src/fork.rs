//! Copy-on-write forks for dry-runs.
//!
//! A dry-run evaluates a message on the latest state of a process and throws the outcome away. Copying
//! the process's memory for every dry-run costs more than the evaluation itself (16 MiB of page faults and
//! copying for the smallest Lua process, against a fraction of a millisecond of Lua). Instead:
//!
//! - [`ForkImage`]: the state of a process at one position, frozen once: its linear memory written into
//!   an anonymous memory file (`memfd`; pages of zeros are left as holes and cost nothing), with its
//!   globals and glue state. The image is immutable once made and shared by every dry-run on that state.
//! - [`DryRunner`]: a reusable instance of the module. Before each dry-run its linear memory is replaced
//!   by a private (copy-on-write) mapping of the image: pages the dry-run only reads are the image's own
//!   page-cache pages, pages it writes are copied then; remapping for the next dry-run drops them. No
//!   copy of the memory is made per dry-run, and the process itself is never touched.
//!
//! The mapping is placed with `MAP_FIXED` over the start of the instance's linear memory, inside the
//! reservation wasmtime made for it: the base address and the accessible length that wasmtime knows do
//! not change, so compiled code, bounds checks and guard pages are unaffected. When the runner is
//! dropped, anonymous zero pages are mapped back so that the reservation is exactly what wasmtime's
//! allocator expects to reclaim (a pooling allocator reuses its slots).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cu_types::EvalOutput;

use crate::error::WasmError;
use crate::module::CompiledModule;
use crate::process::{Process, ProcessConfig, ProcessMeta};

/// Host page size the image is written and mapped in.
const PAGE: usize = 4096;

static ZERO_PAGE: [u8; PAGE] = [0; PAGE];

/// A process state frozen for dry-runs: memory in a memfd, globals and glue state beside it.
pub struct ForkImage {
    file: File,
    len: usize,
    stored: u64,
    meta: ProcessMeta,
    module_sha256: [u8; 32],
}

impl std::fmt::Debug for ForkImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkImage")
            .field("len", &self.len)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl ForkImage {
    /// Freezes the current state of `process` (one pass over its memory; zero pages are not written).
    pub fn of(process: &mut Process) -> Result<ForkImage, WasmError> {
        let meta = process.meta()?;
        let module_sha256 = process.module().sha256;
        let memory = process.memory();
        let len = memory.len();
        let fd = rustix::fs::memfd_create("ao-cu-dry-run", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(std::io::Error::from)?;
        let file = File::from(fd);
        file.set_len(len as u64)?;
        let mut stored = 0u64;
        let mut page = 0;
        let pages = len / PAGE;
        while page < pages {
            if is_zero(memory, page) {
                page += 1;
                continue;
            }
            let start = page;
            while page < pages && !is_zero(memory, page) {
                page += 1;
            }
            let bytes = &memory[start * PAGE..page * PAGE];
            file.write_all_at(bytes, (start * PAGE) as u64)?;
            stored += bytes.len() as u64;
        }
        Ok(ForkImage {
            file,
            len,
            stored,
            meta,
            module_sha256,
        })
    }

    /// Size of the frozen linear memory in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frozen memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the image holds in memory (its non-zero pages).
    pub fn stored_bytes(&self) -> u64 {
        self.stored
    }
}

fn is_zero(memory: &[u8], page: usize) -> bool {
    memory[page * PAGE..(page + 1) * PAGE] == ZERO_PAGE
}

/// A reusable instance that evaluates dry-runs on [`ForkImage`]s of processes of one module.
pub struct DryRunner {
    process: Process,
    /// Bytes of the instance's memory currently mapped from an image (0: wasmtime's own pages).
    mapped: usize,
}

impl DryRunner {
    /// A runner for processes of `module` run with `config` (instantiated, never started: every dry-run
    /// brings its state from an image).
    pub fn new(module: Arc<CompiledModule>, config: ProcessConfig) -> Result<DryRunner, WasmError> {
        let mut process = Process::instantiate(module, config)?;
        process.make_disposable();
        Ok(DryRunner { process, mapped: 0 })
    }

    /// The module this runner instantiates.
    pub fn module(&self) -> &Arc<CompiledModule> {
        self.process.module()
    }

    /// Whether this runner can take `image`: same module, and its memory is not larger than the image
    /// (wasm memory cannot shrink; a dry-run that grew memory leaves a runner only later images fit).
    pub fn fits(&mut self, image: &ForkImage) -> bool {
        image.module_sha256 == self.process.module().sha256 && self.process.memory_size() <= image.len as u64
    }

    /// Evaluates `msg` on the state frozen in `image`. Nothing of a previous dry-run survives: memory is
    /// remapped from the image, globals and glue state are reset from it.
    pub fn run(&mut self, image: &ForkImage, msg: &str, env: &str) -> Result<EvalOutput, WasmError> {
        if !self.fits(image) {
            return Err(WasmError::Snapshot(format!(
                "a dry-run instance of {} bytes cannot take an image of {} bytes of this module",
                self.process.memory_size(),
                image.len
            )));
        }
        self.process.grow_memory_to(image.len as u64)?;
        let base = self.process.memory_base();
        // SAFETY: `base..base + image.len` is the accessible start of this instance's linear memory
        // (grown to at least `image.len` above), owned by `self.process`, which is not running and is
        // borrowed mutably here, so nothing reads or writes it during the call. The new mapping has the
        // same address, length and protection, so wasmtime's view of the memory stays valid.
        unsafe {
            rustix::mm::mmap(
                base.cast(),
                image.len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
                &image.file,
                0,
            )
        }
        .map_err(|e| WasmError::Snapshot(format!("cannot map a dry-run image: {e}")))?;
        self.mapped = image.len;
        self.process.reset_state(&image.meta)?;
        self.process.handle(msg, env)
    }
}

impl Drop for DryRunner {
    fn drop(&mut self) {
        if self.mapped == 0 {
            return;
        }
        let base = self.process.memory_base();
        // SAFETY: as in `run`: the range is this instance's accessible memory, nothing uses it now.
        // Anonymous zero pages are what wasmtime's allocators map there themselves.
        let restored = unsafe {
            rustix::mm::mmap_anonymous(
                base.cast(),
                self.mapped,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
            )
        };
        if let Err(e) = restored {
            tracing::error!("cannot unmap a dry-run image: {e}");
        }
    }
}
