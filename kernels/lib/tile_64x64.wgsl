// The workgroup-memory tile of the GPU-profile matrix kernels (matmul_tiled, conv_tiled): a
// 256-thread workgroup (16 x 16) computes a 64x64 block of the output, each thread a 4x4 block
// kept in tile_acc. The kernel fills tile_a ([k][row]) and tile_b ([k][column]) with 16 k steps
// of its operands, then calls tile_accumulate between two barriers.

var<workgroup> tile_a: array<array<f32, 64>, 16>;
var<workgroup> tile_b: array<array<f32, 64>, 16>;
var<private> tile_acc: array<vec4<f32>, 4>;

fn tile_accumulate(tid: vec3<u32>) {
  for (var kk = 0u; kk < 16u; kk++) {
    let av = vec4<f32>(tile_a[kk][tid.y * 4u], tile_a[kk][tid.y * 4u + 1u], tile_a[kk][tid.y * 4u + 2u], tile_a[kk][tid.y * 4u + 3u]);
    let bv = vec4<f32>(tile_b[kk][tid.x * 4u], tile_b[kk][tid.x * 4u + 1u], tile_b[kk][tid.x * 4u + 2u], tile_b[kk][tid.x * 4u + 3u]);
    tile_acc[0] += av.x * bv;
    tile_acc[1] += av.y * bv;
    tile_acc[2] += av.z * bv;
    tile_acc[3] += av.w * bv;
  }
}
