// The attention phase of a GEMV chain (kernels/gemv_chain.wgsl, entry attend_then_chain): one
// layer's attention for one decoding step, before the chain's products. The step's q|k|v row is
// src0 ([Hq D | Hkv D | Hkv D]); the KV cache holds rotated keys and values of rows [0, pos) per kv
// head ([Hkv, rows, D]). A work item is one query head on one 8-lane workgroup, items taken on
// demand like the chunks: lane l scores key j0 + l (query values shared by shuffles), an online
// softmax runs over the cached rows, then the step's own key and value are folded in from
// registers, the key (and the query) rotated here (rotate-half by the table row of position pos).
// The first query head of each kv head writes that row into the cache; no item reads it from
// there. The output, [Hq D], goes into the arena for the products that follow.
// decode_subgroup's arithmetic (attention_decode.wgsl), specialised to this one case.

@group(0) @binding(13) var<storage, read_write> keys: array<keys_t4>;
@group(0) @binding(14) var<storage, read_write> values: array<values_t4>;
// cos | sin rows of the rotary table (ROPE), [rows, D] f32.
@group(0) @binding(15) var<storage, read> table: array<f32>;

override ROPE: bool = true;

const LOWEST: f32 = -3.4028234e38;

#include "lib/decode_block.wgsl"

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
  for (var b = 0u; b < QB; b++) { q_lane[b] = step_row_at(h * D, min(8u * b + lane, D - 1u)); }
  var m = LOWEST;
  var lsum = 0.0;
  for (var c = 0u; c < HB; c++) { acc[c] = vec4<f32>(0.0); }
  // Lanes past the last cached row load that row (masked out), never the step's row.
  let last = max(pos, 1u) - 1u;
  for (var j0 = 0u; j0 < pos; j0 += 8u) {
    let key = j0 + lane;
    let kb = row0 + min(key, last) * D;
    let seen = key < pos;
    let sc = select(LOWEST, key_dot(kb, D) * p.scale, seen);
    let m_new = max(m, subgroupMax(sc));
    let alpha = exp(m - m_new);
    m = m_new;
    let pk = select(0.0, exp(sc - m_new), seen);
    lsum = lsum * alpha + pk;
    add_values(pk, alpha, row0, D, j0, last, D, lane);
  }
  // The step's own key and value, from registers: one more step of the online softmax.
  var part_dot = 0.0;
  for (var b = 0u; b < QB; b++) {
    if (8u * b + lane < D) { part_dot += q_lane[b] * step_row_at(k_step, 8u * b + lane); }
  }
  let sc = subgroupAdd(part_dot) * p.scale;
  let m_new = max(m, sc);
  let alpha = exp(m - m_new);
  let pk = exp(sc - m_new);
  lsum = lsum * alpha + select(0.0, pk, lane == 0u);
  for (var c = 0u; c < HB; c++) {
    let col = min(32u * c + 4u * lane, D - 4u);
    let v_new = vec4<f32>(src0_ld(v_step + col), src0_ld(v_step + col + 1u), src0_ld(v_step + col + 2u), src0_ld(v_step + col + 3u));
    acc[c] = acc[c] * alpha + pk * v_new;
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
      let o = acc[c] * inv;
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
