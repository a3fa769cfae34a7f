// 8-bit RGB images, one pixel per u32 (r | g << 8 | b << 16 | 255 << 24), and their conversion to
// model input.
//   pil_horizontal, pil_vertical: Pillow's two-pass resampling (Resample.c) in its own integer
//     arithmetic: coefficients with 22 fractional bits, a rounding half added, each pass clipped
//     to 0..255, so the result is Pillow's byte for byte. The horizontal pass reads a virtual
//     canvas: the image pasted at (left, top) on a `fill` background (expand2square, padding).
//   normalize: a crop of an image to CHW floats, (v / 255 - mean) / std per channel.
//   cv2_linear: OpenCV's cv2.resize(INTER_LINEAR) of 8-bit images (imgproc/src/resize.cpp) in its
//     own fixed point, byte for byte: 11-bit coefficients; the horizontal sums kept exact (value *
//     2048); the vertical pass as OpenCV's SIMD code computes it (VResizeLinearVec_32s8u, which
//     covers every pixel but a row's last few bytes, where the scalar code may differ by one):
//     ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16), then + 2 >> 2. One pass per output pixel.

struct Params {
  count: u32,       // output pixels in this dispatch
  src_w: u32,
  src_h: u32,
  out_w: u32,
  taps: u32,
  canvas_w: u32,    // pil_horizontal: the virtual canvas
  left: i32,
  top: i32,
  fill: u32,
  crop_x: u32,      // normalize: top-left of the crop
  crop_y: u32,
  mean: vec4<f32>,
  sd: vec4<f32>,       // standard deviations ("std" is reserved in WGSL)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> bounds: array<i32>;
@group(0) @binding(3) var<storage, read> coeffs: array<i32>;
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;
@group(0) @binding(5) var<storage, read_write> pixels_out: array<pixels_out_t>;

const PRECISION_BITS: u32 = 22u;

fn rgb(v: u32) -> vec3<i32> {
  return vec3<i32>(i32(v & 255u), i32((v >> 8u) & 255u), i32((v >> 16u) & 255u));
}

// Pillow's clip8: the accumulated sum back to a byte.
fn pack(ss: vec3<i32>) -> u32 {
  let v = vec3<u32>(clamp(ss >> vec3<u32>(PRECISION_BITS), vec3<i32>(0), vec3<i32>(255)));
  return v.x | (v.y << 8u) | (v.z << 16u) | (255u << 24u);
}

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * 64u + lid;
}

// Canvas pixel (cx, cy): the image where it covers the canvas, the fill colour elsewhere.
fn canvas(cx: i32, cy: i32) -> u32 {
  let ix = cx - p.left;
  let iy = cy - p.top;
  let inside = ix >= 0 && iy >= 0 && ix < i32(p.src_w) && iy < i32(p.src_h);
  return select(p.fill, src[select(0u, u32(iy) * p.src_w + u32(ix), inside)], inside);
}

@compute @workgroup_size(64)
fn pil_horizontal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= p.count) { return; }
  let row = i32(i / p.out_w);
  let col = i % p.out_w;
  let first = bounds[col];
  var ss = vec3<i32>(1 << (PRECISION_BITS - 1u));
  for (var t = 0u; t < p.taps; t++) {
    ss += rgb(canvas(first + i32(t), row)) * coeffs[col * p.taps + t];
  }
  dst[i] = pack(ss);
}

@compute @workgroup_size(64)
fn pil_vertical(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= p.count) { return; }
  let row = i / p.out_w;
  let col = i % p.out_w;
  let first = u32(bounds[row]);
  var ss = vec3<i32>(1 << (PRECISION_BITS - 1u));
  for (var t = 0u; t < p.taps; t++) {
    ss += rgb(src[(first + t) * p.out_w + col]) * coeffs[row * p.taps + t];
  }
  dst[i] = pack(ss);
}

@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= p.count) { return; }
  let v = rgb(src[(p.crop_y + i / p.out_w) * p.src_w + p.crop_x + i % p.out_w]);
  let scaled = vec3<f32>(v) / 255.0;
  let n = (scaled - p.mean.xyz) / p.sd.xyz;
  pixels_out_st(i, n.x);
  pixels_out_st(p.count + i, n.y);
  pixels_out_st(2u * p.count + i, n.z);
}

// bounds: the out_w column offsets (clamped into the image), then the output rows' source rows
// (-1 .. src_h - 1: OpenCV clamps the row it reads, not the weight); coeffs: the columns' alpha
// pairs, then the rows' beta pairs, each pair summing to 2048.
@compute @workgroup_size(64)
fn cv2_linear(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= p.count) { return; }
  let row = i / p.out_w + p.crop_y;   // crop_y: the first output row of this dispatch
  let col = i % p.out_w;
  let x0 = u32(bounds[col]);
  let x1 = min(x0 + 1u, p.src_w - 1u);
  let sy = bounds[p.out_w + row];
  let last = i32(p.src_h) - 1;
  let r0 = u32(clamp(sy, 0, last)) * p.src_w;
  let r1 = u32(clamp(sy + 1, 0, last)) * p.src_w;
  let a0 = coeffs[2u * col];
  let a1 = coeffs[2u * col + 1u];
  let b0 = coeffs[2u * (p.out_w + row)];
  let b1 = coeffs[2u * (p.out_w + row) + 1u];
  let h0 = rgb(src[r0 + x0]) * a0 + rgb(src[r0 + x1]) * a1;
  let h1 = rgb(src[r1 + x0]) * a0 + rgb(src[r1 + x1]) * a1;
  let four = vec3<u32>(4u);
  let sixteen = vec3<u32>(16u);
  let v = (((h0 >> four) * b0) >> sixteen) + (((h1 >> four) * b1) >> sixteen);
  let c = vec3<u32>(clamp((v + vec3<i32>(2)) >> vec3<u32>(2u), vec3<i32>(0), vec3<i32>(255)));
  dst[i] = c.x | (c.y << 8u) | (c.z << 16u) | (255u << 24u);
}
