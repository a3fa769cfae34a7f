// Strided copies: one kernel behind cast, contiguous, permute/transpose, slice and concat.
// Walks an iteration shape in row-major order; element i is read at src_offset + sum(coord * src_strides)
// and written at dst_offset + sum(coord * dst_strides).
//   copy:       converts through f32 (any float/int dtype pair; exact for f16 <-> f32)
//   copy_words: moves raw 32-bit words, exact for same-dtype f32/i32/u32 (integers above 2^24 included)

struct Params {
  n: u32,
  src_offset: u32,
  dst_offset: u32,
  shape: array<vec4<u32>, 2>,
  src_strides: array<vec4<u32>, 2>,
  dst_strides: array<vec4<u32>, 2>,
  divisors: array<vec4<u32>, 4>,   // each extent's (multiplier, shifts): lib/divide.wgsl
}

#include "lib/divide.wgsl"

// Dimensions of the iteration shape: a pipeline constant, so the index loop unrolls and reads the
// parameter arrays at constant offsets (lavapipe loads a uniform at a varying offset lane by lane).
override RANK: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> dst: array<dst_t>;
@group(0) @binding(3) var<storage, read> src_words: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst_words: array<u32>;

// (source index, destination index) of the i-th element of the iteration shape.
fn locate(i: u32) -> vec2<u32> {
  var rest = i;
  var at = vec2<u32>(p.src_offset, p.dst_offset);
  for (var d = i32(RANK) - 1; d >= 0; d--) {
    let k = u32(d);
    let extent = p.shape[k / 4u][k % 4u];
    let next = divide(rest, divisor_of(p.divisors[k / 2u], k));
    at += (rest - next * extent) * vec2<u32>(p.src_strides[k / 4u][k % 4u], p.dst_strides[k / 4u][k % 4u]);
    rest = next;
  }
  return at;
}

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= p.n) { return; }
  let at = locate(i);
  dst_st(at.y, src_ld(at.x));
}

@compute @workgroup_size(64)
fn copy_words(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= p.n) { return; }
  let at = locate(i);
  dst_words[at.y] = src_words[at.x];
}
