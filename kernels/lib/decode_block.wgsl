// One block of 8 keys of a decoding kernel's online softmax, on one 8-lane subgroup (lane t holds
// key j0 + t): scores against the query, and O += p_t V[j0 + t] into acc, 4 keys at a time, lane l
// owning output columns 4l..4l+3 of each 32-column block. Shared by attention_decode.wgsl
// (decode_subgroup) and chain_attention.wgsl; the includer defines k4(i) and v4(i), four elements
// of a key or value row from element i (a multiple of 4).

// ceil(D / 32): blocks of 32 output columns.
override HB: u32 = 4u;
// ceil(D / 8): a constant trip count lets the compiler keep q_lane in registers.
override QB: u32 = 8u;
const MAX_HB: u32 = 8u;

// The output columns this lane owns, unnormalised.
var<private> acc: array<vec4<f32>, MAX_HB>;
// The query: element 8b + lane of each block b of 8 dimensions (D <= 256).
var<private> q_lane: array<f32, 32>;

/** This lane's key (its row starting at kb) against the query, the query's values shared by shuffles. */
fn key_dot(kb: u32, D: u32) -> f32 {
  var dot4 = vec4<f32>(0.0);
  for (var b = 0u; b < QB; b++) {
    let d = 8u * b;
    let qd = q_lane[b];
    dot4 += vec4<f32>(subgroupShuffle(qd, 0u), subgroupShuffle(qd, 1u), subgroupShuffle(qd, 2u), subgroupShuffle(qd, 3u)) * k4(kb + d);
    if (d + 4u < D) {
      dot4 += vec4<f32>(subgroupShuffle(qd, 4u), subgroupShuffle(qd, 5u), subgroupShuffle(qd, 6u), subgroupShuffle(qd, 7u)) * k4(kb + d + 4u);
    }
  }
  return dot4.x + dot4.y + dot4.z + dot4.w;
}

/**
 * acc = acc * alpha + Σ_t p_t V[j0 + t], with p_t on lane t and value rows at v0 + key * stride
 * (keys past `last` read row `last`, their p_t being 0).
 */
fn add_values(pk: f32, alpha: f32, v0: u32, stride: u32, j0: u32, last: u32, D: u32, lane: u32) {
  for (var half = 0u; half < 2u; half++) {
    let t0 = 4u * half;
    let pr = vec4<f32>(subgroupShuffle(pk, t0), subgroupShuffle(pk, t0 + 1u), subgroupShuffle(pk, t0 + 2u), subgroupShuffle(pk, t0 + 3u));
    let va = v0 + min(j0 + t0, last) * stride;
    let vb = v0 + min(j0 + t0 + 1u, last) * stride;
    let vc = v0 + min(j0 + t0 + 2u, last) * stride;
    let vd = v0 + min(j0 + t0 + 3u, last) * stride;
    for (var h = 0u; h < HB; h++) {
      let col = min(32u * h + 4u * lane, D - 4u);
      let scaled = select(acc[h], acc[h] * alpha, half == 0u);
      acc[h] = scaled + pr.x * v4(va + col) + pr.y * v4(vb + col) + pr.z * v4(vc + col) + pr.w * v4(vd + col);
    }
  }
}
