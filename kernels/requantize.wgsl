// requantize — int32 → int8 with a fixed-point multiplier, a shift and a zero point, bit-exact.
//
// Semantics (identical to `cu_gpu::cpu::requantize`), for every element x:
//   p = x · multiplier                       exact signed 64-bit product (|p| ≤ 2^62)
//   s = 31 + shift                            shift ∈ [-31, 31], so s ∈ [0, 62]
//   r = s == 0 ? p : (p + 2^(s-1)) >> s       arithmetic shift: round half towards +∞, once
//   y = clamp(r + zero_point, -128, 127)      saturate to int8
// i.e. y = sat8(round_half_up(x · multiplier / 2^(31 + shift)) + zero_point).
// WGSL has no 64-bit integers: the product is built from four 16 × 16-bit partial products, and the
// rounding add, shift, zero-point add and saturation work on (lo, hi) u32 pairs.
//
// Bindings (group 0):
//   @binding(0) uniform              params : Params { len, multiplier, shift, zero_point }
//                                    len = element count; multiplier, shift, zero_point as above.
//   @binding(1) storage, read        src    : array<i32>  the len int32 inputs.
//   @binding(2) storage, read_write  dst    : array<u32>  ceil(len / 4) words, 4 int8 lanes each,
//                                    little-endian (lane j = bits 8j..8j+7); lanes past len are 0.
//
// Dispatch: ceil(ceil(len / 4) / 256) workgroups of 256, split over (x, y) as
// x = min(count, 65535), y = ceil(count / x); one invocation per output word.

struct Params {
    len: u32,
    multiplier: i32,
    shift: i32,
    zero_point: i32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Unsigned 32 × 32 → 64-bit product as (lo, hi).
fn mul_u32_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (mid << 16u) | (p00 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// Signed 32 × 32 → 64-bit product as (lo, hi) in two's complement.
fn mul_i32_wide(a: i32, b: i32) -> vec2<u32> {
    let p = mul_u32_wide(bitcast<u32>(a), bitcast<u32>(b));
    var hi = p.y;
    if (a < 0) {
        hi -= bitcast<u32>(b);
    }
    if (b < 0) {
        hi -= bitcast<u32>(a);
    }
    return vec2<u32>(p.x, hi);
}

fn add64(x: vec2<u32>, y: vec2<u32>) -> vec2<u32> {
    let lo = x.x + y.x;
    let carry = select(0u, 1u, lo < x.x);
    return vec2<u32>(lo, x.y + y.y + carry);
}

// Arithmetic shift right of a signed 64-bit value by s ∈ [0, 63].
fn sar64(x: vec2<u32>, s: u32) -> vec2<u32> {
    let hi = bitcast<i32>(x.y);
    if (s == 0u) {
        return x;
    }
    if (s < 32u) {
        return vec2<u32>((x.x >> s) | (x.y << (32u - s)), bitcast<u32>(hi >> s));
    }
    return vec2<u32>(bitcast<u32>(hi >> (s - 32u)), bitcast<u32>(hi >> 31u));
}

// Clamp a signed 64-bit value to [-128, 127].
fn sat_i8(x: vec2<u32>) -> i32 {
    let hi = bitcast<i32>(x.y);
    if (hi > 0) {
        return 127;
    }
    if (hi < -1) {
        return -128;
    }
    if (hi == 0) {
        return select(bitcast<i32>(x.x), 127, x.x > 127u);
    }
    // hi == -1: the value is x.x - 2^32 < 0.
    return select(bitcast<i32>(x.x), -128, x.x < 0xffffff80u);
}

fn requant(x: i32) -> i32 {
    let p = mul_i32_wide(x, params.multiplier);
    let s = u32(31 + params.shift);
    var r = p;
    if (s > 0u) {
        let h = s - 1u;
        var half = vec2<u32>(0u, 0u);
        if (h < 32u) {
            half.x = 1u << h;
        } else {
            half.y = 1u << (h - 32u);
        }
        r = sar64(add64(p, half), s);
    }
    let z = params.zero_point;
    r = add64(r, vec2<u32>(bitcast<u32>(z), select(0u, 0xffffffffu, z < 0)));
    return sat_i8(r);
}

@compute @workgroup_size(256, 1, 1)
fn requantize(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    let len = params.len;
    if (w * 4u >= len) {
        return;
    }
    var word = 0u;
    for (var l = 0u; l < 4u; l++) {
        let e = w * 4u + l;
        if (e < len) {
            word |= (bitcast<u32>(requant(src[e])) & 0xffu) << (8u * l);
        }
    }
    dst[w] = word;
}
