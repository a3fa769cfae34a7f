// Shared by the multi-scale deformable attention kernels (ms_deform_attn.wgsl, ms_deform_attn_shared.wgsl):
// parameters, the non-value bindings, and the bilinear corners of one sampling point.
//
// out[row, h*Dh + c] = sum over levels l and points k of attn[l, k] * bilinear(value_l, loc[l, k])[h, c],
// sampled like F.grid_sample(align_corners=False, padding_mode='zeros'): pixel = loc * size - 0.5,
// and corners outside the level contribute zero.
//
// Layouts: value [B, S, H, Dh] (level l's pixels are tokens start_l .. start_l + H_l*W_l, row-major),
// sampling [B, Lq, H, L, P, 2] (x, y), attn [B, Lq, H, L, P], out [B, Lq, H*Dh].
// An "item" is (query row, head, group of 32 channels), numbered with the group fastest.
//
// Bindings may be windows of the whole tensors: sampling/attn/out cover query rows from
// p.row_offset, value covers tokens [p.token_begin, p.token_end) of the flattened B*S. Corners
// outside the value window are skipped, so a value too big for one binding is processed in several
// dispatches that add into out (ACCUMULATE).

struct Params {
  items: u32,          // items in this dispatch
  heads: u32,
  head_dim: u32,
  groups: u32,         // channel groups per head: ceil(head_dim / 32)
  levels: u32,
  points: u32,
  queries: u32,        // Lq: query row r belongs to batch r / Lq
  value_tokens: u32,   // S
  row_offset: u32,     // global query row of this dispatch's first row
  token_begin: u32,    // the value binding holds tokens [token_begin, token_end) of B*S
  token_end: u32,
  level_info: array<vec4<u32>, 16>,  // per level: (height, width, first token, 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> sampling: array<sampling_t>;
@group(0) @binding(3) var<storage, read> attn: array<attn_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;

// Add into out instead of overwriting it (every value window after the first).
override ACCUMULATE: bool = false;

// The four bilinear corners of a sampling point: weights (bilinear x attention weight; zero for a
// corner outside the level or the value window) and the value element of the head's channel 0.
struct Taps {
  w: vec4<f32>,
  at: vec4<u32>,
}

struct Item {
  row: u32,            // global query row
  head: u32,
  first_channel: u32,  // of the item's channel group
}

fn decode_item(item: u32) -> Item {
  let rh = item / p.groups;
  return Item(p.row_offset + rh / p.heads, rh % p.heads, (item % p.groups) * 32u);
}

// Weight and element of one corner (x, y) of a level whose token (0, 0) is `base`.
fn corner(base: u32, size: vec2<i32>, xy: vec2<i32>, weight: f32, head: u32) -> vec2<u32> {
  let inside = all(xy >= vec2<i32>(0)) && all(xy < size);
  let c = clamp(xy, vec2<i32>(0), size - 1);
  let token = base + u32(c.y) * u32(size.x) + u32(c.x);
  let ok = inside && token >= p.token_begin && token < p.token_end;
  let at = (token - p.token_begin) * p.heads * p.head_dim + head * p.head_dim;
  return vec2<u32>(bitcast<u32>(select(0.0, weight, ok)), select(0u, at, ok));
}

// Point j of an item (level j / P); j past L*P gives zero weights.
fn point_taps(it: Item, j: u32) -> Taps {
  let lp = p.levels * p.points;
  let jc = min(j, lp - 1u);
  let info = p.level_info[jc / p.points];
  let k = ((it.row - p.row_offset) * p.heads + it.head) * lp + jc;
  let loc = sampling_ld2(2u * k);
  let aw = select(0.0, attn_ld(k), j < lp);
  let size = vec2<i32>(i32(info.y), i32(info.x));
  let sizef = vec2<f32>(size);
  // Clamped so that the integer conversion is defined for any location; corners that far out are zero anyway.
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
  return Taps(bitcast<vec4<f32>>(vec4<u32>(c00.x, c10.x, c01.x, c11.x)), vec4<u32>(c00.y, c10.y, c01.y, c11.y));
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
