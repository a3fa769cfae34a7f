/**
 * UniPose's pose-phase queries (decoders.md 2.B, B.3.5 "After layer 1" and "Layers 2–5", B.3.7;
 * official TransformerDecoder.forward :3048-3117 and UniPose.forward :483-546). Batch 1, no
 * denoising queries. With m = maxKeypoints (68), G = groups (50), slot s of group g = row g·(1+m)+s:
 *
 *   select (after the last box layer, h its un-normed output, ref its refined boxes):
 *     top        = the G queries with the largest max_k h·text_k, best first (torch.topk)
 *     box slot   = h[top], ref[top]
 *     kpt slot j = content keypointText[j] (zeros for unused slots);
 *                  xy = sigmoid(inverse_sigmoid(box.xy) + pose_embed[-1](keypointText[j]).xy),
 *                  wh = sigmoid(cat(hw, hw_append)[j]) ⊙ box.wh
 *   refine (pose layer l, i = l − boxLayers, h its un-normed output, ref its input reference):
 *     box slot   ref ← sigmoid(bbox_embed[l](h) + inverse_sigmoid(ref))
 *     kpt slot   ref ← sigmoid(inverse_sigmoid(ref) + (pose_embed[i](h).xy, pose_hw_embed[i](h)))
 *   outputs (last layer, hs = decoder.norm(h), ref its input reference):
 *     logits     = hs_box · textᵀ                                       [G, K]
 *     boxes      = sigmoid(bbox_embed[l](hs_box) + inverse_sigmoid(ref_box))  [G, 4]
 *     keypoints  = sigmoid(pose_embed[i](hs_kpt).xy + inverse_sigmoid(ref_kpt.xy)), visibility
 *                  sigmoid(1); laid out x0 y0 x1 y1 … v0 v1 … (official xyxyzz)      [G, 3m]
 *
 * UniPose's inverse_sigmoid clamps at 1e-3 (Grounding DINO's at 1e-5). The heads run on the GPU
 * on the gathered rows only (they are row-wise); the sigmoid/logit arithmetic is on the host, in f32.
 */
import { formatShape, type Tensor } from '../../engine/tensor.js';
import { Mlp } from '../../nn/mlp.js';
import type { Params } from '../../nn/params.js';
import { concat } from '../../ops/copy.js';
import { embedding } from '../../ops/gather.js';
import { matmul } from '../../ops/matmul.js';
import { topK } from '../gdino/selection.js';

export interface PoseQueryConfig {
  dModel: number;
  /** num_body_points: keypoint slots per group (68). */
  maxKeypoints: number;
  /** Pose groups (the official code hard-codes 50). */
  groups: number;
  /** num_box_decoder_layers (2). */
  boxLayers: number;
  /** Decoder layers in all (6). */
  decoderLayers: number;
}

export const UNIPOSE_POSE_DEFAULTS: PoseQueryConfig = { dModel: 256, maxKeypoints: 68, groups: 50, boxLayers: 2, decoderLayers: 6 };

/** The pose phase's queries: hidden states and references of G·(1+m) rows. */
export interface PoseGroups {
  /** [G] the selected box-phase queries, best score first. */
  indices: Int32Array;
  /** [G·(1+m), d] the decoder's next input (the caller owns it). */
  hidden: Tensor;
  /** [G·(1+m), 4] sigmoid (cx, cy, w, h) references. */
  reference: Float32Array;
}

export interface PoseOutputs {
  /** [G, K] class logits. */
  logits: Float32Array;
  /** [G, 4] sigmoid (cx, cy, w, h). */
  boxes: Float32Array;
  /** [G, 3m] x0 y0 x1 y1 … then m visibilities (all sigmoid(1)). */
  keypoints: Float32Array;
}

const NAME = 'unipose pose queries';
const f = Math.fround;
const sigmoid = (x: number): number => f(1 / (1 + Math.exp(-x)));

/** UniPose's util/misc.py inverse_sigmoid (eps 1e-3), in f32. */
export function inverseSigmoid(x: number, eps = 1e-3): number {
  const c = Math.min(Math.max(x, 0), 1);
  return f(Math.log(f(Math.max(c, eps) / Math.max(f(1 - c), eps))));
}

export class PoseQueries {
  constructor(
    readonly config: PoseQueryConfig,
    /** bbox_embed.{0..decoderLayers-1} (shared in the release), → 4. */
    readonly bboxEmbed: readonly Mlp[],
    /** pose_embed.{0..poseLayers} (shared in the release), → 2; the last one seeds the keypoints. */
    readonly poseEmbed: readonly Mlp[],
    /** pose_hw_embed.{0..poseLayers-1} (always shared), → 2. */
    readonly poseHwEmbed: readonly Mlp[],
    /** [m, 2] cat(hw.weight, hw_append.weight): the keypoint sizes, in logit form. */
    readonly keypointWh: Float32Array,
  ) {
    const { maxKeypoints: m, boxLayers, decoderLayers } = config;
    const pose = decoderLayers - boxLayers;
    if (bboxEmbed.length !== decoderLayers || poseEmbed.length !== pose + 1 || poseHwEmbed.length !== pose) {
      throw new RangeError(`${NAME}: ${bboxEmbed.length} bbox_embed, ${poseEmbed.length} pose_embed, ${poseHwEmbed.length} pose_hw_embed; expected ${decoderLayers}, ${pose + 1}, ${pose}`);
    }
    if (keypointWh.length !== 2 * m) throw new RangeError(`${NAME}: keypoint sizes hold ${keypointWh.length} values for ${m} keypoints × 2`);
  }

  /**
   * `p`: the `unipose` scope (bbox_embed.{i}, pose_embed.{i}, pose_hw_embed.{i},
   * transformer.decoder.{hw, hw_append}.weight). The hw tables are read back to the host.
   * `shared` (dec_pred_bbox_embed_share, the release's): each head list is one MLP repeated, read
   * once from index 0; the other indices are its aliases and are freed. The decoder's references
   * to the same lists (`transformer.decoder.{bbox_embed, pose_embed, pose_hw_embed}.{i}`) are
   * aliases either way.
   */
  static async load(p: Params, config: PoseQueryConfig = UNIPOSE_POSE_DEFAULTS, options: { shared?: boolean } = {}): Promise<PoseQueries> {
    const { dModel: d, maxKeypoints: m, boxLayers, decoderLayers } = config;
    const heads = (name: string, n: number, out: number): Mlp[] => {
      const indices = Array.from({ length: n }, (_, i) => i);
      p.releaseAliases(name, [`transformer.decoder.${name}`]);
      if (!options.shared) return indices.map((i) => Mlp.gdino(p.at(name, i), [d, d, d, out]));
      const one = Mlp.gdino(p.at(name, 0), [d, d, d, out]);
      p.releaseAliases(`${name}.0`, indices.slice(1).map((i) => `${name}.${i}`));
      return indices.map(() => one);
    };
    const first = Math.min(17, m);
    const hw = (await p.tensor('transformer.decoder.hw.weight', [first, 2]).toArray()) as Float32Array;
    const rest = m > first ? ((await p.tensor('transformer.decoder.hw_append.weight', [m - first, 2]).toArray()) as Float32Array) : new Float32Array(0);
    const wh = new Float32Array(2 * m);
    wh.set(hw);
    wh.set(rest, hw.length);
    const pose = decoderLayers - boxLayers;
    return new PoseQueries(config, heads('bbox_embed', decoderLayers, 4), heads('pose_embed', pose + 1, 2), heads('pose_hw_embed', pose, 2), wh);
  }

  /** Rows per group (1 box + m keypoints) and rows in all. */
  get rows(): { group: number; total: number } {
    const group = 1 + this.config.maxKeypoints;
    return { group, total: this.config.groups * group };
  }

  /**
   * After the last box layer: `hidden` [Q, d] its un-normed output, `reference` [Q, 4] its refined
   * boxes, `text` [K, d] the object text, `keypointText` [m, d] (zeros beyond the prompt's keypoints).
   */
  async select(hidden: Tensor, reference: Float32Array, text: Tensor, keypointText: Tensor): Promise<PoseGroups> {
    const { dModel: d, maxKeypoints: m, groups: G } = this.config;
    const Q = hidden.shape[0]!;
    if (hidden.rank !== 2 || hidden.shape[1] !== d) throw new RangeError(`${NAME}: hidden ${formatShape(hidden.shape)} must be [queries, ${d}]`);
    if (reference.length !== Q * 4) throw new RangeError(`${NAME}: ${reference.length / 4} references for ${Q} queries`);
    if (text.rank !== 2 || text.shape[1] !== d || text.shape[0]! < 1) throw new RangeError(`${NAME}: text ${formatShape(text.shape)} must be [K >= 1, ${d}]`);
    if (keypointText.rank !== 2 || keypointText.shape[0] !== m || keypointText.shape[1] !== d) throw new RangeError(`${NAME}: keypoint text ${formatShape(keypointText.shape)} must be [${m}, ${d}]`);
    if (G > Q) throw new RangeError(`${NAME}: ${G} groups from ${Q} queries`);
    const engine = hidden.engine;
    const K = text.shape[0]!;
    const { logits, delta } = engine.scope(() => ({
      logits: matmul(hidden, text, { transposeB: true, dtype: 'f32' }),
      // pose_embed[-1] of the keypoint text: the same for every group.
      delta: this.poseEmbed[this.poseEmbed.length - 1]!.forward(keypointText),
    }));
    const [scoresKq, dxy] = await Promise.all([readFree(logits), readFree(delta)]);
    const scores = new Float32Array(Q);
    for (let q = 0; q < Q; q++) {
      let best = -Infinity;
      for (let k = 0; k < K; k++) best = Math.max(best, scoresKq[q * K + k]!);
      scores[q] = best;
    }
    const indices = topK(scores, G);
    const { group, total } = this.rows;
    const ids = new Int32Array(total);
    const ref = new Float32Array(total * 4);
    for (let g = 0; g < G; g++) {
      const q = indices[g]!;
      const o = g * group;
      ids[o] = q;
      const box = reference.subarray(q * 4, q * 4 + 4);
      ref.set(box, o * 4);
      const bx = inverseSigmoid(box[0]!);
      const by = inverseSigmoid(box[1]!);
      for (let j = 0; j < m; j++) {
        ids[o + 1 + j] = Q + j;
        const r = (o + 1 + j) * 4;
        ref[r] = sigmoid(f(bx + dxy[2 * j]!));
        ref[r + 1] = sigmoid(f(by + dxy[2 * j + 1]!));
        ref[r + 2] = f(sigmoid(this.keypointWh[2 * j]!) * box[2]!);
        ref[r + 3] = f(sigmoid(this.keypointWh[2 * j + 1]!) * box[3]!);
      }
    }
    const rows = engine.scope(() => embedding(concat([hidden, keypointText], 0), ids));
    return { indices, hidden: rows, reference: ref };
  }

  /** Pose layer `layer` (boxLayers ≤ layer < decoderLayers): the references after it. */
  async refine(layer: number, hidden: Tensor, reference: Float32Array): Promise<Float32Array> {
    const i = this.poseLayer(layer);
    const { total } = this.rows;
    this.checkRows(hidden, reference);
    const { box, kpt } = this.slots();
    const engine = hidden.engine;
    const out = engine.scope(() => {
      const kptRows = embedding(hidden, kpt);
      return { box: this.bboxEmbed[layer]!.forward(embedding(hidden, box)), xy: this.poseEmbed[i]!.forward(kptRows), wh: this.poseHwEmbed[i]!.forward(kptRows) };
    });
    const [dBox, dXy, dWh] = await Promise.all([readFree(out.box), readFree(out.xy), readFree(out.wh)]);
    const next = new Float32Array(total * 4);
    box.forEach((row, g) => {
      for (let c = 0; c < 4; c++) next[row * 4 + c] = sigmoid(f(dBox[g * 4 + c]! + inverseSigmoid(reference[row * 4 + c]!)));
    });
    kpt.forEach((row, n) => {
      for (let c = 0; c < 4; c++) {
        const delta = c < 2 ? dXy[n * 2 + c]! : dWh[n * 2 + c - 2]!;
        next[row * 4 + c] = sigmoid(f(inverseSigmoid(reference[row * 4 + c]!) + delta));
      }
    });
    return next;
  }

  /** The last layer's heads: `hs` [G·(1+m), d] = decoder.norm(h), `reference` the layer's input. */
  async outputs(hs: Tensor, reference: Float32Array, text: Tensor, layer = this.config.decoderLayers - 1): Promise<PoseOutputs> {
    const i = this.poseLayer(layer);
    const { maxKeypoints: m, groups: G } = this.config;
    this.checkRows(hs, reference);
    const { box, kpt } = this.slots();
    const engine = hs.engine;
    const out = engine.scope(() => {
      const boxRows = embedding(hs, box);
      return {
        logits: matmul(boxRows, text, { transposeB: true, dtype: 'f32' }),
        box: this.bboxEmbed[layer]!.forward(boxRows),
        xy: this.poseEmbed[i]!.forward(embedding(hs, kpt)),
      };
    });
    const [logits, dBox, dXy] = await Promise.all([readFree(out.logits), readFree(out.box), readFree(out.xy)]);
    const boxes = new Float32Array(G * 4);
    box.forEach((row, g) => {
      for (let c = 0; c < 4; c++) boxes[g * 4 + c] = sigmoid(f(dBox[g * 4 + c]! + inverseSigmoid(reference[row * 4 + c]!)));
    });
    const keypoints = new Float32Array(G * 3 * m);
    const visible = sigmoid(1);
    kpt.forEach((row, n) => {
      const g = Math.floor(n / m);
      const j = n % m;
      for (let c = 0; c < 2; c++) keypoints[g * 3 * m + 2 * j + c] = sigmoid(f(dXy[n * 2 + c]! + inverseSigmoid(reference[row * 4 + c]!)));
      keypoints[g * 3 * m + 2 * m + j] = visible;
    });
    return { logits, boxes, keypoints };
  }

  private poseLayer(layer: number): number {
    const { boxLayers, decoderLayers } = this.config;
    if (!Number.isInteger(layer) || layer < boxLayers || layer >= decoderLayers) throw new RangeError(`${NAME}: layer ${layer} is not a pose layer [${boxLayers}, ${decoderLayers})`);
    return layer - boxLayers;
  }

  private checkRows(hidden: Tensor, reference: Float32Array): void {
    const { total } = this.rows;
    const d = this.config.dModel;
    if (hidden.rank !== 2 || hidden.shape[0] !== total || hidden.shape[1] !== d) throw new RangeError(`${NAME}: hidden ${formatShape(hidden.shape)} must be [${total}, ${d}]`);
    if (reference.length !== total * 4) throw new RangeError(`${NAME}: ${reference.length / 4} references for ${total} rows`);
  }

  /** Row indices of the box slots [G] and of the keypoint slots [G·m] (the official kpt_index). */
  private slots(): { box: Int32Array; kpt: Int32Array } {
    const { maxKeypoints: m, groups: G } = this.config;
    const group = 1 + m;
    const box = Int32Array.from({ length: G }, (_, g) => g * group);
    const kpt = Int32Array.from({ length: G * m }, (_, n) => Math.floor(n / m) * group + 1 + (n % m));
    return { box, kpt };
  }
}

async function readFree(t: Tensor): Promise<Float32Array> {
  try {
    return (await t.toArray()) as Float32Array;
  } finally {
    t.dispose();
  }
}
