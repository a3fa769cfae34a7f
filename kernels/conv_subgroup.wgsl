// conv2d as an implicit GEMM for CPU adapters (lavapipe): no workgroup memory, no barriers.
// The scheme of matmul_subgroup.wgsl with rows = output pixels and columns = output channels:
// each 8-lane subgroup computes 8 pixels x 32 channels; lane l gathers the input tap of pixel l
// (one bounds-checked load, zero outside the image) and shares it through subgroupBroadcast, and
// loads the weights of its own 4 channels. Gathering on the pixel side keeps the padding logic to
// one load per lane per k. KH and KW are pipeline constants, so the tap loops unroll.
// 8 subgroups per workgroup, arranged SG_ROWS (pixels) x 8 / SG_ROWS (channels).
#include "lib/conv_common.wgsl"

override SG_ROWS: u32 = 2u;

#include "lib/subgroup_rank1.wgsl"

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let sid = lid / 8u;
  let lane = lid % 8u;
  let tile = wg.x + wg.y * nwg.x;
  if (tile * 8u * SG_ROWS >= p.pixels) { return; }  // the folded grid's tail: whole workgroups
  let g = wg.z / p.col_tiles;
  let col_tile = wg.z % p.col_tiles;
  let pixel0 = tile * 8u * SG_ROWS + (sid % SG_ROWS) * 8u;
  let col = col_tile * 32u * (8u / SG_ROWS) + (sid / SG_ROWS) * 32u + lane * 4u;

  // Clamp instead of branching: out-of-range pixels and channels compute values never stored.
  let o = origin(min(pixel0 + lane, p.pixels - 1u));
  var w0 = weight_row(g, min(col, p.cout_g - 1u));
  var w1 = weight_row(g, min(col + 1u, p.cout_g - 1u));
  var w2 = weight_row(g, min(col + 2u, p.cout_g - 1u));
  var w3 = weight_row(g, min(col + 3u, p.cout_g - 1u));
  var plane = o.image + g * p.cin_g * p.h * p.w;
  for (var ci = 0u; ci < p.cin_g; ci++) {
    for (var ky = 0u; ky < KH; ky++) {
      let iy = o.iy + i32(ky) * p.dil_y;
      for (var kx = 0u; kx < KW; kx++) {
        let av = tap(plane, iy, o.ix + i32(kx) * p.dil_x);
        rank1(av, vec4<f32>(weight_ld(w0), weight_ld(w1), weight_ld(w2), weight_ld(w3)));
        w0++;
        w1++;
        w2++;
        w3++;
      }
    }
    plane += p.h * p.w;
  }

  store_y4(pixel0, g, col, acc0);
  store_y4(pixel0 + 1u, g, col, acc1);
  store_y4(pixel0 + 2u, g, col, acc2);
  store_y4(pixel0 + 3u, g, col, acc3);
  store_y4(pixel0 + 4u, g, col, acc4);
  store_y4(pixel0 + 5u, g, col, acc5);
  store_y4(pixel0 + 6u, g, col, acc6);
  store_y4(pixel0 + 7u, g, col, acc7);
}
