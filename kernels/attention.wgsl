// Fused attention for many query rows (prefill, ViT, cross-attention, window attention):
// O = softmax(Q Kᵀ · scale + bias + mask) V, FlashAttention-2 style: K/V are visited in tiles, an
// online softmax keeps a running max and sum per row in f32, and the score matrix never exists.
//
// attention_subgroup (CPU adapters: lavapipe; needs subgroups of 8). One 8-lane subgroup is the
// whole workgroup and owns 8 query rows. Per tile of 32 keys, lane l holds the scores of all 8 rows
// for keys 4l..4l+3 (Q values reach every lane through subgroupShuffle, as in matmul_subgroup), and
// for the P·V product lane l owns output columns 4l..4l+3 of every 32-column block, with each
// probability shuffled from the lane that computed it. Every K and V element is loaded once per
// subgroup and no barrier is ever executed (row max and sum come from subgroupMax/subgroupAdd).
// Accumulators are written once per 4 keys or 4 dimensions: on lavapipe each write of a variable
// carried around a loop costs a masked blend.
//
// attention_tiled (GPUs). A workgroup of 64 invocations owns 64 query rows, one per invocation;
// tiles of K and V are staged in workgroup memory and read by all rows.
#include "lib/attention_common.wgsl"
#include "lib/attention_kv_read.wgsl"

// Whole column blocks of 32 (4 per lane) of attention_subgroup's output, and the columns per lane
// of a last, narrower block when D % 32 is 8, 16 or 24 (TAIL: 1, 2, 3; lane l owns columns
// 32 HB + TAIL l onwards). Other widths round up to whole blocks (TAIL 0) and ignore the columns past D.
// A tail block spares the work of a whole block's 32 columns for 8 to 24 real ones (SD's heads of 40
// and 80 columns).
override HB: u32 = 2u;
override TAIL: u32 = 0u;
// Keys per workgroup-memory tile: 2048 / D (attention_tiled).
override TK: u32 = 16u;

// Output accumulators in pairs of 32-column blocks: acc_i[r * 2 + h] holds row r, block 2i + h. Each
// pair is its own array so the loops over (row, block) stay small enough for the shader compiler
// to unroll (lavapipe indexes private arrays dynamically at a large cost when it does not).
alias Pair = array<vec4<f32>, 16>;
var<private> acc_0: Pair;
var<private> acc_1: Pair;
var<private> acc_2: Pair;
var<private> acc_3: Pair;
var<private> tail_acc: array<vec4<f32>, 8>;  // row r's tail columns, in the first TAIL components
var<private> s: array<vec4<f32>, 8>;
var<private> row_max: array<f32, 8>;
var<private> row_sum: array<f32, 8>;

// Column blocks (of 32) that pair `i` holds.
fn blocks_in(i: u32) -> u32 { return min(2u, HB - min(HB, 2u * i)); }

// acc *= alpha for row r.
fn rescale(acc: ptr<private, Pair>, n: u32, r: u32, alpha: f32) {
  for (var h = 0u; h < n; h++) { (*acc)[r * 2u + h] *= alpha; }
}

// O[r, blocks of the pair] += P[r, the 4 keys of lane L] · V[those keys], for all 8 rows.
fn accumulate(acc: ptr<private, Pair>, n: u32, first_col: u32, hd: Head, j0: u32, L: u32, lane: u32) {
  var vrow: array<vec4<f32>, 8>;
  for (var c = 0u; c < 4u; c++) {
    let vb = v_at(hd, min(j0 + 4u * L + c, p.Lk - 1u));
    for (var h = 0u; h < n; h++) { vrow[c * 2u + h] = v4(vb + min(first_col + 32u * h + 4u * lane, p.D - 4u)); }
  }
  for (var r = 0u; r < 8u; r++) {
    let pr = vec4<f32>(subgroupShuffle(s[r].x, L), subgroupShuffle(s[r].y, L),
                       subgroupShuffle(s[r].z, L), subgroupShuffle(s[r].w, L));
    for (var h = 0u; h < n; h++) {
      (*acc)[r * 2u + h] += pr.x * vrow[h] + pr.y * vrow[2u + h] + pr.z * vrow[4u + h] + pr.w * vrow[6u + h];
    }
  }
}

// V[key] at this lane's tail columns (first TAIL components).
fn tail_of(vb: u32, lane: u32) -> vec4<f32> {
  let col = vb + 32u * HB + TAIL * lane;
  var t = vec4<f32>(0.0);
  for (var c = 0u; c < TAIL; c++) { t[c] = values_ld(col + c); }
  return t;
}

// The tail columns' share of accumulate(): O[r, tail] += P[r, keys of lane L] · V[those keys].
fn accumulate_tail(hd: Head, j0: u32, L: u32, lane: u32) {
  var vrow: array<vec4<f32>, 4>;
  for (var c = 0u; c < 4u; c++) { vrow[c] = tail_of(v_at(hd, min(j0 + 4u * L + c, p.Lk - 1u)), lane); }
  for (var r = 0u; r < 8u; r++) {
    let pr = vec4<f32>(subgroupShuffle(s[r].x, L), subgroupShuffle(s[r].y, L),
                       subgroupShuffle(s[r].z, L), subgroupShuffle(s[r].w, L));
    for (var t = 0u; t < TAIL; t++) {
      tail_acc[r][t] += dot(pr, vec4<f32>(vrow[0][t], vrow[1][t], vrow[2][t], vrow[3][t]));
    }
  }
}

// Writes row r of a pair's blocks, scaled by inv.
fn store_pair(acc: ptr<private, Pair>, n: u32, first_col: u32, ob: u32, r: u32, lane: u32, inv: f32) {
  for (var h = 0u; h < n; h++) {
    let col = first_col + 32u * h + 4u * lane;
    if (col < p.D) {
      let ov = (*acc)[r * 2u + h] * inv;
      out_st(ob + col, ov.x);
      out_st(ob + col + 1u, ov.y);
      out_st(ob + col + 2u, ov.z);
      out_st(ob + col + 3u, ov.w);
    }
  }
}

@compute @workgroup_size(8)
fn attention_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lane: u32) {
  let wid = wg.x + wg.y * nwg.x;
  if (wid >= p.items * p.bh_count) { return; }
  let hd = head_of(p.bh_begin + wid / p.items);
  let row0 = (wid % p.items) * 8u;
  let q_row = q_at(hd, min(row0 + lane, p.Lq - 1u));
  for (var r = 0u; r < 8u; r++) {
    row_max[r] = LOWEST;
    row_sum[r] = 0.0;
  }
  for (var r = 0u; r < 8u; r++) { tail_acc[r] = vec4<f32>(0.0); }
  for (var i = 0u; i < 16u; i++) {
    acc_0[i] = vec4<f32>(0.0);
    acc_1[i] = vec4<f32>(0.0);
    acc_2[i] = vec4<f32>(0.0);
    acc_3[i] = vec4<f32>(0.0);
  }

  let kend = key_end(min(row0 + 7u, p.Lq - 1u));
  for (var j0 = 0u; j0 < kend; j0 += 32u) {
    // Scores: s[r] = scale * Q[row0 + r] · K[keys of this lane].
    let kj = j0 + 4u * lane;
    let ka = k_at(hd, min(kj, p.Lk - 1u));
    let kb = k_at(hd, min(kj + 1u, p.Lk - 1u));
    let kc = k_at(hd, min(kj + 2u, p.Lk - 1u));
    let kd = k_at(hd, min(kj + 3u, p.Lk - 1u));
    for (var r = 0u; r < 8u; r++) { s[r] = vec4<f32>(0.0); }
    for (var d = 0u; d < p.D; d += 4u) {
      let qv = q4(q_row + d) * p.scale;
      let wa = k4(ka + d);
      let wb = k4(kb + d);
      let wc = k4(kc + d);
      let wd = k4(kd + d);
      let k0 = vec4<f32>(wa.x, wb.x, wc.x, wd.x);
      let k1 = vec4<f32>(wa.y, wb.y, wc.y, wd.y);
      let k2 = vec4<f32>(wa.z, wb.z, wc.z, wd.z);
      let k3 = vec4<f32>(wa.w, wb.w, wc.w, wd.w);
      for (var r = 0u; r < 8u; r++) {
        s[r] += subgroupShuffle(qv.x, r) * k0 + subgroupShuffle(qv.y, r) * k1
              + subgroupShuffle(qv.z, r) * k2 + subgroupShuffle(qv.w, r) * k3;
      }
    }

    // Online softmax per row: the tile's max across lanes, rescale what came before.
    let kidx = vec4<u32>(kj, kj + 1u, kj + 2u, kj + 3u);
    for (var r = 0u; r < 8u; r++) {
      let row = row0 + r;
      var sv = s[r];
      if (HAS_BIAS || HAS_MASK) {
        let rc = min(row, p.Lq - 1u);
        let kl = p.Lk - 1u;
        sv += vec4<f32>(additive(hd, rc, min(kidx.x, kl)), additive(hd, rc, min(kidx.y, kl)),
                        additive(hd, rc, min(kidx.z, kl)), additive(hd, rc, min(kidx.w, kl)));
      }
      let seen = vec4<bool>(visible(row, kidx.x), visible(row, kidx.y), visible(row, kidx.z), visible(row, kidx.w));
      sv = select(vec4<f32>(LOWEST), sv, seen);
      let m_new = max(row_max[r], subgroupMax(max(max(sv.x, sv.y), max(sv.z, sv.w))));
      let alpha = exp(row_max[r] - m_new);
      row_max[r] = m_new;
      let pv = select(vec4<f32>(0.0), exp(sv - m_new), seen);
      row_sum[r] = row_sum[r] * alpha + (pv.x + pv.y + pv.z + pv.w);
      s[r] = pv;
      rescale(&acc_0, blocks_in(0u), r, alpha);
      if (HB > 2u) { rescale(&acc_1, blocks_in(1u), r, alpha); }
      if (HB > 4u) { rescale(&acc_2, blocks_in(2u), r, alpha); }
      if (HB > 6u) { rescale(&acc_3, blocks_in(3u), r, alpha); }
      if (TAIL > 0u) { tail_acc[r] *= alpha; }
    }

    // O[r] += P[r, keys of lane L] · V[those keys], for each source lane L.
    for (var L = 0u; L < 8u; L++) {
      accumulate(&acc_0, blocks_in(0u), 0u, hd, j0, L, lane);
      if (HB > 2u) { accumulate(&acc_1, blocks_in(1u), 64u, hd, j0, L, lane); }
      if (HB > 4u) { accumulate(&acc_2, blocks_in(2u), 128u, hd, j0, L, lane); }
      if (HB > 6u) { accumulate(&acc_3, blocks_in(3u), 192u, hd, j0, L, lane); }
      if (TAIL > 0u) { accumulate_tail(hd, j0, L, lane); }
    }
  }

  for (var r = 0u; r < 8u; r++) {
    let total = subgroupAdd(row_sum[r]);
    // A row that sees no key at all (fully masked) comes out as zeros rather than 0/0.
    let inv = select(0.0, 1.0 / total, total > 0.0);
    let row = row0 + r;
    if (row < p.Lq) {
      let ob = o_at(hd, row);
      store_pair(&acc_0, blocks_in(0u), 0u, ob, r, lane, inv);
      if (HB > 2u) { store_pair(&acc_1, blocks_in(1u), 64u, ob, r, lane, inv); }
      if (HB > 4u) { store_pair(&acc_2, blocks_in(2u), 128u, ob, r, lane, inv); }
      if (HB > 6u) { store_pair(&acc_3, blocks_in(3u), 192u, ob, r, lane, inv); }
      for (var t = 0u; t < TAIL; t++) { out_st(ob + 32u * HB + TAIL * lane + t, tail_acc[r][t] * inv); }
    }
  }
}

const TILE_FLOATS: u32 = 2048u;
const MAX_D4: u32 = 64u;

var<workgroup> k_tile: array<vec4<f32>, 512>;
var<workgroup> v_tile: array<vec4<f32>, 512>;

@compute @workgroup_size(64)
fn attention_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  // The whole workgroup takes the same path: it exits together or reaches every barrier.
  let wid = wg.x + wg.y * nwg.x;
  if (wid >= p.items * p.bh_count) { return; }
  let hd = head_of(p.bh_begin + wid / p.items);
  let row0 = (wid % p.items) * 64u;
  let row = row0 + lid;
  let d4 = p.D / 4u;
  let q_row = q_at(hd, min(row, p.Lq - 1u));
  var qv: array<vec4<f32>, MAX_D4>;
  var ov: array<vec4<f32>, MAX_D4>;
  for (var d = 0u; d < d4; d++) {
    qv[d] = q4(q_row + 4u * d) * p.scale;
    ov[d] = vec4<f32>(0.0);
  }
  var m = LOWEST;
  var l = 0.0;
  let kend = key_end(min(row0 + 63u, p.Lq - 1u));
  for (var j0 = 0u; j0 < kend; j0 += TK) {
    workgroupBarrier();
    for (var i = lid; i < TK * d4; i += 64u) {
      let key = min(j0 + i / d4, p.Lk - 1u);
      let d = 4u * (i % d4);
      k_tile[i] = k4(k_at(hd, key) + d);
      v_tile[i] = v4(v_at(hd, key) + d);
    }
    workgroupBarrier();
    for (var t = 0u; t < TK; t++) {
      let key = j0 + t;
      var dot4 = vec4<f32>(0.0);
      for (var d = 0u; d < d4; d++) { dot4 += qv[d] * k_tile[t * d4 + d]; }
      var sc = dot4.x + dot4.y + dot4.z + dot4.w;
      if (HAS_BIAS || HAS_MASK) { sc += additive(hd, min(row, p.Lq - 1u), min(key, p.Lk - 1u)); }
      if (!visible(row, key)) { continue; }
      let m_new = max(m, sc);
      let alpha = exp(m - m_new);
      let pr = exp(sc - m_new);
      m = m_new;
      l = l * alpha + pr;
      for (var d = 0u; d < d4; d++) { ov[d] = ov[d] * alpha + pr * v_tile[t * d4 + d]; }
    }
  }
  if (row >= p.Lq) { return; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = o_at(hd, row);
  for (var d = 0u; d < d4; d++) {
    let r4 = ov[d] * inv;
    out_st(ob + 4u * d, r4.x);
    out_st(ob + 4u * d + 1u, r4.y);
    out_st(ob + 4u * d + 2u, r4.z);
    out_st(ob + 4u * d + 3u, r4.w);
  }
}
