// What every matmul variant shares: the parameter block, the bindings but a and b (each kernel
// includes lib/matmul_operands_scalar.wgsl or _quads.wgsl), strided element access and
// the epilogue (bias, activation, residual, store):
//   C[b, m, n] = act(sum_k A[b, m, k] * B[b, k, n] + bias[n]) + residual[b, m, n].
// B is addressed by strides, so PyTorch Linear weights [N, K] (B = W^T) need no transpose:
// b_k_stride = 1, b_n_stride = K. The output may be a column block of a wider matrix
// (c_col_offset, c_row_stride), which is how weights too big for one binding are split along N.
#include "lib/activation.wgsl"

struct Params {
  M: u32,
  N: u32,
  K: u32,
  a_batch_stride: u32,
  a_row_stride: u32,
  b_batch_stride: u32,
  b_k_stride: u32,
  b_n_stride: u32,
  c_batch_stride: u32,
  c_row_stride: u32,
  c_col_offset: u32,
  eps: f32,          // GEMV with a fused RMSNorm (kernels/matmul_gemv.wgsl); unused elsewhere
}

override ACT: u32 = 0u;
override HAS_BIAS: bool = false;
override HAS_RESIDUAL: bool = false;   // the residual is laid out like C (same strides)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;
@group(0) @binding(4) var<storage, read_write> c: array<c_t>;
@group(0) @binding(5) var<storage, read> residual: array<residual_t>;

// a and b by (batch, row, k) and (batch, k, column): element accessors, whichever way a kernel binds them.
fn a_at(batch: u32, m: u32, k: u32) -> f32 {
  return a_ld(batch * p.a_batch_stride + m * p.a_row_stride + k);
}

fn b_at(batch: u32, k: u32, n: u32) -> f32 {
  return b_ld(batch * p.b_batch_stride + k * p.b_k_stride + n * p.b_n_stride);
}

// Stores one output element if (m, n) is inside the matrix.
fn store_c(batch: u32, m: u32, n: u32, acc: f32) {
  if (m >= p.M || n >= p.N) { return; }
  var v = acc;
  if (HAS_BIAS) { v += bias_ld(n); }
  v = activate(v, ACT);
  let at = batch * p.c_batch_stride + m * p.c_row_stride + p.c_col_offset + n;
  if (HAS_RESIDUAL) { v += residual_ld(at); }
  c_st(at, v);
}

fn store_c4(batch: u32, m: u32, n: u32, acc: vec4<f32>) {
  store_c(batch, m, n, acc.x);
  store_c(batch, m, n + 1u, acc.y);
  store_c(batch, m, n + 2u, acc.z);
  store_c(batch, m, n + 3u, acc.w);
}
