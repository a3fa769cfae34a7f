// Index of the largest element of each row (the first one on ties, like PyTorch), one workgroup per row.
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 8u;
override SG: u32 = 8u;

struct Params {
  rows: u32,
  width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.width;
  var best = -3.4028234e38;
  var best_at = 0xffffffffu;
  for (var i = lid; i < p.width; i += WG) {
    let v = x_ld(base + i);
    if (v > best || best_at == 0xffffffffu) {
      best = v;
      best_at = i;
    }
  }
  let row_best = reduce_max(best, lid);
  let first = reduce_min_u32(select(0xffffffffu, best_at, best == row_best), lid);
  if (lid == 0u) { indices[row] = first; }
}
