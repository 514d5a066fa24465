//! Operation shapes, argument validation, limits and gas.
//!
//! Every operation is validated here, once, before either implementation runs, so the CPU and the
//! GPU accept and reject exactly the same calls. All tensors travel as little-endian bytes, the way
//! they lie in a WASM process's linear memory: int8 tensors one byte per element, int32 tensors and
//! u32 results four bytes per element.

use crate::TensorError;

/// Largest tensor (input or output) a single operation may take or produce, in bytes: 1 GiB.
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// Largest row length of [`softmax_argmax`](crate::cpu::softmax_argmax): 65536 (keeps the weight
/// sum within u32).
pub const MAX_SOFTMAX_COLS: u32 = 1 << 16;

/// Gas charged for every call, whatever its size.
pub const GAS_PER_CALL: u64 = 1_000;

/// Element type of the elementwise operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// Signed 8-bit, one byte per element; arithmetic saturates to [-128, 127].
    I8,
    /// Signed 32-bit, four little-endian bytes per element; arithmetic wraps modulo 2^32.
    I32,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            ElemType::I8 => 1,
            ElemType::I32 => 4,
        }
    }
}

/// Shape of `C[m×n] (int32) = A[m×k] (int8) · B[k×n] (int8)`, all row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulDims {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of A, rows of B.
    pub k: u32,
    /// Columns of B and C.
    pub n: u32,
}

/// Fixed-point requantisation parameters: `y = sat8(round_half_up(x · multiplier / 2^(31 + shift)) + zero_point)`.
///
/// The real scale this represents is `multiplier · 2^-(31 + shift)`; a scale `s` in (0, 1) is
/// usually encoded with `multiplier ∈ [2^30, 2^31)` and `shift ≥ 0` (see
/// [`Requant::from_scale_parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requant {
    /// Signed Q31 multiplier (any i32).
    pub multiplier: i32,
    /// Extra right shift, in [-31, 31] (negative values shift less than 31 bits, i.e. scale up).
    pub shift: i32,
    /// Added after scaling and rounding, before saturation to int8.
    pub zero_point: i32,
}

impl Requant {
    /// Smallest accepted `shift`.
    pub const MIN_SHIFT: i32 = -31;
    /// Largest accepted `shift`.
    pub const MAX_SHIFT: i32 = 31;

    /// Builds parameters from an already-split scale `multiplier · 2^-(31 + shift)`; the same as
    /// the struct literal, with the range checked.
    pub fn from_scale_parts(multiplier: i32, shift: i32, zero_point: i32) -> Result<Self, TensorError> {
        let q = Requant {
            multiplier,
            shift,
            zero_point,
        };
        q.validate()?;
        Ok(q)
    }

    /// Checks `shift ∈ [-31, 31]`.
    pub fn validate(&self) -> Result<(), TensorError> {
        if !(Self::MIN_SHIFT..=Self::MAX_SHIFT).contains(&self.shift) {
            return Err(TensorError::InvalidArgument {
                what: "shift",
                detail: format!("{} is outside [-31, 31]", self.shift),
            });
        }
        Ok(())
    }
}

/// One tensor operation with its shape, as validated and charged for by the host API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// int8 × int8 → int32 matrix multiply.
    MatmulI8(MatmulDims),
    /// int32 → int8 requantisation of `len` elements.
    Requantize {
        /// Element count.
        len: u64,
    },
    /// Elementwise add of `len` elements with `b_len` broadcast elements.
    Add {
        /// Element type.
        ty: ElemType,
        /// Element count of a and of the result.
        len: u64,
        /// Element count of b; divides `len`.
        b_len: u64,
    },
    /// Elementwise ReLU of `len` elements.
    Relu {
        /// Element type.
        ty: ElemType,
        /// Element count.
        len: u64,
    },
    /// Row-wise fixed-point softmax and argmax of an int32 matrix.
    SoftmaxArgmax {
        /// Rows.
        rows: u32,
        /// Columns (row length), 1..=65536.
        cols: u32,
    },
}

impl Op {
    /// Bytes read from the process's memory.
    pub fn input_bytes(&self) -> u64 {
        match *self {
            Op::MatmulI8(d) => mul(d.m, d.k).saturating_add(mul(d.k, d.n)),
            Op::Requantize { len } => len.saturating_mul(4),
            Op::Add { ty, len, b_len } => len.saturating_add(b_len).saturating_mul(ty.size()),
            Op::Relu { ty, len } => len.saturating_mul(ty.size()),
            Op::SoftmaxArgmax { rows, cols } => mul(rows, cols).saturating_mul(4),
        }
    }

    /// Bytes written to the process's memory.
    pub fn output_bytes(&self) -> u64 {
        match *self {
            Op::MatmulI8(d) => mul(d.m, d.n).saturating_mul(4),
            Op::Requantize { len } => len,
            Op::Add { ty, len, .. } | Op::Relu { ty, len } => len.saturating_mul(ty.size()),
            Op::SoftmaxArgmax { rows, cols } => mul(rows, cols)
                .saturating_mul(4)
                .saturating_add(u64::from(rows) * 4),
        }
    }

    /// Arithmetic work units: multiply-accumulates for matmul, weighted element counts otherwise.
    pub fn work(&self) -> u64 {
        match *self {
            Op::MatmulI8(d) => mul(d.m, d.n).saturating_mul(u64::from(d.k)),
            Op::Requantize { len } => len.saturating_mul(8),
            Op::Add { len, .. } | Op::Relu { len, .. } => len,
            Op::SoftmaxArgmax { rows, cols } => mul(rows, cols).saturating_mul(16),
        }
    }

    /// Gas for this operation: `GAS_PER_CALL + input_bytes + output_bytes + work`, saturating.
    ///
    /// A pure function of the shape, so every node charges the same, and independent of where
    /// (GPU or CPU) and how fast the operation runs.
    pub fn gas(&self) -> u64 {
        GAS_PER_CALL
            .saturating_add(self.input_bytes())
            .saturating_add(self.output_bytes())
            .saturating_add(self.work())
    }
}

fn mul(a: u32, b: u32) -> u64 {
    u64::from(a) * u64::from(b)
}

pub(crate) fn check_len(what: &'static str, expected: u64, actual: usize) -> Result<(), TensorError> {
    if expected > MAX_TENSOR_BYTES {
        return Err(TensorError::TooLarge {
            what,
            bytes: expected,
            limit: MAX_TENSOR_BYTES,
        });
    }
    let actual = actual as u64;
    if expected != actual {
        return Err(TensorError::ShapeMismatch {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_out(what: &'static str, bytes: u64) -> Result<(), TensorError> {
    if bytes > MAX_TENSOR_BYTES {
        return Err(TensorError::TooLarge {
            what,
            bytes,
            limit: MAX_TENSOR_BYTES,
        });
    }
    Ok(())
}

/// Validates a matmul call.
pub(crate) fn validate_matmul(a: &[u8], b: &[u8], d: MatmulDims) -> Result<(), TensorError> {
    check_len("a", mul(d.m, d.k), a.len())?;
    check_len("b", mul(d.k, d.n), b.len())?;
    check_out("c", mul(d.m, d.n).saturating_mul(4))
}

/// Validates a requantize call; returns the element count.
pub(crate) fn validate_requantize(x: &[u8], q: Requant) -> Result<u64, TensorError> {
    q.validate()?;
    check_len("x", (x.len() as u64).div_ceil(4) * 4, x.len())?;
    Ok(x.len() as u64 / 4)
}

/// Validates an elementwise add; returns (len, b_len) in elements.
pub(crate) fn validate_add(ty: ElemType, a: &[u8], b: &[u8]) -> Result<(u64, u64), TensorError> {
    let (len, b_len) = (elements("a", ty, a)?, elements("b", ty, b)?);
    if len > 0 && (b_len == 0 || len % b_len != 0) {
        return Err(TensorError::InvalidArgument {
            what: "b",
            detail: format!("{b_len} elements do not broadcast over {len} (must divide it)"),
        });
    }
    Ok((len, b_len))
}

/// Validates a ReLU; returns the element count.
pub(crate) fn validate_relu(ty: ElemType, x: &[u8]) -> Result<u64, TensorError> {
    elements("x", ty, x)
}

/// Validates a softmax/argmax call.
pub(crate) fn validate_softmax(logits: &[u8], rows: u32, cols: u32) -> Result<(), TensorError> {
    if cols == 0 || cols > MAX_SOFTMAX_COLS {
        return Err(TensorError::InvalidArgument {
            what: "cols",
            detail: format!("{cols} is outside [1, {MAX_SOFTMAX_COLS}]"),
        });
    }
    check_len("logits", mul(rows, cols).saturating_mul(4), logits.len())
}

fn elements(what: &'static str, ty: ElemType, x: &[u8]) -> Result<u64, TensorError> {
    let bytes = x.len() as u64;
    if bytes > MAX_TENSOR_BYTES {
        return Err(TensorError::TooLarge {
            what,
            bytes,
            limit: MAX_TENSOR_BYTES,
        });
    }
    if !bytes.is_multiple_of(ty.size()) {
        return Err(TensorError::ShapeMismatch {
            what,
            expected: bytes.div_ceil(ty.size()) * ty.size(),
            actual: bytes,
        });
    }
    Ok(bytes / ty.size())
}

/// Reads little-endian int32 values from bytes (a trailing partial word is ignored).
pub fn i32s_from_le(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes int32 values as little-endian bytes.
pub fn i32s_to_le(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Reads little-endian u32 values from bytes (a trailing partial word is ignored).
pub fn u32s_from_le(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes int8 values as bytes.
pub fn i8s_to_bytes(values: &[i8]) -> Vec<u8> {
    values.iter().map(|&v| v as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_is_base_plus_bytes_plus_work() {
        let mm = Op::MatmulI8(MatmulDims { m: 2, k: 3, n: 4 });
        // in 2·3 + 3·4 = 18, out 4·2·4 = 32, work 2·4·3 = 24.
        assert_eq!(mm.gas(), GAS_PER_CALL + 18 + 32 + 24);
        assert_eq!(Op::Requantize { len: 10 }.gas(), GAS_PER_CALL + 40 + 10 + 80);
        assert_eq!(
            Op::Add {
                ty: ElemType::I32,
                len: 6,
                b_len: 3
            }
            .gas(),
            GAS_PER_CALL + 36 + 24 + 6
        );
        assert_eq!(
            Op::Relu {
                ty: ElemType::I8,
                len: 5
            }
            .gas(),
            GAS_PER_CALL + 5 + 5 + 5
        );
        assert_eq!(
            Op::SoftmaxArgmax { rows: 2, cols: 10 }.gas(),
            GAS_PER_CALL + 80 + 88 + 320
        );
        // Zero-sized calls still pay the base.
        assert_eq!(Op::MatmulI8(MatmulDims { m: 0, k: 0, n: 0 }).gas(), GAS_PER_CALL);
    }

    #[test]
    fn gas_saturates_instead_of_overflowing() {
        let huge = Op::MatmulI8(MatmulDims {
            m: u32::MAX,
            k: u32::MAX,
            n: u32::MAX,
        });
        assert_eq!(huge.gas(), u64::MAX);
        assert_eq!(Op::Requantize { len: u64::MAX }.gas(), u64::MAX);
        // Monotone in every dimension.
        let g = |m, k, n| Op::MatmulI8(MatmulDims { m, k, n }).gas();
        assert!(
            g(64, 64, 64) < g(65, 64, 64) && g(64, 64, 64) < g(64, 65, 64) && g(64, 64, 64) < g(64, 64, 65)
        );
    }

    #[test]
    fn little_endian_helpers_round_trip() {
        let v = [i32::MIN, -1, 0, 1, i32::MAX];
        assert_eq!(i32s_from_le(&i32s_to_le(&v)), v);
        assert_eq!(i32s_to_le(&[1]), vec![1, 0, 0, 0]);
        assert_eq!(u32s_from_le(&[0xff, 0xff, 0xff, 0xff, 9]), vec![u32::MAX]);
        assert_eq!(i8s_to_bytes(&[-1, 2]), vec![0xff, 2]);
    }
}
