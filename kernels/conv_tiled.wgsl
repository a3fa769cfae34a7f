// conv2d as an implicit GEMM for GPUs: the shared-memory tiling of matmul_tiled.wgsl. A 256-thread
// workgroup computes 64 output pixels x 64 output channels, each thread 4 x 4; per step of 16 k
// the input taps (gathered with zero padding, im2col on the fly) and the weights are staged in
// workgroup memory. Each thread gathers for one fixed pixel, so its receptive-field origin is
// computed once.
#include "lib/conv_common.wgsl"

#include "lib/tile_64x64.wgsl"

@compute @workgroup_size(16, 16)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) tid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tile = wg.x + wg.y * nwg.x;
  if (tile * 64u >= p.pixels) { return; }
  let g = wg.z / p.col_tiles;
  let m0 = tile * 64u;
  let n0 = (wg.z % p.col_tiles) * 64u;
  let taps = KH * KW;
  let kk = p.cin_g * taps;

  // Gather role: pixel lid % 64 for k rows lid / 64 + 4 i. Weight role: channel lid / 4, k (lid % 4) * 4 + i.
  let gather_pixel = m0 + lid % 64u;
  let o = origin(min(gather_pixel, p.pixels - 1u));
  let planes = o.image + g * p.cin_g * p.h * p.w;
  let wc = n0 + lid / 4u;
  let wrow = weight_row(g, min(wc, p.cout_g - 1u));

  for (var k0 = 0u; k0 < kk; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let xk = lid / 64u + 4u * i;
      let k = k0 + xk;
      let ci = k / taps;
      let t = k % taps;
      var v = tap(planes + ci * p.h * p.w, o.iy + i32(t / KW) * p.dil_y, o.ix + i32(t % KW) * p.dil_x);
      tile_a[xk][lid % 64u] = select(0.0, v, k < kk && gather_pixel < p.pixels);
      let wk = (lid % 4u) * 4u + i;
      let in_w = k0 + wk < kk && wc < p.cout_g;
      tile_b[wk][lid / 4u] = select(0.0, weight_ld(wrow + min(k0 + wk, kk - 1u)), in_w);
    }
    workgroupBarrier();
    tile_accumulate(tid);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    store_y4(m0 + tid.y * 4u + i, g, n0 + tid.x * 4u, tile_acc[i]);
  }
}
