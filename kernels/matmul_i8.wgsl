// matmul_i8 — C = A · B with int8 inputs and int32 outputs, bit-exact.
//
// Semantics (identical to `cu_gpu::cpu::matmul_i8`):
//   C[m][n] = Σ_k A[m][k] · B[k][n], every product exact (|p| ≤ 2^14), the sum accumulated in
//   two's-complement int32 with wrap-around. Wrapping addition is associative and commutative,
//   so the order of summation (tiles, dot4 groups, threads) cannot change a single bit.
//
// Bindings (group 0):
//   @binding(0) uniform              params : Params   { m, n, k4, k_begin, k_end, accumulate, _pad0, _pad1 }
//                                    m  = rows of A and C, n = columns of B and C,
//                                    k4 = ceil(K / 4) = packed words per row of A and of Bᵀ,
//                                    [k_begin, k_end) = the K words this dispatch sums (a multiple of
//                                    8 apart, except at the end), accumulate = 1 to add the partial sum
//                                    to C (wrapping) instead of overwriting it.
//   @binding(1) storage, read        a      : array<u32>  A, m × k4 words, row-major. Each word holds
//                                    4 int8 lanes, little-endian (lane j = bits 8j..8j+7); the tail of
//                                    each row is zero-padded, zeros add nothing to the sum.
//   @binding(2) storage, read        bt     : array<u32>  Bᵀ (B transposed), n × k4 words, same packing.
//   @binding(3) storage, read_write  c      : array<i32>  C, m × n int32, row-major.
//
// Dispatch: (ceil(n / 64), ceil(m / 64), 1) workgroups of 16 × 16 invocations, once per K chunk of at
// most 32768 words (the first with accumulate = 0, the rest with accumulate = 1; wrapping addition
// makes the split invisible). A workgroup computes a 64 × 64 tile of C; invocation (tx, ty) owns
// rows ty + 16i and columns tx + 16j, i, j in 0..4. K is walked 8 words (32 int8) at a time through
// workgroup memory. Out-of-range rows, columns and K words read as zero and are never written, so
// any m, n, K works (not only tile multiples).
//
// Loop budget: the inner steps are unrolled and K is chunked so that no invocation runs more than
// ~4100 loop iterations. Mesa's llvmpipe/lavapipe (22.x) silently ends every loop of an invocation
// after 65535 iterations in total, which would drop products without an error.

requires packed_4x8_integer_dot_product;

struct Params {
    m: u32,
    n: u32,
    k4: u32,
    k_begin: u32,
    k_end: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> bt: array<u32>;
@group(0) @binding(3) var<storage, read_write> c: array<i32>;

const TILE: u32 = 64u;
const KT: u32 = 8u;
const THREADS: u32 = 256u;

// [64 rows][8 words] each.
var<workgroup> a_tile: array<u32, 512>;
var<workgroup> b_tile: array<u32, 512>;

// Loads word `idx` (0..512) of both tiles for the K step starting at k0.
fn load(idx: u32, row0: u32, col0: u32, k0: u32) {
    let r = idx / KT;
    let gk = k0 + idx % KT;
    let in_k = gk < params.k_end;
    var av = 0u;
    let gr = row0 + r;
    if (gr < params.m && in_k) {
        av = a[gr * params.k4 + gk];
    }
    a_tile[idx] = av;
    var bv = 0u;
    let gc = col0 + r;
    if (gc < params.n && in_k) {
        bv = bt[gc * params.k4 + gk];
    }
    b_tile[idx] = bv;
}

// One K word of the 4 × 4 block: 16 packed dot products.
fn step(kk: u32, tx: u32, ty: u32, acc: ptr<function, array<i32, 16>>) {
    let a0 = a_tile[(ty) * KT + kk];
    let a1 = a_tile[(ty + 16u) * KT + kk];
    let a2 = a_tile[(ty + 32u) * KT + kk];
    let a3 = a_tile[(ty + 48u) * KT + kk];
    let b0 = b_tile[(tx) * KT + kk];
    let b1 = b_tile[(tx + 16u) * KT + kk];
    let b2 = b_tile[(tx + 32u) * KT + kk];
    let b3 = b_tile[(tx + 48u) * KT + kk];
    (*acc)[0] += dot4I8Packed(a0, b0);
    (*acc)[1] += dot4I8Packed(a0, b1);
    (*acc)[2] += dot4I8Packed(a0, b2);
    (*acc)[3] += dot4I8Packed(a0, b3);
    (*acc)[4] += dot4I8Packed(a1, b0);
    (*acc)[5] += dot4I8Packed(a1, b1);
    (*acc)[6] += dot4I8Packed(a1, b2);
    (*acc)[7] += dot4I8Packed(a1, b3);
    (*acc)[8] += dot4I8Packed(a2, b0);
    (*acc)[9] += dot4I8Packed(a2, b1);
    (*acc)[10] += dot4I8Packed(a2, b2);
    (*acc)[11] += dot4I8Packed(a2, b3);
    (*acc)[12] += dot4I8Packed(a3, b0);
    (*acc)[13] += dot4I8Packed(a3, b1);
    (*acc)[14] += dot4I8Packed(a3, b2);
    (*acc)[15] += dot4I8Packed(a3, b3);
}

@compute @workgroup_size(16, 16, 1)
fn matmul_i8(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;

    // Zero-initialised.
    var acc: array<i32, 16>;

    for (var k0 = params.k_begin; k0 < params.k_end; k0 += KT) {
        // 512 words per tile, 2 per invocation.
        load(t, row0, col0, k0);
        load(t + THREADS, row0, col0, k0);
        workgroupBarrier();
        step(0u, tx, ty, &acc);
        step(1u, tx, ty, &acc);
        step(2u, tx, ty, &acc);
        step(3u, tx, ty, &acc);
        step(4u, tx, ty, &acc);
        step(5u, tx, ty, &acc);
        step(6u, tx, ty, &acc);
        step(7u, tx, ty, &acc);
        workgroupBarrier();
    }

    let m = params.m;
    let n = params.n;
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + ty + 16u * i;
        if (r < m) {
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + tx + 16u * j;
                if (col < n) {
                    let idx = r * n + col;
                    var v = acc[i * 4u + j];
                    if (params.accumulate != 0u) {
                        v += c[idx];
                    }
                    c[idx] = v;
                }
            }
        }
    }
}
