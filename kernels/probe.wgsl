// Substrate probes for the benchmark's ceilings.
//   fma:  many independent multiply-add chains per invocation, no memory traffic: peak arithmetic.
//   copy: one load and one store per element: achievable memory bandwidth through storage buffers.
//   read: loads only (summed, one store per invocation): the ceiling for weight streaming (GEMV).

struct Params {
  iterations: u32,
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;

// 8 independent vec4 chains: 64 flops per iteration (counted as multiply + add).
@compute @workgroup_size(64)
fn fma(@builtin(global_invocation_id) gid: vec3<u32>) {
  let seed = f32(gid.x) * 1e-7;
  var c0 = vec4<f32>(seed, seed + 1.0, seed + 2.0, seed + 3.0);
  var c1 = c0 + 0.1; var c2 = c0 + 0.2; var c3 = c0 + 0.3;
  var c4 = c0 + 0.4; var c5 = c0 + 0.5; var c6 = c0 + 0.6; var c7 = c0 + 0.7;
  let m = vec4<f32>(0.9999);
  let k = vec4<f32>(1e-4);
  for (var i = 0u; i < p.iterations; i++) {
    c0 = c0 * m + k; c1 = c1 * m + k; c2 = c2 * m + k; c3 = c3 * m + k;
    c4 = c4 * m + k; c5 = c5 * m + k; c6 = c6 * m + k; c7 = c7 * m + k;
  }
  let total = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
  sink[gid.x] = total.x + total.y + total.z + total.w;
}

// Each workgroup copies a block of 64 x 32 vec4s, lanes interleaved: as much work per
// invocation as the best kernels do, so the probe measures memory rather than dispatch overhead.
@compute @workgroup_size(64)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * 64u * 32u;
  for (var j = 0u; j < 32u; j++) {
    let i = first + j * 64u + lid;
    if (i < p.n) { dst[i] = src[i]; }
  }
}

@compute @workgroup_size(64)
fn read_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * 64u * 32u;
  var total = vec4<f32>(0.0);
  for (var j = 0u; j < 32u; j++) {
    let i = first + j * 64u + lid;
    if (i < p.n) { total += src[i]; }
  }
  sink[(wg.x + wg.y * nwg.x) * 64u + lid] = total.x + total.y + total.z + total.w;
}
