/**
 * Separable resampling plans: for each output index along one axis, a window of input indices
 * [start, start + taps) and its weights. One plan format covers every filter we reproduce, so one
 * GPU kernel applies them all (kernels/resize.wgsl, kernels/image.wgsl):
 *   'pil'           Pillow's ImagingResample (precompute_coeffs): the filter stretched by the
 *                   downscaling factor (antialiasing), weights normalised to sum 1. Also PyTorch's
 *                   interpolate(antialias=True), which ports the same code.
 *   'torch'         PyTorch's interpolate(antialias=False): 2 (bilinear) or 4 (bicubic, a = -0.75)
 *                   taps at clamped indices, folded here into a contiguous window.
 * Weights are computed in double precision in Pillow's order of operations, so `fixedPointWeights`
 * gives exactly Pillow's integer coefficients.
 */
export type ResampleFilter = 'bilinear' | 'bicubic';
/** Pillow's filters: those two, and Lanczos (a = 3; diffusers' VaeImageProcessor resizes with it). */
export type PilFilter = ResampleFilter | 'lanczos';

export interface ResamplePlan {
  inSize: number;
  outSize: number;
  /** Window width: every output reads `taps` inputs (weights past the real window are 0). */
  taps: number;
  /** First input index of each output's window, clamped so the window stays inside [0, inSize). */
  start: Int32Array;
  /** outSize x taps weights. */
  weights: Float64Array;
}

/** Pillow's filters (Resample.c). Bicubic uses a = -0.5 there, as in PyTorch's antialiased path. */
function pilFilter(filter: PilFilter): { support: number; at: (x: number) => number } {
  if (filter === 'bilinear') return { support: 1, at: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) };
  if (filter === 'lanczos') {
    const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
    return { support: 3, at: (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) };
  }
  const a = -0.5;
  return {
    support: 2,
    at: (v) => {
      const x = Math.abs(v);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  };
}

function checkSizes(inSize: number, outSize: number): void {
  if (!Number.isInteger(inSize) || !Number.isInteger(outSize) || inSize < 1 || outSize < 1) {
    throw new RangeError(`resample: sizes must be positive integers, got ${inSize} -> ${outSize}`);
  }
}

/** Pillow's precompute_coeffs for the whole input (box 0..inSize). */
export function pilPlan(inSize: number, outSize: number, filter: PilFilter): ResamplePlan {
  checkSizes(inSize, outSize);
  const f = pilFilter(filter);
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = f.support * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let t = 0; t < count; t++) {
      const w = f.at((t + xmin - center + 0.5) * ss);
      weights[o * taps + t] = w;
      sum += w;
    }
    if (sum !== 0) for (let t = 0; t < count; t++) weights[o * taps + t] /= sum;
    start[o] = xmin;
  }
  return clampWindows({ inSize, outSize, taps: Math.min(taps, inSize), start, weights: narrow(weights, outSize, taps, Math.min(taps, inSize)) });
}

/** PyTorch's interpolate(mode, antialias=False, align_corners) along one axis, output size given (not a scale factor). */
export function torchPlan(inSize: number, outSize: number, filter: ResampleFilter, alignCorners = false): ResamplePlan {
  checkSizes(inSize, outSize);
  const cubic = filter === 'bicubic';
  const taps = Math.min(cubic ? 4 : 2, inSize);
  const start = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  const scale = alignCorners ? (outSize > 1 ? (inSize - 1) / (outSize - 1) : 0) : inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    let src = alignCorners ? scale * o : scale * (o + 0.5) - 0.5;
    if (!cubic && src < 0) src = 0;
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const t = Math.min(Math.max(src - i0, 0), 1);
    const raw: [number, number][] = cubic
      ? cubicWeights(t).map((w, k) => [i0 - 1 + k, w] as [number, number])
      : [[i0, 1 - t], [Math.min(i0 + 1, inSize - 1), t]];
    // Indices outside the input repeat the edge (PyTorch clamps them): fold into a window.
    const clamped = raw.map(([i, w]) => [Math.min(Math.max(i, 0), inSize - 1), w] as [number, number]);
    const first = Math.min(Math.max(Math.min(...clamped.map(([i]) => i)), 0), inSize - taps);
    start[o] = first;
    for (const [i, w] of clamped) weights[o * taps + (i - first)] += w;
  }
  return { inSize, outSize, taps, start, weights };
}

/** PyTorch's interpolate(mode='nearest', size=...) along one axis: input floor(o · in/out) (f32 scale), one tap. */
export function nearestPlan(inSize: number, outSize: number): ResamplePlan {
  checkSizes(inSize, outSize);
  const scale = Math.fround(inSize / outSize);
  const start = Int32Array.from({ length: outSize }, (_, o) => Math.min(Math.floor(Math.fround(o * scale)), inSize - 1));
  return { inSize, outSize, taps: 1, start, weights: new Float64Array(outSize).fill(1) };
}

/** Keys' cubic convolution with a = -0.75 (PyTorch's upsample_bicubic2d) for taps at -1, 0, 1, 2. */
function cubicWeights(t: number): [number, number, number, number] {
  const a = -0.75;
  const near = (x: number) => ((a + 2) * x - (a + 3)) * x * x + 1;
  const far = (x: number) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/** Drops all-zero trailing weight columns beyond `keep` (windows never exceed the input). */
function narrow(weights: Float64Array, outSize: number, taps: number, keep: number): Float64Array {
  if (keep === taps) return weights;
  const out = new Float64Array(outSize * keep);
  for (let o = 0; o < outSize; o++) out.set(weights.subarray(o * taps, o * taps + keep), o * keep);
  return out;
}

/** Shifts windows that would run past the input's end back inside, moving their weights along. */
function clampWindows(plan: ResamplePlan): ResamplePlan {
  const { taps, inSize, start, weights } = plan;
  for (let o = 0; o < plan.outSize; o++) {
    const over = start[o]! + taps - inSize;
    if (over <= 0) continue;
    const row = weights.subarray(o * taps, (o + 1) * taps);
    for (let t = taps - 1; t >= over; t--) row[t] = row[t - over]!;
    row.fill(0, 0, over);
    start[o] = start[o]! - over;
  }
  return plan;
}

/** Pillow's normalize_coeffs_8bpc: weights as integers with 22 fractional bits, rounded half away from zero. */
export const PIL_PRECISION_BITS = 32 - 8 - 2;

export function fixedPointWeights(plan: ResamplePlan): Int32Array {
  const scale = 2 ** PIL_PRECISION_BITS;
  return Int32Array.from(plan.weights, (w) => (w < 0 ? Math.trunc(-0.5 + w * scale) : Math.trunc(0.5 + w * scale)));
}
