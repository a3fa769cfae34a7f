// Normalisations of NCHW feature maps, statistics in f32 (two passes: exact for offset data).
//   group_norm:   per (image, group of channels), over the group's channels x pixels, which are
//                 contiguous in NCHW: one workgroup per (image, group) row. Fused activation
//                 (diffusers' GroupNorm + SiLU).
//   layer_norm2d: per (image, pixel), over the channels (LayerNorm2d of SAM/ConvNeXt and the region
//                 encoder): one invocation per pixel walks the channels at stride H*W, so
//                 neighbouring invocations read neighbouring words and nothing is reduced across lanes.
#include "lib/reduce_{reduce}.wgsl"
#include "lib/activation.wgsl"

override WG: u32 = 8u;
override SG: u32 = 8u;
override HAS_WEIGHT: bool = true;
override HAS_BIAS: bool = true;
override ACT: u32 = 0u;

struct Params {
  rows: u32,        // group_norm: images * groups in this dispatch; layer_norm2d: images * pixels
  groups: u32,
  channels: u32,    // channels per group (group_norm) or all channels (layer_norm2d)
  spatial: u32,     // pixels per channel plane
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> weight: array<weight_t>;
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;

fn affine(v: f32, c: u32) -> f32 {
  var r = v;
  if (HAS_WEIGHT) { r *= weight_ld(c); }
  if (HAS_BIAS) { r += bias_ld(c); }
  return activate(r, ACT);
}

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let width = p.channels * p.spatial;
  let base = row * width;
  var s = 0.0;
  for (var i = lid; i < width; i += WG) { s += x_ld(base + i); }
  let mean = reduce_sum(s, lid) / f32(width);
  var ss = 0.0;
  for (var i = lid; i < width; i += WG) {
    let d = x_ld(base + i) - mean;
    ss += d * d;
  }
  let rstd = inverseSqrt(reduce_sum(ss, lid) / f32(width) + p.eps);
  let c0 = (row % p.groups) * p.channels;
  for (var c = 0u; c < p.channels; c++) {
    let plane = base + c * p.spatial;
    for (var i = lid; i < p.spatial; i += WG) {
      y_st(plane + i, affine((x_ld(plane + i) - mean) * rstd, c0 + c));
    }
  }
}

@compute @workgroup_size(64)
fn layer_norm2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let at = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (at >= p.rows) { return; }
  let base = (at / p.spatial) * p.channels * p.spatial + at % p.spatial;
  var s = 0.0;
  for (var c = 0u; c < p.channels; c++) { s += x_ld(base + c * p.spatial); }
  let mean = s / f32(p.channels);
  var ss = 0.0;
  for (var c = 0u; c < p.channels; c++) {
    let d = x_ld(base + c * p.spatial) - mean;
    ss += d * d;
  }
  let rstd = inverseSqrt(ss / f32(p.channels) + p.eps);
  for (var c = 0u; c < p.channels; c++) {
    let i = base + c * p.spatial;
    y_st(i, affine((x_ld(i) - mean) * rstd, c));
  }
}
