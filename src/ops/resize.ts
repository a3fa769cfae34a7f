/**
 * Resizing NCHW float tensors on the GPU, PyTorch's F.interpolate(size=..., mode='bilinear' |
 * 'bicubic' | 'nearest', antialias, align_corners): two separable passes (width, then height) of
 * kernels/resize.wgsl, each applying a plan from support/resample-plan.ts. With antialias the
 * filter widens with the downscaling factor (Pillow's method, which PyTorch ports).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './support/chunks.js';
import { nearestPlan, pilPlan, torchPlan, type ResampleFilter, type ResamplePlan } from './support/resample-plan.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';

export interface ResizeOptions {
  mode?: ResampleFilter | 'nearest';
  antialias?: boolean;
  /** PyTorch's align_corners (without antialias only). */
  alignCorners?: boolean;
  dtype?: DType;
}

export function resize(x: Tensor, size: readonly [number, number], options: ResizeOptions = {}): Tensor {
  const op = 'resize';
  expectDType(op, x, FLOAT_DTYPES);
  if (x.rank < 2) throw new RangeError(`${op}: input ${formatShape(x.shape)} needs rank >= 2 (..., H, W)`);
  const [oh, ow] = size;
  if (!Number.isInteger(oh) || !Number.isInteger(ow) || oh < 1 || ow < 1) throw new RangeError(`${op}: size ${JSON.stringify(size)} must be two positive integers`);
  const mode = options.mode ?? 'bilinear';
  if (mode !== 'bilinear' && mode !== 'bicubic' && mode !== 'nearest') throw new RangeError(`${op}: unknown mode '${mode}' (use bilinear, bicubic or nearest)`);
  if (options.antialias && options.alignCorners) throw new RangeError(`${op}: antialias does not take alignCorners (as in PyTorch)`);
  if (mode === 'nearest' && (options.antialias || options.alignCorners)) throw new RangeError(`${op}: mode nearest takes neither antialias nor alignCorners (as in PyTorch)`);
  const [h, w] = x.shape.slice(-2) as [number, number];
  if (h * w === 0) throw new RangeError(`${op}: input ${formatShape(x.shape)} is empty`);
  const plan = (from: number, to: number) =>
    mode === 'nearest' ? nearestPlan(from, to) : options.antialias ? pilPlan(from, to, mode) : torchPlan(from, to, mode, options.alignCorners);
  const dtype = options.dtype ?? x.dtype;
  const lead = x.shape.slice(0, -2);
  const planes = lead.reduce((a, d) => a * d, 1);
  const engine = x.engine;
  // Width first (as PyTorch's antialiased kernel); an intermediate keeps f32.
  let cur = x.reshape([planes * h, w]);
  const step = (view: Tensor, next: Tensor) => {
    view.dispose();
    if (cur !== view) cur.dispose();
    cur = next;
  };
  if (w !== ow || h === oh) step(cur, resample(engine, cur, plan(w, ow), 1, h === oh ? dtype : 'f32'));
  if (h !== oh) {
    const view = cur.reshape([planes, h * ow]);
    step(view, resample(engine, view, plan(h, oh), ow, dtype));
  }
  const y = cur.reshape([...lead, oh, ow]);
  cur.dispose();
  return y;
}

/**
 * Applies `plan` along the middle axis of x viewed as [rows, plan.inSize * inner]; returns
 * [rows, plan.outSize * inner]. Rows are split across dispatches where a binding would be too large.
 */
function resample(engine: Engine, x: Tensor, plan: ResamplePlan, inner: number, dtype: DType): Tensor {
  const rows = x.shape[0]!;
  const outWidth = plan.outSize * inner;
  const y = engine.empty([rows, outWidth], dtype);
  const start = engine.tensor(plan.start, [plan.outSize], 'i32');
  const weights = engine.tensor(Float32Array.from(plan.weights), [plan.weights.length], 'f32');
  const chunks = rowChunks(engine, 'resize', rows, [plan.inSize * inner * DTYPE_BYTES[x.dtype], outWidth * DTYPE_BYTES[dtype]]);
  for (const [r0, r1] of chunks) {
    const xs = x.rows(r0, r1);
    const ys = y.rows(r0, r1);
    const count = (r1 - r0) * outWidth;
    engine.run(
      { file: 'resize.wgsl', entry: 'resample', dtypes: { x: x.dtype, y: dtype } },
      { x: xs, start, weights, y: ys },
      { count, len_in: plan.inSize, len_out: plan.outSize, inner, taps: plan.taps },
      Math.ceil(count / 64),
    );
    xs.dispose();
    ys.dispose();
  }
  start.dispose();
  weights.dispose();
  return y;
}
