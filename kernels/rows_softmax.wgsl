// Softmax over the last dimension, one workgroup per row, f32 statistics.
// One read pass keeps a running (max, sum) per lane (online softmax), a second writes exp(x - max) / sum.
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 8u;
override SG: u32 = 8u;

struct Params {
  rows: u32,
  width: u32,
  scale: f32,   // softmax(scale * x): attention scores arrive unscaled
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;

const LOWEST: f32 = -3.4028234e38;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.width;
  var m = LOWEST;
  var s = 0.0;
  for (var i = lid; i < p.width; i += WG) {
    let v = p.scale * x_ld(base + i);
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  let row_max = reduce_max(m, lid);
  let row_sum = reduce_sum(s * exp(m - row_max), lid);
  let inv = 1.0 / row_sum;
  for (var i = lid; i < p.width; i += WG) {
    y_st(base + i, exp(p.scale * x_ld(base + i) - row_max) * inv);
  }
}
