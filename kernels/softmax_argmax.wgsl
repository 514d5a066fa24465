// softmax_argmax — fixed-point softmax and argmax over the rows of an int32 logit matrix, bit-exact.
//
// Semantics (identical to `cu_gpu::cpu::softmax_argmax`), for each row x[0..cols], 1 ≤ cols ≤ 65536:
//   mx     = max_i x[i];  argmax = the smallest i with x[i] == mx
//   d_i    = mx - x[i]                       exact, as u32 (0 ≤ d_i < 2^32)
//   e_i    = d_i · beta                      exact u64; beta = log2(e) · logit_scale in Q16.16
//   w_i    = e_i ≥ 2^21 ? 0 : EXP2_Q15[(e_i >> 8) & 255] >> (e_i >> 16)
//            i.e. w_i ≈ 2^15 · 2^(-e_i / 2^16) ≈ 2^15 · exp(logit_scale · (x[i] - mx))
//   S      = Σ_i w_i                          u32: w_i ≤ 2^15 and cols ≤ 2^16
//   p_i    = (w_i · 2^16 + S / 2) / S         u32 probability in Q16 (65536 = 1.0), rounded half up
// EXP2_Q15[f] = round(2^15 · 2^(-f / 256)) is a fixed table of 256 integers (in Rust, uploaded as
// binding 2), so no floating point is involved anywhere.
//
// Bindings (group 0):
//   @binding(0) uniform              params : Params { rows, cols, beta, _pad }
//   @binding(1) storage, read        logits : array<i32>  rows × cols, row-major.
//   @binding(2) storage, read        table  : array<u32>  EXP2_Q15, 256 entries.
//   @binding(3) storage, read_write  probs  : array<u32>  rows × cols Q16 probabilities.
//   @binding(4) storage, read_write  argmax : array<u32>  rows indices.
//
// Dispatch: one workgroup of 64 invocations per row, rows split over (x, y) as
// x = min(rows, 65535), y = ceil(rows / x). Invocation t handles columns t, t + 64, ...; the row's
// (max, first index) and weight sum are combined through workgroup memory. Max-with-lowest-index
// and wrapping u32 sums are order-independent, so the tree shape cannot change a bit.
// Loop budget: at most 3 · 1024 + 12 loop iterations per invocation (cols ≤ 65536), far below the
// 65535 after which Mesa's llvmpipe/lavapipe (22.x) silently ends an invocation's loops.

struct Params {
    rows: u32,
    cols: u32,
    beta: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> probs: array<u32>;
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

const WG: u32 = 64u;
const NONE: u32 = 0xffffffffu;

var<workgroup> red_v: array<i32, 64>;
var<workgroup> red_i: array<u32, 64>;
var<workgroup> red_s: array<u32, 64>;

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

fn weight(d: u32) -> u32 {
    let e = mul_u32_wide(d, params.beta);
    // e ≥ 2^21 means a shift of 32 or more: the weight is 0.
    if (e.y != 0u || e.x >= 0x200000u) {
        return 0u;
    }
    return table[(e.x >> 8u) & 0xffu] >> (e.x >> 16u);
}

@compute @workgroup_size(64, 1, 1)
fn softmax_argmax(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = lid.x;
    let r = wid.y * nwg.x + wid.x;
    // Spare workgroups of the (x, y) split compute nothing but still reach every barrier.
    let valid = r < params.rows;
    let cols = params.cols;
    let base = r * cols;
    let iters = (cols + WG - 1u) / WG;

    // 1. (max, first index of max), per invocation then across the workgroup.
    var mx = 0;
    var am = NONE;
    for (var j = 0u; j < iters; j++) {
        let i = t + j * WG;
        if (valid && i < cols) {
            let x = logits[base + i];
            if (am == NONE || x > mx) {
                mx = x;
                am = i;
            }
        }
    }
    if (am == NONE) {
        mx = -2147483647 - 1;
    }
    red_v[t] = mx;
    red_i[t] = am;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            let v2 = red_v[t + s];
            let i2 = red_i[t + s];
            if (v2 > red_v[t] || (v2 == red_v[t] && i2 < red_i[t])) {
                red_v[t] = v2;
                red_i[t] = i2;
            }
        }
        workgroupBarrier();
    }
    let row_max = bitcast<u32>(red_v[0]);
    let row_arg = red_i[0];

    // 2. Weight sum.
    var sum = 0u;
    for (var j = 0u; j < iters; j++) {
        let i = t + j * WG;
        if (valid && i < cols) {
            sum += weight(row_max - bitcast<u32>(logits[base + i]));
        }
    }
    red_s[t] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            red_s[t] += red_s[t + s];
        }
        workgroupBarrier();
    }
    let total = max(red_s[0], 1u);
    let half = total / 2u;

    // 3. Probabilities.
    for (var j = 0u; j < iters; j++) {
        let i = t + j * WG;
        if (valid && i < cols) {
            let w = weight(row_max - bitcast<u32>(logits[base + i]));
            probs[base + i] = ((w << 16u) + half) / total;
        }
    }
    if (valid && t == 0u) {
        argmax[r] = row_arg;
    }
}
