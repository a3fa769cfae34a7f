// Workgroup reductions through workgroup memory alone, for adapters without a fixed subgroup size.
// The including kernel declares `override WG: u32` (a power of two) and `override SG: u32` (unused
// here). Each call starts with a barrier so the scratch array can be reused. Call from uniform
// control flow.

var<workgroup> red_f32: array<f32, WG>;
var<workgroup> red_u32: array<u32, WG>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red_f32[lid] = v;
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    workgroupBarrier();
    if (lid < s) { red_f32[lid] += red_f32[lid + s]; }
  }
  workgroupBarrier();
  return red_f32[0];
}

fn reduce_max(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red_f32[lid] = v;
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    workgroupBarrier();
    if (lid < s) { red_f32[lid] = max(red_f32[lid], red_f32[lid + s]); }
  }
  workgroupBarrier();
  return red_f32[0];
}

fn reduce_min_u32(v: u32, lid: u32) -> u32 {
  workgroupBarrier();
  red_u32[lid] = v;
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    workgroupBarrier();
    if (lid < s) { red_u32[lid] = min(red_u32[lid], red_u32[lid + s]); }
  }
  workgroupBarrier();
  return red_u32[0];
}

// Sum of v over the invocations with a lower local index (an exclusive scan).
fn prefix_sum_exclusive(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red_f32[lid] = v;
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < lid; i++) { total += red_f32[i]; }
  return total;
}
