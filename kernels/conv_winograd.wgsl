// 3x3 convolutions with stride 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2015):
// each 2x2 block of output pixels ("tile") of one channel pair is
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A
// with g the 3x3 filter and d the 4x4 input patch under the tile. Summed over input channels, the
// elementwise product at each of the 16 patch positions ξ becomes one matrix product
//   M[ξ] (tiles x cout) = V[ξ] (tiles x cin) · U[ξ]ᵀ (cin x cout),
// 4 multiplications per output where the direct form needs 9. src/ops/conv.ts runs the three
// transforms below around the matmul kernels:
//   transform_weights: U[ξ, co, ci] = (G g Gᵀ)[ξ]   weight [cout, cin * 9] -> wt [16, cout, cin]
//   transform_input:   V[ξ, t, ci]  = (Bᵀ d B)[ξ]   x NCHW -> xt [16, tiles, cin]
//   transform_output:  y[b, co, 2ty + i, 2tx + j] = act(bias[co] + (Aᵀ M A)[i, j]),  M = yt [16, tiles, cout]
// (Binding names avoid one-letter words: reflection counts any identifier named like a binding,
// such as an accessor's parameter v, as a use of it.)
// Tiles are numbered over (image, tile row, tile column); a dispatch handles tiles tile0 ..
// tile0 + tiles - 1, so the transformed planes of a big input are processed a block at a time.
// Input taps follow conv_common.wgsl: zero padding and nearest upsampling by UP folded into the
// addressing. Every entry computes one transform per invocation from a flat index over a folded
// grid (x + y * num_workgroups.x) of 64-invocation workgroups.
#include "lib/activation.wgsl"

struct Params {
  cin: u32,
  cout: u32,
  h: u32,         // input plane, before upsampling
  w: u32,
  oh: u32,        // output plane
  ow: u32,
  tiles_y: u32,   // tiles per image: ceil(oh / 2) x ceil(ow / 2)
  tiles_x: u32,
  tile0: u32,     // first tile of this block
  tiles: u32,     // tiles in this block
  pad_y: i32,
  pad_x: i32,
}

override UP: u32 = 1u;
override ACT: u32 = 0u;
override HAS_BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<weight_t>;
@group(0) @binding(2) var<storage, read_write> wt: array<wt_t>;
@group(0) @binding(3) var<storage, read> x: array<x_t>;
@group(0) @binding(4) var<storage, read_write> xt: array<f32>;
@group(0) @binding(5) var<storage, read> yt: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<bias_t>;
@group(0) @binding(7) var<storage, read_write> y: array<y_t>;

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * 64u + lid;
}

// A tile's image and the output pixel at its top-left corner: (image, row, column).
fn tile_origin(tile: u32) -> vec3<u32> {
  let per_image = p.tiles_y * p.tiles_x;
  let at = tile % per_image;
  return vec3<u32>(tile / per_image, 2u * (at / p.tiles_x), 2u * (at % p.tiles_x));
}

// (Bᵀ r) for one row or column r of the patch: the same four sums apply in both directions.
fn bt4(r: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(r.x - r.z, r.y + r.z, r.z - r.y, r.y - r.w);
}

// (G r) for three filter taps r.
fn g3(r: vec3<f32>) -> vec4<f32> {
  return vec4<f32>(r.x, 0.5 * (r.x + r.y + r.z), 0.5 * (r.x - r.y + r.z), r.z);
}

// (Aᵀ r): the two outputs of four products.
fn at2(r: vec4<f32>) -> vec2<f32> {
  return vec2<f32>(r.x + r.y + r.z, r.y - r.z - r.w);
}

@compute @workgroup_size(64)
fn transform_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let i = flat(wg, nwg, lid);  // co * cin + ci
  if (i >= p.cout * p.cin) { return; }
  let at = i * 9u;
  // Rows of G g (4 x 3): G applied down each filter column.
  let c0 = g3(vec3<f32>(weight_ld(at), weight_ld(at + 3u), weight_ld(at + 6u)));
  let c1 = g3(vec3<f32>(weight_ld(at + 1u), weight_ld(at + 4u), weight_ld(at + 7u)));
  let c2 = g3(vec3<f32>(weight_ld(at + 2u), weight_ld(at + 5u), weight_ld(at + 8u)));
  let plane = p.cout * p.cin;
  for (var r = 0u; r < 4u; r++) {
    let row = g3(vec3<f32>(c0[r], c1[r], c2[r]));
    wt_st((4u * r) * plane + i, row.x);
    wt_st((4u * r + 1u) * plane + i, row.y);
    wt_st((4u * r + 2u) * plane + i, row.z);
    wt_st((4u * r + 3u) * plane + i, row.w);
  }
}

// Input value at upsampled (iy, ix) of the channel plane starting at `plane`, 0 outside.
fn tap(plane: u32, iy: i32, ix: i32) -> f32 {
  let inside = iy >= 0 && ix >= 0 && iy < i32(p.h * UP) && ix < i32(p.w * UP);
  let at = plane + (u32(max(iy, 0)) / UP) * p.w + u32(max(ix, 0)) / UP;
  return select(0.0, x_ld(select(0u, at, inside)), inside);
}

fn patch_row(plane: u32, iy: i32, ix: i32) -> vec4<f32> {
  return vec4<f32>(tap(plane, iy, ix), tap(plane, iy, ix + 1), tap(plane, iy, ix + 2), tap(plane, iy, ix + 3));
}

@compute @workgroup_size(64)
fn transform_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let i = flat(wg, nwg, lid);  // local tile * cin + ci
  if (i >= p.tiles * p.cin) { return; }
  let ci = i % p.cin;
  let o = tile_origin(p.tile0 + i / p.cin);
  let plane = (o.x * p.cin + ci) * p.h * p.w;
  let iy = i32(o.y) - p.pad_y;
  let ix = i32(o.z) - p.pad_x;
  // Bᵀ d: combinations of the patch's rows; then B on the right: the same combinations of columns.
  let r = bt4x4(patch_row(plane, iy, ix), patch_row(plane, iy + 1, ix), patch_row(plane, iy + 2, ix), patch_row(plane, iy + 3, ix));
  let stride = p.tiles * p.cin;
  for (var row = 0u; row < 4u; row++) {
    let t = bt4(r[row]);
    xt[(4u * row) * stride + i] = t.x;
    xt[(4u * row + 1u) * stride + i] = t.y;
    xt[(4u * row + 2u) * stride + i] = t.z;
    xt[(4u * row + 3u) * stride + i] = t.w;
  }
}

fn bt4x4(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>(d0 - d2, d1 + d2, d2 - d1, d1 - d3);
}

@compute @workgroup_size(64)
fn transform_output(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let i = flat(wg, nwg, lid);  // local tile * cout + co
  if (i >= p.tiles * p.cout) { return; }
  let co = i % p.cout;
  let tile = p.tile0 + i / p.cout;
  let stride = p.tiles * p.cout;
  // Aᵀ M: sums of M's rows (ξ = 4 row + column); then A on the right: the same sums of columns.
  var rows: array<vec4<f32>, 4>;
  for (var row = 0u; row < 4u; row++) {
    let at = (4u * row) * stride + i;
    rows[row] = vec4<f32>(yt[at], yt[at + stride], yt[at + 2u * stride], yt[at + 3u * stride]);
  }
  let top = at2(rows[0] + rows[1] + rows[2]);
  let bottom = at2(rows[1] - rows[2] - rows[3]);

  let o = tile_origin(tile);
  var add = 0.0;
  if (HAS_BIAS) { add = bias_ld(co); }
  let plane = (o.x * p.cout + co) * p.oh * p.ow;
  store(plane, o.y, o.z, top.x + add);
  store(plane, o.y, o.z + 1u, top.y + add);
  store(plane, o.y + 1u, o.z, bottom.x + add);
  store(plane, o.y + 1u, o.z + 1u, bottom.y + add);
}

// Stores one output pixel if it lies inside the plane (the last tile row or column may overhang).
fn store(plane: u32, oy: u32, ox: u32, value: f32) {
  if (oy >= p.oh || ox >= p.ow) { return; }
  y_st(plane + oy * p.ow + ox, activate(value, ACT));
}
