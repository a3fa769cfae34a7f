// Token sampling on the GPU, one workgroup per row of logits: temperature, top-k, top-p, then an
// inverse-CDF draw with a uniform number from the host's seeded generator. Only the chosen id
// goes back to the CPU.
//
// Probabilities are kept in `probs`. The top-k and top-p cut-offs are found by bisecting the bit
// pattern of a probability threshold (for positive floats the bits order like the values): 32
// passes each, no sort, and no data-dependent branches around the reductions' barriers. Every token at or above the final threshold is kept, ties included,
// which is what Hugging Face's warpers keep too.
#include "lib/reduce_{reduce}.wgsl"

override WG: u32 = 8u;
override SG: u32 = 8u;

struct Params {
  rows: u32,
  width: u32,
  top_k: u32,            // 0: no top-k
  top_p: f32,            // 1: no top-p
  inv_temperature: f32,
  draws: array<vec4<f32>, 16>,   // a uniform number in [0, 1) per row: at most 64 rows per dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<logits_t>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> token: array<u32>;

// Count and mass of the row's probabilities at or above `threshold`.
fn tally(base: u32, threshold: f32, lid: u32) -> vec2<f32> {
  var n = 0.0;
  var mass = 0.0;
  for (var i = lid; i < p.width; i += WG) {
    let q = probs[base + i];
    if (q >= threshold) {
      n += 1.0;
      mass += q;
    }
  }
  return vec2<f32>(reduce_sum(n, lid), reduce_sum(mass, lid));
}

@compute @workgroup_size(WG)
fn sample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.width;

  // Softmax of logits / temperature, stored unnormalised (the cut-offs only compare and sum).
  var m = -3.4028234e38;
  var best_at = 0u;
  for (var i = lid; i < p.width; i += WG) {
    let v = logits_ld(base + i) * p.inv_temperature;
    if (v > m) {
      m = v;
      best_at = i;
    }
  }
  let row_max = reduce_max(m, lid);
  let argmax = reduce_min_u32(select(0xffffffffu, best_at, m == row_max), lid);
  for (var i = lid; i < p.width; i += WG) {
    probs[base + i] = exp(logits_ld(base + i) * p.inv_temperature - row_max);
  }
  storageBarrier();

  // Top-k: the largest threshold that still keeps k tokens.
  var lo = 0u;                     // bits of a threshold known to satisfy the condition
  var hi = bitcast<u32>(1.0) + 1u; // the row maximum is exp(0) = 1: nothing above it
  if (p.top_k > 0u && p.top_k < p.width) {
    for (var it = 0u; it < 32u; it++) {
      let mid = lo + (hi - lo) / 2u;
      let keep = tally(base, bitcast<f32>(mid), lid).x >= f32(p.top_k);
      lo = select(lo, mid, keep);
      hi = select(mid, hi, keep);
    }
  }
  // Top-p within what top-k kept: the largest threshold whose kept mass is still >= top_p of it.
  if (p.top_p < 1.0) {
    let wanted = p.top_p * tally(base, bitcast<f32>(lo), lid).y;
    hi = bitcast<u32>(1.0) + 1u;
    for (var it = 0u; it < 32u; it++) {
      let mid = lo + (hi - lo) / 2u;
      let keep = tally(base, bitcast<f32>(mid), lid).y >= wanted;
      lo = select(lo, mid, keep);
      hi = select(mid, hi, keep);
    }
  }
  let threshold = bitcast<f32>(lo);

  // Inverse CDF in index order: each lane sums a contiguous chunk, a scan finds the chunk holding
  // the target, and that lane walks it.
  let chunk = (p.width + WG - 1u) / WG;
  let start = min(lid * chunk, p.width);
  let end = min(start + chunk, p.width);
  var mine = 0.0;
  for (var i = start; i < end; i++) {
    let q = probs[base + i];
    if (q >= threshold) { mine += q; }
  }
  let before = prefix_sum_exclusive(mine, lid);
  let kept = reduce_sum(mine, lid);
  let goal = p.draws[row / 4u][row % 4u] * kept;
  var found = 0xffffffffu;
  if (goal >= before && goal < before + mine) {
    var acc = before;
    for (var i = start; i < end; i++) {
      let q = probs[base + i];
      if (q >= threshold) {
        acc += q;
        if (goal < acc) {
          found = i;
          break;
        }
      }
    }
  }
  // Rounding can leave the goal just past the last boundary: fall back to the most likely token.
  let chosen = reduce_min_u32(found, lid);
  if (lid == 0u) { token[row] = select(chosen, argmax, chosen == 0xffffffffu); }
}
