/**
 * Grounding DINO's sine position embeddings (decoders.md 2.A, A.3 steps 3, 5b and 8), and the
 * per-level padding masks they are made from. All three share one formula: a value v becomes
 * `feats` channels, sin(v / t_i) at even i and cos(v / t_i) at odd i, t_i = T^(2·floor(i/2)/feats).
 *
 * - 2-D, of a feature map's mask (GroundingDinoSinePositionEmbedding, normalize=True): y and x
 *   are the mask's cumulative sums down the columns and along the rows, divided by the last
 *   (+1e-6) and times 2π; channels cat(pos_y, pos_x), d_model/2 each, T = positional_embedding_temperature.
 * - Text (get_sine_pos_embed with exchange_xy=False): v = position id · 2π, d_model channels, T = 10000.
 * - Boxes (GroundingDinoDecoder.get_proposal_pos_embed): each of cx, cy, w, h times 2π, d_model/2
 *   channels each, T = 10000, concatenated in the order (y, x, w, h).
 *
 * They are computed on the host, as PyTorch computes them in float32 (the same roundings of the
 * argument), with sin/cos in float64: WGSL promises only 2^-11 absolute for sin and cos, too
 * coarse for 1e-4 goldens. The inputs are host data anyway (masks, position ids); the 2-D
 * embeddings repeat few distinct values (a rectangular mask of h rows has h + 1 distinct y), so
 * each distinct value's channels are computed once and copied. Boxes come from the GPU and are
 * read back (900 × 4 values).
 */
import type { Engine } from '../../engine/engine.js';
import { formatShape, type Tensor } from '../../engine/tensor.js';

const f32 = Math.fround;
const TWO_PI = f32(2 * Math.PI);

/** t_i = T^(2·floor(i/2)/feats) for i < feats, rounded as torch computes it in float32. */
export function sineDivisors(feats: number, temperature: number): Float32Array {
  const t = new Float32Array(feats);
  for (let i = 0; i < feats; i++) t[i] = f32(Math.pow(temperature, f32(f32(2 * Math.floor(i / 2)) / feats)));
  return t;
}

/** The `feats` channels of one (already scaled) value into out[at ..]. */
function sineInto(out: Float32Array, at: number, v: number, divisors: Float32Array): void {
  for (let i = 0; i < divisors.length; i += 2) {
    out[at + i] = Math.sin(f32(v / divisors[i]!));
    if (i + 1 < divisors.length) out[at + i + 1] = Math.cos(f32(v / divisors[i + 1]!));
  }
}

/** A feature map's mask: 1 where a position is valid (the image), 0 where it is padding. */
export interface LevelMask {
  height: number;
  width: number;
  /** [height·width] row-major, 1 = valid. */
  valid: Uint8Array;
}

/**
 * The input's pixel mask (True = valid, decoders.md A.2 step 6): the valid region `valid` =
 * [height, width] at the top left of a `height` × `width` padded input, or any mask as `data`
 * ([height·width], nonzero = valid).
 */
export type PixelMask =
  | { height: number; width: number; valid: readonly [number, number] }
  | { height: number; width: number; data: ArrayLike<number | boolean> };

function checkPixelMask(m: PixelMask): void {
  const { height, width } = m;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new RangeError(`pixel mask: size ${height}x${width} must be positive integers`);
  }
  if ('valid' in m) {
    const [vh, vw] = m.valid;
    if (!Number.isInteger(vh) || !Number.isInteger(vw) || vh < 0 || vw < 0 || vh > height || vw > width) {
      throw new RangeError(`pixel mask: valid region ${vh}x${vw} must lie inside the ${height}x${width} input`);
    }
  } else if (m.data.length !== height * width) {
    throw new RangeError(`pixel mask: data has ${m.data.length} values for a ${height}x${width} input`);
  }
}

/** torch's F.interpolate(mode='nearest') source index: floor(dst · (in/out)) in float32, clamped. */
function nearestSource(dst: number, inSize: number, outSize: number): number {
  if (inSize === outSize) return dst;
  if (outSize === 2 * inSize) return dst >> 1;
  const scale = f32(inSize / outSize);
  return Math.min(Math.floor(f32(dst * scale)), inSize - 1);
}

/** The pixel mask nearest-resized to a feature map (GroundingDinoConvEncoder, and the extra levels). */
export function levelMask(pixel: PixelMask, height: number, width: number): LevelMask {
  checkPixelMask(pixel);
  const valid = new Uint8Array(height * width);
  const rows = Array.from({ length: height }, (_, i) => nearestSource(i, pixel.height, height));
  const cols = Array.from({ length: width }, (_, j) => nearestSource(j, pixel.width, width));
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < width; j++) {
      const [si, sj] = [rows[i]!, cols[j]!];
      valid[i * width + j] = 'valid' in pixel ? Number(si < pixel.valid[0] && sj < pixel.valid[1]) : Number(Boolean(pixel.data[si * pixel.width + sj]));
    }
  }
  return { height, width, valid };
}

/** (valid width / W, valid height / H) from the mask's first row and first column (OVGroundingDinoModel.get_valid_ratio). */
export function validRatio(mask: LevelMask): [number, number] {
  const { height, width, valid } = mask;
  let vh = 0;
  let vw = 0;
  for (let i = 0; i < height; i++) vh += valid[i * width]!;
  for (let j = 0; j < width; j++) vw += valid[j]!;
  return [f32(vw / width), f32(vh / height)];
}

/**
 * The 2-D sine embedding of a feature map's mask: [height·width, 2·feats], pos_y then pos_x
 * (feats = d_model / 2, temperature = positional_embedding_temperature).
 */
export function maskSineEmbedding(mask: LevelMask, feats: number, temperature: number): Float32Array {
  const { height: h, width: w, valid } = mask;
  const divisors = sineDivisors(feats, temperature);
  // Cumulative sums down each column (y) and along each row (x), normalised by the last.
  const y = new Float32Array(h * w);
  const x = new Float32Array(h * w);
  for (let j = 0; j < w; j++) {
    let sum = 0;
    for (let i = 0; i < h; i++) y[i * w + j] = sum += valid[i * w + j]!;
    const last = f32(sum + 1e-6);
    for (let i = 0; i < h; i++) y[i * w + j] = f32(f32(y[i * w + j]! / last) * TWO_PI);
  }
  for (let i = 0; i < h; i++) {
    let sum = 0;
    for (let j = 0; j < w; j++) x[i * w + j] = sum += valid[i * w + j]!;
    const last = f32(sum + 1e-6);
    for (let j = 0; j < w; j++) x[i * w + j] = f32(f32(x[i * w + j]! / last) * TWO_PI);
  }
  const out = new Float32Array(h * w * 2 * feats);
  const cache = new Map<number, Float32Array>();
  const channels = (v: number) => {
    let c = cache.get(v);
    if (!c) {
      c = new Float32Array(feats);
      sineInto(c, 0, v, divisors);
      cache.set(v, c);
    }
    return c;
  };
  for (let n = 0; n < h * w; n++) {
    out.set(channels(y[n]!), n * 2 * feats);
    out.set(channels(x[n]!), n * 2 * feats + feats);
  }
  return out;
}

/** Text position embeddings [K, dModel] of position ids (get_sine_pos_embed, T = 10000, no xy swap), on the host. */
export function textSineValues(positionIds: ArrayLike<number>, dModel: number): Float32Array {
  const divisors = sineDivisors(dModel, 10000);
  const out = new Float32Array(positionIds.length * dModel);
  for (let k = 0; k < positionIds.length; k++) sineInto(out, k * dModel, f32(positionIds[k]! * TWO_PI), divisors);
  return out;
}

/** Text position embeddings [K, dModel] on the GPU (f32). */
export function textSineEmbedding(engine: Engine, positionIds: ArrayLike<number>, dModel: number): Tensor {
  return engine.tensor(textSineValues(positionIds, dModel), [positionIds.length, dModel]);
}

/**
 * The decoder's box embedding on the host: boxes [Q·4] (cx, cy, w, h) -> [Q, 4·dModel/2], the
 * channels of y, x, w, h in that order (d_model/2 each, T = 10000).
 */
export function boxSineValues(boxes: ArrayLike<number>, dModel: number): Float32Array {
  if (boxes.length % 4) throw new RangeError(`boxSineValues: ${boxes.length} values are not whole boxes of 4`);
  if (dModel % 2) throw new RangeError(`boxSineValues: d_model ${dModel} must be even`);
  const feats = dModel / 2;
  const divisors = sineDivisors(feats, 10000);
  const Q = boxes.length / 4;
  const out = new Float32Array(Q * 4 * feats);
  const ORDER = [1, 0, 2, 3]; // y, x, w, h
  for (let q = 0; q < Q; q++) {
    ORDER.forEach((c, slot) => sineInto(out, (q * 4 + slot) * feats, f32(f32(boxes[q * 4 + c]!) * TWO_PI), divisors));
  }
  return out;
}

/**
 * `sine4` of the decoder's reference_points_head: boxes [Q, 4] (cx, cy, w, h, e.g. the reference
 * boxes times the valid ratios) -> [Q, 4·dModel/2] f32 on the GPU, channels (y, x, w, h). The
 * boxes are read back (Q·4 values) and the embedding computed on the host.
 */
export async function boxSineEmbedding(engine: Engine, boxes: Tensor, dModel: number): Promise<Tensor> {
  if (boxes.rank !== 2 || boxes.shape[1] !== 4) throw new RangeError(`boxSineEmbedding: boxes ${formatShape(boxes.shape)} must be [queries, 4]`);
  const values = await boxes.toArray();
  return engine.tensor(boxSineValues(values, dModel), [boxes.shape[0]!, 2 * dModel]);
}
