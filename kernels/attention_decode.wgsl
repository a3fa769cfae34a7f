// Attention for a few query rows against many keys (LLM decoding against a KV cache): split-K
// "flash decoding". Each work item is one query row and one chunk of `chunk` keys; it computes the
// chunk's softmax max m, sum l and unnormalised output o = Σ exp(s - m) V. With one split the
// result goes straight to the output; otherwise decode_combine merges the chunks of each row:
// O = Σ_c exp(m_c - M) o_c / Σ_c exp(m_c - M) l_c with M = max_c m_c. Streaming K and V once is the
// whole cost, so chunks exist to give every core (or GPU multiprocessor) a share of the keys.
//
// FRESH (one decoding step, one query row): the step's own key and value have just been projected
// and are not in the cache yet. They sit in the query binding (a fused q|k|v projection) at
// fresh_k / fresh_v, and key index new_key is theirs. With ROPE the query and the fresh key are
// rotated here (rotate-half, the table row of the step's position). Work items read cache rows
// below new_key only and fold the fresh key in from registers, and the first query head of each
// kv head writes the row into the cache (keys and values are then bound read-write): rope, the
// cache append and attention are one dispatch, and no item reads a row another writes.
//
// decode_subgroup (CPU adapters, subgroups of 8): one subgroup per item. Lane l scores key j0 + l
// (Q values shared by shuffles), and for P·V lane l owns output columns 4l..4l+3 of each 32-column
// block, with probabilities shuffled from the lanes that computed them. No barriers.
// decode_tiled (GPUs): 64 invocations per item, one key each; max and sum through workgroup
// memory, then invocations own output columns and read the probabilities from workgroup memory.
// In decode_subgroup every lane takes the same branches: a workgroup is one subgroup, and shared
// values (an item index) are broadcast from lane 0, which WGSL's analysis cannot see through.
diagnostic(off, subgroup_uniformity);
#include "lib/attention_common.wgsl"
#include "lib/attention_kv_{kv}.wgsl"
#include "lib/reduce_shared.wgsl"

// Partial results: per (row, chunk) D output values, then m and l.
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

override SPLIT: bool = false;
// Workgroup size of decode_tiled and decode_combine (reduce_shared needs WG and SG).
override WG: u32 = 64u;
override SG: u32 = 0u;
override FRESH: bool = false;
override ROPE: bool = false;

// cos | sin rows of the rotary table (ROPE); row table_row is the step's position.
@group(0) @binding(8) var<storage, read> table: array<f32>;


// Work item -> (query head, row, chunk) and its key range.
struct Item {
  hd: Head,
  row: u32,
  split: u32,
  // Index of (head, row) among this dispatch's rows, for the partial results.
  local_row: u32,
  start: u32,
  end: u32,
}

fn item_of(wid: u32) -> Item {
  let local_head = wid / p.items;
  let rest = wid % p.items;
  let row = rest / p.splits;
  let split = rest % p.splits;
  let start = split * p.chunk;
  let end = min(start + p.chunk, key_end(row));
  return Item(head_of(p.bh_begin + local_head), row, split, local_head * p.Lq + row, start, end);
}

fn part_at(it: Item) -> u32 { return (it.local_row * p.splits + it.split) * (p.D + 2u); }

// Keys an item reads from the cache: its chunk, minus the fresh key.
fn cache_end(it: Item) -> u32 {
  if (FRESH) { return min(it.end, p.new_key); }
  return it.end;
}

// Whether the fresh key falls in this item's chunk.
fn has_fresh(it: Item) -> bool {
  return FRESH && it.start <= p.new_key && p.new_key < it.start + p.chunk;
}

// Whether this item writes the fresh row into the cache: the first query head of its kv head does.
fn writes_fresh(it: Item) -> bool {
  return has_fresh(it) && it.hd.head % p.group == 0u;
}

// Element i of a row starting at `base` of the query binding, rotated when ROPE (rotate-half:
// y[i] = x[i] cos - x[i + D/2] sin for i < D/2, x[i] cos + x[i - D/2] sin above).
fn packed_at(base: u32, i: u32) -> f32 {
  let x = query_ld(base + i);
  if (!ROPE) { return x; }
  let half = p.D / 2u;
  let j = i % half;
  let c = table[p.table_row + j];
  let s = table[p.table_row + half + j];
  if (i < half) { return x * c - query_ld(base + i + half) * s; }
  return x * c + query_ld(base + i - half) * s;
}

fn fresh_k_at(hd: Head) -> u32 { return p.fresh_k + hd.kvh * p.D; }
fn fresh_v_at(hd: Head) -> u32 { return p.fresh_v + hd.kvh * p.D; }

// Writes the fresh key (rotated) and value into the cache, a pair of elements at a time (the
// cache's stores move whole pairs): pairs first, first + step, ... of the row.
fn write_fresh(it: Item, first: u32, step: u32) {
  let kb = k_at(it.hd, p.new_key);
  let vb = v_at(it.hd, p.new_key);
  let k0 = fresh_k_at(it.hd);
  let v0 = fresh_v_at(it.hd);
  for (var i = 2u * first; i < p.D; i += 2u * step) {
    let k = vec2<f32>(packed_at(k0, i), packed_at(k0, i + 1u));
    cache_st2(kb + i, k, vb + i, query_ld2(v0 + i));
  }
}

// decode_subgroup's blocks of 8 keys (its query rotated under ROPE).
#include "lib/decode_block.wgsl"

// ON_DEMAND (decode_subgroup on lavapipe): NWG workgroups take work items from a shared counter
// instead of one workgroup per item (src/ops/support/work-sharing.ts): lavapipe deals workgroups to its
// threads in fixed shares, so a thread slow to wake would hold up the whole dispatch.
override ON_DEMAND: bool = false;
override NWG: u32 = 1u;
// Shared work counters, zero between dispatches: [0] items handed out, [1] workgroups done.
@group(0) @binding(9) var<storage, read_write> counters: array<atomic<u32>>;

@compute @workgroup_size(8)
fn decode_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lane: u32) {
  if (!ON_DEMAND) {
    decode_item(wg.x + wg.y * nwg.x, lane);
    return;
  }
  loop {
    var taken = 0u;
    if (lane == 0u) { taken = atomicAdd(&counters[0], 1u); }
    let wid = subgroupBroadcast(taken, 0u);
    if (wid >= p.items * p.bh_count) { break; }
    decode_item(wid, lane);
  }
  // The last workgroup out resets the counters for the next dispatch.
  if (lane == 0u && atomicAdd(&counters[1], 1u) == NWG - 1u) {
    atomicStore(&counters[0], 0u);
    atomicStore(&counters[1], 0u);
  }
}

/** One work item: a query row against one chunk of keys, one 8-lane subgroup. */
fn decode_item(wid: u32, lane: u32) {
  if (wid >= p.items * p.bh_count) { return; }
  let it = item_of(wid);
  let q_row = q_at(it.hd, it.row);
  for (var b = 0u; b < QB; b++) { q_lane[b] = packed_at(q_row, min(8u * b + lane, p.D - 1u)); }
  var m = LOWEST;
  var lsum = 0.0;
  for (var h = 0u; h < HB; h++) { acc[h] = vec4<f32>(0.0); }
  let end = cache_end(it);
  // Lanes past the chunk load its last row (masked out): never a row past `end`, which under FRESH
  // is stale or being written, and 0 x NaN would poison the sums.
  let last = max(end, 1u) - 1u;
  for (var j0 = it.start; j0 < end; j0 += 8u) {
    let key = j0 + lane;
    let kb = k_at(it.hd, min(key, last));
    var sc = key_dot(kb, p.D) * p.scale;
    if (HAS_BIAS || HAS_MASK) { sc += additive(it.hd, it.row, min(key, p.Lk - 1u)); }
    let seen = key < end && visible(it.row, key);
    sc = select(LOWEST, sc, seen);
    let m_new = max(m, subgroupMax(sc));
    let alpha = exp(m - m_new);
    m = m_new;
    let pk = select(0.0, exp(sc - m_new), seen);
    lsum = lsum * alpha + pk;
    add_values(pk, alpha, v_at(it.hd, 0u), p.k_sl, j0, last, p.D, lane);
  }
  if (has_fresh(it)) {
    // The fresh key, from registers: one more step of the online softmax.
    var part_dot = 0.0;
    for (var b = 0u; b < QB; b++) {
      if (8u * b + lane < p.D) { part_dot += q_lane[b] * packed_at(fresh_k_at(it.hd), 8u * b + lane); }
    }
    var sc = subgroupAdd(part_dot) * p.scale;
    if (HAS_BIAS || HAS_MASK) { sc += additive(it.hd, it.row, p.new_key); }
    let m_new = max(m, sc);
    let alpha = exp(m - m_new);
    let pk = exp(sc - m_new);
    m = m_new;
    lsum = lsum * alpha + select(0.0, pk, lane == 0u);
    for (var h = 0u; h < HB; h++) {
      let col = min(32u * h + 4u * lane, p.D - 4u);
      acc[h] = acc[h] * alpha + pk * q4(fresh_v_at(it.hd) + col);
    }
    if (writes_fresh(it)) { write_fresh(it, lane, 8u); }
  }
  let total = subgroupAdd(lsum);
  if (SPLIT) {
    let base = part_at(it);
    for (var h = 0u; h < HB; h++) {
      let col = 32u * h + 4u * lane;
      if (col < p.D) {
        part[base + col] = acc[h].x;
        part[base + col + 1u] = acc[h].y;
        part[base + col + 2u] = acc[h].z;
        part[base + col + 3u] = acc[h].w;
      }
    }
    if (lane == 0u) {
      part[base + p.D] = m;
      part[base + p.D + 1u] = total;
    }
  } else {
    let inv = select(0.0, 1.0 / total, total > 0.0);
    let ob = o_at(it.hd, it.row);
    for (var h = 0u; h < HB; h++) {
      let col = 32u * h + 4u * lane;
      if (col < p.D) {
        let ov = acc[h] * inv;
        out_st(ob + col, ov.x);
        out_st(ob + col + 1u, ov.y);
        out_st(ob + col + 2u, ov.z);
        out_st(ob + col + 3u, ov.w);
      }
    }
  }
}

var<workgroup> q_shared: array<f32, 256>;
var<workgroup> p_shared: array<f32, 64>;

@compute @workgroup_size(64)
fn decode_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let wid = wg.x + wg.y * nwg.x;
  if (wid >= p.items * p.bh_count) { return; }
  let it = item_of(wid);
  let q_row = q_at(it.hd, it.row);
  for (var d = lid; d < p.D; d += 64u) { q_shared[d] = packed_at(q_row, d) * p.scale; }
  var m = LOWEST;
  var l = 0.0;
  var cols = vec4<f32>(0.0);  // output columns lid, lid + 64, lid + 128, lid + 192
  let end = cache_end(it);
  for (var j0 = it.start; j0 < end; j0 += 64u) {
    workgroupBarrier();
    let key = j0 + lid;
    let seen = key < end && visible(it.row, key);
    var sc = LOWEST;
    if (seen) {
      let kb = k_at(it.hd, key);
      var dot4 = vec4<f32>(0.0);
      for (var d = 0u; d < p.D; d += 4u) {
        dot4 += vec4<f32>(q_shared[d], q_shared[d + 1u], q_shared[d + 2u], q_shared[d + 3u]) * k4(kb + d);
      }
      sc = dot4.x + dot4.y + dot4.z + dot4.w;
      if (HAS_BIAS || HAS_MASK) { sc += additive(it.hd, it.row, key); }
    }
    let m_new = max(m, reduce_max(sc, lid));
    let alpha = exp(m - m_new);
    m = m_new;
    let pk = select(0.0, exp(sc - m_new), seen);
    l = l * alpha + reduce_sum(pk, lid);
    p_shared[lid] = pk;
    workgroupBarrier();
    cols *= alpha;
    let n = min(64u, end - j0);
    for (var t = 0u; t < n; t++) {
      let vb = v_at(it.hd, j0 + t);
      let pt = p_shared[t];
      for (var c = 0u; c < 4u; c++) {
        let col = lid + 64u * c;
        if (col < p.D) { cols[c] += pt * values_ld(vb + col); }
      }
    }
  }
  if (has_fresh(it)) {
    // Each invocation reads back only the q_shared entries it wrote; reduce_sum starts with a barrier.
    var part_dot = 0.0;
    for (var d = lid; d < p.D; d += 64u) { part_dot += q_shared[d] * packed_at(fresh_k_at(it.hd), d); }
    var sc = reduce_sum(part_dot, lid);
    if (HAS_BIAS || HAS_MASK) { sc += additive(it.hd, it.row, p.new_key); }
    let m_new = max(m, sc);
    let alpha = exp(m - m_new);
    let pk = exp(sc - m_new);
    m = m_new;
    l = l * alpha + pk;
    for (var c = 0u; c < 4u; c++) {
      let col = lid + 64u * c;
      cols[c] = cols[c] * alpha + select(0.0, pk * query_ld(fresh_v_at(it.hd) + col), col < p.D);
    }
    if (writes_fresh(it)) { write_fresh(it, lid, 64u); }
  }
  if (SPLIT) {
    let base = part_at(it);
    for (var c = 0u; c < 4u; c++) {
      let col = lid + 64u * c;
      if (col < p.D) { part[base + col] = cols[c]; }
    }
    if (lid == 0u) {
      part[base + p.D] = m;
      part[base + p.D + 1u] = l;
    }
  } else {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let ob = o_at(it.hd, it.row);
    for (var c = 0u; c < 4u; c++) {
      let col = lid + 64u * c;
      if (col < p.D) { out_st(ob + col, cols[c] * inv); }
    }
  }
}

// Merges the chunks of each row (items = Lq here: one work item per row). Invocations own columns.
@compute @workgroup_size(WG)
fn decode_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let wid = wg.x + wg.y * nwg.x;
  if (wid >= p.items * p.bh_count) { return; }
  let hd = head_of(p.bh_begin + wid / p.items);
  let row = wid % p.items;
  let base = wid * p.splits * (p.D + 2u);
  let stride = p.D + 2u;
  var top = LOWEST;
  for (var c = 0u; c < p.splits; c++) { top = max(top, part[base + c * stride + p.D]); }
  var l = 0.0;
  for (var c = 0u; c < p.splits; c++) {
    let at = base + c * stride;
    l += part[at + p.D + 1u] * exp(part[at + p.D] - top);
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = o_at(hd, row);
  for (var col = lid; col < p.D; col += WG) {
    var sum = 0.0;
    for (var c = 0u; c < p.splits; c++) {
      let at = base + c * stride;
      sum += part[at + col] * exp(part[at + p.D] - top);
    }
    out_st(ob + col, sum * inv);
  }
}
