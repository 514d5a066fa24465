// relu — elementwise max(x, 0), bit-exact. Two entry points:
//   relu_i8:  int8 lanes.
//   relu_i32: int32.
// Semantics identical to `cu_gpu::cpu::relu_i8` / `cu_gpu::cpu::relu_i32`.
//
// Bindings (group 0), shared by both entry points:
//   @binding(0) uniform              params : Params { len, _pad0, _pad1, _pad2 }  element count.
//   @binding(1) storage, read        src    : array<u32>  relu_i8: ceil(len / 4) words of 4 int8 lanes,
//                                    little-endian (lane j = bits 8j..8j+7); relu_i32: len int32 bit patterns.
//   @binding(2) storage, read_write  dst    : array<u32>  same count and packing; in relu_i8, lanes
//                                    past len are 0.
//
// Dispatch: ceil(words / 256) workgroups of 256 (words = ceil(len / 4) for relu_i8, len for relu_i32),
// split over (x, y) as x = min(count, 65535), y = ceil(count / x); one invocation per output word.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn relu_i8(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    let len = params.len;
    if (w * 4u >= len) {
        return;
    }
    let x = src[w];
    var word = 0u;
    for (var l = 0u; l < 4u; l++) {
        let lane = (x >> (8u * l)) & 0xffu;
        // Lanes with the sign bit set (negative int8) become 0; lanes past len are dropped.
        if (w * 4u + l < len && lane < 0x80u) {
            word |= lane << (8u * l);
        }
    }
    dst[w] = word;
}

@compute @workgroup_size(256, 1, 1)
fn relu_i32(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if (e >= params.len) {
        return;
    }
    dst[e] = bitcast<u32>(max(bitcast<i32>(src[e]), 0));
}
