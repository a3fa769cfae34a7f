// Thresholding into packed bits: for each plane (e.g. one mask) of `plane` = h * w elements,
// words[plane, k] holds the elements 32k .. 32k + 31 of that plane (bit j = element 32k + j, least
// significant first) as (x > threshold). Each plane starts at a fresh word. With COLUMNS the
// elements are taken in column-major order (pycocotools' mask layout): element e is x[e % h, e / h].

struct Params {
  count: u32,       // words in this dispatch
  words: u32,       // words per plane, ceil(plane / 32)
  plane: u32,
  h: u32,
  w: u32,
  threshold: f32,
}

override COLUMNS: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;

@compute @workgroup_size(64)
fn threshold_bits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.count) { return; }
  let base = (i / p.words) * p.plane;
  let first = (i % p.words) * 32u;
  let n = min(32u, p.plane - first);
  var word = 0u;
  for (var j = 0u; j < n; j++) {
    let e = first + j;
    let src_i = select(e, (e % p.h) * p.w + e / p.h, COLUMNS);
    word |= select(0u, 1u << j, x_ld(base + src_i) > p.threshold);
  }
  bits[i] = word;
}
