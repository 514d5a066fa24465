//! Fixed-point primitives of the integer forward pass (specified in `docs/llm.md`).
//!
//! Nothing here uses floating point. IEEE half and single values read from a GGUF file are decoded from
//! their bits; the transcendental functions the model needs (natural logarithm and exponential for the
//! RoPE frequencies, sine and cosine for the RoPE rotations, `2^-x` for softmax and the sigmoid) are
//! computed from series in 128-bit integers, with π and ln 2 themselves derived from series (Machin's
//! formula and `2·atanh(1/3)`), so every constant is a consequence of integer arithmetic alone.
//!
//! Notation: a value "in Qn" is the integer `round(v · 2^n)`. [`rshift_round`] is the one rounding rule
//! used on the result path: `(x + 2^(s-1)) >> s`, an arithmetic shift, so halves round towards +∞.

/// Why a value could not be converted to fixed point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    /// The IEEE value is an infinity or a NaN.
    #[error("non-finite floating-point value (bits {0:#x})")]
    NotFinite(u32),
    /// The value does not fit the fixed-point format.
    #[error("value (bits {bits:#x}) out of range for Q{frac} in {width} bits")]
    OutOfRange {
        /// The IEEE bits.
        bits: u32,
        /// The fraction bits of the target format.
        frac: u32,
        /// The width of the target integer.
        width: u32,
    },
}

/// `(x + 2^(s-1)) >> s` (arithmetic: halves towards +∞); `x` unchanged when `s = 0`. `s < 64`.
#[inline(always)]
pub fn rshift_round(x: i64, s: u32) -> i64 {
    if s == 0 {
        x
    } else {
        x.wrapping_add(1i64 << (s - 1)) >> s
    }
}

/// [`rshift_round`] in 128 bits. `s < 128`.
#[inline]
pub fn rshift_round_i128(x: i128, s: u32) -> i128 {
    if s == 0 {
        x
    } else {
        x.wrapping_add(1i128 << (s - 1)) >> s
    }
}

/// `x` clamped to the i32 range.
#[inline(always)]
pub fn sat_i32(x: i64) -> i32 {
    x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// An IEEE binary16 value (bits `h`) in Q24 as an i32, exactly: every finite half with `|v| < 128` is a
/// multiple of 2^-24 (the smallest subnormal), so there is no rounding at all. Larger magnitudes and
/// non-finite values are errors.
pub fn f16_to_q24(h: u16) -> Result<i32, FixedError> {
    let neg = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = i64::from(h & 0x3ff);
    if exp == 0x1f {
        return Err(FixedError::NotFinite(u32::from(h)));
    }
    // Normal: (1024 + man) · 2^(exp-25) = (1024 + man) · 2^(exp-1) · 2^-24. Subnormal: man · 2^-24.
    let mag = if exp == 0 { man } else { (1024 + man) << (exp - 1) };
    if mag > i64::from(i32::MAX) {
        return Err(FixedError::OutOfRange {
            bits: u32::from(h),
            frac: 24,
            width: 32,
        });
    }
    Ok(if neg { -(mag as i32) } else { mag as i32 })
}

/// The exact value of IEEE binary32 bits as `(negative, mantissa, exponent)` with `|v| = mantissa ·
/// 2^exponent`, or an error for infinities and NaNs.
pub fn f32_parts(bits: u32) -> Result<(bool, u64, i32), FixedError> {
    let neg = bits >> 31 == 1;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = u64::from(bits & 0x7f_ffff);
    match exp {
        0xff => Err(FixedError::NotFinite(bits)),
        0 => Ok((neg, man, -149)),
        _ => Ok((neg, man | 0x80_0000, exp - 150)),
    }
}

/// An IEEE binary32 value (bits) in Q`frac` as an i64, rounded to nearest with halves away from zero.
/// Out-of-range magnitudes (≥ 2^63 after scaling) and non-finite values are errors.
pub fn f32_to_fixed(bits: u32, frac: u32) -> Result<i64, FixedError> {
    let (neg, man, exp) = f32_parts(bits)?;
    let e = exp + frac as i32; // |v| · 2^frac = man · 2^e
    let out_of_range = FixedError::OutOfRange {
        bits,
        frac,
        width: 64,
    };
    let mag: u64 = if man == 0 {
        0
    } else if e >= 0 {
        if e >= 40 || (man << e) >= 1 << 63 {
            return Err(out_of_range);
        }
        man << e
    } else {
        let s = (-e) as u32;
        if s >= 63 { 0 } else { (man + (1 << (s - 1))) >> s }
    };
    Ok(if neg { -(mag as i64) } else { mag as i64 })
}

/// [`f32_to_fixed`] narrowed to an i32 (error when it does not fit).
pub fn f32_to_fixed_i32(bits: u32, frac: u32) -> Result<i32, FixedError> {
    let v = f32_to_fixed(bits, frac)?;
    i32::try_from(v).map_err(|_| FixedError::OutOfRange {
        bits,
        frac,
        width: 32,
    })
}

/// `floor(sqrt(v))` for any u128 (digit-by-digit, exact).
pub fn isqrt_u128(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    // Newton from above: x_{k+1} = (x_k + v / x_k) / 2 decreases monotonically to floor(sqrt(v)).
    let bits = 128 - v.leading_zeros();
    let mut x: u128 = 1 << bits.div_ceil(2);
    loop {
        let y = (x + v / x) >> 1;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Number of fraction bits of the 128-bit series arithmetic below.
pub const SERIES_Q: u32 = 62;
const ONE: i128 = 1 << SERIES_Q;

/// `atanh(1/n)` (or `atan(1/n)` when `alternate`) in Q62, `n ≥ 2`, by its Taylor series
/// `Σ_k (±1)^k / ((2k+1) · n^(2k+1))`, each term truncated towards zero.
fn arc_inv(n: i128, alternate: bool) -> i128 {
    let mut p = ONE / n; // 1 / n^(2k+1)
    let mut sum = 0i128;
    let mut k = 0i128;
    while p != 0 {
        let t = p / (2 * k + 1);
        sum += if alternate && k % 2 == 1 { -t } else { t };
        p /= n * n;
        k += 1;
    }
    sum
}

/// ln 2 in Q62, as `2 · atanh(1/3)` (error below 2^-59).
pub fn ln2_q62() -> i128 {
    2 * arc_inv(3, false)
}

/// π in Q62, by Machin's formula `π = 16·atan(1/5) − 4·atan(1/239)` (error below 2^-57).
pub fn pi_q62() -> i128 {
    16 * arc_inv(5, true) - 4 * arc_inv(239, true)
}

/// `ln(y)` in Q62 for `y` in Q62 with `1 ≤ y < 2` (the argument is clamped into that range), by
/// `ln y = 2·atanh(z)`, `z = (y−1)/(y+1) ≤ 1/3`.
fn ln_unit_q62(y: i128) -> i128 {
    let y = y.clamp(ONE, 2 * ONE - 1);
    let z = ((y - ONE) << SERIES_Q) / (y + ONE);
    let z2 = (z * z) >> SERIES_Q;
    let (mut p, mut sum, mut k) = (z, 0i128, 0i128);
    while p != 0 {
        sum += p / (2 * k + 1);
        p = (p * z2) >> SERIES_Q;
        k += 1;
    }
    2 * sum
}

/// `ln(v)` in Q62 of a positive IEEE binary32 value (bits), exactly decoded; `None` for `v ≤ 0` or
/// non-finite values.
pub fn ln_f32_q62(bits: u32) -> Option<i128> {
    let (neg, man, exp) = f32_parts(bits).ok()?;
    if neg || man == 0 {
        return None;
    }
    // v = man · 2^exp = (man / 2^(b-1)) · 2^(exp + b - 1), b = bit length of man.
    let b = 64 - man.leading_zeros() as i32;
    let y = i128::from(man) << (SERIES_Q as i32 - (b - 1));
    Some(ln_unit_q62(y) + i128::from(exp + b - 1) * ln2_q62())
}

/// `exp(-x)` in Q62 for `x ≥ 0` in Q62: `x = n·ln2 + r` with `0 ≤ r < ln2`, `exp(-r)` by its Taylor
/// series (terms truncated towards zero), then a rounded right shift by `n`. 0 when `n ≥ 64`.
pub fn exp_neg_q62(x: i128) -> i128 {
    let x = x.max(0);
    let ln2 = ln2_q62();
    let n = x / ln2;
    if n >= 64 {
        return 0;
    }
    let r = x - n * ln2;
    let (mut term, mut sum, mut k) = (ONE, ONE, 1i128);
    while term != 0 {
        term = -((term * r) >> SERIES_Q) / k;
        sum += term;
        k += 1;
    }
    rshift_round_i128(sum, n as u32)
}

/// `(sin θ, cos θ)` in Q62 for `θ` in Q62 with `0 ≤ θ ≤ π/4` (Taylor series, i128).
fn sin_cos_octant(t: i128) -> (i128, i128) {
    let t2 = (t * t) >> SERIES_Q;
    let (mut s, mut st, mut k) = (t, t, 1i128);
    while st != 0 {
        st = -((st * t2) >> SERIES_Q) / ((2 * k) * (2 * k + 1));
        s += st;
        k += 1;
    }
    let (mut c, mut ct, mut k) = (ONE, ONE, 1i128);
    while ct != 0 {
        ct = -((ct * t2) >> SERIES_Q) / ((2 * k - 1) * (2 * k));
        c += ct;
        k += 1;
    }
    (s, c)
}

/// Constants of the rotary embedding's trigonometry, derived once from [`pi_q62`].
#[derive(Clone, Copy, Debug)]
pub struct Trig {
    /// π/2 in Q62.
    half_pi: i128,
    /// π/4 in Q62.
    quarter_pi: i128,
    /// 2π in Q62.
    two_pi: i128,
}

impl Default for Trig {
    fn default() -> Self {
        Trig::new()
    }
}

impl Trig {
    /// Derives the constants.
    pub fn new() -> Trig {
        let pi = pi_q62();
        Trig {
            half_pi: pi / 2,
            quarter_pi: pi / 4,
            two_pi: 2 * pi,
        }
    }

    /// 2π in Q62.
    pub fn two_pi_q62(&self) -> i128 {
        self.two_pi
    }

    /// `(cos θ, sin θ)` in Q30 for any `θ ≥ 0` in Q62 (reduced modulo 2π, then to an octant).
    pub fn cos_sin_q30(&self, theta: i128) -> (i32, i32) {
        let t = theta.rem_euclid(self.two_pi);
        let q = (t / self.half_pi).min(3);
        let r = t - q * self.half_pi;
        // (sin r, cos r) for r in [0, π/2).
        let (s, c) = if r <= self.quarter_pi {
            sin_cos_octant(r)
        } else {
            let (s2, c2) = sin_cos_octant(self.half_pi - r);
            (c2, s2)
        };
        let (sin, cos) = match q {
            0 => (s, c),
            1 => (c, -s),
            2 => (-s, -c),
            _ => (-c, s),
        };
        let to_q30 = |v: i128| rshift_round_i128(v, SERIES_Q - 30).clamp(-(1 << 30), 1 << 30) as i32;
        (to_q30(cos), to_q30(sin))
    }
}

/// The RoPE inverse frequencies `base^(-2i/dim)` for `i` in `0..dim/2`, in Q62:
/// `exp_neg_q62(2i · ln(base) / dim)` with the quotient truncated. `None` unless `base > 1` and `dim ≥ 2`
/// is even.
pub fn rope_inv_freq_q62(base_bits: u32, dim: usize) -> Option<Vec<i128>> {
    let ln_base = ln_f32_q62(base_bits)?;
    if ln_base <= 0 || dim < 2 || !dim.is_multiple_of(2) {
        return None;
    }
    Some(
        (0..dim / 2)
            .map(|i| exp_neg_q62(ln_base * (2 * i as i128) / dim as i128))
            .collect(),
    )
}

/// Bits of the `2^-f` table index (the table has `2^EXP2_TABLE_BITS + 1` entries).
pub const EXP2_TABLE_BITS: u32 = 10;

/// `EXP2_Q30[i] = round(2^30 · 2^(-i/1024))` for `i` in `0..=1024`, computed as
/// `rshift_round(exp_neg_q62(i · ln2 / 1024), 32)`.
pub fn exp2_table_q30() -> Vec<u32> {
    let ln2 = ln2_q62();
    let n = 1i128 << EXP2_TABLE_BITS;
    (0..=n)
        .map(|i| rshift_round_i128(exp_neg_q62(ln2 * i / n), SERIES_Q - 30) as u32)
        .collect()
}

/// `log2(e)` in Q31 (`round(2^93 / ln2_q62)`; fits a u32: 3098164010).
pub fn log2e_q31() -> u32 {
    let ln2 = ln2_q62();
    (((1i128 << (SERIES_Q + 31 + 1)) / ln2 + 1) >> 1) as u32
}

/// The integer exponential of the softmax and the sigmoid.
#[derive(Clone, Debug)]
pub struct Exp {
    table: Vec<u32>,
    log2e: u32,
}

impl Default for Exp {
    fn default() -> Self {
        Exp::new()
    }
}

impl Exp {
    /// Builds the table ([`exp2_table_q30`]) and `log2(e)` ([`log2e_q31`]).
    pub fn new() -> Exp {
        Exp {
            table: exp2_table_q30(),
            log2e: log2e_q31(),
        }
    }

    /// `exp(-d)` in Q30 for `d ≥ 0` in Q16 (`d` is clamped to `[0, 2^27)`; larger gives 0 anyway):
    /// `t = d · log2e_q31` (Q47, a 64-bit product), `n = t >> 47`, `f = t mod 2^47`,
    /// `i = f >> 37` (10 bits), `u = (f >> 21) mod 2^16`;
    /// `v = T[i] − ((T[i] − T[i+1]) · u + 2^15 >> 16)`; result `rshift_round(v, n)`, 0 when `n ≥ 31`.
    /// Relative error below 1.2e-7 (linear interpolation of `2^-x` on steps of 1/1024).
    #[inline]
    pub fn exp_neg_q16(&self, d: i64) -> u32 {
        let d = d.clamp(0, (1 << 27) - 1) as u64;
        let t = d * u64::from(self.log2e);
        let n = (t >> 47) as u32;
        if n >= 31 {
            return 0;
        }
        let f = t & ((1 << 47) - 1);
        let i = (f >> 37) as usize;
        let u = (f >> 21) & 0xffff;
        let (a, b) = (self.table[i], self.table[i + 1]);
        let v = u64::from(a) - ((u64::from(a - b) * u + (1 << 15)) >> 16);
        rshift_round(v as i64, n) as u32
    }

    /// The logistic sigmoid `1 / (1 + exp(-x))` in Q30 for `x` in Q16: with `e = exp_neg_q16(|x|)`
    /// and `D = 2^30 + e`, `σ = (2^60 + D/2) / D` for `x ≥ 0` and `(e · 2^30 + D/2) / D` for `x < 0`.
    #[inline]
    pub fn sigmoid_q30(&self, x: i32) -> u32 {
        let e = u64::from(self.exp_neg_q16(i64::from(x).abs()));
        let den = (1u64 << 30) + e;
        let num = if x >= 0 { 1u64 << 60 } else { e << 30 };
        ((num + den / 2) / den) as u32
    }

    /// `silu(x) = x · σ(x)` in Q16 for `x` in Q16: `rshift_round(x · sigmoid_q30(x), 30)`.
    #[inline]
    pub fn silu_q16(&self, x: i32) -> i32 {
        sat_i32(rshift_round(i64::from(x) * i64::from(self.sigmoid_q30(x)), 30))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q62(v: i128) -> f64 {
        v as f64 / (ONE as f64)
    }

    #[test]
    fn constants_match_f64() {
        assert!((q62(ln2_q62()) - std::f64::consts::LN_2).abs() < 1e-15);
        assert!((q62(pi_q62()) - std::f64::consts::PI).abs() < 1e-15);
        assert_eq!(
            log2e_q31(),
            (std::f64::consts::LOG2_E * 2f64.powi(31)).round() as u32
        );
    }

    #[test]
    fn ln_and_exp_match_f64() {
        for v in [
            1.0f32, 1.5, 2.0, 3.0, 10.0, 10000.0, 100000.0, 500000.0, 0.25, 1e-5,
        ] {
            let got = q62(ln_f32_q62(v.to_bits()).unwrap());
            assert!((got - f64::from(v).ln()).abs() < 1e-14, "ln {v}: {got}");
        }
        assert!(ln_f32_q62(0f32.to_bits()).is_none());
        assert!(ln_f32_q62((-1f32).to_bits()).is_none());
        for i in 0..200 {
            let x = f64::from(i) * 0.173;
            let got = q62(exp_neg_q62((x * ONE as f64) as i128));
            let want = (-x).exp();
            assert!(
                (got - want).abs() <= 1e-15 + want * 1e-14,
                "exp(-{x}): {got} vs {want}"
            );
        }
    }

    #[test]
    fn rope_frequencies_and_trig_match_f64() {
        let inv = rope_inv_freq_q62(100000f32.to_bits(), 64).unwrap();
        let trig = Trig::new();
        for (i, &f) in inv.iter().enumerate() {
            let want = 100000f64.powf(-(2.0 * i as f64) / 64.0);
            assert!((q62(f) - want).abs() < 1e-15 + want * 1e-14, "{i}");
            for pos in [0i128, 1, 7, 100, 1234, 8191] {
                let (c, s) = trig.cos_sin_q30(pos * f);
                let ang = pos as f64 * want;
                let (wc, ws) = (ang.cos() * 2f64.powi(30), ang.sin() * 2f64.powi(30));
                assert!(
                    (f64::from(c) - wc).abs() <= 0.51 && (f64::from(s) - ws).abs() <= 0.51,
                    "{i} {pos}"
                );
            }
        }
        assert!(rope_inv_freq_q62(1f32.to_bits(), 64).is_none());
        assert!(rope_inv_freq_q62(10000f32.to_bits(), 63).is_none());
    }

    #[test]
    fn exp_table_and_sigmoid_match_f64() {
        let e = Exp::new();
        for (i, &t) in exp2_table_q30().iter().enumerate() {
            let want = 2f64.powi(30) * (-(i as f64) / 1024.0).exp2();
            assert!((f64::from(t) - want).abs() <= 0.5 + 1e-6, "{i}");
        }
        for d in (0..(40 << 16)).step_by(997) {
            let got = f64::from(e.exp_neg_q16(d)) / 2f64.powi(30);
            let want = (-(d as f64) / 65536.0).exp();
            assert!(
                (got - want).abs() <= want * 2e-7 + 1.5e-9,
                "exp(-{d}/2^16): {got} vs {want}"
            );
        }
        assert_eq!(e.exp_neg_q16(0), 1 << 30);
        assert_eq!(e.exp_neg_q16(1 << 40), 0);
        for x in (-(30 << 16)..(30 << 16)).step_by(1009) {
            let xf = f64::from(x) / 65536.0;
            let s = f64::from(e.sigmoid_q30(x)) / 2f64.powi(30);
            assert!((s - 1.0 / (1.0 + (-xf).exp())).abs() < 6e-8, "{x}");
            let silu = f64::from(e.silu_q16(x)) / 65536.0;
            assert!((silu - xf / (1.0 + (-xf).exp())).abs() < 2e-5, "{x}");
        }
    }

    #[test]
    fn float_decoding_is_exact() {
        for h in 0..=u16::MAX {
            let v = crate::gguf::f16_to_f32(h);
            match f16_to_q24(h) {
                Ok(q) => assert_eq!(f64::from(q), f64::from(v) * 2f64.powi(24), "{h:04x}"),
                Err(_) => assert!(!v.is_finite() || v.abs() >= 128.0, "{h:04x}"),
            }
        }
        for v in [
            0.0f32,
            -0.0,
            1.0,
            -1.5,
            1e-5,
            3.3,
            1e-30,
            f32::MIN_POSITIVE,
            1e-45,
            0.30078125,
        ] {
            let got = f32_to_fixed(v.to_bits(), 24).unwrap();
            let x = f64::from(v) * 2f64.powi(24);
            let want = x.abs().floor() + if x.abs().fract() >= 0.5 { 1.0 } else { 0.0 };
            assert_eq!(got as f64, want.copysign(x), "{v}");
        }
        assert_eq!(
            f32_to_fixed(1e-5f32.to_bits(), 60).unwrap(),
            (1e-5f32 as f64 * 2f64.powi(60)).round() as i64
        );
        assert!(f32_to_fixed(f32::INFINITY.to_bits(), 0).is_err());
        assert!(f32_to_fixed(1e30f32.to_bits(), 0).is_err());
        assert!(f32_to_fixed_i32(200.0f32.to_bits(), 24).is_err());
    }

    #[test]
    fn isqrt_is_floor_sqrt() {
        for v in (0u128..100_000).chain([u64::MAX as u128, u128::MAX, (1u128 << 100) + 12345]) {
            let r = isqrt_u128(v);
            assert!(
                r * r <= v && (r + 1).checked_mul(r + 1).is_none_or(|s| s > v),
                "{v}"
            );
        }
    }

    #[test]
    fn rounding_shift() {
        assert_eq!(rshift_round(5, 1), 3);
        assert_eq!(rshift_round(-5, 1), -2);
        assert_eq!(rshift_round(-6, 2), -1);
        assert_eq!(rshift_round(7, 0), 7);
        assert_eq!(sat_i32(1 << 40), i32::MAX);
    }
}
