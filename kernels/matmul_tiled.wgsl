// Matmul for GPUs: the classic shared-memory tiling. A 256-thread workgroup computes a 64x64 tile of
// C, each thread a 4x4 block; tiles of A (64x16) and B (16x64) are staged in workgroup memory.
// (On lavapipe its barriers make it slower than matmul_subgroup.wgsl, which src/ops/matmul.ts picks there.)
#include "lib/matmul_common.wgsl"
#include "lib/matmul_operands_scalar.wgsl"

// B is contiguous along k (Linear weights): stage it k-fastest so neighbouring threads read neighbouring words.
override B_K_CONTIGUOUS: bool = false;

#include "lib/tile_64x64.wgsl"

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) tid: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let batch = wg.z;
  let m0 = wg.y * 64u;
  let n0 = wg.x * 64u;
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let idx = lid + i * 256u;
      let am = idx / 16u;
      let ak = idx % 16u;
      let in_a = m0 + am < p.M && k0 + ak < p.K;
      tile_a[ak][am] = select(0.0, a_at(batch, min(m0 + am, p.M - 1u), min(k0 + ak, p.K - 1u)), in_a);
      var bk = idx / 64u;
      var bn = idx % 64u;
      if (B_K_CONTIGUOUS) {
        bk = idx % 16u;
        bn = idx / 16u;
      }
      let in_b = k0 + bk < p.K && n0 + bn < p.N;
      tile_b[bk][bn] = select(0.0, b_at(batch, min(k0 + bk, p.K - 1u), min(n0 + bn, p.N - 1u)), in_b);
    }
    workgroupBarrier();
    tile_accumulate(tid);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    store_c4(batch, m0 + tid.y * 4u + i, n0 + tid.x * 4u, tile_acc[i]);
  }
}
