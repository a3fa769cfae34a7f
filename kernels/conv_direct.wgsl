// conv2d, one output element per invocation: for grouped convolutions with few channels per group
// (depthwise, GroupNorm-style groups), where GEMM tiles over output channels would sit mostly idle.
// Neighbouring invocations compute neighbouring output pixels of one channel, so their input reads
// are neighbours too. No workgroup memory: suits CPU adapters and GPUs alike.
#include "lib/conv_common.wgsl"

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  // Grid: (pixel tiles folded into x and y, groups * output channels per group in z).
  let pixel = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (pixel >= p.pixels) { return; }
  let g = wg.z / p.cout_g;
  let c = wg.z % p.cout_g;
  let o = origin(pixel);
  var plane = o.image + g * p.cin_g * p.h * p.w;
  var wi = weight_row(g, c);
  var acc = 0.0;
  for (var ci = 0u; ci < p.cin_g; ci++) {
    for (var ky = 0u; ky < KH; ky++) {
      let iy = o.iy + i32(ky) * p.dil_y;
      for (var kx = 0u; kx < KW; kx++) {
        acc += tap(plane, iy, o.ix + i32(kx) * p.dil_x) * weight_ld(wi);
        wi++;
      }
    }
    plane += p.h * p.w;
  }
  store_y(pixel, g, c, acc);
}
