// The matmul's operands a and b bound element by element (any strides).
@group(0) @binding(1) var<storage, read> a: array<a_t>;
@group(0) @binding(2) var<storage, read> b: array<b_t>;

fn a_at(batch: u32, m: u32, k: u32) -> f32 {
  return a_ld(batch * p.a_batch_stride + m * p.a_row_stride + k);
}

fn b_at(batch: u32, k: u32, n: u32) -> f32 {
  return b_ld(batch * p.b_batch_stride + k * p.b_k_stride + n * p.b_n_stride);
}
