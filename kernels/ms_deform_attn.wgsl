// Multi-scale deformable attention (Deformable DETR), fused: for every (query row, head, group of
// 32 channels) the output is  sum over levels l and points k of  attn[l, k] * bilinear(value_l, loc[l, k]),
// sampled like F.grid_sample(align_corners=False, padding_mode='zeros'): pixel = loc * size - 0.5,
// corners outside the level contribute zero.
//
// Layouts: value [B, S, H, Dh] (a level's pixels are rows start_l .. start_l + H_l*W_l, row-major),
// sampling [B, Lq, H, L, P, 2] (x, y in [0, 1]), attn [B, Lq, H, L, P], out [B, Lq, H*Dh].
// An "item" is (query row, head, channel group); items are numbered with the group fastest.
//
// Bindings may be windows of the whole tensors: sampling/attn/out cover query rows from
// p.row_offset, value covers tokens [p.token_begin, p.token_end) of the flattened B*S. Corners
// outside that token window are skipped, so a value too big for one binding is processed in
// several dispatches that add into out (ACCUMULATE).
//
// Two variants share the per-point work (point_taps):
//  * ms_deform_attn_subgroup (CPU adapters): one 8-lane subgroup per item, 4 channels per lane.
//    Each lane works out the bilinear corners of one point, and subgroupBroadcast hands them to
//    the other lanes: no workgroup memory, no barrier, and every value load is useful.
//  * ms_deform_attn_shared (GPUs): 32 threads per item, one channel each; the points' corners are
//    staged in workgroup memory, 32 points per barrier pair.

struct Params {
  items: u32,          // items in this dispatch
  heads: u32,
  head_dim: u32,
  groups: u32,         // ceil(head_dim / 32)
  levels: u32,
  points: u32,
  queries: u32,        // Lq: a query row r belongs to batch r / Lq
  value_tokens: u32,   // S
  row_offset: u32,     // global query row of this dispatch's first row
  token_begin: u32,    // the value binding holds tokens [token_begin, token_end) of B*S
  token_end: u32,
  level_info: array<vec4<u32>, 16>,  // per level: (height, width, first token, 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> value: array<value_t>;
@group(0) @binding(2) var<storage, read> sampling: array<sampling_t>;
@group(0) @binding(3) var<storage, read> attn: array<attn_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;

// Add into out instead of overwriting it (every value window after the first).
override ACCUMULATE: bool = false;
// Read channels two at a time (value_ld2): head_dim is even, so every pair starts at an even element.
override PAIRS: bool = false;

// The four bilinear corners of one sampling point: weights (bilinear x attention weight, zero for
// corners outside the level or the value window) and the value element of channel 0 of the head.
struct Taps {
  w: vec4<f32>,
  at: vec4<u32>,
}

struct Item {
  row: u32,     // global query row
  head: u32,
  first_channel: u32,
}

fn decode_item(item: u32) -> Item {
  let rh = item / p.groups;
  return Item(p.row_offset + rh / p.heads, rh % p.heads, (item % p.groups) * 32u);
}

fn corner(base: u32, size: vec2<i32>, xy: vec2<i32>, weight: f32, head: u32) -> Taps {
  let inside = all(xy >= vec2<i32>(0)) && all(xy < size);
  let c = clamp(xy, vec2<i32>(0), size - 1);
  let token = base + u32(c.y) * u32(size.x) + u32(c.x);
  let ok = inside && token >= p.token_begin && token < p.token_end;
  let at = (token - p.token_begin) * p.heads * p.head_dim + head * p.head_dim;
  return Taps(vec4<f32>(select(0.0, weight, ok), 0.0, 0.0, 0.0), vec4<u32>(select(0u, at, ok), 0u, 0u, 0u));
}

// Point j (level j / P) of an item; j past L*P gives zero weights.
fn point_taps(it: Item, j: u32) -> Taps {
  let lp = p.levels * p.points;
  let jc = min(j, lp - 1u);
  let info = p.level_info[jc / p.points];
  let k = ((it.row - p.row_offset) * p.heads + it.head) * lp + jc;
  let loc = sampling_ld2(2u * k);
  let aw = select(0.0, attn_ld(k), j < lp);
  let size = vec2<i32>(i32(info.y), i32(info.x));
  let sizef = vec2<f32>(size);
  // Clamped first so that the integer conversion is defined for any location; corners that far
  // out are zero anyway.
  let pix = clamp(loc * sizef - 0.5, vec2<f32>(-2.0), sizef + 1.0);
  let lo = floor(pix);
  let hi_w = pix - lo;
  let lo_w = 1.0 - hi_w;
  let xy = vec2<i32>(lo);
  let base = (it.row / p.queries) * p.value_tokens + info.z;
  let c00 = corner(base, size, xy, aw * lo_w.x * lo_w.y, it.head);
  let c10 = corner(base, size, xy + vec2<i32>(1, 0), aw * hi_w.x * lo_w.y, it.head);
  let c01 = corner(base, size, xy + vec2<i32>(0, 1), aw * lo_w.x * hi_w.y, it.head);
  let c11 = corner(base, size, xy + vec2<i32>(1, 1), aw * hi_w.x * hi_w.y, it.head);
  return Taps(vec4<f32>(c00.w.x, c10.w.x, c01.w.x, c11.w.x), vec4<u32>(c00.at.x, c10.at.x, c01.at.x, c11.at.x));
}

fn store(row: u32, head: u32, channel: u32, v: f32) {
  if (channel >= p.head_dim) { return; }
  let i = (row - p.row_offset) * p.heads * p.head_dim + head * p.head_dim + channel;
  if (ACCUMULATE) {
    out_st(i, out_ld(i) + v);
  } else {
    out_st(i, v);
  }
}

// ---- CPU variant: one subgroup of 8 lanes per item ----

var<private> acc: vec4<f32>;
// This lane's channels within the head: (c, c + 1, c + 16, c + 17), clamped into the head so that
// lanes past head_dim load harmlessly (they store nothing).
var<private> lane_ch: vec4<u32>;

fn lane_channels(at: u32) -> vec4<f32> {
  if (PAIRS) {
    return vec4<f32>(value_ld2(at + lane_ch.x), value_ld2(at + lane_ch.z));
  }
  return vec4<f32>(value_ld(at + lane_ch.x), value_ld(at + lane_ch.y), value_ld(at + lane_ch.z), value_ld(at + lane_ch.w));
}

fn take(w: vec4<f32>, at: vec4<u32>) {
  acc += w.x * lane_channels(at.x) + w.y * lane_channels(at.y) + w.z * lane_channels(at.z) + w.w * lane_channels(at.w);
}

@compute @workgroup_size(64)
fn ms_deform_attn_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
  let slot = (wg.x + wg.y * nwg.x) * 8u + lid / 8u;
  let lane = lid % 8u;
  // Tail subgroups redo the last item instead of returning: the broadcasts stay in uniform control flow.
  let it = decode_item(min(slot, p.items - 1u));
  let c = it.first_channel + 2u * lane;
  let last = select(p.head_dim - 1u, p.head_dim - 2u, PAIRS);
  let first_pair = min(vec2<u32>(c, c + 16u), vec2<u32>(last));
  lane_ch = select(min(vec4<u32>(c, c + 1u, c + 16u, c + 17u), vec4<u32>(p.head_dim - 1u)),
                   vec4<u32>(first_pair.x, first_pair.x + 1u, first_pair.y, first_pair.y + 1u), PAIRS);
  acc = vec4<f32>(0.0);
  let lp = p.levels * p.points;
  for (var j0 = 0u; j0 < lp; j0 += 8u) {
    let t = point_taps(it, j0 + lane);
    take(subgroupBroadcast(t.w, 0u), subgroupBroadcast(t.at, 0u));
    take(subgroupBroadcast(t.w, 1u), subgroupBroadcast(t.at, 1u));
    take(subgroupBroadcast(t.w, 2u), subgroupBroadcast(t.at, 2u));
    take(subgroupBroadcast(t.w, 3u), subgroupBroadcast(t.at, 3u));
    take(subgroupBroadcast(t.w, 4u), subgroupBroadcast(t.at, 4u));
    take(subgroupBroadcast(t.w, 5u), subgroupBroadcast(t.at, 5u));
    take(subgroupBroadcast(t.w, 6u), subgroupBroadcast(t.at, 6u));
    take(subgroupBroadcast(t.w, 7u), subgroupBroadcast(t.at, 7u));
  }
  if (slot < p.items) {
    store(it.row, it.head, c, acc.x);
    store(it.row, it.head, c + 1u, acc.y);
    store(it.row, it.head, c + 16u, acc.z);
    store(it.row, it.head, c + 17u, acc.w);
  }
}

// ---- GPU variant: 32 threads per item, corners staged in workgroup memory ----

var<workgroup> staged_w: array<vec4<f32>, 256>;
var<workgroup> staged_at: array<vec4<u32>, 256>;

@compute @workgroup_size(256)
fn ms_deform_attn_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
  let s = lid / 32u;
  let t = lid % 32u;
  let slot = (wg.x + wg.y * nwg.x) * 8u + s;
  let it = decode_item(min(slot, p.items - 1u));
  let c = it.first_channel + t;
  let ch = min(c, p.head_dim - 1u);
  var total = 0.0;
  let lp = p.levels * p.points;
  for (var j0 = 0u; j0 < lp; j0 += 32u) {
    let mine = point_taps(it, j0 + t);
    workgroupBarrier(); // the previous batch of points has been consumed
    staged_w[lid] = mine.w;
    staged_at[lid] = mine.at;
    workgroupBarrier();
    let n = min(32u, lp - j0);
    for (var k = 0u; k < n; k++) {
      let w = staged_w[s * 32u + k];
      let at = staged_at[s * 32u + k] + vec4<u32>(ch);
      total += w.x * value_ld(at.x) + w.y * value_ld(at.y) + w.z * value_ld(at.z) + w.w * value_ld(at.w);
    }
  }
  if (slot < p.items) {
    store(it.row, it.head, c, total);
  }
}
