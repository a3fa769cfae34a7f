// Spatial remapping of NCHW planes, one output element per invocation (`remap`):
//   y[plane, oy, ox] = x[plane, fy(oy), fx(ox)]   with f(o) = (o - before) / factor (integer division)
// where out-of-range source coordinates follow MODE: 0 constant `value`, 1 reflect (PyTorch's
// 'reflect', edge not repeated), 2 replicate. factor > 1 with before = 0 is nearest upsampling by
// an integer factor; factor 1 is padding (negative `before` crops).
// `max_pool` reuses the same parameters: y[plane, oy, ox] is the largest x[plane, y, x] over the
// factor x factor window at (oy, ox) * STRIDE - before; the padding is never the maximum
// (F.max_pool2d's implicit -inf).
override MODE: u32 = 0u;
override STRIDE: u32 = 1u;

struct Params {
  count: u32,       // output elements in this dispatch
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  before_y: i32,
  before_x: i32,
  factor: u32,
  value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;

// Source coordinate for output coordinate o along an axis of `size`; -1 when MODE is constant and o falls outside.
fn source(o: u32, before: i32, size: u32) -> i32 {
  let n = i32(size);
  var i = i32(o) - before;
  if (i >= 0) { i = i / i32(p.factor); }
  if (i >= 0 && i < n) { return i; }
  if (MODE == 2u) { return clamp(i, 0, n - 1); }
  if (MODE == 1u) {
    // Reflect about the edge pixels: period 2n - 2 (a single pixel reflects onto itself).
    let period = max(2 * n - 2, 1);
    var r = abs(i) % period;
    if (r >= n) { r = period - r; }
    return r;
  }
  return -1;
}

// The output element this invocation writes: its flat index (>= p.count: none), its plane, row and column.
struct Element { i: u32, plane: u32, oy: u32, ox: u32 }

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Element {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  let rest = i % (p.oh * p.ow);
  return Element(i, i / (p.oh * p.ow), rest / p.ow, rest % p.ow);
}

@compute @workgroup_size(64)
fn remap(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let e = element(wg, nwg, lid);
  if (e.i >= p.count) { return; }
  let sy = source(e.oy, p.before_y, p.h);
  let sx = source(e.ox, p.before_x, p.w);
  let inside = sy >= 0 && sx >= 0;
  let at = e.plane * p.h * p.w + u32(max(sy, 0)) * p.w + u32(max(sx, 0));
  y_st(e.i, select(p.value, x_ld(select(0u, at, inside)), inside));
}

@compute @workgroup_size(64)
fn max_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let e = element(wg, nwg, lid);
  if (e.i >= p.count) { return; }
  let y0 = i32(e.oy * STRIDE) - p.before_y;
  let x0 = i32(e.ox * STRIDE) - p.before_x;
  let k = i32(p.factor);
  // The window always holds an input element (padding <= kernel / 2): start from its first one.
  let first_y = max(0, -y0);
  let first_x = max(0, -x0);
  let base = e.plane * p.h * p.w;
  var best = x_ld(base + u32(y0 + first_y) * p.w + u32(x0 + first_x));
  for (var dy = first_y; dy < min(k, i32(p.h) - y0); dy++) {
    let row = base + u32(y0 + dy) * p.w;
    for (var dx = first_x; dx < min(k, i32(p.w) - x0); dx++) {
      best = max(best, x_ld(row + u32(x0 + dx)));
    }
  }
  y_st(e.i, best);
}
