//! The AO data model shared by every ao-cu crate, free of I/O.
//!
//! - [`format`]: the seven `Module-Format` values and the ABI facts that differ between them
//!   (pointer width, heap maximum, string sizing, injected metering, stack helpers).
//! - [`limits`]: `Memory-Limit` and `Compute-Limit` parsing.
//! - [`result`]: the per-message result (`Output`, `Messages`, `Spawns`, `Assignments`, `GasUsed`,
//!   `Error`) built from a module's reply exactly as the reference CU builds it, with JavaScript's number
//!   semantics.

pub mod format;
pub mod limits;
pub mod result;

pub use format::{MainCall, MeterWidth, ModuleFormat, StringSizeRule, UnknownFormat};
pub use limits::{InvalidComputeLimit, InvalidMemoryLimit, Limits, parse_compute_limit, parse_memory_limit};
pub use result::EvalOutput;
