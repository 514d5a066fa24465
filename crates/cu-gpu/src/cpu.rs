//! The CPU twin: every kernel with exactly the semantics of its WGSL shader.
//!
//! These functions are the definition of the operations. They are the fallback on nodes without a
//! GPU and the oracle the GPU path is tested against, bit for bit. All arithmetic is integer:
//! products are exact, int32 sums wrap modulo 2^32 (so summation order cannot matter), rounding and
//! saturation are spelled out per kernel. Inputs and outputs are little-endian bytes, as in a WASM
//! process's memory.

use crate::TensorError;
use crate::ops::{self, ElemType, MatmulDims, Requant};

/// `EXP2_Q15[f] = round(2^15 · 2^(-f/256))` for `f` in 0..256, computed once offline with exact
/// decimal arithmetic (60 digits) and fixed here: the only source of exponentials in
/// [`softmax_argmax`], shared by the CPU and (uploaded as a buffer) the GPU.
pub const EXP2_Q15: [u32; 256] = [
    32768, 32679, 32591, 32503, 32415, 32327, 32240, 32153, 32066, 31979, 31893, 31806, 31720, 31635, 31549,
    31464, 31379, 31294, 31209, 31125, 31041, 30957, 30873, 30790, 30706, 30623, 30541, 30458, 30376, 30293,
    30212, 30130, 30048, 29967, 29886, 29805, 29725, 29644, 29564, 29484, 29405, 29325, 29246, 29167, 29088,
    29009, 28931, 28852, 28774, 28697, 28619, 28542, 28464, 28388, 28311, 28234, 28158, 28082, 28006, 27930,
    27855, 27779, 27704, 27629, 27554, 27480, 27406, 27332, 27258, 27184, 27110, 27037, 26964, 26891, 26818,
    26746, 26674, 26601, 26530, 26458, 26386, 26315, 26244, 26173, 26102, 26031, 25961, 25891, 25821, 25751,
    25681, 25612, 25543, 25474, 25405, 25336, 25268, 25199, 25131, 25063, 24995, 24928, 24860, 24793, 24726,
    24659, 24593, 24526, 24460, 24394, 24328, 24262, 24196, 24131, 24066, 24001, 23936, 23871, 23806, 23742,
    23678, 23614, 23550, 23486, 23423, 23359, 23296, 23233, 23170, 23108, 23045, 22983, 22921, 22859, 22797,
    22735, 22674, 22613, 22552, 22491, 22430, 22369, 22309, 22248, 22188, 22128, 22068, 22009, 21949, 21890,
    21831, 21772, 21713, 21654, 21595, 21537, 21479, 21421, 21363, 21305, 21247, 21190, 21133, 21076, 21019,
    20962, 20905, 20849, 20792, 20736, 20680, 20624, 20568, 20513, 20457, 20402, 20347, 20292, 20237, 20182,
    20127, 20073, 20019, 19965, 19911, 19857, 19803, 19750, 19696, 19643, 19590, 19537, 19484, 19431, 19379,
    19326, 19274, 19222, 19170, 19118, 19066, 19015, 18963, 18912, 18861, 18810, 18759, 18708, 18658, 18607,
    18557, 18507, 18457, 18407, 18357, 18308, 18258, 18209, 18160, 18110, 18061, 18013, 17964, 17915, 17867,
    17819, 17770, 17722, 17674, 17627, 17579, 17531, 17484, 17437, 17390, 17343, 17296, 17249, 17202, 17156,
    17109, 17063, 17017, 16971, 16925, 16879, 16834, 16788, 16743, 16697, 16652, 16607, 16562, 16518, 16473,
    16428,
];

/// `C = A · B`: A is m×k int8, B is k×n int8 (row-major), C is m×n int32 returned as little-endian
/// bytes. Each product is exact; the sum over k wraps modulo 2^32.
pub fn matmul_i8(a: &[u8], b: &[u8], d: MatmulDims) -> Result<Vec<u8>, TensorError> {
    ops::validate_matmul(a, b, d)?;
    let (m, k, n) = (d.m as usize, d.k as usize, d.n as usize);
    let mut out = vec![0u8; m * n * 4];
    if m == 0 || n == 0 {
        return Ok(out);
    }
    // Bᵀ, so both operands of every dot product are contiguous.
    let mut bt = vec![0i8; n * k];
    for (kk, row) in b.chunks_exact(n.max(1)).enumerate().take(k) {
        for (j, &v) in row.iter().enumerate() {
            bt[j * k + kk] = v as i8;
        }
    }
    let a: Vec<i8> = a.iter().map(|&v| v as i8).collect();
    for (i, out_row) in out.chunks_exact_mut(n * 4).enumerate() {
        let arow = &a[i * k..(i + 1) * k];
        for (j, cell) in out_row.chunks_exact_mut(4).enumerate() {
            let brow = &bt[j * k..(j + 1) * k];
            cell.copy_from_slice(&dot_i8(arow, brow).to_le_bytes());
        }
    }
    Ok(out)
}

/// Wrapping int32 sum of exact int8 products.
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // Pairs of products fit i32 trivially; summing 16-wide chunks in i32 lets LLVM vectorise.
    let mut acc = [0i32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = acc[l].wrapping_add(i32::from(xa[l]) * i32::from(xb[l]));
        }
    }
    let mut s = acc.iter().fold(0i32, |s, &v| s.wrapping_add(v));
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        s = s.wrapping_add(i32::from(x) * i32::from(y));
    }
    s
}

/// One element of [`requantize`]:
/// `sat8(round_half_up(x · multiplier / 2^(31 + shift)) + zero_point)`, computed exactly in 64 bits.
/// `q.shift` must be in [-31, 31] (checked by [`requantize`]).
#[inline]
pub fn requantize_one(x: i32, q: Requant) -> i8 {
    let p = i64::from(x) * i64::from(q.multiplier); // |p| ≤ 2^62
    let s = (31 + q.shift).clamp(0, 62) as u32;
    let r = if s == 0 { p } else { (p + (1i64 << (s - 1))) >> s };
    (r + i64::from(q.zero_point)).clamp(-128, 127) as i8
}

/// int32 → int8 requantisation of every element (see [`requantize_one`]). Input: little-endian
/// int32 bytes; output: one byte per element.
pub fn requantize(x: &[u8], q: Requant) -> Result<Vec<u8>, TensorError> {
    ops::validate_requantize(x, q)?;
    Ok(x.chunks_exact(4)
        .map(|c| requantize_one(i32::from_le_bytes([c[0], c[1], c[2], c[3]]), q) as u8)
        .collect())
}

/// Elementwise `a + b`, element `e` of a paired with element `e % b_len` of b (b's length must
/// divide a's). int8 saturates to [-128, 127]; int32 wraps modulo 2^32.
pub fn add(ty: ElemType, a: &[u8], b: &[u8]) -> Result<Vec<u8>, TensorError> {
    let (len, b_len) = ops::validate_add(ty, a, b)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let b_len = b_len as usize;
    Ok(match ty {
        ElemType::I8 => a
            .iter()
            .enumerate()
            .map(|(e, &x)| {
                let y = b[e % b_len] as i8;
                (i16::from(x as i8) + i16::from(y)).clamp(-128, 127) as i8 as u8
            })
            .collect(),
        ElemType::I32 => {
            let bv = ops::i32s_from_le(b);
            a.chunks_exact(4)
                .enumerate()
                .flat_map(|(e, c)| {
                    i32::from_le_bytes([c[0], c[1], c[2], c[3]])
                        .wrapping_add(bv[e % b_len])
                        .to_le_bytes()
                })
                .collect()
        }
    })
}

/// Elementwise `max(x, 0)`.
pub fn relu(ty: ElemType, x: &[u8]) -> Result<Vec<u8>, TensorError> {
    ops::validate_relu(ty, x)?;
    Ok(match ty {
        ElemType::I8 => x.iter().map(|&v| if v >= 0x80 { 0 } else { v }).collect(),
        ElemType::I32 => x
            .chunks_exact(4)
            .flat_map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).max(0).to_le_bytes())
            .collect(),
    })
}

/// Output of [`softmax_argmax`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftmaxArgmax {
    /// rows × cols probabilities, u32 little-endian in Q16 (65536 = 1.0).
    pub probs: Vec<u8>,
    /// rows indices of each row's maximum (the first one on ties), u32 little-endian.
    pub argmax: Vec<u8>,
}

/// Softmax weight of a logit `d = max - x` below the row maximum, `beta` in Q16.16 (see
/// [`softmax_argmax`]): `EXP2_Q15[(e >> 8) & 255] >> (e >> 16)` with `e = d · beta`, or 0 when the
/// shift would be 32 or more.
#[inline]
pub fn softmax_weight(d: u32, beta: u32) -> u32 {
    let e = u64::from(d) * u64::from(beta);
    if e >= 1 << 21 {
        return 0;
    }
    EXP2_Q15[((e >> 8) & 0xff) as usize] >> (e >> 16)
}

/// Row-wise fixed-point softmax and argmax of an int32 matrix (rows × cols, little-endian bytes).
///
/// `beta` is `log2(e) · logit_scale` in Q16.16, where `logit_scale` is the real value of one logit
/// step. For each row with maximum `mx`: `w_i = softmax_weight(mx - x_i, beta)` (≈ 2^15 ·
/// exp(logit_scale · (x_i - mx))), `S = Σ w_i`, `p_i = (w_i · 2^16 + S/2) / S` (Q16, rounded half
/// up), and argmax is the first index holding `mx`. cols must be in [1, 65536].
pub fn softmax_argmax(logits: &[u8], rows: u32, cols: u32, beta: u32) -> Result<SoftmaxArgmax, TensorError> {
    ops::validate_softmax(logits, rows, cols)?;
    let x = ops::i32s_from_le(logits);
    let cols = cols as usize;
    let mut probs = Vec::with_capacity(x.len() * 4);
    let mut argmax = Vec::with_capacity(rows as usize * 4);
    for row in x.chunks_exact(cols) {
        let mut mx = row[0];
        let mut am = 0u32;
        for (i, &v) in row.iter().enumerate().skip(1) {
            if v > mx {
                mx = v;
                am = i as u32;
            }
        }
        let weight = |v: i32| softmax_weight((mx as u32).wrapping_sub(v as u32), beta);
        let sum: u32 = row.iter().map(|&v| weight(v)).fold(0u32, u32::wrapping_add);
        let half = sum / 2;
        for &v in row {
            // sum ≥ EXP2_Q15[0] > 0: the maximum's own weight.
            let p = ((weight(v) << 16) + half) / sum.max(1);
            probs.extend_from_slice(&p.to_le_bytes());
        }
        argmax.extend_from_slice(&am.to_le_bytes());
    }
    Ok(SoftmaxArgmax { probs, argmax })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{i8s_to_bytes, i32s_from_le, i32s_to_le, u32s_from_le};

    #[test]
    fn exp2_table_matches_its_definition() {
        for (f, &t) in EXP2_Q15.iter().enumerate() {
            let exact = 32768.0 * (-(f as f64) / 256.0).exp2();
            assert!((f64::from(t) - exact).abs() <= 0.5, "entry {f}: {t} vs {exact}");
        }
    }

    #[test]
    fn matmul_small_by_hand() {
        // [1 2 3; -4 5 -6] · [7 8; 9 10; 11 -128]
        let a = i8s_to_bytes(&[1, 2, 3, -4, 5, -6]);
        let b = i8s_to_bytes(&[7, 8, 9, 10, 11, -128]);
        let c = matmul_i8(&a, &b, MatmulDims { m: 2, k: 3, n: 2 }).unwrap();
        assert_eq!(
            i32s_from_le(&c),
            vec![58, 8 + 20 - 384, -28 + 45 - 66, -32 + 50 + 768]
        );
    }

    #[test]
    fn matmul_wraps_modulo_2_32() {
        // k = 2^18 products of (-128)·(-128) = 2^14 sum to 2^32 ≡ 0.
        let k = 1u32 << 18;
        let a = vec![0x80u8; k as usize];
        let c = matmul_i8(&a, &a, MatmulDims { m: 1, k, n: 1 }).unwrap();
        assert_eq!(i32s_from_le(&c), vec![0]);
        let a2 = vec![0x80u8; k as usize + 1];
        let c = matmul_i8(&a2, &a2, MatmulDims { m: 1, k: k + 1, n: 1 }).unwrap();
        assert_eq!(i32s_from_le(&c), vec![16384]);
    }

    #[test]
    fn matmul_rejects_bad_shapes() {
        let e = matmul_i8(&[0; 5], &[0; 6], MatmulDims { m: 2, k: 3, n: 2 }).unwrap_err();
        assert!(matches!(
            e,
            TensorError::ShapeMismatch {
                what: "a",
                expected: 6,
                actual: 5
            }
        ));
        let big = MatmulDims {
            m: 1 << 20,
            k: 1,
            n: 1 << 20,
        };
        let e = matmul_i8(&vec![0; 1 << 20], &vec![0; 1 << 20], big).unwrap_err();
        assert!(matches!(e, TensorError::TooLarge { what: "c", .. }));
        assert!(
            matmul_i8(&[], &[], MatmulDims { m: 0, k: 0, n: 0 })
                .unwrap()
                .is_empty()
        );
        // k = 0: every output is the empty sum.
        assert_eq!(
            matmul_i8(&[], &[], MatmulDims { m: 2, k: 0, n: 3 }).unwrap(),
            vec![0; 24]
        );
    }

    fn rq(x: i32, multiplier: i32, shift: i32, zero_point: i32) -> i8 {
        requantize_one(
            x,
            Requant {
                multiplier,
                shift,
                zero_point,
            },
        )
    }

    #[test]
    fn requantize_rounds_half_up_and_saturates() {
        let half = 1 << 30; // 0.5 in Q31
        assert_eq!(rq(3, half, 0, 0), 2); // 1.5 → 2
        assert_eq!(rq(-3, half, 0, 0), -1); // -1.5 → -1 (half towards +∞)
        assert_eq!(rq(5, half, 0, 0), 3); // 2.5 → 3
        assert_eq!(rq(-5, half, 0, 0), -2); // -2.5 → -2
        assert_eq!(rq(-7, half, 0, 0), -3); // -3.5 → -3
        assert_eq!(rq(1000, half, 0, 0), 127);
        assert_eq!(rq(-1000, half, 0, 0), -128);
        assert_eq!(rq(10, half, 1, 0), 3); // 10 / 4 = 2.5 → 3
        assert_eq!(rq(100, half, 0, -60), -10);
        assert_eq!(rq(0, i32::MAX, 0, 127), 127);
        // Extremes of the 64-bit product.
        assert_eq!(rq(i32::MIN, i32::MIN, 31, 0), 1); // 2^62 / 2^62
        assert_eq!(rq(i32::MIN, i32::MAX, 31, 0), -1);
        assert_eq!(rq(i32::MIN, i32::MIN, -31, 0), 127); // s = 0: no shift
        assert_eq!(rq(7, 3, -31, -30), -9);
        assert_eq!(rq(i32::MAX, -1, -31, i32::MIN), -128);
    }

    #[test]
    fn requantize_checks_shift_and_length() {
        let q = Requant {
            multiplier: 1,
            shift: 32,
            zero_point: 0,
        };
        assert!(matches!(
            requantize(&[0; 4], q),
            Err(TensorError::InvalidArgument { what: "shift", .. })
        ));
        let q = Requant {
            multiplier: 1,
            shift: 0,
            zero_point: 0,
        };
        assert!(matches!(
            requantize(&[0; 5], q),
            Err(TensorError::ShapeMismatch { .. })
        ));
        let x = i32s_to_le(&[1 << 30, -(1 << 30), 0]);
        assert_eq!(
            requantize(
                &x,
                Requant {
                    multiplier: 1 << 30,
                    shift: 23,
                    zero_point: 1
                }
            )
            .unwrap(),
            vec![65, 0xc1, 1]
        );
    }

    #[test]
    fn add_saturates_wraps_and_broadcasts() {
        let a = i8s_to_bytes(&[100, -100, 1, 2, 3, 4]);
        let b = i8s_to_bytes(&[100, -100, 5]);
        assert_eq!(
            add(ElemType::I8, &a, &b).unwrap(),
            i8s_to_bytes(&[127, -128, 6, 102, -97, 9])
        );
        let a = i32s_to_le(&[i32::MAX, i32::MIN, 5, 6]);
        let b = i32s_to_le(&[1, -1]);
        assert_eq!(
            i32s_from_le(&add(ElemType::I32, &a, &b).unwrap()),
            vec![i32::MIN, i32::MAX, 6, 5]
        );
        assert!(matches!(
            add(ElemType::I8, &[0; 6], &[0; 4]),
            Err(TensorError::InvalidArgument { .. })
        ));
        assert!(matches!(
            add(ElemType::I8, &[0; 6], &[]),
            Err(TensorError::InvalidArgument { .. })
        ));
        assert!(matches!(
            add(ElemType::I32, &[0; 6], &[0; 4]),
            Err(TensorError::ShapeMismatch { .. })
        ));
        assert!(add(ElemType::I32, &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn relu_clamps_negatives() {
        assert_eq!(
            relu(ElemType::I8, &i8s_to_bytes(&[-128, -1, 0, 1, 127])).unwrap(),
            vec![0, 0, 0, 1, 127]
        );
        let x = i32s_to_le(&[i32::MIN, -1, 0, 7]);
        assert_eq!(i32s_from_le(&relu(ElemType::I32, &x).unwrap()), vec![0, 0, 0, 7]);
    }

    #[test]
    fn softmax_matches_float_softmax_and_breaks_ties_low() {
        // logit scale 1/8, beta = log2(e)/8 in Q16.16.
        let scale = 0.125f64;
        let beta = (std::f64::consts::LOG2_E * scale * 65536.0).round() as u32;
        let logits = [3, 10, -4, 10, 0, 7];
        let out = softmax_argmax(&i32s_to_le(&logits), 2, 3, beta).unwrap();
        assert_eq!(u32s_from_le(&out.argmax), vec![1, 0]);
        let p = u32s_from_le(&out.probs);
        for (row, pr) in logits.chunks(3).zip(p.chunks(3)) {
            let mx = *row.iter().max().unwrap();
            let e: Vec<f64> = row.iter().map(|&v| (scale * f64::from(v - mx)).exp()).collect();
            let s: f64 = e.iter().sum();
            for (ei, &pi) in e.iter().zip(pr) {
                assert!(
                    (ei / s - f64::from(pi) / 65536.0).abs() < 2e-3,
                    "{row:?}: {pi} vs {}",
                    ei / s
                );
            }
        }
        // Ties: the first maximum wins; equal logits give equal probabilities.
        let out = softmax_argmax(&i32s_to_le(&[5, 5, 5, 5]), 1, 4, beta).unwrap();
        assert_eq!(u32s_from_le(&out.argmax), vec![0]);
        assert_eq!(u32s_from_le(&out.probs), vec![16384; 4]);
        // Extreme spreads: far-below logits get weight 0 and the maximum takes everything.
        let out = softmax_argmax(&i32s_to_le(&[i32::MIN, i32::MAX]), 1, 2, u32::MAX).unwrap();
        assert_eq!(u32s_from_le(&out.probs), vec![0, 65536]);
        assert_eq!(u32s_from_le(&out.argmax), vec![1]);
    }

    #[test]
    fn softmax_checks_arguments() {
        assert!(matches!(
            softmax_argmax(&[], 0, 0, 1),
            Err(TensorError::InvalidArgument { what: "cols", .. })
        ));
        assert!(matches!(
            softmax_argmax(&[0; 8], 1, 1, 1),
            Err(TensorError::ShapeMismatch { .. })
        ));
        let empty = softmax_argmax(&[], 0, 10, 1).unwrap();
        assert!(empty.probs.is_empty() && empty.argmax.is_empty());
    }
}
