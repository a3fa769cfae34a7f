/**
 * Grounding DINO's post-processing by task (decoders.md A.4; `eval/eval_det.py`
 * post_process_det_gdino / post_process_instseg_gdino, `eval/eval_semseg.py` process_seg_result),
 * from the last decoder layer's outputs (A.3 step 9) to results in original-image pixels.
 *
 *   detection / instance: p = sigmoid(logits[:, :K]) over Q x K, top-k (100; 500 CrowdHuman),
 *     query = i / K, class = i % K, box cxcywh -> xyxy times (ori_w, ori_h, ori_w, ori_h) (boxes are
 *     relative to the unpadded resized image, so the original size is the right scale); no score
 *     threshold, no NMS. Masks of the selected queries: bilinear x4 to the padded size, crop to the
 *     resized image, bilinear to the original size (align_corners=False), sigmoid > 0.5, which is
 *     logit > 0 (the two differ only for |logit| < 6e-8, where f32 sigmoid rounds to 0.5).
 *   referring / grounding: K = 1, top-1.
 *   semantic: sum_q sigmoid(logits)[q, c] * sigmoid(mask_q), then x4, crop, resize, argmax over c.
 *     The official ADE20K order resizes each query's mask first and combines after; resizing is
 *     linear, so combining first at 1/4 resolution (its Mapillary order) is the same map up to f32
 *     rounding, with K instead of Q planes to resize.
 *
 * Top-k ties: torch.topk leaves the order of equal scores to the implementation. Here scores are
 * f32 sigmoids (as torch computes them) and equal scores come in increasing flat index (lower
 * query, then lower class, first). Ties arise in practice only where sigmoid saturates (logit > 17).
 *
 * Masks are pycocotools' uncompressed RLE: column-major (Fortran) order, counts alternating runs
 * of 0 and 1 starting with 0s, so `{ size, counts }` is what pycocotools' frPyObjects takes.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Box } from '../../image/affine.js';
import { contiguous } from '../../ops/copy.js';
import { add, sigmoid, thresholdBits } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { resize } from '../../ops/resize.js';
import { pad } from '../../ops/spatial.js';
import { rleFromBits, type Mask } from '../../image/mask.js';

/** A host matrix: row-major values of the given [rows, cols] shape. */
export interface HostMatrix {
  data: ArrayLike<number>;
  shape: readonly [number, number];
}

export type Matrix = Tensor | HostMatrix;

/** The last decoder layer's outputs (decoders.md A.3 step 9). */
export interface DetectorOutputs {
  /** [Q, K] class logits (or the official [Q, maxTextLen], -inf beyond the K classes: only the first numClasses columns are read). */
  logits: Matrix;
  /** [Q, 4] boxes (cx, cy, w, h) in [0, 1] of the unpadded resized image. */
  boxes: Matrix;
  /** The mask logits of the given queries, [n, Hp / 4, Wp / 4] over the padded input (mask_embed(hs[q]) . mask_features); the caller disposes nothing, the post-processing disposes what it gets. */
  maskLogits?: (queries: readonly number[]) => Tensor;
}

/** What the post-processing needs of the input (GdinoImage has it). */
export interface ImageGeometry {
  /** [h, w] of the resized image before padding (mmdet's img_shape). */
  imgShape: readonly [number, number];
  /** [h, w] of the original image (ori_shape). */
  oriShape: readonly [number, number];
}

export interface Detection {
  /** The class's name (its phrase) when labels were given, else its index as text. */
  label: string;
  /** Column of the logits: the text block k. */
  classIndex: number;
  /** The decoder query it came from. */
  query: number;
  score: number;
  /** [x0, y0, x1, y1] in original pixels. */
  box: Box;
  /** Instance segmentation and grounding: the mask in original pixels. */
  mask?: Mask;
}

export interface DetectionOptions {
  /** K: the classes (text blocks) in the prompt; logits columns beyond are ignored. */
  numClasses: number;
  /** Kept predictions (default 100). */
  topk?: number;
  /** Names of the K classes. */
  labels?: readonly string[];
  /** Compute masks (needs outputs.maskLogits; default: when it is there). */
  masks?: boolean;
  /** Budget for the largest mask intermediate, in bytes (default 64 MiB): masks are resized this many at a time. */
  maskBytes?: number;
}

export interface SemanticMap {
  width: number;
  height: number;
  /** Class index per original pixel, row-major. */
  classes: Uint32Array;
}

const DEFAULT_MASK_BYTES = 64 * 2 ** 20;

async function hostMatrix(op: string, name: string, m: Matrix, cols?: number): Promise<{ data: ArrayLike<number>; rows: number; cols: number }> {
  const shape = m.shape;
  if (shape.length !== 2) throw new RangeError(`${op}: ${name} must be a matrix [rows, cols], got shape [${shape.join(', ')}]`);
  const [r, c] = shape as [number, number];
  if (cols !== undefined && c !== cols) throw new RangeError(`${op}: ${name} must have ${cols} columns, got shape [${r}, ${c}]`);
  if ('data' in m) {
    if (m.data.length !== r * c) throw new RangeError(`${op}: ${name} has ${m.data.length} values for shape [${r}, ${c}]`);
    return { data: m.data, rows: r, cols: c };
  }
  return { data: await m.toArray(), rows: r, cols: c };
}

/** f32 sigmoid, as PyTorch computes it on f32 logits. */
const sigmoid32 = (v: number) => Math.fround(1 / (1 + Math.exp(-v)));

export interface TopkEntry {
  query: number;
  classIndex: number;
  score: number;
}

/**
 * torch.topk(sigmoid(logits[:, :K]).flatten(), k): the k best (query, class) pairs, highest score
 * first, equal scores in increasing flat index.
 */
export function topkScores(logits: ArrayLike<number>, rows: number, cols: number, numClasses: number, k: number): TopkEntry[] {
  const op = 'topkScores';
  if (!(Number.isInteger(numClasses) && numClasses >= 1 && numClasses <= cols)) {
    throw new RangeError(`${op}: numClasses must be an integer in 1..${cols} (the logits' columns), got ${numClasses}`);
  }
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`${op}: topk must be a positive integer, got ${k}`);
  const n = rows * numClasses;
  const scores = new Float32Array(n);
  for (let q = 0; q < rows; q++) for (let c = 0; c < numClasses; c++) scores[q * numClasses + c] = sigmoid32(logits[q * cols + c]!);
  const kept = Math.min(k, n);
  // The k-th largest score, then every index above it and the first ones equal to it.
  const kth = Float32Array.from(scores).sort()[n - kept]!;
  const chosen: number[] = [];
  for (let i = 0; i < n; i++) if (scores[i]! > kth) chosen.push(i);
  for (let i = 0; i < n && chosen.length < kept; i++) if (scores[i] === kth) chosen.push(i);
  chosen.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return chosen.map((i) => ({ query: Math.floor(i / numClasses), classIndex: i % numClasses, score: scores[i]! }));
}

function checkGeometry(op: string, image: ImageGeometry): void {
  const ok = (s: readonly number[]) => s.length === 2 && s.every((v) => Number.isInteger(v) && v > 0);
  if (!ok(image.imgShape) || !ok(image.oriShape)) {
    throw new RangeError(`${op}: imgShape [${image.imgShape.join(', ')}] and oriShape [${image.oriShape.join(', ')}] must be [h, w] of positive integers`);
  }
}

/** Detection, instance segmentation (with masks) and, with numClasses 1 and topk 1, referring/grounding. */
export async function detections(outputs: DetectorOutputs, image: ImageGeometry, options: DetectionOptions): Promise<Detection[]> {
  const op = 'gdino detections';
  checkGeometry(op, image);
  const logits = await hostMatrix(op, 'logits', outputs.logits);
  const boxes = await hostMatrix(op, 'boxes', outputs.boxes, 4);
  if (boxes.rows !== logits.rows) throw new RangeError(`${op}: ${logits.rows} queries of logits but ${boxes.rows} boxes`);
  if (options.labels && options.labels.length !== options.numClasses) {
    throw new RangeError(`${op}: ${options.labels.length} labels for ${options.numClasses} classes`);
  }
  const withMasks = options.masks ?? outputs.maskLogits !== undefined;
  if (withMasks && !outputs.maskLogits) throw new RangeError(`${op}: masks requested but the outputs have no maskLogits`);
  const top = topkScores(logits.data, logits.rows, logits.cols, options.numClasses, options.topk ?? 100);
  const [oh, ow] = image.oriShape;
  const results: Detection[] = top.map(({ query, classIndex, score }) => {
    const [cx, cy, w, h] = [0, 1, 2, 3].map((j) => boxes.data[query * 4 + j]!) as [number, number, number, number];
    const box: Box = [(cx - 0.5 * w) * ow, (cy - 0.5 * h) * oh, (cx + 0.5 * w) * ow, (cy + 0.5 * h) * oh];
    return { label: options.labels?.[classIndex] ?? String(classIndex), classIndex, query, score, box };
  });
  if (withMasks) {
    // A query chosen for two classes has one mask.
    const queries = [...new Set(top.map((t) => t.query))];
    const rles = await instanceMasks(outputs.maskLogits!, queries, image, options.maskBytes);
    const byQuery = new Map(queries.map((q, i) => [q, rles[i]!]));
    for (const r of results) r.mask = byQuery.get(r.query);
  }
  return results;
}

/**
 * Referring expressions / grounding ([GRD]): the best query of each class. The official evaluation
 * has one class (K = 1, top-1); with several, each phrase is grounded on its own column.
 */
export async function grounding(outputs: DetectorOutputs, image: ImageGeometry, options: Omit<DetectionOptions, 'topk'> = { numClasses: 1 }): Promise<Detection[]> {
  if (options.numClasses === 1) return detections(outputs, image, { ...options, topk: 1 });
  const logits = await hostMatrix('gdino grounding', 'logits', outputs.logits);
  const found: Detection[] = [];
  for (let k = 0; k < options.numClasses; k++) {
    const column = Float32Array.from({ length: logits.rows }, (_, q) => logits.data[q * logits.cols + k]!);
    const [best] = await detections({ ...outputs, logits: { data: column, shape: [logits.rows, 1] } }, image, { ...options, numClasses: 1, topk: 1, labels: options.labels && [options.labels[k]!] });
    found.push({ ...best!, classIndex: k });
  }
  return found;
}

/** Mask logits over the padded 1/4 grid -> [n, oh, ow] logits over the original image (x4, crop, resize). */
function toOriginal(op: string, m: Tensor, image: ImageGeometry): Tensor {
  if (m.rank !== 3) throw new RangeError(`${op}: mask logits must be [n, H/4, W/4], got ${m}`);
  const [, h4, w4] = m.shape as [number, number, number];
  const [h, w] = image.imgShape;
  if (4 * h4 < h || 4 * w4 < w) throw new RangeError(`${op}: mask logits ${m} at 1/4 do not cover the ${h}x${w} resized image`);
  const up = resize(m, [4 * h4, 4 * w4], { mode: 'bilinear' });
  const crop = 4 * h4 === h && 4 * w4 === w ? up : pad(up, [0, w - 4 * w4, 0, h - 4 * h4]);
  return resize(crop, image.oriShape as [number, number], { mode: 'bilinear' });
}

/** Queries per batch so that the largest intermediate stays within `bytes`. */
function perBatch(hp: number, wp: number, image: ImageGeometry, bytes: number): number {
  const plane = Math.max(hp * wp, image.imgShape[0] * image.imgShape[1], image.oriShape[0] * image.oriShape[1]) * 4;
  return Math.max(1, Math.floor(bytes / plane));
}

/**
 * Binary masks in original pixels for `queries`: the logits from `maskLogits` (called per batch of
 * queries, its tensors disposed here) resized on the GPU, thresholded at logit 0 into bits there,
 * read back as bits and run-length encoded.
 */
export async function instanceMasks(maskLogits: (queries: readonly number[]) => Tensor, queries: readonly number[], image: ImageGeometry, maskBytes = DEFAULT_MASK_BYTES): Promise<Mask[]> {
  const op = 'gdino instanceMasks';
  checkGeometry(op, image);
  const [oh, ow] = image.oriShape;
  const out: Mask[] = [];
  let batch = 1; // until the first call shows the mask size
  for (let start = 0; start < queries.length; ) {
    const chosen = queries.slice(start, start + batch);
    start += chosen.length;
    const m = maskLogits(chosen);
    const n = m.shape[0];
    if (n !== chosen.length) {
      m.dispose();
      throw new RangeError(`${op}: maskLogits gave ${m} for ${chosen.length} queries`);
    }
    let bits: Tensor;
    try {
      bits = m.engine.scope(() => thresholdBits(toOriginal(op, m, image), { columnMajor: true }));
    } finally {
      m.dispose();
    }
    const words = (await bits.read()) as Uint32Array;
    bits.dispose();
    const perMask = words.length / chosen.length;
    for (let i = 0; i < chosen.length; i++) out.push(rleFromBits(words.subarray(i * perMask, (i + 1) * perMask), oh, ow));
    batch = perBatch(4 * m.shape[1]!, 4 * m.shape[2]!, image, maskBytes);
  }
  return out;
}

/**
 * The semantic map (ADE20K [SEG]): argmax over the first numClasses classes of
 * sum_q sigmoid(logits)[q, c] * sigmoid(mask_q) in original pixels. `maskLogits` gives the mask
 * logits [n, Hp/4, Wp/4] of chosen queries (called per batch of queries, its tensors disposed here).
 *
 * Memory stays within `maskBytes` per intermediate whatever the sizes (900 queries at ADE20K's
 * 512x2048 are 236 MB of mask logits; 150 classes at 512x683 are 210 MB): the 1/4 map is summed
 * over batches of queries, then batches of classes are resized to the original size and read back
 * into a running argmax on the host (equal values keep the lower class, as argmax does).
 */
export async function semanticMap(engine: Engine, logits: Matrix, maskLogits: (queries: readonly number[]) => Tensor, image: ImageGeometry, numClasses: number, maskBytes = DEFAULT_MASK_BYTES): Promise<SemanticMap> {
  const op = 'gdino semanticMap';
  checkGeometry(op, image);
  const l = await hostMatrix(op, 'logits', logits);
  if (!(Number.isInteger(numClasses) && numClasses >= 1 && numClasses <= l.cols)) {
    throw new RangeError(`${op}: numClasses must be an integer in 1..${l.cols} (the logits' columns), got ${numClasses}`);
  }
  let sem: Tensor | null = null;
  try {
    for (let start = 0, batch = 1; start < l.rows; ) {
      const queries = Array.from({ length: Math.min(batch, l.rows - start) }, (_, i) => start + i);
      start += queries.length;
      const m = maskLogits(queries);
      const previous: Tensor | null = sem;
      try {
        if (m.rank !== 3 || m.shape[0] !== queries.length || (previous && (m.shape[1] !== previous.shape[1] || m.shape[2] !== previous.shape[2]))) {
          throw new RangeError(`${op}: maskLogits gave ${m} for ${queries.length} queries; expected [${queries.length}, H/4, W/4], the same for every batch`);
        }
        const [, h4, w4] = m.shape as [number, number, number];
        // This batch's class probabilities [K, n] times its masks [n, h4 * w4], added to the sum so far.
        const probs = new Float32Array(numClasses * queries.length);
        queries.forEach((q, i) => {
          for (let c = 0; c < numClasses; c++) probs[c * queries.length + i] = sigmoid32(l.data[q * l.cols + c]!);
        });
        sem = engine.scope(() => {
          const part = matmul(engine.tensor(probs, [numClasses, queries.length]), sigmoid(m).reshape([queries.length, h4 * w4]), { dtype: 'f32' }).reshape([numClasses, h4, w4]);
          return previous ? add(previous, part) : part;
        });
        batch = Math.max(1, Math.floor(maskBytes / (h4 * w4 * 4)));
      } finally {
        m.dispose();
        if (previous && previous !== sem) previous.dispose();
      }
    }
    return await argmaxInOriginal(op, sem!, image, maskBytes);
  } finally {
    (sem as Tensor | null)?.dispose();
  }
}

/** argmax over the classes of a [K, Hp/4, Wp/4] map in original pixels: batches of classes resized on the GPU, compared on the host. */
async function argmaxInOriginal(op: string, sem: Tensor, image: ImageGeometry, maskBytes: number): Promise<SemanticMap> {
  const [oh, ow] = image.oriShape;
  const [K, h4, w4] = sem.shape as [number, number, number];
  const best = new Float32Array(oh * ow).fill(-Infinity);
  const classes = new Uint32Array(oh * ow);
  const perBatch = Math.max(1, Math.floor(maskBytes / (Math.max(16 * h4 * w4, oh * ow) * 4)));
  for (let c0 = 0; c0 < K; c0 += perBatch) {
    const c1 = Math.min(K, c0 + perBatch);
    const full = sem.engine.scope(() => toOriginal(op, contiguous(sem.reshape([K, h4 * w4]).rows(c0, c1)).reshape([c1 - c0, h4, w4]), image));
    const values = (await full.toArray()) as Float32Array;
    full.dispose();
    for (let c = c0; c < c1; c++) {
      const plane = values.subarray((c - c0) * oh * ow, (c - c0 + 1) * oh * ow);
      for (let p = 0; p < plane.length; p++) {
        if (plane[p]! > best[p]!) {
          best[p] = plane[p]!;
          classes[p] = c;
        }
      }
    }
  }
  return { width: ow, height: oh, classes };
}
