/**
 * Spatial remapping of NCHW tensors through one kernel (kernels/spatial.wgsl): nearest upsampling
 * by an integer factor, padding (constant, reflect, replicate; negative amounts crop) as in
 * torch.nn.functional.pad over the last two dimensions, and max pooling (F.max_pool2d).
 */
import { DTYPE_BYTES } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './support/chunks.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';

const MODES = { constant: 0, reflect: 1, replicate: 2 } as const;
export type PadMode = keyof typeof MODES;

interface Remap {
  op: string;
  /** 'remap' (upsampling, padding) or 'max_pool' (factor: the window, stride: its step). */
  entry?: 'remap' | 'max_pool';
  stride?: number;
  oh: number;
  ow: number;
  beforeY: number;
  beforeX: number;
  factor: number;
  mode: PadMode;
  value: number;
}

function remap(x: Tensor, r: Remap): Tensor {
  expectDType(r.op, x, FLOAT_DTYPES);
  if (x.rank < 2) throw new RangeError(`${r.op}: input ${formatShape(x.shape)} needs rank >= 2 (..., H, W)`);
  const [h, w] = x.shape.slice(-2) as [number, number];
  if (r.oh < 0 || r.ow < 0) throw new RangeError(`${r.op}: output size ${r.oh}x${r.ow} of input ${formatShape(x.shape)} is negative`);
  const engine = x.engine;
  const planes = x.size / Math.max(h * w, 1);
  const y = engine.empty([...x.shape.slice(0, -2), r.oh, r.ow], x.dtype);
  if (y.size === 0) return y;
  if (h * w === 0) throw new RangeError(`${r.op}: input ${formatShape(x.shape)} is empty`);
  const x2 = x.reshape([planes, h * w]);
  const y2 = y.reshape([planes, r.oh * r.ow]);
  const bytes = DTYPE_BYTES[x.dtype];
  for (const [p0, p1] of rowChunks(engine, r.op, planes, [h * w * bytes, r.oh * r.ow * bytes])) {
    const xs = x2.rows(p0, p1);
    const ys = y2.rows(p0, p1);
    const count = (p1 - p0) * r.oh * r.ow;
    engine.run(
      { file: 'spatial.wgsl', entry: r.entry ?? 'remap', dtypes: { x: x.dtype, y: x.dtype }, overrides: { MODE: MODES[r.mode], STRIDE: r.stride ?? 1 } },
      { x: xs, y: ys },
      { count, h, w, oh: r.oh, ow: r.ow, before_y: r.beforeY, before_x: r.beforeX, factor: r.factor, value: r.value },
      Math.ceil(count / 64),
    );
    xs.dispose();
    ys.dispose();
  }
  x2.dispose();
  y2.dispose();
  return y;
}

/** Nearest-neighbour upsampling of the last two dimensions by an integer factor (F.interpolate(scale_factor=f, mode='nearest')). */
export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  if (!Number.isInteger(factor) || factor < 1) throw new RangeError(`upsampleNearest: factor must be an integer >= 1, got ${factor}`);
  const [h, w] = x.shape.slice(-2) as [number, number];
  return remap(x, { op: 'upsampleNearest', oh: h * factor, ow: w * factor, beforeY: 0, beforeX: 0, factor, mode: 'constant', value: 0 });
}

export interface PadOptions {
  mode?: PadMode;
  /** Fill for mode 'constant' (default 0). */
  value?: number;
}

/** F.pad over the last two dimensions: `amounts` = [left, right, top, bottom]; negative amounts crop. */
export function pad(x: Tensor, amounts: readonly [number, number, number, number], options: PadOptions = {}): Tensor {
  const op = 'pad';
  const mode = options.mode ?? 'constant';
  if (!(mode in MODES)) throw new RangeError(`${op}: unknown mode '${mode}' (use ${Object.keys(MODES).join(', ')})`);
  if (amounts.length !== 4 || !amounts.every(Number.isInteger)) throw new RangeError(`${op}: amounts must be 4 integers [left, right, top, bottom], got ${JSON.stringify(amounts)}`);
  const [left, right, top, bottom] = amounts;
  const [h, w] = x.shape.slice(-2) as [number, number];
  if (mode === 'reflect' && (Math.max(left, right) >= w || Math.max(top, bottom) >= h)) {
    throw new RangeError(`${op}: reflect padding ${JSON.stringify(amounts)} must be smaller than the input's ${h}x${w}`);
  }
  return remap(x, { op, oh: h + top + bottom, ow: w + left + right, beforeY: top, beforeX: left, factor: 1, mode, value: options.value ?? 0 });
}

export interface MaxPoolOptions {
  /** The window's side (default 3). */
  kernel?: number;
  /** Its step (default: the kernel). */
  stride?: number;
  /** Implicit -inf padding on every side (default 0; at most half the kernel, as PyTorch requires). */
  padding?: number;
}

/** F.max_pool2d over the last two dimensions with a square window (floor mode, no dilation). */
export function maxPool2d(x: Tensor, options: MaxPoolOptions = {}): Tensor {
  const op = 'maxPool2d';
  const kernel = options.kernel ?? 3;
  const stride = options.stride ?? kernel;
  const padding = options.padding ?? 0;
  for (const [name, v, least] of [['kernel', kernel, 1], ['stride', stride, 1], ['padding', padding, 0]] as const) {
    if (!Number.isInteger(v) || v < least) throw new RangeError(`${op}: ${name} must be an integer >= ${least}, got ${v}`);
  }
  if (2 * padding > kernel) throw new RangeError(`${op}: padding ${padding} must be at most half the kernel ${kernel}`);
  const [h, w] = x.shape.slice(-2) as [number, number];
  const out = (n: number) => Math.floor((n + 2 * padding - kernel) / stride) + 1;
  if (h + 2 * padding < kernel || w + 2 * padding < kernel) throw new RangeError(`${op}: input ${formatShape(x.shape)} padded by ${padding} is smaller than the ${kernel}x${kernel} window`);
  return remap(x, { op, entry: 'max_pool', stride, oh: out(h), ow: out(w), beforeY: padding, beforeX: padding, factor: kernel, mode: 'constant', value: 0 });
}
