// add — elementwise a + b with b broadcast over a, bit-exact. Two entry points:
//   add_i8:  int8 lanes, saturating: out = clamp(a + b, -128, 127).
//   add_i32: int32, two's-complement wrap-around: out = a + b mod 2^32.
// Broadcast: element e of a is paired with element e % b_len of b (b_len ≥ 1 divides len), so a
// bias of one row's length is added to every row of a row-major matrix.
// Semantics identical to `cu_gpu::cpu::add_i8` / `cu_gpu::cpu::add_i32`.
//
// Bindings (group 0), shared by both entry points:
//   @binding(0) uniform              params : Params { len, b_len, _pad0, _pad1 }  element counts.
//   @binding(1) storage, read        a      : array<u32>  add_i8: ceil(len / 4) words of 4 int8 lanes,
//                                    little-endian (lane j = bits 8j..8j+7); add_i32: len int32 bit patterns.
//   @binding(2) storage, read        b      : array<u32>  b_len elements, same packing as a.
//   @binding(3) storage, read_write  out    : array<u32>  same element count and packing as a; in
//                                    add_i8, lanes past len are 0.
//
// Dispatch: ceil(words / 256) workgroups of 256 (words = ceil(len / 4) for add_i8, len for add_i32),
// split over (x, y) as x = min(count, 65535), y = ceil(count / x); one invocation per output word.

struct Params {
    len: u32,
    b_len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

// Sign-extended int8 lane `l` of a packed word.
fn lane_i8(word: u32, l: u32) -> i32 {
    return bitcast<i32>(word << (24u - 8u * l)) >> 24u;
}

@compute @workgroup_size(256, 1, 1)
fn add_i8(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    let len = params.len;
    if (w * 4u >= len) {
        return;
    }
    let aw = a[w];
    var word = 0u;
    for (var l = 0u; l < 4u; l++) {
        let e = w * 4u + l;
        if (e < len) {
            let be = e % params.b_len;
            let s = clamp(lane_i8(aw, l) + lane_i8(b[be / 4u], be % 4u), -128, 127);
            word |= (bitcast<u32>(s) & 0xffu) << (8u * l);
        }
    }
    out[w] = word;
}

@compute @workgroup_size(256, 1, 1)
fn add_i32(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if (e >= params.len) {
        return;
    }
    // u32 addition wraps exactly like two's-complement int32 addition.
    out[e] = a[e] + b[e % params.b_len];
}
