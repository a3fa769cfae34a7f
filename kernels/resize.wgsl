// Separable resampling of float tensors along one axis with a precomputed plan
// (src/ops/support/resample-plan.ts): the tensor is viewed as [outer, len, inner] and
//   y[o, i, r] = sum_t weights[i, t] * x[o, start[i] + t, r]
// Resizing NCHW runs it along W (inner = 1), then along H (inner = W). Accumulates in f32.

struct Params {
  count: u32,      // output elements in this dispatch
  len_in: u32,
  len_out: u32,
  inner: u32,
  taps: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> start: array<i32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;

@compute @workgroup_size(64)
fn resample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.count) { return; }
  let span = p.len_out * p.inner;
  let outer = i / span;
  let o = (i % span) / p.inner;
  let r = i % p.inner;
  let base = outer * p.len_in * p.inner + r + u32(start[o]) * p.inner;
  var acc = 0.0;
  for (var t = 0u; t < p.taps; t++) {
    acc += weights[o * p.taps + t] * x_ld(base + t * p.inner);
  }
  y_st(i, acc);
}
