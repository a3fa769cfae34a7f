// Matrix-vector products for one-row inputs (LLM decode): c[n] = act(sum_k a[k] * W[n, k] + bias[n]).
// Pure weight streaming: speed is loads per weight. Uses matmul_common's parameters with M = 1;
// W is b with b_k_stride = 1 (rows contiguous).
//
// gemv_rows (CPU adapters): each lane owns ROWS rows and walks k in steps of 8. The 8 x values of a
//   step are loaded once per subgroup (one per lane) and shared by subgroupBroadcast, so nearly every
//   load is a weight; f16 weights come two per load (B_PAIRS). No barriers.
// gemv_split (GPUs): a workgroup per row, lanes stride along k (coalesced), one reduction at the end.
#include "lib/matmul_common.wgsl"
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 256u;
override SG: u32 = 32u;
override B_PAIRS: bool = false;

const ROWS: u32 = 4u;

fn w8(row: u32, k: u32) -> array<vec4<f32>, 2> {
  let base = row * p.b_n_stride + k;
  if (B_PAIRS) {
    return array<vec4<f32>, 2>(vec4<f32>(b_ld2(base), b_ld2(base + 2u)), vec4<f32>(b_ld2(base + 4u), b_ld2(base + 6u)));
  }
  return array<vec4<f32>, 2>(vec4<f32>(b_ld(base), b_ld(base + 1u), b_ld(base + 2u), b_ld(base + 3u)),
                             vec4<f32>(b_ld(base + 4u), b_ld(base + 5u), b_ld(base + 6u), b_ld(base + 7u)));
}

@compute @workgroup_size(64)
fn gemv_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let lane = lid % 8u;
  let first = ((wg.x + wg.y * nwg.x) * 64u + lid) * ROWS;
  var rows: array<u32, 4>;
  for (var j = 0u; j < ROWS; j++) { rows[j] = min(first + j, p.N - 1u); }
  var acc: array<vec4<f32>, 4>;
  let k8 = p.K & ~7u;
  for (var k = 0u; k < k8; k += 8u) {
    let mine = a_ld(k + lane);
    let x0 = vec4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
    let x1 = vec4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
    for (var j = 0u; j < ROWS; j++) {
      let w = w8(rows[j], k);
      acc[j] += x0 * w[0] + x1 * w[1];
    }
  }
  for (var k = k8; k < p.K; k++) {
    let xk = a_ld(k);
    for (var j = 0u; j < ROWS; j++) { acc[j].x += xk * b_ld(rows[j] * p.b_n_stride + k); }
  }
  for (var j = 0u; j < ROWS; j++) {
    store_c(0u, 0u, first + j, dot(acc[j], vec4<f32>(1.0)));
  }
}

@compute @workgroup_size(WG)
fn gemv_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.N) { return; }
  let base = row * p.b_n_stride;
  var s = 0.0;
  for (var k = lid; k < p.K; k += WG) { s += a_ld(k) * b_ld(base + k); }
  let total = reduce_sum(s, lid);
  if (lid == 0u) { store_c(0u, 0u, row, total); }
}
