// BASELINE ONLY: the weighted sum of PyTorch's unfused multi-scale deformable attention
// ((stacked samples * attention weights).sum(-1)), after one grid_sample per level
// (ms_deform_attn_unfused.wgsl). The fused kernel is ms_deform_attn.wgsl.
//
// out[r] = sum_k sampled[r, k] * weights[n, q, k] for row r = (n, c, q) of sampled [N, C, Q, K];
// sampled and out are bound from global row p.row_offset, weights [N, Q, K] whole.

struct Params {
  n: u32,          // rows in this dispatch
  channels: u32,   // C
  queries: u32,    // Q
  terms: u32,      // K = levels * points
  row_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sampled: array<sampled_t>;
@group(0) @binding(2) var<storage, read> weights: array<weights_t>;
@group(0) @binding(3) var<storage, read_write> summed: array<summed_t>;

@compute @workgroup_size(64)
fn weighted_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.n) { return; }
  let r = p.row_offset + i;
  let w_row = (r / (p.channels * p.queries)) * p.queries + r % p.queries;
  var total = 0.0;
  for (var k = 0u; k < p.terms; k++) {
    total += sampled_ld(i * p.terms + k) * weights_ld(w_row * p.terms + k);
  }
  summed_st(i, total);
}
