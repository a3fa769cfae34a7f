/** Activation codes shared with kernels/lib/activation.wgsl (fused into the elementwise, matmul, conv, norm2d and gemv-chain kernels). */
export const ACTIVATIONS = {
  none: 0,
  relu: 1,
  gelu: 2,
  gelu_tanh: 3,
  quick_gelu: 4,
  silu: 5,
  sigmoid: 6,
  /** 1 / sqrt(x): unary(v, 'rsqrt', { beta: eps }) is a batch norm's 1 / sqrt(var + eps). */
  rsqrt: 7,
} as const;

export type Activation = keyof typeof ACTIVATIONS;

export function activationCode(op: string, act: Activation | undefined): number {
  const code = ACTIVATIONS[act ?? 'none'];
  if (code === undefined) throw new RangeError(`${op}: unknown activation '${act}' (use ${Object.keys(ACTIVATIONS).join(', ')})`);
  return code;
}
