/**
 * 8-bit RGB images on the GPU: a u32 tensor [height, width], one pixel per word
 * (r | g << 8 | b << 16 | 255 << 24). Pillow-exact resizing (kernels/image.wgsl) and conversion to
 * normalised CHW floats for a vision encoder.
 */
import { roundHalfEven, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { fixedPointWeights, pilPlan, rowChunks, type PilFilter, type ResamplePlan } from '../ops/index.js';

/** Decoded pixels: RGB, 3 bytes per pixel, rows top to bottom. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Whether `v` looks like decoded pixels (integer size, byte data); its byte count is checkRgbImage's. */
export function isRgbImage(v: unknown): v is RgbImage {
  const image = v as RgbImage | null;
  return !!image && typeof image === 'object' && Number.isInteger(image.width) && Number.isInteger(image.height) && image.data instanceof Uint8Array;
}

/** Throws `<op>: WxH RGB needs N bytes, got M` unless the size is positive whole pixels and data holds 3 bytes each. */
export function checkRgbImage(op: string, { width, height, data }: RgbImage): void {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) || data.length !== width * height * 3) {
    throw new RangeError(`${op}: ${width}x${height} RGB needs ${width * height * 3} bytes, got ${data.length}`);
  }
}

const OPAQUE = 0xff000000;

export function packRgb(r: number, g: number, b: number): number {
  return (r | (g << 8) | (b << 16) | OPAQUE) >>> 0;
}

export function uploadImage(engine: Engine, image: RgbImage): Tensor {
  checkRgbImage('uploadImage', image);
  const { width, height, data } = image;
  const words = new Uint32Array(width * height);
  for (let i = 0, j = 0; i < words.length; i++, j += 3) words[i] = (data[j]! | (data[j + 1]! << 8) | (data[j + 2]! << 16) | OPAQUE) >>> 0;
  return engine.tensor(words, [height, width], 'u32');
}

export async function downloadImage(t: Tensor): Promise<RgbImage> {
  const [height, width] = imageSize('downloadImage', t);
  const words = (await t.read()) as Uint32Array;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < words.length; i++, j += 3) {
    const v = words[i]!;
    data[j] = v & 255;
    data[j + 1] = (v >>> 8) & 255;
    data[j + 2] = (v >>> 16) & 255;
  }
  return { width, height, data };
}

function imageSize(op: string, t: Tensor): [number, number] {
  if (t.dtype !== 'u32' || t.rank !== 2) throw new TypeError(`${op}: expected a packed RGB image (u32 [height, width]), got ${t}`);
  return t.shape as [number, number];
}

/** Where the image sits on a larger background before resizing (Pillow: paste onto Image.new(size, fill)). */
export interface Canvas {
  width: number;
  height: number;
  left: number;
  top: number;
  fill: readonly [number, number, number];
}

export interface PilResizeOptions {
  filter?: PilFilter;
  canvas?: Canvas;
}

/**
 * Pillow's Image.resize((width, height), filter) of the image (or of the canvas it is pasted on),
 * byte for byte: horizontal pass, then vertical, each rounded to 8 bits, as Pillow does. A pass
 * whose size does not change is skipped, as Pillow skips it.
 */
export function pilResize(image: Tensor, width: number, height: number, options: PilResizeOptions = {}): Tensor {
  const op = 'pilResize';
  const [srcH, srcW] = imageSize(op, image);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${op}: size ${width}x${height} must be positive integers`);
  }
  const filter = options.filter ?? 'bicubic';
  const c = options.canvas ?? { width: srcW, height: srcH, left: 0, top: 0, fill: [0, 0, 0] as const };
  if (c.width < 1 || c.height < 1) throw new RangeError(`${op}: canvas ${c.width}x${c.height} is empty`);
  const engine = image.engine;
  const pasted = options.canvas !== undefined;
  let current = image;
  if (width !== c.width || pasted) current = horizontal(engine, image, c, width, pilPlan(c.width, width, filter));
  if (height !== c.height) {
    const next = vertical(engine, current, pilPlan(c.height, height, filter));
    if (current !== image) current.dispose();
    current = next;
  }
  return current === image ? image.view(image.shape) : current;
}

const placeholderParams = { crop_x: 0, crop_y: 0, mean: [0, 0, 0, 0], sd: [1, 1, 1, 1] };

function planTensors(engine: Engine, plan: ResamplePlan): [Tensor, Tensor] {
  return [engine.tensor(plan.start, [plan.outSize], 'i32'), engine.tensor(fixedPointWeights(plan), [plan.weights.length], 'i32')];
}

function horizontal(engine: Engine, image: Tensor, c: Canvas, outW: number, plan: ResamplePlan): Tensor {
  const [srcH, srcW] = image.shape as [number, number];
  const out = engine.empty([c.height, outW], 'u32');
  const [bounds, coeffs] = planTensors(engine, plan);
  const plain = c.left === 0 && c.top === 0 && c.width === srcW && c.height === srcH;
  // Rows are independent: a canvas that is the image itself can be split across bindings.
  const chunks = plain ? rowChunks(engine, 'pilResize', srcH, [srcW * 4, outW * 4]) : [[0, c.height] as [number, number]];
  for (const [r0, r1] of chunks) {
    const src = plain ? image.rows(r0, r1) : image.view(image.shape);
    const dst = out.rows(r0, r1);
    const count = (r1 - r0) * outW;
    engine.run(
      { file: 'image.wgsl', entry: 'pil_horizontal' },
      { src, bounds, coeffs, dst },
      {
        count, src_w: srcW, src_h: plain ? r1 - r0 : srcH, out_w: outW, taps: plan.taps, canvas_w: c.width,
        left: c.left, top: c.top, fill: packRgb(...c.fill), ...placeholderParams,
      },
      Math.ceil(count / 64),
    );
    src.dispose();
    dst.dispose();
  }
  bounds.dispose();
  coeffs.dispose();
  return out;
}

function vertical(engine: Engine, image: Tensor, plan: ResamplePlan): Tensor {
  const [, w] = image.shape as [number, number];
  const out = engine.empty([plan.outSize, w], 'u32');
  const [bounds, coeffs] = planTensors(engine, plan);
  const count = plan.outSize * w;
  engine.run(
    { file: 'image.wgsl', entry: 'pil_vertical' },
    { src: image, bounds, coeffs, dst: out },
    { count, src_w: w, src_h: plan.inSize, out_w: w, taps: plan.taps, canvas_w: w, left: 0, top: 0, fill: 0, ...placeholderParams },
    Math.ceil(count / 64),
  );
  bounds.dispose();
  coeffs.dispose();
  return out;
}

export interface Crop {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface NormalizeOptions {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
  /** Part of the image to convert (default: all of it). */
  crop?: Crop;
  dtype?: DType;
  /** Write into this [3, h, w] tensor (e.g. one row of a batch) instead of a new one. */
  out?: Tensor;
}

/** The image (or a crop of it) as CHW floats, (v / 255 - mean) / std: what CLIPImageProcessor's rescale and normalise produce. */
export function normalizeImage(image: Tensor, options: NormalizeOptions): Tensor {
  const op = 'normalizeImage';
  const [h, w] = imageSize(op, image);
  const crop = options.crop ?? { x: 0, y: 0, width: w, height: h };
  if (crop.x < 0 || crop.y < 0 || crop.width < 1 || crop.height < 1 || crop.x + crop.width > w || crop.y + crop.height > h) {
    throw new RangeError(`${op}: crop ${JSON.stringify(crop)} is not inside the ${w}x${h} image`);
  }
  if (options.std.some((s) => s === 0)) throw new RangeError(`${op}: std ${JSON.stringify(options.std)} has a zero`);
  const shape = [3, crop.height, crop.width];
  const out = options.out ?? image.engine.empty(shape, options.dtype ?? 'f32');
  if (out.size !== 3 * crop.height * crop.width || (out.dtype !== 'f32' && out.dtype !== 'f16')) {
    throw new RangeError(`${op}: output ${out} must hold ${formatShape(shape)} floats`);
  }
  const count = crop.width * crop.height;
  image.engine.run(
    { file: 'image.wgsl', entry: 'normalize', dtypes: { pixels_out: out.dtype } },
    { src: image, pixels_out: out },
    {
      count, src_w: w, src_h: h, out_w: crop.width, taps: 0, canvas_w: 0, left: 0, top: 0, fill: 0,
      crop_x: crop.x, crop_y: crop.y, mean: [...options.mean, 0], sd: [...options.std, 1],
    },
    Math.ceil(count / 64),
  );
  return out;
}

/**
 * OpenCV's cv2.resize(image, (width, height), interpolation=INTER_LINEAR) of 8-bit images, byte
 * for byte (kernels/image.wgsl cv2_linear): half-pixel centres, two taps, no antialiasing when
 * shrinking, 11-bit fixed-point weights. This is mmcv's imresize/imrescale (mmdet's and mmseg's
 * Resize), which Grounding DINO's input goes through.
 */
export function cv2Resize(image: Tensor, width: number, height: number): Tensor {
  const op = 'cv2Resize';
  const [srcH, srcW] = imageSize(op, image);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${op}: size ${width}x${height} must be positive integers`);
  }
  const engine = image.engine;
  if (image.byteLength > engine.maxBindingBytes) {
    throw new RangeError(`${op}: a ${srcW}x${srcH} image (${image.byteLength} bytes) exceeds the ${engine.maxBindingBytes}-byte binding limit`);
  }
  const x = cv2LinearTable(srcW, width, true);
  const y = cv2LinearTable(srcH, height, false);
  const bounds = engine.tensor(Int32Array.of(...x.offsets, ...y.offsets), [width + height], 'i32');
  const coeffs = engine.tensor(Int32Array.of(...x.weights, ...y.weights), [2 * (width + height)], 'i32');
  const out = engine.empty([height, width], 'u32');
  for (const [r0, r1] of rowChunks(engine, op, height, [width * 4])) {
    const dst = out.rows(r0, r1);
    const count = (r1 - r0) * width;
    engine.run(
      { file: 'image.wgsl', entry: 'cv2_linear' },
      { src: image, bounds, coeffs, dst },
      { ...placeholderParams, count, src_w: srcW, src_h: srcH, out_w: width, taps: 2, canvas_w: 0, left: 0, top: 0, fill: 0, crop_y: r0 },
      Math.ceil(count / 64),
    );
    dst.dispose();
  }
  bounds.dispose();
  coeffs.dispose();
  return out;
}

/**
 * cv2's INTER_LINEAR table along one axis (resize.cpp, cv::resize): source position
 * fx = float((d + 0.5) * scale - 0.5) with scale = 1 / (out / in) in double, split into
 * floor and fraction, weights [1 - fx, fx] rounded (half to even) to 11 bits. Along x, a position
 * outside the image is clamped with its fraction zeroed; along y, OpenCV keeps the fraction and
 * clamps the rows it reads (the kernel does).
 */
export function cv2LinearTable(inSize: number, outSize: number, clampEdges: boolean): { offsets: Int32Array; weights: Int32Array } {
  const scale = 1 / (outSize / inSize);
  const offsets = new Int32Array(outSize);
  const weights = new Int32Array(2 * outSize);
  const f32 = Math.fround;
  for (let d = 0; d < outSize; d++) {
    let f = f32((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = f32(f - s);
    if (clampEdges && s < 0) [s, f] = [0, 0];
    if (clampEdges && s >= inSize - 1) [s, f] = [inSize - 1, 0];
    offsets[d] = s;
    weights[2 * d] = roundHalfEven(f32(1 - f) * 2048);
    weights[2 * d + 1] = roundHalfEven(f * 2048);
  }
  return { offsets, weights };
}

