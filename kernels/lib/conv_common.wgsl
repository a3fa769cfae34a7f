// What every conv2d variant shares: parameters, bindings, input addressing with zero padding and
// an optional nearest upsampling folded into the addressing, and the epilogue.
//   y[b, co, oy, ox] = act(bias[co] + sum over (ci, ky, kx) of
//                          weight[co, ci, ky, kx] * xu[b, g*cin_g + ci, oy*sy - py + ky*dy, ox*sx - px + kx*dx])
// where xu is x upsampled by UP (nearest: xu[.., i, j] = x[.., i / UP, j / UP]) and zero outside.
// As a GEMM: rows are output pixels (b, oy, ox), columns output channels, k runs over (ci, ky, kx).
// Work too big for one binding is split (src/ops/conv.ts): a block of output channels is placed in
// y by y_channel_offset and reads its weight rows and bias from offsets; a block of input channels reads its slice of each weight row
// (w_k_offset, w_row_stride) and adds the f32 partial sums of the blocks before it (ACCUMULATE).
#include "lib/activation.wgsl"

struct Params {
  pixels: u32,          // batch * oh * ow in this dispatch
  oh: u32,
  ow: u32,
  h: u32,               // input plane, before upsampling
  w: u32,
  cin_g: u32,           // input channels per group
  cout_g: u32,          // output channels per group in this dispatch
  col_tiles: u32,       // workgroup tiles along the output channels (grid z = col_tiles * groups)
  x_batch_stride: u32,  // cin * h * w
  y_batch_stride: u32,  // cout * oh * ow
  y_channel_offset: u32,
  w_row_stride: u32,    // elements per weight row: (cin / groups) * KH * KW of the whole weight
  w_k_offset: u32,      // first element of this input-channel block in each row
  w_row_offset: u32,    // first weight row of this output-channel block (when the weight is bound whole)
  bias_offset: u32,     // first bias element of this output-channel block (the bias is always bound whole)
  stride_y: i32,
  stride_x: i32,
  pad_y: i32,
  pad_x: i32,
  dil_y: i32,
  dil_x: i32,
}

override KH: u32 = 3u;
override KW: u32 = 3u;
override UP: u32 = 1u;
override ACT: u32 = 0u;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> weight: array<weight_t>;
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;
@group(0) @binding(5) var<storage, read> partial: array<f32>;

// Where an output pixel's receptive field starts: input element offset of its image, and the
// top-left tap in upsampled coordinates (may be negative: padding).
struct Origin {
  image: u32,
  iy: i32,
  ix: i32,
}

fn origin(pixel: u32) -> Origin {
  let per_image = p.oh * p.ow;
  let b = pixel / per_image;
  let rest = pixel % per_image;
  let oy = rest / p.ow;
  let ox = rest % p.ow;
  return Origin(b * p.x_batch_stride, i32(oy) * p.stride_y - p.pad_y, i32(ox) * p.stride_x - p.pad_x);
}

// Input value at upsampled (iy, ix) of channel plane `plane` (element offset), 0 outside.
fn tap(plane: u32, iy: i32, ix: i32) -> f32 {
  let inside = iy >= 0 && ix >= 0 && iy < i32(p.h * UP) && ix < i32(p.w * UP);
  let at = plane + (u32(max(iy, 0)) / UP) * p.w + u32(max(ix, 0)) / UP;
  return select(0.0, x_ld(select(0u, at, inside)), inside);
}

fn weight_row(g: u32, c: u32) -> u32 {
  return (p.w_row_offset + g * p.cout_g + c) * p.w_row_stride + p.w_k_offset;
}

// Stores y for pixel `pixel`, channel `c` of group `g` (both checked against their ranges).
fn store_y(pixel: u32, g: u32, c: u32, acc: f32) {
  if (pixel >= p.pixels || c >= p.cout_g) { return; }
  let co = g * p.cout_g + c;
  let per_image = p.oh * p.ow;
  let b = pixel / per_image;
  let at = b * p.y_batch_stride + (p.y_channel_offset + co) * per_image + pixel % per_image;
  var v = acc;
  if (ACCUMULATE) { v += partial[at]; }
  if (HAS_BIAS) { v += bias_ld(p.bias_offset + co); }
  y_st(at, activate(v, ACT));
}

fn store_y4(pixel: u32, g: u32, c: u32, acc: vec4<f32>) {
  store_y(pixel, g, c, acc.x);
  store_y(pixel, g, c + 1u, acc.y);
  store_y(pixel, g, c + 2u, acc.z);
  store_y(pixel, g, c + 3u, acc.w);
}
