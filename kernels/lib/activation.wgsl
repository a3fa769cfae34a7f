// Activation functions, selected by a pipeline-override constant so the switch folds away.
// Parameters are named v: wgsl_reflect takes any identifier that matches a binding's name
// (x, y, a, b, ...) as a use of that binding. Shared by the elementwise and matmul kernels (fused activations). Codes match src/ops/support/activation.ts.

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_GELU: u32 = 2u;        // exact form, 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's default)
const ACT_GELU_TANH: u32 = 3u;   // tanh approximation (approximate='tanh')
const ACT_QUICK_GELU: u32 = 4u;  // x sigmoid(1.702 x), CLIP's
const ACT_SILU: u32 = 5u;
const ACT_SIGMOID: u32 = 6u;
const ACT_RSQRT: u32 = 7u;       // 1 / sqrt(v): with unary's beta, a frozen batch norm's 1 / sqrt(var + eps)

fn sigmoid_f32(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}

// erf via the complementary error function's Chebyshev fit (Numerical Recipes erfcc):
// fractional error below 1.2e-7 everywhere, no special cases, exp never overflows.
fn erf_f32(v: f32) -> f32 {
  let z = abs(v);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
             t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = 1.0 - t * exp(poly);
  return select(-r, r, v >= 0.0);
}

fn activate(v: f32, act: u32) -> f32 {
  switch act {
    case ACT_RELU: { return max(v, 0.0); }
    case ACT_GELU: { return 0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752)); }
    case ACT_GELU_TANH: {
      // tanh of a clamped argument: some drivers compute tanh through exp and overflow past ~44.
      let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
      return 0.5 * v * (1.0 + tanh(u));
    }
    case ACT_QUICK_GELU: { return v * sigmoid_f32(1.702 * v); }
    case ACT_SILU: { return v * sigmoid_f32(v); }
    case ACT_SIGMOID: { return sigmoid_f32(v); }
    case ACT_RSQRT: { return inverseSqrt(v); }
    default: { return v; }
  }
}
