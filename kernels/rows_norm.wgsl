// Row normalisations over the last dimension, one workgroup per row, statistics in f32.
//   layernorm: (x - mean) / sqrt(var + eps) * weight + bias   (two passes for the variance: exact for offset data)
//   rmsnorm:   x / sqrt(mean(x^2) + eps) * weight             (LLaMA's RMSNorm)
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 8u;
override SG: u32 = 8u;
override HAS_WEIGHT: bool = true;
override HAS_BIAS: bool = true;

struct Params {
  rows: u32,
  width: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> weight: array<weight_t>;
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;

fn row_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wg.x + wg.y * nwg.x;
}

fn affine(v: f32, i: u32) -> f32 {
  var r = v;
  if (HAS_WEIGHT) { r *= weight_ld(i); }
  if (HAS_BIAS) { r += bias_ld(i); }
  return r;
}

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wg, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.width;
  var s = 0.0;
  for (var i = lid; i < p.width; i += WG) { s += x_ld(base + i); }
  let mean = reduce_sum(s, lid) / f32(p.width);
  var ss = 0.0;
  for (var i = lid; i < p.width; i += WG) {
    let d = x_ld(base + i) - mean;
    ss += d * d;
  }
  let rstd = inverseSqrt(reduce_sum(ss, lid) / f32(p.width) + p.eps);
  for (var i = lid; i < p.width; i += WG) {
    y_st(base + i, affine((x_ld(base + i) - mean) * rstd, i));
  }
}

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wg, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.width;
  var ss = 0.0;
  for (var i = lid; i < p.width; i += WG) {
    let v = x_ld(base + i);
    ss += v * v;
  }
  let rstd = inverseSqrt(reduce_sum(ss, lid) / f32(p.width) + p.eps);
  for (var i = lid; i < p.width; i += WG) {
    y_st(base + i, affine(x_ld(base + i) * rstd, i));
  }
}
