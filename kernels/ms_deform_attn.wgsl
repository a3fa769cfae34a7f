// Multi-scale deformable attention for CPU adapters (lavapipe): one invocation per item (query
// row, head, 32 channels), looping over levels and points like Deformable DETR's CUDA im2col kernel
// but keeping all 32 channels in registers. No workgroup memory, no barriers, no subgroup operations.
//
// Why not lanes over channels: on lavapipe every storage load is a per-lane scalar access, so what
// counts is load instructions, not coalescing. One invocation reading a corner's 32 channels as
// 16-byte vectors issues 8 loads (4 for f16); spreading the channels over 8 lanes that share the
// corners by subgroupBroadcast issues 4 scalar loads per lane, and measured slower.
#include "lib/ms_deform_common.wgsl"
// Declares the value binding and `gather(w, at, first)`: acc += w * channels [first, first + 32) of
// the head whose channel 0 is value element `at`.
#include "lib/ms_deform_value_{value_layout}.wgsl"

var<private> acc: array<vec4<f32>, 8>;

@compute @workgroup_size(64)
fn ms_deform_attn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let item = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (item >= p.items) { return; }
  let it = decode_item(item);
  let lp = p.levels * p.points;
  for (var j = 0u; j < lp; j++) {
    let t = point_taps(it, j);
    gather(t.w.x, t.at.x, it.first_channel);
    gather(t.w.y, t.at.y, it.first_channel);
    gather(t.w.z, t.at.z, it.first_channel);
    gather(t.w.w, t.at.w, it.first_channel);
  }
  for (var c = 0u; c < 8u; c++) {
    let ch = it.first_channel + 4u * c;
    store(it.row, it.head, ch, acc[c].x);
    store(it.row, it.head, ch + 1u, acc[c].y);
    store(it.row, it.head, ch + 2u, acc[c].z);
    store(it.row, it.head, ch + 3u, acc[c].w);
  }
}
