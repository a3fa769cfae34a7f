// Elementwise kernels: unary y = act(alpha * x + beta); binary y = act(a op b) with
// broadcasting through per-input strides (stride 0 along broadcast dimensions); and gated
// y = act(x[.., i]) * x[.., half + i] over rows of width 2 * half (SwiGLU, GeGLU).
#include "lib/activation.wgsl"

const MAX_RANK: u32 = 8u;

struct Params {
  n: u32,          // output elements
  rank: u32,       // gated: the half width
  alpha: f32,
  beta: f32,
  out_shape: array<vec4<u32>, 2>,
  a_strides: array<vec4<u32>, 2>,
  b_strides: array<vec4<u32>, 2>,
  divisors: array<vec4<u32>, 4>,   // broadcast path: each extent's (multiplier, shifts), lib/divide.wgsl
}

#include "lib/divide.wgsl"

override OP: u32 = 0u;              // 0 add, 1 sub, 2 mul, 3 div
override ACT: u32 = 0u;             // activation code, see lib/activation.wgsl
override BROADCAST: bool = false;   // false: a, b and y share one contiguous shape
// Broadcast path: dimensions in out_shape / strides. A pipeline constant, so the index loop unrolls
// and reads the parameter arrays at constant offsets (lavapipe loads a uniform at a varying offset
// lane by lane).
override RANK: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<a_t>;
@group(0) @binding(2) var<storage, read> b: array<b_t>;
@group(0) @binding(3) var<storage, read> x: array<x_t>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;

// Each workgroup covers PER_GROUP consecutive elements, its 64 lanes interleaved (lane l takes
// l, l + 64, ...): on lavapipe a workgroup costs far more to start than one element to process.
const PER_GROUP: u32 = 1024u;

fn group_start(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wg.x + wg.y * nwg.x) * PER_GROUP;
}

fn combine(u: f32, v: f32) -> f32 {
  switch OP {
    case 1u: { return u - v; }
    case 2u: { return u * v; }
    case 3u: { return u / v; }
    default: { return u + v; }
  }
}

@compute @workgroup_size(64)
fn unary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let first = group_start(wg, nwg);
  for (var i = first + lid; i < min(first + PER_GROUP, p.n); i += 64u) {
    y_st(i, activate(p.alpha * x_ld(i) + p.beta, ACT));
  }
}

fn binary_one(i: u32) {
  var ia = i;
  var ib = i;
  if (BROADCAST) {
    ia = 0u;
    ib = 0u;
    var rest = i;
    for (var d = i32(RANK) - 1; d >= 0; d--) {
      let k = u32(d);
      let extent = p.out_shape[k / 4u][k % 4u];
      let next = divide(rest, divisor_of(p.divisors[k / 2u], k));
      let coord = rest - next * extent;
      rest = next;
      ia += coord * p.a_strides[k / 4u][k % 4u];
      ib += coord * p.b_strides[k / 4u][k % 4u];
    }
  }
  y_st(i, activate(combine(a_ld(ia), b_ld(ib)), ACT));
}

@compute @workgroup_size(64)
fn binary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let first = group_start(wg, nwg);
  for (var i = first + lid; i < min(first + PER_GROUP, p.n); i += 64u) { binary_one(i); }
}

@compute @workgroup_size(64)
fn gated(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let half = p.rank;
  let first = group_start(wg, nwg);
  for (var i = first + lid; i < min(first + PER_GROUP, p.n); i += 64u) {
    let at = (i / half) * 2u * half + i % half;
    y_st(i, activate(x_ld(at), ACT) * x_ld(at + half));
  }
}
