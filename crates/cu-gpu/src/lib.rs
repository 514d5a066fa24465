//! Bit-exact integer tensor kernels for AO processes, on the GPU through wgpu, with a CPU twin.
//!
//! AO results must be reproducible on every node, with or without a GPU. This crate therefore only
//! offers integer kernels whose every bit is defined: int8 × int8 → int32 matrix multiply, int32 →
//! int8 fixed-point requantisation, elementwise add and ReLU, and a fixed-point softmax/argmax.
//! Products are exact, int32 sums wrap (so summation order is irrelevant), and rounding and
//! saturation are spelled out in each kernel's header (`kernels/*.wgsl`) and in [`cpu`], which is
//! both the fallback and the test oracle. There is no floating-point path.
//!
//! - [`TensorDevice`] is the entry point: open one per node ([`DeviceConfig`], [`Placement`]),
//!   clone it into every shard, call its methods with byte slices taken from a process's memory.
//! - [`Op`] describes an operation's shape and its [gas](Op::gas), a pure function of the shape.
//! - Concurrent GPU calls are merged into shared submissions by a batcher thread ([`BatchPolicy`]).
//! - [`kernels`] holds the WGSL sources; [`cpu`] the reference implementations.
//!
//! The host import module that exposes these to WASM processes is specified in
//! `docs/tensor-api.md`.

mod batch;
pub mod cpu;
mod device;
mod error;
mod gpu;
pub mod kernels;
mod ops;

pub use batch::{BatchPolicy, BatchStatsSnapshot};
pub use cpu::SoftmaxArgmax;
pub use device::{DeviceConfig, Placement, TensorDevice};
pub use error::TensorError;
pub use gpu::AdapterSummary;
pub use ops::{
    ElemType, GAS_PER_CALL, MAX_SOFTMAX_COLS, MAX_TENSOR_BYTES, MatmulDims, Op, Requant, i8s_to_bytes,
    i32s_from_le, i32s_to_le, u32s_from_le,
};
