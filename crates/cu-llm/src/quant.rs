//! Quantised weight matrices and the integer matrix-vector product (specified in `docs/llm.md`).
//!
//! Weights keep ggml's blocks of 32 (Q4_1: 4-bit `q` with `w = d·q + m`; Q8_0: 8-bit `q` with `w = d·q`),
//! with the f16 scales `d` and `m` decoded exactly to Q24 integers at load time ([`fixed::f16_to_q24`]).
//! An activation vector is quantised per block of 32 to int16 with a power-of-two scale ([`QuantVec`]);
//! each block's dot product is exact in i32 and the blocks are combined in i64.

use crate::fixed::{self, FixedError, rshift_round, sat_i32};
use crate::gguf::GgmlType;

/// Elements per quantisation block (weights and activations).
pub const BLOCK: usize = 32;
/// Fraction bits of the decoded weight scales `d` and `m`.
pub const W_Q: u32 = 24;

/// Why a weight tensor could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The tensor's type is not one the integer path implements.
    #[error("unsupported weight type {0:?} (Q4_1 and Q8_0 are implemented)")]
    UnsupportedType(GgmlType),
    /// The byte count does not match the shape.
    #[error("weight data is {bytes} bytes, {expected} expected for {rows} x {cols}")]
    Size {
        /// Bytes given.
        bytes: usize,
        /// Bytes the shape needs.
        expected: usize,
        /// Rows.
        rows: usize,
        /// Columns (inputs).
        cols: usize,
    },
    /// The operands of a matrix-vector product do not match the matrix.
    #[error("matvec of a {rows} x {cols} matrix with {x} inputs into {y} outputs")]
    Operands {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Input length.
        x: usize,
        /// Output length.
        y: usize,
    },
    /// A block scale is not finite or is too large for Q24 in an i32 (|v| ≥ 128).
    #[error("weight block {block}: {source}")]
    Scale {
        /// The block index.
        block: usize,
        /// The conversion error.
        source: FixedError,
    },
}

/// A weight matrix of `rows` outputs by `cols` inputs, row-major, in ggml blocks along the inputs.
#[derive(Clone, Debug)]
pub enum QMatrix {
    /// Q4_1: per block `d`, `m` (Q24) and 16 bytes of nibbles (element `j < 16` is the low nibble of
    /// byte `j`, element `j ≥ 16` the high nibble of byte `j − 16`); `w = d·q + m`.
    Q4_1 {
        /// Rows (outputs).
        rows: usize,
        /// Columns (inputs), a multiple of 32.
        cols: usize,
        /// Nibbles, `rows · cols / 2` bytes.
        qs: Vec<u8>,
        /// Block scales `d` in Q24, `rows · cols / 32`.
        d: Vec<i32>,
        /// Block minimums `m` in Q24, `rows · cols / 32`.
        m: Vec<i32>,
    },
    /// Q8_0: per block `d` (Q24) and 32 signed bytes; `w = d·q`.
    Q8_0 {
        /// Rows (outputs).
        rows: usize,
        /// Columns (inputs), a multiple of 32.
        cols: usize,
        /// Quants, `rows · cols` bytes, each an i8 in two's complement.
        q: Vec<u8>,
        /// Block scales `d` in Q24, `rows · cols / 32`.
        d: Vec<i32>,
    },
}

fn f16_at(b: &[u8], block: usize) -> Result<i32, QuantError> {
    fixed::f16_to_q24(u16::from_le_bytes([b[0], b[1]])).map_err(|source| QuantError::Scale { block, source })
}

impl QMatrix {
    /// Converts a ggml tensor of `rows × cols` (GGUF dims `[cols, rows]`) from its raw bytes.
    pub fn from_ggml(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<QMatrix, QuantError> {
        if !matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0) {
            return Err(QuantError::UnsupportedType(ty));
        }
        let (_, block_bytes) = ty.block_layout();
        let blocks = rows.checked_mul(cols / BLOCK);
        let expected = blocks.and_then(|b| b.checked_mul(block_bytes as usize));
        let (Some(blocks), Some(expected)) = (blocks, expected) else {
            return Err(QuantError::Size {
                bytes: bytes.len(),
                expected: usize::MAX,
                rows,
                cols,
            });
        };
        if !cols.is_multiple_of(BLOCK) || bytes.len() != expected {
            return Err(QuantError::Size {
                bytes: bytes.len(),
                expected,
                rows,
                cols,
            });
        }
        match ty {
            GgmlType::Q4_1 => {
                let mut qs = Vec::with_capacity(blocks * 16);
                let mut d = Vec::with_capacity(blocks);
                let mut m = Vec::with_capacity(blocks);
                for (i, b) in bytes.chunks_exact(20).enumerate() {
                    d.push(f16_at(&b[0..2], i)?);
                    m.push(f16_at(&b[2..4], i)?);
                    qs.extend_from_slice(&b[4..20]);
                }
                Ok(QMatrix::Q4_1 { rows, cols, qs, d, m })
            }
            GgmlType::Q8_0 => {
                let mut q = Vec::with_capacity(blocks * BLOCK);
                let mut d = Vec::with_capacity(blocks);
                for (i, b) in bytes.chunks_exact(34).enumerate() {
                    d.push(f16_at(&b[0..2], i)?);
                    q.extend_from_slice(&b[2..34]);
                }
                Ok(QMatrix::Q8_0 { rows, cols, q, d })
            }
            other => Err(QuantError::UnsupportedType(other)),
        }
    }

    /// Bytes the matrix holds in memory (quants and block parameters).
    pub fn resident_bytes(&self) -> usize {
        match self {
            QMatrix::Q4_1 { qs, d, m, .. } => qs.len() + 4 * (d.len() + m.len()),
            QMatrix::Q8_0 { q, d, .. } => q.len() + 4 * d.len(),
        }
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        match self {
            QMatrix::Q4_1 { rows, .. } | QMatrix::Q8_0 { rows, .. } => *rows,
        }
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        match self {
            QMatrix::Q4_1 { cols, .. } | QMatrix::Q8_0 { cols, .. } => *cols,
        }
    }

    /// Row `r` dequantised to fixed point Q`out_q` (`out_q ≤ 24`): element `j` of block `b` is
    /// `sat_i32(rshift_round(d·q + m, 24 − out_q))` (Q4_1; `m = 0` for Q8_0), computed in i64.
    /// Used for the embedding lookup. `r < rows`.
    pub fn row_fixed(&self, r: usize, out_q: u32, out: &mut [i32]) {
        let s = W_Q - out_q.min(W_Q);
        match self {
            QMatrix::Q4_1 { cols, qs, d, m, .. } => {
                let nb = cols / BLOCK;
                for b in 0..nb {
                    let (db, mb) = (i64::from(d[r * nb + b]), i64::from(m[r * nb + b]));
                    let q = &qs[(r * nb + b) * 16..][..16];
                    let o = &mut out[b * BLOCK..][..BLOCK];
                    for j in 0..16 {
                        o[j] = sat_i32(rshift_round(db * i64::from(q[j] & 15) + mb, s));
                        o[j + 16] = sat_i32(rshift_round(db * i64::from(q[j] >> 4) + mb, s));
                    }
                }
            }
            QMatrix::Q8_0 { cols, q, d, .. } => {
                let nb = cols / BLOCK;
                for b in 0..nb {
                    let db = i64::from(d[r * nb + b]);
                    let qb = &q[(r * nb + b) * BLOCK..][..BLOCK];
                    for (o, &v) in out[b * BLOCK..][..BLOCK].iter_mut().zip(qb) {
                        *o = sat_i32(rshift_round(db * i64::from(v as i8), s));
                    }
                }
            }
        }
    }

    /// `y = W·x` in fixed point: for row `r`,
    /// `acc = Σ_b ((d_rb · Σ_j q_rbj · a_bj + m_rb · Σ_j a_bj) << k_b)` (i64, modulo 2^64; each block's
    /// inner sums are exact in i32), `y_r = sat_i32(rshift_round(acc, out_shift))`. With `x` in Q`p`,
    /// `acc` is in Q`(24 + p)`, so `out_shift = 24 + p − q` gives `y` in Q`q`.
    /// Errors (computing nothing) when `x` does not have `cols` values or `y` `rows`, or `out_shift ≥ 64`.
    pub fn matvec(&self, x: &QuantVec, out_shift: u32, y: &mut [i32]) -> Result<(), QuantError> {
        if y.len() != self.rows() {
            return Err(self.operands(x, y));
        }
        self.matvec_rows(x, out_shift, 0, y)
    }

    /// Rows `first .. first + y.len()` of [`QMatrix::matvec`] (each row is computed independently, so
    /// any partition of the rows gives the same bits).
    pub fn matvec_rows(
        &self,
        x: &QuantVec,
        out_shift: u32,
        first: usize,
        y: &mut [i32],
    ) -> Result<(), QuantError> {
        let nb = self.cols() / BLOCK;
        if x.a.len() != self.cols()
            || x.sum.len() != nb
            || x.shift.len() != nb
            || first.checked_add(y.len()).is_none_or(|end| end > self.rows())
            || out_shift >= 64
        {
            return Err(self.operands(x, y));
        }
        let v = self.view(first, y.len());
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present and the operand sizes were checked above.
            unsafe { avx2::matvec(&v, x, out_shift, y) };
            return Ok(());
        }
        scalar(&v, x, out_shift, y);
        Ok(())
    }

    /// [`QMatrix::matvec`] of several vectors at once: `y[t·rows + r]` is row `r` of `W·xs[t]`, the same
    /// bits as `xs.len()` calls of `matvec`, with each weight block read once for all the vectors (the
    /// prompt of a language model: one pass over the weights per group of tokens instead of per token).
    pub fn matmat(&self, xs: &[QuantVec], out_shift: u32, y: &mut [i32]) -> Result<(), QuantError> {
        let rows = self.rows();
        let nb = self.cols() / BLOCK;
        let bad = |x: &QuantVec| x.a.len() != self.cols() || x.sum.len() != nb || x.shift.len() != nb;
        if y.len() != xs.len() * rows || out_shift >= 64 || xs.iter().any(bad) {
            let x = xs.iter().find(|x| bad(x)).or(xs.first());
            return Err(QuantError::Operands {
                rows,
                cols: self.cols(),
                x: x.map_or(0, |x| x.a.len()),
                y: y.len(),
            });
        }
        let v = self.view(0, rows);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let mut t = 0;
            while t < xs.len() {
                let n = (xs.len() - t).min(avx2::BATCH);
                // SAFETY: AVX2 is present and the operand sizes were checked above.
                unsafe { avx2::matmat(&v, &xs[t..t + n], out_shift, &mut y[t * rows..(t + n) * rows]) };
                t += n;
            }
            return Ok(());
        }
        for (x, yt) in xs.iter().zip(y.chunks_exact_mut(rows.max(1))) {
            scalar(&v, x, out_shift, yt);
        }
        Ok(())
    }

    /// [`QMatrix::matvec`] in plain Rust, never SIMD: the definition the SIMD kernel must equal bit for
    /// bit. Errors as `matvec`.
    pub fn matvec_scalar(&self, x: &QuantVec, out_shift: u32, y: &mut [i32]) -> Result<(), QuantError> {
        let nb = self.cols() / BLOCK;
        if x.a.len() != self.cols()
            || x.sum.len() != nb
            || x.shift.len() != nb
            || y.len() != self.rows()
            || out_shift >= 64
        {
            return Err(self.operands(x, y));
        }
        scalar(&self.view(0, y.len()), x, out_shift, y);
        Ok(())
    }

    fn operands(&self, x: &QuantVec, y: &[i32]) -> QuantError {
        QuantError::Operands {
            rows: self.rows(),
            cols: self.cols(),
            x: x.a.len(),
            y: y.len(),
        }
    }

    /// Rows `first .. first + n` (in range: checked by the callers).
    fn view(&self, first: usize, n: usize) -> View<'_> {
        match self {
            QMatrix::Q4_1 { cols, qs, d, m, .. } => {
                let nb = cols / BLOCK;
                View {
                    q4: true,
                    nb,
                    q: &qs[first * nb * 16..][..n * nb * 16],
                    d: &d[first * nb..][..n * nb],
                    m: &m[first * nb..][..n * nb],
                }
            }
            QMatrix::Q8_0 { cols, q, d, .. } => {
                let nb = cols / BLOCK;
                View {
                    q4: false,
                    nb,
                    q: &q[first * nb * BLOCK..][..n * nb * BLOCK],
                    d: &d[first * nb..][..n * nb],
                    m: &[],
                }
            }
        }
    }
}

/// Consecutive rows of a matrix: `q` holds `qb = 16` (Q4_1) or `32` (Q8_0) bytes per block, `d` (and `m`
/// for Q4_1) one value per block, `nb` blocks per row.
struct View<'a> {
    q4: bool,
    nb: usize,
    q: &'a [u8],
    d: &'a [i32],
    m: &'a [i32],
}

/// The scalar product over `v`'s rows into `y` (one output per row of `v`).
fn scalar(v: &View<'_>, x: &QuantVec, out_shift: u32, y: &mut [i32]) {
    let nb = v.nb;
    let qb = if v.q4 { 16 } else { BLOCK };
    for (r, out) in y.iter_mut().enumerate() {
        let mut acc = 0i64;
        for b in 0..nb {
            let q = &v.q[(r * nb + b) * qb..][..qb];
            let a = &x.a[b * BLOCK..][..BLOCK];
            let (k, i) = (x.shift[b], r * nb + b);
            let t = if v.q4 {
                q4_term(v.d[i], v.m[i], dot_q4(q, a), x.sum[b], k)
            } else {
                q8_term(v.d[i], dot_q8(q, a), k)
            };
            acc = acc.wrapping_add(t);
        }
        *out = sat_i32(rshift_round(acc, out_shift));
    }
}

/// One Q4_1 block's contribution: `(d · isum + m · asum) << k` (exact products, shift modulo 2^64).
#[inline(always)]
fn q4_term(d: i32, m: i32, isum: i32, asum: i32, k: u32) -> i64 {
    (i64::from(d) * i64::from(isum) + i64::from(m) * i64::from(asum)) << k
}

/// One Q8_0 block's contribution: `(d · isum) << k`.
#[inline(always)]
fn q8_term(d: i32, isum: i32, k: u32) -> i64 {
    (i64::from(d) * i64::from(isum)) << k
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 block dot products (`vpmaddwd`), four rows at a time: identical results to the scalar
    //! definitions, since every block sum is exact in i32, each block term is the same exact i64
    //! product (`vpmuldq`) and shift, and the i64 accumulation wraps the same way in any order.
    use super::{BLOCK, QuantVec, View};
    use crate::fixed::{rshift_round, sat_i32};
    use std::arch::x86_64::*;

    /// The 8 lane sums of `q · a` over one block, for the block's 16 quant bytes (Q4_1) or 32 (Q8_0).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn block_lanes<const Q4: bool>(q: &[u8], a0: __m256i, a1: __m256i) -> __m256i {
        let (w0, w1) = if Q4 {
            // SAFETY: q has at least 16 bytes (sliced here).
            let raw = unsafe { _mm_loadu_si128(q[..16].as_ptr() as *const __m128i) };
            let mask = _mm_set1_epi8(0x0f);
            (
                _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask)),
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)),
            )
        } else {
            // SAFETY: q has at least 32 bytes (sliced here).
            let (r0, r1) = unsafe {
                let p = q[..32].as_ptr() as *const __m128i;
                (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
            };
            (_mm256_cvtepi8_epi16(r0), _mm256_cvtepi8_epi16(r1))
        };
        _mm256_add_epi32(_mm256_madd_epi16(w0, a0), _mm256_madd_epi16(w1, a1))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// Vectors per pass of [`matmat`].
    pub(super) const BATCH: usize = 4;

    /// # Safety
    /// The CPU must support AVX2; `xs` has 1 to [`BATCH`] vectors of `v.nb` blocks, `y` `xs.len()` times
    /// `v`'s rows (as `QMatrix::matmat` checks).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn matmat(v: &View<'_>, xs: &[QuantVec], out_shift: u32, y: &mut [i32]) {
        // SAFETY (every arm): forwarded contract, with the vector count as the const parameter.
        unsafe {
            match (v.q4, xs.len()) {
                (true, 1) => rows_n::<true, 1>(v, xs, out_shift, y),
                (true, 2) => rows_n::<true, 2>(v, xs, out_shift, y),
                (true, 3) => rows_n::<true, 3>(v, xs, out_shift, y),
                (true, _) => rows_n::<true, 4>(v, xs, out_shift, y),
                (false, 1) => rows_n::<false, 1>(v, xs, out_shift, y),
                (false, 2) => rows_n::<false, 2>(v, xs, out_shift, y),
                (false, 3) => rows_n::<false, 3>(v, xs, out_shift, y),
                (false, _) => rows_n::<false, 4>(v, xs, out_shift, y),
            }
        }
    }

    /// The weights of one block as two vectors of 16 int16 (the operands `block_lanes` multiplies).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn block_weights<const Q4: bool>(q: &[u8]) -> (__m256i, __m256i) {
        if Q4 {
            // SAFETY: q has at least 16 bytes (sliced here).
            let raw = unsafe { _mm_loadu_si128(q[..16].as_ptr() as *const __m128i) };
            let mask = _mm_set1_epi8(0x0f);
            (
                _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask)),
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)),
            )
        } else {
            // SAFETY: q has at least 32 bytes (sliced here).
            let (r0, r1) = unsafe {
                let p = q[..32].as_ptr() as *const __m128i;
                (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
            };
            (_mm256_cvtepi8_epi16(r0), _mm256_cvtepi8_epi16(r1))
        }
    }

    /// `T` vectors against every row of `v`: per group of four rows and block, the weights are unpacked
    /// once and multiplied with each vector; each vector's terms and sums are those of `rows`.
    ///
    /// # Safety
    /// As [`matmat`], with `Q4 == v.q4` and `T == xs.len()`.
    #[target_feature(enable = "avx2")]
    unsafe fn rows_n<const Q4: bool, const T: usize>(
        v: &View<'_>,
        xs: &[QuantVec],
        out_shift: u32,
        y: &mut [i32],
    ) {
        let (nb, qs, d, m) = (v.nb, v.q, v.d, v.m);
        let qb = if Q4 { 16 } else { BLOCK };
        let rows = v.d.len() / nb.max(1);
        let act = |t: usize, b: usize| {
            let a = &xs[t].a[b * BLOCK..][..BLOCK];
            // SAFETY: a has 32 i16 = two 256-bit vectors.
            unsafe {
                let p = a.as_ptr() as *const __m256i;
                (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
            }
        };
        let mut r = 0;
        while r + 4 <= rows {
            let mut acc = [_mm256_setzero_si256(); T];
            for b in 0..nb {
                let w = |i: usize| block_weights::<Q4>(&qs[((r + i) * nb + b) * qb..][..qb]);
                let (w0, w1, w2, w3) = (w(0), w(1), w(2), w(3));
                let at = |v: &[i32], i: usize| v[(r + i) * nb + b];
                let d4 = _mm256_cvtepi32_epi64(_mm_set_epi32(at(d, 3), at(d, 2), at(d, 1), at(d, 0)));
                let m4 = if Q4 {
                    _mm256_cvtepi32_epi64(_mm_set_epi32(at(m, 3), at(m, 2), at(m, 1), at(m, 0)))
                } else {
                    _mm256_setzero_si256()
                };
                for (t, acc) in acc.iter_mut().enumerate() {
                    let (a0, a1) = act(t, b);
                    let lanes = |(x0, x1): (__m256i, __m256i)| {
                        _mm256_add_epi32(_mm256_madd_epi16(x0, a0), _mm256_madd_epi16(x1, a1))
                    };
                    let (p0, p1, p2, p3) = (lanes(w0), lanes(w1), lanes(w2), lanes(w3));
                    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
                    let isum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                    let mut term = _mm256_mul_epi32(_mm256_cvtepi32_epi64(isum), d4);
                    if Q4 {
                        let asum = _mm256_set1_epi64x(i64::from(xs[t].sum[b]));
                        term = _mm256_add_epi64(term, _mm256_mul_epi32(m4, asum));
                    }
                    term = _mm256_sll_epi64(term, _mm_cvtsi32_si128(xs[t].shift[b] as i32));
                    *acc = _mm256_add_epi64(*acc, term);
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                let mut out = [0i64; 4];
                // SAFETY: out has room for 4 i64.
                unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, *acc) };
                for (o, &a) in y[t * rows + r..][..4].iter_mut().zip(&out) {
                    *o = sat_i32(rshift_round(a, out_shift));
                }
            }
            r += 4;
        }
        for t in 0..T {
            for (rr, out) in y[t * rows..(t + 1) * rows].iter_mut().enumerate().skip(r) {
                let mut acc = 0i64;
                for b in 0..nb {
                    let (a0, a1) = act(t, b);
                    let isum = hsum(block_lanes::<Q4>(&qs[(rr * nb + b) * qb..][..qb], a0, a1));
                    let mut term = i64::from(d[rr * nb + b]) * i64::from(isum);
                    if Q4 {
                        term += i64::from(m[rr * nb + b]) * i64::from(xs[t].sum[b]);
                    }
                    acc = acc.wrapping_add(term << xs[t].shift[b]);
                }
                *out = sat_i32(rshift_round(acc, out_shift));
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2; `v` has `y.len()` rows and `x` `v.nb` blocks (as `matvec_rows` checks).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn matvec(v: &View<'_>, x: &QuantVec, out_shift: u32, y: &mut [i32]) {
        // SAFETY: forwarded contract: one vector, `y` holds `v`'s rows.
        unsafe { matmat(v, std::slice::from_ref(x), out_shift, y) }
    }
}

/// `Σ_j q_j · a_j` over one Q4_1 block (nibbles 0..15 times int16; |sum| ≤ 32·15·32767 < 2^24).
#[inline(always)]
fn dot_q4(q: &[u8], a: &[i16]) -> i32 {
    let (lo, hi) = a.split_at(16);
    let mut s = 0i32;
    for j in 0..16 {
        s += i32::from(q[j] & 15) * i32::from(lo[j]) + i32::from(q[j] >> 4) * i32::from(hi[j]);
    }
    s
}

/// `Σ_j q_j · a_j` over one Q8_0 block (int8 times int16; |sum| ≤ 32·128·32767 < 2^28).
#[inline(always)]
fn dot_q8(q: &[u8], a: &[i16]) -> i32 {
    let mut s = 0i32;
    for j in 0..BLOCK {
        s += i32::from(q[j] as i8) * i32::from(a[j]);
    }
    s
}

/// An activation vector quantised per block of 32 to int16 with a power-of-two scale:
/// `x_j ≈ a_j · 2^k_b`.
#[derive(Clone, Debug, Default)]
pub struct QuantVec {
    /// The int16 values, `|a| ≤ 32767`.
    pub a: Vec<i16>,
    /// Per block: the shift `k_b`.
    pub shift: Vec<u32>,
    /// Per block: `Σ_j a_j` (for Q4_1's `m` term).
    pub sum: Vec<i32>,
}

impl QuantVec {
    /// Quantises `x` (length a multiple of 32): per block, `amax = max |x_j|` (as u32),
    /// `k = max(0, bitlen(amax) − 15)`, `a_j = clamp(rshift_round(x_j, k), −32767, 32767)`.
    pub fn quantize(&mut self, x: &[i32]) {
        let nb = x.len() / BLOCK;
        self.a.resize(nb * BLOCK, 0);
        self.shift.resize(nb, 0);
        self.sum.resize(nb, 0);
        for b in 0..nb {
            let xb = &x[b * BLOCK..][..BLOCK];
            let amax = xb.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            let k = (32 - amax.leading_zeros()).saturating_sub(15);
            let ab = &mut self.a[b * BLOCK..][..BLOCK];
            let mut s = 0i32;
            for (o, &v) in ab.iter_mut().zip(xb) {
                let q = rshift_round(i64::from(v), k).clamp(-32767, 32767) as i16;
                *o = q;
                s += i32::from(q);
            }
            self.shift[b] = k;
            self.sum[b] = s;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantize_keeps_small_values_and_scales_large_ones() {
        let mut x = vec![0i32; 64];
        x[0] = 32767;
        x[1] = -5;
        x[32] = 1 << 20;
        x[33] = -56; // far below the block's step 2^17: rounds to 0
        x[34] = i32::MIN;
        let mut q = QuantVec::default();
        q.quantize(&x);
        assert_eq!(q.shift, vec![0, 17]);
        assert_eq!(&q.a[..2], &[32767, -5]);
        assert_eq!(q.a[32], 8);
        assert_eq!(q.a[33], 0);
        assert_eq!(q.a[34], -16384);
        assert_eq!(q.sum[0], 32762);
    }

    #[test]
    fn matvec_equals_exact_dequantised_product_when_nothing_rounds() {
        // Q4_1, 2 rows of 64: d = 1/16, m = -1/2 in f16; inputs small integers (shift 0).
        let mut bytes = Vec::new();
        for r in 0..2u8 {
            for b in 0..2u8 {
                bytes.extend(0x2c00u16.to_le_bytes()); // 1/16
                bytes.extend(0xb800u16.to_le_bytes()); // -1/2
                bytes.extend((0..16u8).map(|j| ((j + r + b) % 16) | (((j * 3) % 16) << 4)));
            }
        }
        let w = QMatrix::from_ggml(GgmlType::Q4_1, 2, 64, &bytes).unwrap();
        let xs: Vec<i32> = (0..64).map(|i| (i * 7 % 23) - 11).collect();
        let mut q = QuantVec::default();
        q.quantize(&xs);
        let mut y = [0i32; 2];
        w.matvec(&q, 0, &mut y).unwrap();
        let mut row = vec![0i32; 64];
        for (r, &got) in y.iter().enumerate() {
            w.row_fixed(r, 24, &mut row);
            let want: i64 = row
                .iter()
                .zip(&xs)
                .map(|(&w, &x)| i64::from(w) * i64::from(x))
                .sum();
            assert_eq!(i64::from(got), want);
        }
    }

    /// The dispatched kernel (AVX2 where present) equals the scalar definition bit for bit, on random
    /// weights and inputs spanning every block shift.
    #[test]
    fn simd_equals_scalar() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..40 {
            let (rows, cols) = (1 + (rnd() % 9) as usize, 32 * (1 + (rnd() % 6) as usize));
            let scale = |r: u64| 0x0400u16 + (r % 0x4c00) as u16; // positive normal halves below 128
            let mut q41 = Vec::new();
            let mut q80 = Vec::new();
            for _ in 0..rows * cols / 32 {
                q41.extend(scale(rnd()).to_le_bytes());
                q41.extend((scale(rnd()) | 0x8000).to_le_bytes());
                q41.extend((0..16).map(|_| rnd() as u8));
                q80.extend(scale(rnd()).to_le_bytes());
                q80.extend((0..32).map(|_| rnd() as u8));
            }
            let x: Vec<i32> = (0..cols).map(|i| (rnd() as i32) >> ((i + case) % 31)).collect();
            let mut qv = QuantVec::default();
            qv.quantize(&x);
            for (ty, bytes) in [(GgmlType::Q4_1, &q41), (GgmlType::Q8_0, &q80)] {
                let w = QMatrix::from_ggml(ty, rows, cols, bytes).unwrap();
                for shift in [0, 20, 40, 63] {
                    let (mut a, mut b) = (vec![0; rows], vec![0; rows]);
                    w.matvec(&qv, shift, &mut a).unwrap();
                    w.matvec_scalar(&qv, shift, &mut b).unwrap();
                    assert_eq!(a, b, "case {case} {ty:?} shift {shift}");
                }
                assert!(w.matvec(&qv, 0, &mut vec![0; rows + 1]).is_err());
                // Several vectors at once: the same bits as one matvec each, for every batch size
                // (including more than one pass and a remainder).
                let n = 1 + case % 9;
                let xs: Vec<QuantVec> = (0..n)
                    .map(|t| {
                        let x: Vec<i32> = (0..cols)
                            .map(|i| (rnd() as i32) >> ((i + t + case) % 31))
                            .collect();
                        let mut q = QuantVec::default();
                        q.quantize(&x);
                        q
                    })
                    .collect();
                let mut batch = vec![0; n * rows];
                w.matmat(&xs, 24, &mut batch).unwrap();
                for (t, x) in xs.iter().enumerate() {
                    let mut one = vec![0; rows];
                    w.matvec_scalar(x, 24, &mut one).unwrap();
                    assert_eq!(
                        batch[t * rows..][..rows],
                        one,
                        "case {case} {ty:?} vector {t} of {n}"
                    );
                }
                assert!(w.matmat(&xs, 24, &mut vec![0; n * rows + 1]).is_err());
            }
        }
    }

    #[test]
    fn bad_weights_are_errors() {
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::Q4_1, 1, 32, &[0; 19]),
            Err(QuantError::Size { .. })
        ));
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::F32, 1, 32, &[0; 128]),
            Err(QuantError::UnsupportedType(_))
        ));
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&0x7c00u16.to_le_bytes()); // +inf
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::Q8_0, 1, 32, &b),
            Err(QuantError::Scale { .. })
        ));
    }
}
