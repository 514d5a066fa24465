//! `ao_tensor.*`: bit-exact int8 tensor operations for processes (`docs/tensor-api.md`), computed by the
//! process's [`cu_gpu::TensorDevice`] (a GPU through wgpu, or the CPU twin; the bytes are the same).
//!
//! Every import takes pointers into the caller's memory 0 (`i32` or `i64`, whichever the module
//! declares) and `i32` scalars, and returns nothing. A call goes: bounds of every tensor against the
//! current memory size (and [`cu_gpu::MAX_TENSOR_BYTES`]) → gas from [`cu_gpu::Op::gas`] (added to
//! `HostState.gas.used` and checked against the limit like `metering.usegas`; for modules bounded by
//! fuel the same amount of fuel is consumed too) → copy the inputs out → compute → write the outputs.
//! Any failure traps with [`HostTrap::Tensor`] or [`HostTrap::OutOfGas`] before anything is written, so it
//! becomes that message's `Error`.

use cu_gpu::{ElemType, MAX_TENSOR_BYTES, MatmulDims, Op, Requant, TensorDevice, TensorError};
use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use super::{Args, HostTrap, Mem, memory};
use crate::engine::FUEL_PER_GAS;
use crate::error::WasmError;
use crate::state::HostState;

/// The import module name.
pub const MODULE: &str = "ao_tensor";

/// Signature of one import: its body, and which parameters are pointers (the others are `i32`).
struct Import {
    body: fn(&mut Caller<'_, HostState>, &[Val]) -> wasmtime::Result<()>,
    pointers: &'static [bool],
}

fn import(name: &str) -> Option<Import> {
    const P: bool = true;
    const I: bool = false;
    Some(match name {
        "matmul_i8" => Import {
            body: matmul_i8,
            pointers: &[P, P, P, I, I, I],
        },
        "requantize" => Import {
            body: requantize,
            pointers: &[P, P, I, I, I, I],
        },
        "add_i8" => Import {
            body: |c, a| add(c, a, "add_i8", ElemType::I8),
            pointers: &[P, P, P, I, I],
        },
        "add_i32" => Import {
            body: |c, a| add(c, a, "add_i32", ElemType::I32),
            pointers: &[P, P, P, I, I],
        },
        "relu_i8" => Import {
            body: |c, a| relu(c, a, "relu_i8", ElemType::I8),
            pointers: &[P, P, I],
        },
        "relu_i32" => Import {
            body: |c, a| relu(c, a, "relu_i32", ElemType::I32),
            pointers: &[P, P, I],
        },
        "softmax_argmax" => Import {
            body: softmax_argmax,
            pointers: &[P, P, P, I, I, I],
        },
        _ => return None,
    })
}

/// Defines `ao_tensor.<name>` with the module's declared signature: pointers `i32` or `i64`, the other
/// parameters `i32`, no results.
pub fn define(linker: &mut Linker<HostState>, name: &str, ty: &FuncType) -> Result<(), WasmError> {
    let unsupported = |reason: String| WasmError::UnsupportedImport {
        module: MODULE.into(),
        name: name.into(),
        reason,
    };
    if super::model::is_model_import(name) {
        return super::model::define(linker, name, ty);
    }
    let Some(imp) = import(name) else {
        return Err(unsupported(
            "not an ao_tensor function (see docs/tensor-api.md)".into(),
        ));
    };
    let params: Vec<ValType> = ty.params().collect();
    let fits = ty.results().len() == 0
        && params.len() == imp.pointers.len()
        && params
            .iter()
            .zip(imp.pointers)
            .all(|(t, is_ptr)| matches!(t, ValType::I32) || (*is_ptr && matches!(t, ValType::I64)));
    if !fits {
        return Err(unsupported(format!(
            "unexpected signature {ty} (pointers i32 or i64, other parameters i32, no results)"
        )));
    }
    let body = imp.body;
    linker
        .func_new(MODULE, name, ty.clone(), move |mut caller, args, _results| {
            body(&mut caller, args)
        })
        .map(|_| ())
        .map_err(|e| WasmError::Link(e.to_string()))
}

/// The device a process computes on when its configuration names none: one CPU twin shared by the whole
/// node, so a node without a GPU computes the same bytes.
pub fn default_device() -> TensorDevice {
    static DEVICE: std::sync::OnceLock<TensorDevice> = std::sync::OnceLock::new();
    DEVICE.get_or_init(TensorDevice::cpu_only).clone()
}

fn trap(import: &'static str, detail: impl std::fmt::Display) -> wasmtime::Error {
    HostTrap::Tensor {
        import,
        detail: detail.to_string(),
    }
    .into()
}

/// One tensor of a call: its name, pointer and byte length (`None` when the length overflows).
struct Span {
    what: &'static str,
    ptr: u64,
    bytes: Option<u64>,
}

fn span(what: &'static str, ptr: u64, count: Option<u64>, elem: u64) -> Span {
    Span {
        what,
        ptr,
        bytes: count.and_then(|c| c.checked_mul(elem)),
    }
}

fn product(a: u64, b: u64) -> Option<u64> {
    a.checked_mul(b)
}

/// Checks every tensor against the current memory size and the tensor size limit.
fn check_bounds(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    spans: &[Span],
) -> wasmtime::Result<()> {
    let size = memory(caller)?.data_size(&*caller) as u64;
    for s in spans {
        let Some(bytes) = s.bytes else {
            return Err(trap(
                import,
                format!(
                    "out of bounds: {} at {}+<overflow> > memory {size}",
                    s.what, s.ptr
                ),
            ));
        };
        if bytes > MAX_TENSOR_BYTES {
            return Err(trap(
                import,
                TensorError::TooLarge {
                    what: s.what,
                    bytes,
                    limit: MAX_TENSOR_BYTES,
                },
            ));
        }
        if s.ptr.checked_add(bytes).is_none_or(|end| end > size) {
            return Err(trap(
                import,
                format!("out of bounds: {} at {}+{bytes} > memory {size}", s.what, s.ptr),
            ));
        }
    }
    Ok(())
}

/// Charges `op`'s gas: added to the message's gas counter (the one `metering.usegas` feeds) and, when the
/// store counts fuel (modules that are not metered), taken from the fuel as well.
fn charge(caller: &mut Caller<'_, HostState>, op: Op) -> wasmtime::Result<()> {
    charge_gas(caller, op.gas())
}

/// Charges `gas` as [`charge`] does for an operation (the `model_*` imports compute their own).
pub(crate) fn charge_gas(caller: &mut Caller<'_, HostState>, gas: u64) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    state.gas.used += gas as f64;
    if state.gas.used > state.gas.limit {
        return Err(HostTrap::OutOfGas.into());
    }
    if let Ok(fuel) = caller.get_fuel() {
        let cost = gas.saturating_mul(FUEL_PER_GAS);
        if cost > fuel {
            caller.set_fuel(0)?;
            return Err(HostTrap::OutOfGas.into());
        }
        caller.set_fuel(fuel - cost)?;
    }
    Ok(())
}

/// Bounds, gas, then the inputs copied out of memory (in order of `inputs`).
fn prepare(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    op: Op,
    inputs: &[Span],
    outputs: &[Span],
) -> wasmtime::Result<(Vec<Vec<u8>>, TensorDevice)> {
    check_bounds(caller, import, inputs)?;
    check_bounds(caller, import, outputs)?;
    charge(caller, op)?;
    let device = caller.data().tensor.clone();
    let mem = Mem::of(caller)?;
    let copies = inputs
        .iter()
        .map(|s| mem.bytes(s.ptr, s.bytes.unwrap_or(0)).map(<[u8]>::to_vec))
        .collect::<wasmtime::Result<Vec<_>>>()?;
    Ok((copies, device))
}

/// Reads argument `i` as an unsigned 32-bit scalar.
fn u32_arg(args: &[Val], i: usize) -> u32 {
    args.u(i) as u32
}

/// Reads argument `i` as a signed 32-bit scalar.
fn i32_arg(args: &[Val], i: usize) -> i32 {
    args.s(i) as i32
}

fn matmul_i8(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<()> {
    const NAME: &str = "matmul_i8";
    let (m, k, n) = (u32_arg(args, 3), u32_arg(args, 4), u32_arg(args, 5));
    let dims = MatmulDims { m, k, n };
    let (m64, k64, n64) = (u64::from(m), u64::from(k), u64::from(n));
    let (inputs, device) = prepare(
        caller,
        NAME,
        Op::MatmulI8(dims),
        &[
            span("a", args.u(0), product(m64, k64), 1),
            span("b", args.u(1), product(k64, n64), 1),
        ],
        &[span("c", args.u(2), product(m64, n64), 4)],
    )?;
    let out = device
        .matmul_i8(&inputs[0], &inputs[1], dims)
        .map_err(|e| trap(NAME, e))?;
    Mem::of(caller)?.write(args.u(2), &out)
}

fn requantize(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<()> {
    const NAME: &str = "requantize";
    let len = u64::from(u32_arg(args, 2));
    let q = Requant {
        multiplier: i32_arg(args, 3),
        shift: i32_arg(args, 4),
        zero_point: i32_arg(args, 5),
    };
    q.validate().map_err(|e| trap(NAME, e))?;
    let (inputs, device) = prepare(
        caller,
        NAME,
        Op::Requantize { len },
        &[span("x", args.u(0), Some(len), 4)],
        &[span("y", args.u(1), Some(len), 1)],
    )?;
    let out = device.requantize(&inputs[0], q).map_err(|e| trap(NAME, e))?;
    Mem::of(caller)?.write(args.u(1), &out)
}

fn add(
    caller: &mut Caller<'_, HostState>,
    args: &[Val],
    name: &'static str,
    ty: ElemType,
) -> wasmtime::Result<()> {
    let len = u64::from(u32_arg(args, 3));
    let b_len = u64::from(u32_arg(args, 4));
    if b_len == 0 || !len.is_multiple_of(b_len) {
        return Err(trap(
            name,
            TensorError::InvalidArgument {
                what: "b_len",
                detail: format!("{b_len} must be at least 1 and divide len {len}"),
            },
        ));
    }
    let size = ty.size();
    let (inputs, device) = prepare(
        caller,
        name,
        Op::Add { ty, len, b_len },
        &[
            span("a", args.u(0), Some(len), size),
            span("b", args.u(1), Some(b_len), size),
        ],
        &[span("out", args.u(2), Some(len), size)],
    )?;
    let out = device
        .add(ty, &inputs[0], &inputs[1])
        .map_err(|e| trap(name, e))?;
    Mem::of(caller)?.write(args.u(2), &out)
}

fn relu(
    caller: &mut Caller<'_, HostState>,
    args: &[Val],
    name: &'static str,
    ty: ElemType,
) -> wasmtime::Result<()> {
    let len = u64::from(u32_arg(args, 2));
    let size = ty.size();
    let (inputs, device) = prepare(
        caller,
        name,
        Op::Relu { ty, len },
        &[span("x", args.u(0), Some(len), size)],
        &[span("out", args.u(1), Some(len), size)],
    )?;
    let out = device.relu(ty, &inputs[0]).map_err(|e| trap(name, e))?;
    Mem::of(caller)?.write(args.u(1), &out)
}

fn softmax_argmax(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<()> {
    const NAME: &str = "softmax_argmax";
    let (rows, cols, beta) = (u32_arg(args, 3), u32_arg(args, 4), u32_arg(args, 5));
    if cols == 0 || cols > cu_gpu::MAX_SOFTMAX_COLS {
        return Err(trap(
            NAME,
            TensorError::InvalidArgument {
                what: "cols",
                detail: format!("{cols} is outside [1, {}]", cu_gpu::MAX_SOFTMAX_COLS),
            },
        ));
    }
    let cells = product(u64::from(rows), u64::from(cols));
    let (inputs, device) = prepare(
        caller,
        NAME,
        Op::SoftmaxArgmax { rows, cols },
        &[span("logits", args.u(0), cells, 4)],
        &[
            span("probs", args.u(1), cells, 4),
            span("argmax", args.u(2), Some(u64::from(rows)), 4),
        ],
    )?;
    let out = device
        .softmax_argmax(&inputs[0], rows, cols, beta)
        .map_err(|e| trap(NAME, e))?;
    let mut mem = Mem::of(caller)?;
    mem.write(args.u(1), &out.probs)?;
    mem.write(args.u(2), &out.argmax)
}
