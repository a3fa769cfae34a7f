// Matmul for CPU adapters (lavapipe): no workgroup memory, no barriers.
// Requires a subgroup size of 8. Each subgroup computes an 8-row x 32-column tile of C: lane l
// loads row l's A values and keeps vec4 accumulators for 8 rows x columns 4l..4l+3; A values reach
// the other lanes through subgroupBroadcast, which lavapipe does in registers (a storage load is a
// scalar, bounds-checked access there, so reuse per loaded value decides speed). 8 subgroups per
// workgroup, arranged SG_ROWS x (8 / SG_ROWS). With QUADS (operands bound as quads) each lane reads
// four k of its A row and of each B column in one load.
#include "lib/matmul_common.wgsl"
#include "lib/matmul_operands_{operands}.wgsl"

override SG_ROWS: u32 = 2u;
// B is f16, contiguous along k, and K is even: read two k values per load.
override B_PAIRS: bool = false;
// a and b are bound as quads (lib/matmul_operands_quads.wgsl).
override QUADS: bool = false;

#include "lib/subgroup_rank1.wgsl"

// Four consecutive k (k a multiple of 4) of A for one row, and of B for one column: one load as
// quads; else four, or two paired loads of B when B_PAIRS.
fn a_k4(batch: u32, m: u32, k: u32) -> vec4<f32> {
  if (QUADS) { return a_ld4((batch * p.a_batch_stride + m * p.a_row_stride + k) / 4u); }
  return vec4<f32>(a_at(batch, m, k), a_at(batch, m, k + 1u), a_at(batch, m, k + 2u), a_at(batch, m, k + 3u));
}

fn b_k4(batch: u32, k: u32, n: u32) -> vec4<f32> {
  if (QUADS) { return b_ld4((batch * p.b_batch_stride + n * p.b_n_stride + k) / 4u); }
  if (B_PAIRS) {
    let base = batch * p.b_batch_stride + n * p.b_n_stride + k;
    return vec4<f32>(b_ld2(base), b_ld2(base + 2u));
  }
  return vec4<f32>(b_at(batch, k, n), b_at(batch, k + 1u, n), b_at(batch, k + 2u, n), b_at(batch, k + 3u, n));
}

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sid = lid / 8u;
  let lane = lid % 8u;
  let tile_cols = 32u * (8u / SG_ROWS);
  let row0 = wg.y * (8u * SG_ROWS) + (sid % SG_ROWS) * 8u;
  let col = wg.x * tile_cols + (sid / SG_ROWS) * 32u + lane * 4u;
  let batch = wg.z;
  // Clamp instead of branching: out-of-range rows and columns compute garbage that is never stored.
  let my_row = min(row0 + lane, p.M - 1u);
  let n0 = min(col, p.N - 1u);
  let n1 = min(col + 1u, p.N - 1u);
  let n2 = min(col + 2u, p.N - 1u);
  let n3 = min(col + 3u, p.N - 1u);

  let k4 = p.K & ~3u;
  for (var k = 0u; k < k4; k += 4u) {
    let av = a_k4(batch, my_row, k);
    let w0 = b_k4(batch, k, n0);
    let w1 = b_k4(batch, k, n1);
    let w2 = b_k4(batch, k, n2);
    let w3 = b_k4(batch, k, n3);
    rank1(av.x, vec4<f32>(w0.x, w1.x, w2.x, w3.x));
    rank1(av.y, vec4<f32>(w0.y, w1.y, w2.y, w3.y));
    rank1(av.z, vec4<f32>(w0.z, w1.z, w2.z, w3.z));
    rank1(av.w, vec4<f32>(w0.w, w1.w, w2.w, w3.w));
  }
  for (var k = k4; k < p.K; k++) {
    rank1(a_at(batch, my_row, k), vec4<f32>(b_at(batch, k, n0), b_at(batch, k, n1), b_at(batch, k, n2), b_at(batch, k, n3)));
  }

  store_c4(batch, row0, col, acc0);
  store_c4(batch, row0 + 1u, col, acc1);
  store_c4(batch, row0 + 2u, col, acc2);
  store_c4(batch, row0 + 3u, col, acc3);
  store_c4(batch, row0 + 4u, col, acc4);
  store_c4(batch, row0 + 5u, col, acc5);
  store_c4(batch, row0 + 6u, col, acc6);
  store_c4(batch, row0 + 7u, col, acc7);
}
