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
//!   page-cache pages, pages it writes are copied then. Before the next dry-run on the same image, the
//!   copied pages (read off `/proc/self/pagemap`: present, and no longer file pages) are rewritten from
//!   the image, so they hold the image's bytes again and stay mapped writable for the next dry-run (no
//!   fault, no TLB shootdown); a different image is mapped anew. No copy of the whole memory is made per
//!   dry-run (only of the pages dry-runs write), and the process itself is never touched.
//!
//! The mapping is placed with `MAP_FIXED` over the start of the instance's linear memory, inside the
//! reservation wasmtime made for it: the base address and the accessible length that wasmtime knows do
//! not change, so compiled code, bounds checks and guard pages are unaffected. When the runner is
//! dropped, anonymous zero pages are mapped back so that the reservation is exactly what wasmtime's
//! allocator expects to reclaim (a pooling allocator reuses its slots).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cu_types::EvalOutput;

use crate::error::WasmError;
use crate::module::CompiledModule;
use crate::process::{Process, ProcessConfig, ProcessMeta};
use crate::watch::Watch;

/// Host page size the image is written and mapped in.
const PAGE: usize = 4096;

static ZERO_PAGE: [u8; PAGE] = [0; PAGE];

/// Distinguishes images, so a runner knows whether the image it has mapped is the one asked for.
static NEXT_IMAGE: AtomicU64 = AtomicU64::new(1);

/// `/proc/self/pagemap`: the page is present in memory.
const PM_PRESENT: u64 = 1 << 63;
/// `/proc/self/pagemap`: the page is swapped out.
const PM_SWAPPED: u64 = 1 << 62;
/// `/proc/self/pagemap`: the page is a file page (here: still the image's own page, not a private copy).
const PM_FILE: u64 = 1 << 61;

/// A process state frozen for dry-runs: memory in a memfd, globals and glue state beside it.
pub struct ForkImage {
    id: u64,
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
            id: NEXT_IMAGE.fetch_add(1, Relaxed),
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
    /// The image mapped (its id) and the base address it is mapped at.
    current: Option<(u64, usize)>,
    /// `/proc/self/pagemap`, to find the pages a dry-run copied (absent where it cannot be read: every
    /// dry-run then remaps the whole image).
    pagemap: Option<File>,
    /// Reused buffer of pagemap entries.
    entries: Vec<u8>,
    /// How many times an image was mapped anew (the rest of the dry-runs only dropped their copies).
    remaps: u64,
}

impl DryRunner {
    /// A runner for processes of `module` run with `config` (instantiated, never started: every dry-run
    /// brings its state from an image).
    pub fn new(module: Arc<CompiledModule>, config: ProcessConfig) -> Result<DryRunner, WasmError> {
        let config = ProcessConfig {
            watch: None,
            ..config
        };
        let mut process = Process::instantiate(module, config)?;
        process.make_disposable();
        Ok(DryRunner {
            process,
            mapped: 0,
            current: None,
            pagemap: File::open("/proc/self/pagemap").ok(),
            entries: Vec::new(),
            remaps: 0,
        })
    }

    /// The module this runner instantiates.
    pub fn module(&self) -> &Arc<CompiledModule> {
        self.process.module()
    }

    /// How many dry-runs mapped their image anew; the others reused the mapping and dropped only the
    /// pages the previous dry-run had copied.
    pub fn remaps(&self) -> u64 {
        self.remaps
    }

    /// Whether this runner can take `image`: same module, and its memory is not larger than the image
    /// (wasm memory cannot shrink; a dry-run that grew memory leaves a runner only later images fit).
    pub fn fits(&mut self, image: &ForkImage) -> bool {
        image.module_sha256 == self.process.module().sha256 && self.process.memory_size() <= image.len as u64
    }

    /// Evaluates `msg` on the state frozen in `image`. Nothing of a previous dry-run survives: memory is
    /// remapped from the image, globals and glue state are reset from it.
    pub fn run(&mut self, image: &ForkImage, msg: &str, env: &str) -> Result<EvalOutput, WasmError> {
        self.run_watched(image, msg, env, None)
    }

    /// [`DryRunner::run`] under `watch` (a time limit, a cancel flag: see [`crate::watch`]). A stopped
    /// dry-run is [`WasmError::Interrupted`]; the runner stays usable.
    pub fn run_watched(
        &mut self,
        image: &ForkImage,
        msg: &str,
        env: &str,
        watch: Option<Watch>,
    ) -> Result<EvalOutput, WasmError> {
        self.process.set_watch(watch);
        if !self.fits(image) {
            return Err(WasmError::Snapshot(format!(
                "a dry-run instance of {} bytes cannot take an image of {} bytes of this module",
                self.process.memory_size(),
                image.len
            )));
        }
        self.process.grow_memory_to(image.len as u64)?;
        let base = self.process.memory_base();
        let same = self.current == Some((image.id, base as usize)) && self.mapped == image.len;
        if !(same && self.restore_copies(image, base)) {
            // SAFETY: `base..base + image.len` is the accessible start of this instance's linear memory
            // (grown to at least `image.len` above), owned by `self.process`, which is not running and is
            // borrowed mutably here, so nothing reads or writes it during the call. The new mapping has
            // the same address, length and protection, so wasmtime's view of the memory stays valid.
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
            self.current = Some((image.id, base as usize));
            self.remaps += 1;
        }
        self.mapped = image.len;
        self.process.reset_state(&image.meta)?;
        self.process.handle(msg, env)
    }
}

impl DryRunner {
    /// Rewrites the private copies that earlier dry-runs made of the mapped image's pages (found in
    /// `/proc/self/pagemap`: present pages that are no longer the file's) with the image's bytes, so the
    /// memory is the image again. The copies stay mapped and writable: the next dry-run writing the same
    /// pages takes no page fault (a copy-on-write fault on a page that is already mapped costs a TLB
    /// shootdown across the node's cores), and pages that were only read stay the image's own. `false`
    /// when the page map cannot be read (the caller remaps the whole image instead).
    fn restore_copies(&mut self, image: &ForkImage, base: *mut u8) -> bool {
        let Some(pagemap) = &self.pagemap else {
            return false;
        };
        let pages = self.mapped / PAGE;
        self.entries.resize(pages * 8, 0);
        let offset = (base as usize / PAGE * 8) as u64;
        if pagemap.read_exact_at(&mut self.entries, offset).is_err() {
            return false;
        }
        let copied = |i: usize| {
            let mut e = [0u8; 8];
            e.copy_from_slice(&self.entries[i * 8..i * 8 + 8]);
            let e = u64::from_ne_bytes(e);
            (e & PM_SWAPPED != 0) || (e & PM_PRESENT != 0 && e & PM_FILE == 0)
        };
        let mut i = 0;
        while i < pages {
            if !copied(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < pages && copied(i) {
                i += 1;
            }
            // SAFETY: a sub-range of this instance's linear memory (`pages` pages from `base` are
            // mapped from the image), which nothing else reads or writes while `self` is borrowed
            // mutably and the instance is not running.
            let copy = unsafe { std::slice::from_raw_parts_mut(base.add(start * PAGE), (i - start) * PAGE) };
            if image.file.read_exact_at(copy, (start * PAGE) as u64).is_err() {
                return false;
            }
        }
        true
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
