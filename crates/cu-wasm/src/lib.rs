//! The ao-cu evaluator: deterministic wasmtime, the AOT cache, and the Emscripten host ABI of every AO
//! module format.
//!
//! A narrow wrapper over wasmtime: a [`Loader`] compiles a module (through the on-disk [`AotCache`],
//! keyed by the module's SHA-256, the load-time transform and the engine's compatibility hash) into a
//! [`CompiledModule`] whose imports are linked once; a [`Process`] is one resident instance with
//! [`Process::boot`], [`Process::handle`], [`Process::snapshot`] and [`Process::restore`].
//!
//! - [`engine`]: the fixed, deterministic engine configuration (fuel for unmetered modules).
//! - [`cache`]: `.cwasm` artefacts with checked headers, written atomically.
//! - [`prepare`]: load-time export of internal mutable globals, so snapshots can carry them.
//! - [`module`]: transforms (metering for the `-metering` formats via `cu-metering`), compile, link.
//! - [`host`]: one file per import family, including `ao_tensor` (tensor operations on a
//!   `cu_gpu::TensorDevice`, the GPU or its CPU twin, per [`ProcessConfig::tensor`]; `docs/tensor-api.md`).
//! - [`models`]: the node's language models (`ao_tensor.model_*`): loaded once by data item id through
//!   the embedder's [`drive::DriveSource`], shared by every process, within a byte budget.
//! - [`state`]: the per-process glue state (fake clock, random sequence, file system) kept in snapshots.
//! - [`drive`]: WeaveDrive (`/data`, `/block`, `/tx`) as the aos extension serves it, over a
//!   [`drive::DriveSource`] the embedder provides; what cannot be read halts the evaluation.
//! - [`process`]: start-up, string marshalling, `{ok, response}` parsing, gas and fuel, rollback.
//! - [`snapshot`]: ao-cu's own snapshot format.
//! - [`fork`]: copy-on-write forks for dry-runs ([`ForkImage`], [`DryRunner`]): no memory copy per dry-run.
//! - [`watch`]: stopping (dry-run time limits, cancellation) or pausing (preemption) an evaluation from
//!   outside through epoch interruption, never visible to the module.
//!
//! Instantiation uses wasmtime's on-demand allocator with copy-on-write memory images (see
//! `docs/ARCHITECTURE.md` for the choice against the pooling allocator and memfd-backed memories).
//! Evaluate on threads with at least [`engine::EVAL_THREAD_STACK`] bytes of stack.

pub mod cache;
pub mod drive;
pub mod engine;
pub mod error;
pub mod fork;
pub mod host;
pub mod models;
pub mod module;
pub mod prepare;
pub mod process;
pub mod snapshot;
pub mod state;
pub mod watch;

/// The tensor crate `ao_tensor` computes with, re-exported so embedders can open a GPU device.
pub use cu_gpu;

pub use cache::AotCache;
pub use engine::{Allocation, EVAL_THREAD_STACK, Engines, Metering};
pub use error::WasmError;
pub use fork::{DryRunner, ForkImage};
pub use module::{CompiledModule, Loader, Origin};
pub use process::{Process, ProcessConfig, ProcessMeta, StateSource, THIS_PROGRAM};
pub use snapshot::{GlobalValue, Snapshot};
pub use watch::{Stop, Watch};
