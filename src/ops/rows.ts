/**
 * Row-wise ops over the last dimension: softmax, layer norm, RMS norm, argmax (kernels/rows_softmax.wgsl,
 * rows_norm.wgsl, rows_argmax.wgsl). One workgroup per row; statistics in f32 whatever the storage dtype.
 */
import type { DType } from '../engine/dtype.js';
import { DTYPE_BYTES } from '../engine/dtype.js';
import type { KernelSpec, Params } from '../engine/pipeline.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './support/chunks.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, expectRank, FLOAT_DTYPES, rowsAndWidth } from './support/shape.js';
import { rowKernelConfig } from './support/variants.js';

/**
 * Runs a row kernel: `x` and `out` are split into row ranges that fit a binding, `whole` tensors
 * (weights) are bound entire.
 */
function runRows(
  op: string,
  spec: Omit<KernelSpec, 'includes' | 'overrides'> & { overrides?: Record<string, number | boolean> },
  x: Tensor,
  out: Tensor,
  outName: string,
  whole: Record<string, Tensor>,
  params: Params,
): void {
  const engine = x.engine;
  const { rows, width } = rowsAndWidth(x);
  const outWidth = rows === 0 ? 0 : out.size / rows;
  const config = rowKernelConfig(engine);
  const full: KernelSpec = { ...spec, includes: config.includes, overrides: { ...config.overrides, ...spec.overrides } };
  const x2 = x.reshape([rows, width]);
  const out2 = out.reshape([rows, outWidth]);
  const chunks = rowChunks(engine, op, rows, [width * DTYPE_BYTES[x.dtype], outWidth * DTYPE_BYTES[out.dtype]]);
  for (const [r0, r1] of chunks) {
    const xs = x2.rows(r0, r1);
    const os = out2.rows(r0, r1);
    engine.run(full, { ...whole, x: xs, [outName]: os }, { rows: r1 - r0, width, ...params }, r1 - r0);
    xs.dispose();
    os.dispose();
  }
  x2.dispose();
  out2.dispose();
}

export interface SoftmaxOptions {
  /** softmax(scale * x), e.g. 1/sqrt(d) for attention scores. */
  scale?: number;
  dtype?: DType;
}

/** Numerically stable softmax over the last dimension. */
export function softmax(x: Tensor, options: SoftmaxOptions = {}): Tensor {
  expectDType('softmax', x, FLOAT_DTYPES);
  expectRank('softmax', x, 1);
  const dtype = options.dtype ?? x.dtype;
  const y = x.engine.empty(x.shape, dtype);
  runRows('softmax', { file: 'rows_softmax.wgsl', entry: 'softmax', dtypes: { x: x.dtype, y: dtype } }, x, y, 'y', {}, { scale: options.scale ?? 1 });
  return y;
}

function checkAffine(op: string, x: Tensor, t: Tensor | undefined, role: string): void {
  if (!t) return;
  expectDType(op, t, FLOAT_DTYPES, role);
  const width = x.shape[x.rank - 1];
  if (t.rank !== 1 || t.shape[0] !== width) {
    throw new RangeError(`${op}: ${role} ${formatShape(t.shape)} must be [${width}] to match input ${formatShape(x.shape)}`);
  }
}

function normalise(entry: 'layernorm' | 'rmsnorm', x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, dtype?: DType): Tensor {
  expectDType(entry, x, FLOAT_DTYPES);
  expectRank(entry, x, 1);
  checkAffine(entry, x, weight, 'weight');
  checkAffine(entry, x, bias, 'bias');
  const engine = x.engine;
  const outType = dtype ?? x.dtype;
  const y = engine.empty(x.shape, outType);
  const w = weight ?? placeholder(engine);
  const b = bias ?? placeholder(engine);
  runRows(
    entry,
    {
      file: 'rows_norm.wgsl',
      entry,
      dtypes: { x: x.dtype, weight: w.dtype, bias: b.dtype, y: outType },
      overrides: { HAS_WEIGHT: weight !== undefined, HAS_BIAS: bias !== undefined },
    },
    x,
    y,
    'y',
    { weight: w, bias: b },
    { eps },
  );
  return y;
}

export function layerNorm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5, dtype?: DType): Tensor {
  return normalise('layernorm', x, weight, bias, eps, dtype);
}

/** LLaMA's RMSNorm: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(x: Tensor, weight?: Tensor, eps = 1e-6, dtype?: DType): Tensor {
  return normalise('rmsnorm', x, weight, undefined, eps, dtype);
}

/** Index of the maximum along the last dimension (first on ties), as u32 of shape x.shape[:-1]. */
export function argmax(x: Tensor): Tensor {
  expectDType('argmax', x, FLOAT_DTYPES);
  expectRank('argmax', x, 1);
  const out = x.engine.empty(x.shape.slice(0, -1), 'u32');
  runRows('argmax', { file: 'rows_argmax.wgsl', entry: 'argmax', dtypes: { x: x.dtype } }, x, out, 'indices', {}, {});
  return out;
}
