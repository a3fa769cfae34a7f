// Matrix-vector products for one-row inputs (LLM decode): c[n] = act(sum_k a[k] * W[n, k] + bias[n]).
// Pure weight streaming: speed is loads per weight, and (on lavapipe) the number of dependent
// dispatches, so two neighbours of a GEMV in a transformer layer are fused in:
//   PRE_NORM: a is RMS-normalised first, a[k] * norm[k] / rms(a) (LLaMA's RMSNorm before a projection).
//             The 1/rms factor is applied to each dot product at the end, so it costs no extra pass.
//   GATED:    c[o] = act(W[o]·a + bias[o]) * (W[N + o]·a + bias[N + o]) for o < N: a SwiGLU over a
//             fused gate|up weight of 2N rows.
// Uses matmul_common's parameters with M = 1; W is b with b_k_stride = 1 (rows contiguous); N counts outputs.
//
// gemv_rows (CPU adapters): each lane owns ROWS weight rows and walks k in steps of 8. The 8 x values of a
//   step are loaded once per subgroup (one per lane) and shared by subgroupBroadcast, so nearly every
//   load is a weight; f16 weights come two per load (B_PAIRS). No barriers.
// gemv_split (GPUs): a workgroup per output, lanes stride along k (coalesced), one reduction at the end.
#include "lib/matmul_common.wgsl"
#include "lib/matmul_operands_scalar.wgsl"
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 256u;
override SG: u32 = 32u;
override B_PAIRS: bool = false;
override PRE_NORM: bool = false;
override GATED: bool = false;

@group(0) @binding(6) var<storage, read> norm: array<norm_t>;

const ROWS: u32 = 4u;

/** The input element as the dot products see it: a[k], times norm[k] when pre-normalising. */
fn x_at(k: u32) -> f32 {
  if (PRE_NORM) { return a_ld(k) * norm_ld(k); }
  return a_ld(k);
}

/** 1 / rms(a) from the sum of squares of a, or 1 without PRE_NORM. */
fn inverse_rms(sum_sq: f32) -> f32 {
  if (PRE_NORM) { return inverseSqrt(sum_sq / f32(p.K) + p.eps); }
  return 1.0;
}

/** Writes output o from its dot product(s): plain, or act(gate) * up. */
fn finish(o: u32, dot_a: f32, dot_b: f32) {
  if (o >= p.N) { return; }
  if (!GATED) {
    store_c(0u, 0u, o, dot_a);
    return;
  }
  var g = dot_a;
  var u = dot_b;
  if (HAS_BIAS) {
    g += bias_ld(o);
    u += bias_ld(p.N + o);
  }
  var v = activate(g, ACT) * u;
  let at = p.c_col_offset + o;
  if (HAS_RESIDUAL) { v += residual_ld(at); }
  c_st(at, v);
}
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
  let slot = (wg.x + wg.y * nwg.x) * 64u + lid;
  // The lane's outputs, and the weight rows behind them: 4 plain rows, or 2 gate/up pairs.
  var outputs: array<u32, 4>;
  var rows: array<u32, 4>;
  for (var j = 0u; j < ROWS; j++) {
    if (GATED) {
      outputs[j] = slot * 2u + j / 2u;
      rows[j] = min(outputs[j], p.N - 1u) + (j % 2u) * p.N;
    } else {
      outputs[j] = slot * ROWS + j;
      rows[j] = min(outputs[j], p.N - 1u);
    }
  }
  var acc: array<vec4<f32>, 4>;
  var sum_sq = 0.0;
  let k8 = p.K & ~7u;
  for (var k = 0u; k < k8; k += 8u) {
    let raw = a_ld(k + lane);
    sum_sq += raw * raw;
    var mine = raw;
    if (PRE_NORM) { mine *= norm_ld(k + lane); }
    let x0 = vec4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
    let x1 = vec4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
    for (var j = 0u; j < ROWS; j++) {
      let w = w8(rows[j], k);
      acc[j] += x0 * w[0] + x1 * w[1];
    }
  }
  for (var k = k8; k < p.K; k++) {
    let raw = a_ld(k);
    sum_sq += select(0.0, raw * raw, lane == 0u); // every lane loads the tail: count it once
    let xk = x_at(k);
    for (var j = 0u; j < ROWS; j++) { acc[j].x += xk * b_ld(rows[j] * p.b_n_stride + k); }
  }
  let scale = inverse_rms(subgroupAdd(sum_sq));
  var dots: array<f32, 4>;
  for (var j = 0u; j < ROWS; j++) { dots[j] = dot(acc[j], vec4<f32>(1.0)) * scale; }
  if (GATED) {
    finish(outputs[0], dots[0], dots[1]);
    finish(outputs[2], dots[2], dots[3]);
  } else {
    for (var j = 0u; j < ROWS; j++) { finish(outputs[j], dots[j], 0.0); }
  }
}

@compute @workgroup_size(WG)
fn gemv_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let o = wg.x + wg.y * nwg.x;
  if (o >= p.N) { return; }
  let base = o * p.b_n_stride;
  let up = (o + p.N) * p.b_n_stride;
  var s = 0.0;
  var t = 0.0;
  var sum_sq = 0.0;
  for (var k = lid; k < p.K; k += WG) {
    let raw = a_ld(k);
    sum_sq += raw * raw;
    let xk = x_at(k);
    s += xk * b_ld(base + k);
    if (GATED) { t += xk * b_ld(up + k); }
  }
  let scale = inverse_rms(reduce_sum(sum_sq, lid));
  let dot_a = reduce_sum(s, lid) * scale;
  let dot_b = reduce_sum(t, lid) * scale;
  if (lid == 0u) { finish(o, dot_a, dot_b); }
}
