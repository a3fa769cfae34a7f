// What every attention kernel shares: the parameter block, the tensor bindings and their indexing.
//
// Q and the output O are [B, Hq, Lq, D], K and V [B, Hkv, Lk, D], addressed through strides so the
// same kernels read head-major ([B, H, L, D]) and token-major ([B, L, H, D]) layouts and a KV
// cache ([Hkv, maxLen, D] with only the first Lk keys attended). Query head h reads kv head
// h / group (grouped-query attention). A dispatch covers the query heads bh_begin .. +bh_count of
// the flattened (batch, head) index; each binding may be a window of its tensor that starts at
// element *_base, so indices are global offsets minus that base.
//
// Two optional additive terms, `bias` and `mask`, are added to the scaled scores. Each is
// [Bb, Hb, Lqb, Lk] with Hb in {1, Hq} and Lqb in {1, Lq} (stride 0 when broadcast) and Bb either
// 1 or a divisor of B that repeats (batch index modulo Bb): Swin's shifted-window mask is per
// window while the batch is images x windows.

struct Params {
  Lq: u32,
  Lk: u32,
  D: u32,
  Hq: u32,
  group: u32,
  bh_begin: u32,
  bh_count: u32,
  // Work items per query head (row blocks, or rows x splits for decoding).
  items: u32,
  q_sb: u32,
  q_sh: u32,
  q_sl: u32,
  q_base: u32,
  o_base: u32,
  k_sb: u32,
  k_sh: u32,
  k_sl: u32,
  k_base: u32,
  v_base: u32,
  // Key j is visible to query row i when j <= i + causal_offset (Lk - Lq: queries are the last rows).
  causal_offset: u32,
  bias_nb: u32,
  bias_sb: u32,
  bias_sh: u32,
  bias_sl: u32,
  mask_nb: u32,
  mask_sb: u32,
  mask_sh: u32,
  mask_sl: u32,
  scale: f32,
  // Split-K decoding: key chunks per row and keys per chunk.
  splits: u32,
  chunk: u32,
  // Decoding with a fresh key (attention_decode.wgsl, FRESH): its key index, where the step's key
  // and value rows start in the query binding, and the rotary table row of its position.
  new_key: u32,
  fresh_k: u32,
  fresh_v: u32,
  table_row: u32,
}

override CAUSAL: bool = false;
override HAS_BIAS: bool = false;
override HAS_MASK: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> query: array<query_t4>;
// keys (binding 2) and values (binding 3): declared by the including kernel, read-only or, for a
// kernel that appends to a cache, read-write (lib/attention_kv_read*.wgsl).
@group(0) @binding(4) var<storage, read> bias: array<bias_t>;
@group(0) @binding(5) var<storage, read> mask: array<mask_t>;
@group(0) @binding(6) var<storage, read_write> out: array<out_t>;

const LOWEST: f32 = -3.4028234e38;

// Which query head a work item belongs to.
struct Head {
  bat: u32,
  head: u32,
  kvh: u32,
}

fn head_of(bh: u32) -> Head {
  let head = bh % p.Hq;
  return Head(bh / p.Hq, head, head / p.group);
}

fn q_at(hd: Head, row: u32) -> u32 { return hd.bat * p.q_sb + hd.head * p.q_sh + row * p.q_sl - p.q_base; }
fn o_at(hd: Head, row: u32) -> u32 { return hd.bat * p.q_sb + hd.head * p.q_sh + row * p.q_sl - p.o_base; }
fn k_at(hd: Head, key: u32) -> u32 { return hd.bat * p.k_sb + hd.kvh * p.k_sh + key * p.k_sl - p.k_base; }
fn v_at(hd: Head, key: u32) -> u32 { return hd.bat * p.k_sb + hd.kvh * p.k_sh + key * p.k_sl - p.v_base; }

// Four consecutive elements (i a multiple of 4) in one load: Q, K and V are bound four elements per
// entry (D is a multiple of 4 and every window starts aligned).
fn q4(i: u32) -> vec4<f32> { return query_ld4(i >> 2u); }
fn k4(i: u32) -> vec4<f32> { return keys_ld4(i >> 2u); }
fn v4(i: u32) -> vec4<f32> { return values_ld4(i >> 2u); }

// Offset of (row, key 0) in the additive terms; keys follow contiguously.
fn bias_row(hd: Head, row: u32) -> u32 { return (hd.bat % p.bias_nb) * p.bias_sb + hd.head * p.bias_sh + row * p.bias_sl; }
fn mask_row(hd: Head, row: u32) -> u32 { return (hd.bat % p.mask_nb) * p.mask_sb + hd.head * p.mask_sh + row * p.mask_sl; }

// bias + mask for one score (row and key inside the matrix).
fn additive(hd: Head, row: u32, key: u32) -> f32 {
  var add = 0.0;
  if (HAS_BIAS) { add += bias_ld(bias_row(hd, row) + key); }
  if (HAS_MASK) { add += mask_ld(mask_row(hd, row) + key); }
  return add;
}

// Whether key `key` may be attended by query row `row` (inside Lk, and not in the future when causal).
fn visible(row: u32, key: u32) -> bool {
  return key < p.Lk && (!CAUSAL || key <= row + p.causal_offset);
}

// Keys a block of query rows ending at `last_row` can see: causal blocks stop early.
fn key_end(last_row: u32) -> u32 {
  if (CAUSAL) { return min(p.Lk, last_row + p.causal_offset + 1u); }
  return p.Lk;
}
