// Rotary position embedding in Hugging Face's rotate-half convention: for i < D/2, with
// angle = position * inv_freq[i],
//   y[i]       = x[i] cos - x[i + D/2] sin
//   y[i + D/2] = x[i + D/2] cos + x[i] sin
// cos and sin come from a table [positions, D] (cos in the first half of a row, sin in the second)
// computed on the host in float64 from HF's f32 angles: WGSL's sin/cos only promise 2^-11 absolute
// error, too coarse at positions in the thousands.
//
// rope: y = rotate(x) for x [B, H, L, D] addressed by strides (head- or token-major).
// kv_append: writes new keys (rotated when ROPE) and values into a preallocated cache
//   [H, maxLen, D] at rows dst_row0 .., converting to the cache's dtype: one dispatch per step.
// One invocation per (head, row, pair i).

struct Params {
  H: u32,
  L: u32,
  D: u32,
  // Heads (batch * H + head) of this dispatch.
  unit_begin: u32,
  units: u32,
  src_sb: u32,
  src_sh: u32,
  src_sl: u32,
  src_base: u32,
  src_v_base: u32,
  dst_sb: u32,
  dst_sh: u32,
  dst_sl: u32,
  dst_base: u32,
  dst_v_base: u32,
  // First destination row (the cache's length before appending; 0 for rope).
  dst_row0: u32,
  // Position of row l: positions[bat * pos_sb + l] when HAS_POSITIONS, else pos_start + l.
  pos_start: u32,
  pos_sb: u32,
  // First table element bound.
  table_base: u32,
}

override HAS_POSITIONS: bool = false;
override ROPE: bool = true;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read> src_v: array<src_v_t>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(4) var<storage, read> positions: array<i32>;
@group(0) @binding(5) var<storage, read_write> dst: array<dst_t>;
@group(0) @binding(6) var<storage, read_write> dst_v: array<dst_v_t>;

struct Pair {
  bat: u32,
  head: u32,
  row: u32,
  i: u32,
}

fn pair_of(idx: u32) -> Pair {
  let half = p.D / 2u;
  let rest = idx / half;
  let unit = p.unit_begin + rest / p.L;
  return Pair(unit / p.H, unit % p.H, rest % p.L, idx % half);
}

fn position(pr: Pair) -> u32 {
  if (HAS_POSITIONS) { return u32(positions[pr.bat * p.pos_sb + pr.row]); }
  return p.pos_start + pr.row;
}

// (cos, sin) of the pair's angle.
fn rotation(pr: Pair) -> vec2<f32> {
  let at = position(pr) * p.D + pr.i - p.table_base;
  return vec2<f32>(table[at], table[at + p.D / 2u]);
}

fn src_at(pr: Pair) -> u32 { return pr.bat * p.src_sb + pr.head * p.src_sh + pr.row * p.src_sl + pr.i; }
fn dst_at(pr: Pair) -> u32 { return pr.bat * p.dst_sb + pr.head * p.dst_sh + (p.dst_row0 + pr.row) * p.dst_sl + pr.i; }

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.units * p.L * (p.D / 2u)) { return; }
  let pr = pair_of(idx);
  let half = p.D / 2u;
  let cs = rotation(pr);
  let s0 = src_at(pr) - p.src_base;
  let x1 = src_ld(s0);
  let x2 = src_ld(s0 + half);
  let d0 = dst_at(pr) - p.dst_base;
  dst_st(d0, x1 * cs.x - x2 * cs.y);
  dst_st(d0 + half, x2 * cs.x + x1 * cs.y);
}

@compute @workgroup_size(64)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.units * p.L * (p.D / 2u)) { return; }
  let pr = pair_of(idx);
  let half = p.D / 2u;
  let s0 = src_at(pr);
  let d0 = dst_at(pr);
  let x1 = src_ld(s0 - p.src_base);
  let x2 = src_ld(s0 - p.src_base + half);
  if (ROPE) {
    let cs = rotation(pr);
    dst_st(d0 - p.dst_base, x1 * cs.x - x2 * cs.y);
    dst_st(d0 - p.dst_base + half, x2 * cs.x + x1 * cs.y);
  } else {
    dst_st(d0 - p.dst_base, x1);
    dst_st(d0 - p.dst_base + half, x2);
  }
  dst_v_st(d0 - p.dst_v_base, src_v_ld(s0 - p.src_v_base));
  dst_v_st(d0 - p.dst_v_base + half, src_v_ld(s0 - p.src_v_base + half));
}
