// Multi-scale deformable attention for GPUs: 32 threads per item (query row, head, 32 channels),
// one channel each, so that a corner's loads are coalesced; each point's bilinear corners are
// worked out once by one thread and staged in workgroup memory, 32 points per barrier pair.
#include "lib/ms_deform_common.wgsl"

@group(0) @binding(1) var<storage, read> value: array<value_t>;

var<workgroup> staged_w: array<vec4<f32>, 256>;
var<workgroup> staged_at: array<vec4<u32>, 256>;

@compute @workgroup_size(256)
fn ms_deform_attn_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
  let s = lid / 32u;
  let t = lid % 32u;
  let item = (wg.x + wg.y * nwg.x) * 8u + s;
  // Tail slots redo the last item instead of returning: every thread must reach the barriers.
  let it = decode_item(min(item, p.items - 1u));
  let c = it.first_channel + t;
  let ch = min(c, p.head_dim - 1u);
  var total = 0.0;
  let lp = p.levels * p.points;
  for (var j0 = 0u; j0 < lp; j0 += 32u) {
    let mine = point_taps(it, j0 + t);
    workgroupBarrier(); // the previous batch of points has been consumed
    staged_w[lid] = mine.w;
    staged_at[lid] = mine.at;
    workgroupBarrier();
    let n = min(32u, lp - j0);
    for (var k = 0u; k < n; k++) {
      let w = staged_w[s * 32u + k];
      let at = staged_at[s * 32u + k] + vec4<u32>(ch);
      total += w.x * value_ld(at.x) + w.y * value_ld(at.y) + w.z * value_ld(at.z) + w.w * value_ld(at.w);
    }
  }
  if (item < p.items) {
    store(it.row, it.head, c, total);
  }
}
