/**
 * Grounding DINO's two-stage query selection (decoders.md 2.A, A.3 step 7; official
 * `gen_encoder_output_proposals` and OVGroundingDinoModel.forward's two-stage branch):
 *
 *   proposal_i  = (cx, cy, w, h) of encoder token i's cell: ((x+0.5)/valid_W, (y+0.5)/valid_H, 0.05·2^l, same),
 *                 valid iff all four lie in (0.01, 0.99); kept in logit form, +inf when invalid or padded
 *   oq          = enc_output_norm(enc_output(memory with invalid/padded rows zeroed))      [N, d]
 *   score_i     = max_k oq_i · text_k              (the contrastive class head, -inf columns never win)
 *   top         = the num_queries largest scores, best first (torch.topk)
 *   reference   = sigmoid(encoder_output_bbox_embed(oq[top]) + proposal[top])            [Q, 4]
 *
 * The box head runs on the selected rows only (it is row-wise, so this is exact). Scores are read
 * back and ranked on the CPU; proposals and references live on the host (the decoder refines
 * them there, see decoder.ts).
 */
import { formatShape, type Tensor } from '../../engine/tensor.js';
import { Mlp } from '../../nn/mlp.js';
import type { Linear } from '../../nn/linear.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { mul } from '../../ops/elementwise.js';
import { embedding } from '../../ops/gather.js';
import { matmul } from '../../ops/matmul.js';
import type { GdinoConfig } from './config.js';
import { GDINO_NAMES, type DetrNames } from './names.js';

/** What the decoder side takes from the encoder (one image). */
export interface GdinoDecoderInputs {
  /** The encoder's vision output [N, d_model], levels flattened level 0 first (f32). */
  memory: Tensor;
  /** The encoder's final text features [K, d_model], K <= max_text_len: class k is row k. All valid. */
  text: Tensor;
  /** (height, width) of each level. */
  spatialShapes: readonly (readonly [number, number])[];
  /** First token of each level; checked against spatialShapes. */
  levelStartIndex: readonly number[];
  /** (width, height) fraction of each level that is image, not padding (official get_valid_ratio). */
  validRatios: readonly (readonly [number, number])[];
  /** [N], true or 1 where a token is padding (the inverse of the official mask_flatten). */
  paddingMask: ArrayLike<number | boolean>;
}

/** Proposals of every encoder token, host-side. */
export interface Proposals {
  /** [N, 4] (cx, cy, w, h) in logit form; +Infinity where the proposal is invalid or padded. */
  logits: Float32Array;
  /** [N] 1 where the proposal is valid and not padded. */
  valid: Uint8Array;
}

export interface Selection {
  /** [Q] encoder token of each query, best score first. */
  indices: Int32Array;
  /** [N] max-over-classes score of every token (−Infinity never occurs: all text columns are valid). */
  scores: Float32Array;
  /** [Q, 4] sigmoid boxes (cx, cy, w, h) relative to the padded input: the decoder's first reference. */
  reference: Float32Array;
}

const NAME = 'gdino selection';

/** Checks an input set against the config; returns the token count N. */
export function checkDecoderInputs(inputs: GdinoDecoderInputs, config: GdinoConfig): number {
  const { memory, text, spatialShapes, levelStartIndex, validRatios, paddingMask } = inputs;
  const d = config.dModel;
  const L = config.numFeatureLevels;
  if (spatialShapes.length !== L) throw new RangeError(`${NAME}: ${spatialShapes.length} spatial shapes for num_feature_levels ${L}`);
  let n = 0;
  spatialShapes.forEach(([h, w], l) => {
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new RangeError(`${NAME}: level ${l} shape ${JSON.stringify([h, w])} must be positive integers`);
    if (levelStartIndex[l] !== n) throw new RangeError(`${NAME}: level ${l} starts at ${levelStartIndex[l]}; its spatial shapes put it at ${n}`);
    n += h * w;
  });
  if (levelStartIndex.length !== L) throw new RangeError(`${NAME}: ${levelStartIndex.length} level start indices for ${L} levels`);
  if (memory.rank !== 2 || memory.shape[0] !== n || memory.shape[1] !== d) throw new RangeError(`${NAME}: memory ${formatShape(memory.shape)} must be [${n}, ${d}] for spatial shapes ${JSON.stringify(spatialShapes)}`);
  if (text.rank !== 2 || text.shape[1] !== d || text.shape[0]! < 1) throw new RangeError(`${NAME}: text ${formatShape(text.shape)} must be [K >= 1, ${d}]`);
  if (text.shape[0]! > config.maxTextLen) throw new RangeError(`${NAME}: ${text.shape[0]} text tokens exceed max_text_len ${config.maxTextLen}`);
  if (validRatios.length !== L || validRatios.some((r) => r.length !== 2 || r.some((v) => !(v > 0 && v <= 1)))) {
    throw new RangeError(`${NAME}: valid ratios ${JSON.stringify(validRatios)} must be ${L} (width, height) pairs in (0, 1]`);
  }
  if (paddingMask.length !== n) throw new RangeError(`${NAME}: padding mask has ${paddingMask.length} values for ${n} tokens`);
  return n;
}

/**
 * Official gen_encoder_output_proposals. Valid sizes are counted from the first column and first
 * row of each level's mask, as the official code does; all in f32 like torch.
 */
export function encoderProposals(spatialShapes: readonly (readonly [number, number])[], paddingMask: ArrayLike<number | boolean>): Proposals {
  const n = spatialShapes.reduce((s, [h, w]) => s + h * w, 0);
  if (paddingMask.length !== n) throw new RangeError(`encoderProposals: padding mask has ${paddingMask.length} values for ${n} tokens`);
  const logits = new Float32Array(n * 4);
  const valid = new Uint8Array(n);
  const f = Math.fround;
  let start = 0;
  spatialShapes.forEach(([h, w], level) => {
    let validH = 0;
    let validW = 0;
    for (let y = 0; y < h; y++) if (!paddingMask[start + y * w]) validH++;
    for (let x = 0; x < w; x++) if (!paddingMask[start + x]) validW++;
    const size = f(0.05 * 2 ** level);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = start + y * w + x;
        const box = [f(f(x + 0.5) / validW), f(f(y + 0.5) / validH), size, size];
        const ok = !paddingMask[i] && box.every((v) => v > 0.01 && v < 0.99);
        valid[i] = ok ? 1 : 0;
        for (let c = 0; c < 4; c++) logits[i * 4 + c] = ok ? Math.log(box[c]! / f(1 - box[c]!)) : Infinity;
      }
    }
    start += h * w;
  });
  return { logits, valid };
}

/**
 * Indices of the k largest values, largest first: torch.topk's result whenever the values are
 * distinct. Ties (torch leaves their order unspecified) are broken by the lower index here. NaN
 * ranks below everything.
 */
export function topK(values: ArrayLike<number>, k: number): Int32Array {
  if (!Number.isInteger(k) || k < 0 || k > values.length) throw new RangeError(`topK: k ${k} must be an integer in [0, ${values.length}]`);
  const key = (i: number) => (Number.isNaN(values[i]) ? -Infinity : values[i]!);
  const order = Int32Array.from({ length: values.length }, (_, i) => i);
  order.sort((a, b) => key(b) - key(a) || a - b);
  return order.slice(0, k);
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

export class TwoStageSelection {
  private constructor(
    readonly config: GdinoConfig,
    readonly encOutput: Linear,
    readonly encOutputNorm: LayerNorm,
    readonly bboxEmbed: Mlp,
  ) {}

  /**
   * `p`: the `gdino.model` scope (enc_output, enc_output_norm, encoder_output_bbox_embed), or
   * UniPose's `unipose` scope with its names (transformer.enc_output, transformer.enc_output_norm,
   * transformer.enc_out_bbox_embed).
   */
  static load(p: Params, config: GdinoConfig, names: DetrNames = GDINO_NAMES): TwoStageSelection {
    const d = config.dModel;
    const n = names.selection;
    return new TwoStageSelection(
      config,
      p.linear(n.encOutput, d, d),
      p.layerNorm(n.encOutputNorm, d, config.layerNormEps),
      Mlp.gdino(p.at(n.bboxEmbed), [d, d, d, 4]),
    );
  }

  async select(inputs: GdinoDecoderInputs, proposals = encoderProposals(inputs.spatialShapes, inputs.paddingMask)): Promise<Selection> {
    const n = checkDecoderInputs(inputs, this.config);
    const Q = this.config.numQueries;
    if (Q > n) throw new RangeError(`${NAME}: num_queries ${Q} exceeds the ${n} encoder tokens`);
    const engine = inputs.memory.engine;
    const K = inputs.text.shape[0]!;
    // oq [N, d] and the class logits [N, K] (f32; K is small, so the max is taken on the host).
    const { oq, logits } = engine.scope(() => {
      const keep = engine.tensor(Float32Array.from(proposals.valid), [n, 1]);
      const oq = this.encOutputNorm.forward(this.encOutput.forward(mul(inputs.memory, keep, { dtype: 'f32' })), 'f32');
      return { oq, logits: matmul(oq, inputs.text, { transposeB: true, dtype: 'f32' }) };
    });
    let values: Float32Array;
    try {
      values = (await logits.toArray()) as Float32Array;
    } finally {
      logits.dispose();
    }
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let m = -Infinity;
      for (let k = 0; k < K; k++) m = Math.max(m, values[i * K + k]!);
      scores[i] = m;
    }
    const indices = topK(scores, Q);
    const delta = engine.scope(() => {
      const rows = embedding(oq, indices);
      return this.bboxEmbed.forward(rows);
    });
    oq.dispose();
    const reference = await boxesFrom(delta, (q, c) => proposals.logits[indices[q]! * 4 + c]!);
    return { indices, scores, reference };
  }
}

/** sigmoid(delta + base(q, c)) of a [Q, 4] tensor, on the host (f32 like torch); frees delta. */
export async function boxesFrom(delta: Tensor, base: (q: number, c: number) => number): Promise<Float32Array> {
  let d: Float32Array;
  try {
    d = (await delta.toArray()) as Float32Array;
  } finally {
    delta.dispose();
  }
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = sigmoid(Math.fround(d[i]! + base(i >> 2, i & 3)));
  return out;
}
