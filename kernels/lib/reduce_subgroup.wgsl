// Workgroup reductions built on subgroup operations. The including kernel declares
// `override WG: u32` (workgroup size) and `override SG: u32` (the adapter's fixed subgroup size).
// When WG == SG (our CPU profile: one 8-lane subgroup per row) no barrier is ever executed;
// otherwise each subgroup's partial goes through workgroup memory. Call from uniform control flow.

var<workgroup> red_f32: array<f32, WG>;
var<workgroup> red_u32: array<u32, WG>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
  let s = subgroupAdd(v);
  if (WG <= SG) { return s; }
  workgroupBarrier();
  if (lid % SG == 0u) { red_f32[lid / SG] = s; }
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < WG / SG; i++) { total += red_f32[i]; }
  return total;
}

fn reduce_max(v: f32, lid: u32) -> f32 {
  let s = subgroupMax(v);
  if (WG <= SG) { return s; }
  workgroupBarrier();
  if (lid % SG == 0u) { red_f32[lid / SG] = s; }
  workgroupBarrier();
  var best = red_f32[0];
  for (var i = 1u; i < WG / SG; i++) { best = max(best, red_f32[i]); }
  return best;
}

fn reduce_min_u32(v: u32, lid: u32) -> u32 {
  let s = subgroupMin(v);
  if (WG <= SG) { return s; }
  workgroupBarrier();
  if (lid % SG == 0u) { red_u32[lid / SG] = s; }
  workgroupBarrier();
  var best = red_u32[0];
  for (var i = 1u; i < WG / SG; i++) { best = min(best, red_u32[i]); }
  return best;
}

// Sum of v over the invocations with a lower local index (an exclusive scan).
fn prefix_sum_exclusive(v: f32, lid: u32) -> f32 {
  if (WG <= SG) { return subgroupExclusiveAdd(v); }
  workgroupBarrier();
  red_f32[lid] = v;
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < lid; i++) { total += red_f32[i]; }
  return total;
}
