// The attention phase of a GEMV chain (kernels/gemv_chain.wgsl, entry attend_then_chain): one
// layer's attention for one decoding step, before the chain's products. The step's q|k|v row is
// src0 ([Hq D | Hkv D | Hkv D]); the KV cache holds rotated keys and values of rows [0, pos) per kv
// head ([Hkv, rows, D]). A work item is one query head on one 8-lane workgroup, items taken on
// demand like the chunks: lane l scores key j0 + l (query values shared by shuffles), an online
// softmax runs over the cached rows, then the step's own key and value are folded in from
// registers, the key (and the query) rotated here (rotate-half by the table row of position pos).
// The first query head of each kv head writes that row into the cache; no item reads it from
// there. The output, [Hq D], goes into the arena for the products that follow.
// Same arithmetic as attention_decode.wgsl's decode_subgroup, specialised to this one case.

@group(0) @binding(13) var<storage, read_write> keys: array<keys_t4>;
@group(0) @binding(14) var<storage, read_write> values: array<values_t4>;
// cos | sin rows of the rotary table (ROPE), [rows, D] f32.
@group(0) @binding(15) var<storage, read> table: array<f32>;

override ROPE: bool = true;
override HB: u32 = 2u;   // ceil(D / 32): blocks of 32 output columns, 4 per lane
override QB: u32 = 8u;   // ceil(D / 8): a constant trip count keeps attn_q in registers

const LOWEST: f32 = -3.4028234e38;

var<private> attn_q: array<f32, 32>;
var<private> attn_acc: array<vec4<f32>, 8>;

/** Element i of a head's row starting at `base` in src0, rotated when ROPE. */
fn step_row_at(base: u32, i: u32) -> f32 {
  let v = src0_ld(base + i);
  if (!ROPE) { return v; }
  let half = p.heads.z / 2u;
  let j = i % half;
  let c = table[p.attend.y + j];
  let s = table[p.attend.y + half + j];
  if (i < half) { return v * c - src0_ld(base + i + half) * s; }
  return v * c + src0_ld(base + i - half) * s;
}

fn k4(i: u32) -> vec4<f32> { return keys_ld4(i >> 2u); }
fn v4(i: u32) -> vec4<f32> { return values_ld4(i >> 2u); }

fn attend_head(h: u32, lane: u32) {
  let D = p.heads.z;
  let group = p.heads.x / p.heads.y;
  let kvh = h / group;
  let pos = p.attend.x;
  let k_step = (p.heads.x + kvh) * D;              // the step's key in src0
  let v_step = (p.heads.x + p.heads.y + kvh) * D;  // and value
  let row0 = kvh * p.attend.w * D;                 // the kv head's first cache row
  for (var b = 0u; b < QB; b++) { attn_q[b] = step_row_at(h * D, min(8u * b + lane, D - 1u)); }
  var m = LOWEST;
  var lsum = 0.0;
  for (var c = 0u; c < HB; c++) { attn_acc[c] = vec4<f32>(0.0); }
  // Lanes past the last cached row load that row (masked out), never the step's row.
  let last = max(pos, 1u) - 1u;
  for (var j0 = 0u; j0 < pos; j0 += 8u) {
    let key = j0 + lane;
    let kb = row0 + min(key, last) * D;
    var dot4 = vec4<f32>(0.0);
    for (var b = 0u; b < QB; b++) {
      let d = 8u * b;
      let qd = attn_q[b];
      dot4 += vec4<f32>(subgroupShuffle(qd, 0u), subgroupShuffle(qd, 1u), subgroupShuffle(qd, 2u), subgroupShuffle(qd, 3u)) * k4(kb + d);
      if (d + 4u < D) {
        dot4 += vec4<f32>(subgroupShuffle(qd, 4u), subgroupShuffle(qd, 5u), subgroupShuffle(qd, 6u), subgroupShuffle(qd, 7u)) * k4(kb + d + 4u);
      }
    }
    let seen = key < pos;
    let sc = select(LOWEST, (dot4.x + dot4.y + dot4.z + dot4.w) * p.scale, seen);
    let m_new = max(m, subgroupMax(sc));
    let alpha = exp(m - m_new);
    m = m_new;
    let pk = select(0.0, exp(sc - m_new), seen);
    lsum = lsum * alpha + pk;
    // O += p_t V[j0 + t] for the 8 keys, 4 at a time.
    for (var part = 0u; part < 2u; part++) {
      let t0 = 4u * part;
      let pr = vec4<f32>(subgroupShuffle(pk, t0), subgroupShuffle(pk, t0 + 1u), subgroupShuffle(pk, t0 + 2u), subgroupShuffle(pk, t0 + 3u));
      let va = row0 + min(j0 + t0, last) * D;
      let vb = row0 + min(j0 + t0 + 1u, last) * D;
      let vc = row0 + min(j0 + t0 + 2u, last) * D;
      let vd = row0 + min(j0 + t0 + 3u, last) * D;
      for (var c = 0u; c < HB; c++) {
        let col = min(32u * c + 4u * lane, D - 4u);
        let scaled = select(attn_acc[c], attn_acc[c] * alpha, part == 0u);
        attn_acc[c] = scaled + pr.x * v4(va + col) + pr.y * v4(vb + col) + pr.z * v4(vc + col) + pr.w * v4(vd + col);
      }
    }
  }
  // The step's own key and value, from registers: one more step of the online softmax.
  var part_dot = 0.0;
  for (var b = 0u; b < QB; b++) {
    if (8u * b + lane < D) { part_dot += attn_q[b] * step_row_at(k_step, 8u * b + lane); }
  }
  let sc = subgroupAdd(part_dot) * p.scale;
  let m_new = max(m, sc);
  let alpha = exp(m - m_new);
  let pk = exp(sc - m_new);
  lsum = lsum * alpha + select(0.0, pk, lane == 0u);
  for (var c = 0u; c < HB; c++) {
    let col = min(32u * c + 4u * lane, D - 4u);
    let v_new = vec4<f32>(src0_ld(v_step + col), src0_ld(v_step + col + 1u), src0_ld(v_step + col + 2u), src0_ld(v_step + col + 3u));
    attn_acc[c] = attn_acc[c] * alpha + pk * v_new;
  }
  if (h % group == 0u) {
    // The step's row joins the cache, a pair of elements at a time (stores move whole pairs).
    let at = row0 + pos * D;
    for (var i = 2u * lane; i < D; i += 16u) {
      keys_st2(at + i, vec2<f32>(step_row_at(k_step, i), step_row_at(k_step, i + 1u)));
      values_st2(at + i, vec2<f32>(src0_ld(v_step + i), src0_ld(v_step + i + 1u)));
    }
  }
  let inv = 1.0 / subgroupAdd(lsum);   // >= 1: the step's own key always counts
  for (var c = 0u; c < HB; c++) {
    let col = 32u * c + 4u * lane;
    if (col < D) {
      let o = attn_acc[c] * inv;
      let at = p.attend.z + h * D + col;
      arena[at] = o.x;
      arena[at + 1u] = o.y;
      arena[at + 2u] = o.z;
      arena[at + 3u] = o.w;
    }
  }
}

/** Every query head's attention, heads taken on demand (counters [9]: handed out, [10]: finished). */
fn run_attention(lane: u32) {
  loop {
    var taken = 0u;
    if (lane == 0u) { taken = atomicAdd(&counters[9], 1u); }
    let h = subgroupBroadcast(taken, 0u);
    if (h >= p.heads.x) { break; }
    attend_head(h, lane);
    if (lane == 0u) { atomicAdd(&counters[10], 1u); }
  }
  loop {
    if (atomicAdd(&counters[10], 0u) >= p.heads.x) { break; }
  }
}
