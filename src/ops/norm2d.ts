/**
 * Normalisations of NCHW feature maps (kernels/norm2d.wgsl), statistics in f32:
 *   groupNorm(x [N, C, ...], groups, weight?, bias?, { eps, act })  torch.nn.GroupNorm, optional fused activation
 *   layerNorm2d(x [N, C, H, W], weight?, bias?, { eps, act })       LayerNorm over the channels of each pixel
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { activationCode, type Activation } from './support/activation.js';
import { rowChunks } from './support/chunks.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';
import { rowKernelConfig } from './support/variants.js';

export interface Norm2dOptions {
  eps?: number;
  /** Applied after the affine transform (diffusers fuses SiLU after most GroupNorms). */
  act?: Activation;
  dtype?: DType;
}

function checkPerChannel(op: string, t: Tensor | undefined, channels: number, role: string, x: Tensor): void {
  if (!t) return;
  expectDType(op, t, FLOAT_DTYPES, role);
  if (t.rank !== 1 || t.shape[0] !== channels) {
    throw new RangeError(`${op}: ${role} ${formatShape(t.shape)} must be [${channels}] for input ${formatShape(x.shape)}`);
  }
}

/**
 * Runs a norm2d entry point over `rows` independent rows (a row is `rowElements` elements of x and
 * y), split across dispatches where a binding would be too large.
 */
function run(entry: 'group_norm' | 'layer_norm2d', x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined,
  options: Norm2dOptions, rows: number, rowElements: number, params: { groups: number; channels: number; spatial: number },
  invocationsPerRow: (r: number) => number): Tensor {
  const engine = x.engine;
  const dtype = options.dtype ?? x.dtype;
  const y = engine.empty(x.shape, dtype);
  if (y.size === 0) return y;
  const w = weight ?? placeholder(engine);
  const b = bias ?? placeholder(engine);
  const config = rowKernelConfig(engine);
  const spec = {
    file: 'norm2d.wgsl',
    entry,
    dtypes: { x: x.dtype, weight: w.dtype, bias: b.dtype, y: dtype },
    includes: config.includes,
    overrides: {
      ...config.overrides, HAS_WEIGHT: weight !== undefined, HAS_BIAS: bias !== undefined, ACT: activationCode(entry, options.act),
      EVEN: params.spatial % 2 === 0,
    },
  };
  const x2 = x.reshape([rows, rowElements]);
  const y2 = y.reshape([rows, rowElements]);
  for (const [r0, r1] of rowChunks(engine, entry, rows, [rowElements * DTYPE_BYTES[x.dtype], rowElements * DTYPE_BYTES[dtype]])) {
    const xs = x2.rows(r0, r1);
    const ys = y2.rows(r0, r1);
    const count = invocationsPerRow(r1 - r0);
    engine.run(spec, { x: xs, weight: w, bias: b, y: ys }, { rows: count, eps: options.eps ?? 1e-5, ...params }, entry === 'group_norm' ? count : Math.ceil(count / 64));
    xs.dispose();
    ys.dispose();
  }
  x2.dispose();
  y2.dispose();
  return y;
}

/** torch.nn.functional.group_norm over x [N, C, *] (any number of spatial dimensions, including none). */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor, bias?: Tensor, options: Norm2dOptions = {}): Tensor {
  const op = 'groupNorm';
  expectDType(op, x, FLOAT_DTYPES);
  if (x.rank < 2) throw new RangeError(`${op}: input ${formatShape(x.shape)} must be [N, C, ...]`);
  const [n, c] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups < 1 || c % groups) {
    throw new RangeError(`${op}: ${groups} groups must divide the ${c} channels of ${formatShape(x.shape)}`);
  }
  checkPerChannel(op, weight, c, 'weight', x);
  checkPerChannel(op, bias, c, 'bias', x);
  const spatial = x.shape.slice(2).reduce((a, d) => a * d, 1);
  const channels = c / groups;
  return run('group_norm', x, weight, bias, options, n * groups, channels * spatial, { groups, channels, spatial }, (r) => r);
}

/** LayerNorm over the channel dimension of x [N, C, H, W], at every pixel (SAM's / the region encoder's LayerNorm2d). */
export function layerNorm2d(x: Tensor, weight?: Tensor, bias?: Tensor, options: Norm2dOptions = {}): Tensor {
  const op = 'layerNorm2d';
  expectDType(op, x, FLOAT_DTYPES);
  if (x.rank !== 4) throw new RangeError(`${op}: input ${formatShape(x.shape)} must be NCHW (rank 4)`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  checkPerChannel(op, weight, c, 'weight', x);
  checkPerChannel(op, bias, c, 'bias', x);
  return run('layer_norm2d', x, weight, bias, options, n, c * h * w, { groups: 1, channels: c, spatial: h * w }, (r) => r * h * w);
}
