// Normalisations of NCHW feature maps, statistics in f32.
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
// Every channel plane starts at an even element: read pairs (one load for two f16 values).
override EVEN: bool = false;

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

// Statistics of width elements from base: one pass of shifted sums (shifted by the row's first
// element, so an offset far from zero costs no precision), four elements per lane per step.
fn load4(at: u32) -> vec4<f32> {
  if (EVEN) { return vec4<f32>(x_ld2(at), x_ld2(at + 2u)); }
  return vec4<f32>(x_ld(at), x_ld(at + 1u), x_ld(at + 2u), x_ld(at + 3u));
}

fn row_stats(base: u32, width: u32, lid: u32) -> vec2<f32> {
  let shift = x_ld(base);
  var s = vec4<f32>();
  var ss = vec4<f32>();
  let width4 = width & ~3u;
  for (var i = lid * 4u; i < width4; i += WG * 4u) {
    let d = load4(base + i) - shift;
    s += d;
    ss += d * d;
  }
  for (var i = width4 + lid; i < width; i += WG) {
    let d = x_ld(base + i) - shift;
    s.x += d;
    ss.x += d * d;
  }
  let n = f32(width);
  let mean_d = reduce_sum(s.x + s.y + s.z + s.w, lid) / n;
  let var_d = max(reduce_sum(ss.x + ss.y + ss.z + ss.w, lid) / n - mean_d * mean_d, 0.0);
  return vec2<f32>(shift + mean_d, var_d);
}

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.channels * p.spatial;
  let stats = row_stats(base, p.channels * p.spatial, lid);
  let rstd = inverseSqrt(stats.y + p.eps);
  let c0 = (row % p.groups) * p.channels;
  let spatial4 = p.spatial & ~3u;
  for (var c = 0u; c < p.channels; c++) {
    // y = x * scale + offset folds the normalisation and the affine transform into one multiply-add.
    var scale = rstd;
    var offset = 0.0;
    if (HAS_WEIGHT) { scale *= weight_ld(c0 + c); }
    if (HAS_BIAS) { offset = bias_ld(c0 + c); }
    offset -= stats.x * scale;
    let plane = base + c * p.spatial;
    for (var i = lid * 4u; i < spatial4; i += WG * 4u) {
      let at = plane + i;
      let v = load4(at) * scale + offset;
      y_st(at, activate(v.x, ACT));
      y_st(at + 1u, activate(v.y, ACT));
      y_st(at + 2u, activate(v.z, ACT));
      y_st(at + 3u, activate(v.w, ACT));
    }
    for (var i = spatial4 + lid; i < p.spatial; i += WG) {
      y_st(plane + i, activate(x_ld(plane + i) * scale + offset, ACT));
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
