// BASELINE ONLY: the unfused multi-scale deformable attention of PyTorch's reference formulation,
// for benchmarks and cross-checks (msDeformAttnUnfused in src/ops/ms-deform-attn.ts). The fused
// kernel is ms_deform_attn.wgsl.
//
// This file: F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False),
// input [N, C, H, W], grid [N, Ho, Wo, 2] (x, y in [-1, 1]) -> output [N, C, Ho, Wo], one invocation
// per output. The weighted sum over levels and points is ms_deform_attn_unfused_sum.wgsl.

struct Params {
  n: u32,          // outputs in this dispatch
  channels: u32,   // C
  in_h: u32,
  in_w: u32,
  out_h: u32,
  out_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<input_t>;
@group(0) @binding(2) var<storage, read> grid: array<grid_t>;
@group(0) @binding(3) var<storage, read_write> output: array<output_t>;

fn tap(plane: u32, xi: i32, yi: i32) -> f32 {
  if (xi < 0 || yi < 0 || xi >= i32(p.in_w) || yi >= i32(p.in_h)) { return 0.0; }
  return input_ld(plane + u32(yi) * p.in_w + u32(xi));
}

@compute @workgroup_size(64)
fn grid_sample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.n) { return; }
  let spatial = p.out_h * p.out_w;
  let pos = i % spatial;
  let c = (i / spatial) % p.channels;
  let n = i / (spatial * p.channels);
  let g = grid_ld2(2u * (n * spatial + pos));
  let size = vec2<f32>(f32(p.in_w), f32(p.in_h));
  let xy = ((g + 1.0) * size - 1.0) * 0.5;
  let lo = floor(xy);
  let f = xy - lo;
  let x0 = i32(clamp(lo.x, -2.0, size.x + 1.0));
  let y0 = i32(clamp(lo.y, -2.0, size.y + 1.0));
  let plane = (n * p.channels + c) * p.in_h * p.in_w;
  let v = tap(plane, x0, y0) * (1.0 - f.x) * (1.0 - f.y) + tap(plane, x0 + 1, y0) * f.x * (1.0 - f.y)
        + tap(plane, x0, y0 + 1) * (1.0 - f.x) * f.y + tap(plane, x0 + 1, y0 + 1) * f.x * f.y;
  output_st(i, v);
}
