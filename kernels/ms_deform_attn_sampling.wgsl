// Sampling locations of multi-scale deformable attention from reference points and predicted
// offsets, as Hugging Face's GroundingDino / Deformable-DETR compute them:
//   2-d reference points (x, y):        loc = ref + offset / (W_l, H_l)     (offsets in pixels of level l)
//   4-d reference boxes (cx, cy, w, h):  loc = ref.xy + offset / P * ref.wh * 0.5
// reference [rows, L, 2 or 4], offsets [rows, H, L, P, 2], locations [rows, H, L, P, 2]; one
// invocation per (row, head, level, point).

struct Params {
  n: u32,        // points in this dispatch: rows * H * L * P
  heads: u32,
  levels: u32,
  points: u32,
  level_info: array<vec4<u32>, 16>,  // per level: (height, width, first token, 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> reference: array<reference_t>;
@group(0) @binding(2) var<storage, read> offsets: array<offsets_t>;
@group(0) @binding(3) var<storage, read_write> locations: array<locations_t>;

override BOXES: bool = false;

@compute @workgroup_size(64)
fn sampling_locations(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.n) { return; }
  let per_row = p.heads * p.levels * p.points;
  let row = i / per_row;
  let level = (i % per_row) / p.points % p.levels;
  let shift = offsets_ld2(2u * i);
  var loc: vec2<f32>;
  if (BOXES) {
    let r = (row * p.levels + level) * 4u;
    let wh = vec2<f32>(reference_ld(r + 2u), reference_ld(r + 3u));
    loc = vec2<f32>(reference_ld(r), reference_ld(r + 1u)) + shift / f32(p.points) * wh * 0.5;
  } else {
    let r = (row * p.levels + level) * 2u;
    let info = p.level_info[level];
    loc = vec2<f32>(reference_ld(r), reference_ld(r + 1u)) + shift / vec2<f32>(f32(info.y), f32(info.x));
  }
  locations_st(2u * i, loc.x);
  locations_st(2u * i + 1u, loc.y);
}
