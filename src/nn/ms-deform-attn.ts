/**
 * The MSDeformAttn module of Deformable DETR, Grounding DINO and UniPose, with Hugging Face's
 * parameter names (`value_proj`, `sampling_offsets`, `attention_weights`, `output_proj`), as one
 * sequence of GPU ops:
 *
 *   value     = value_proj(input) [· (1 − padding mask)]          -> [B, S, H, Dh]
 *   offsets   = sampling_offsets(query)                          -> [B, Lq, H, L, P, 2]
 *   weights   = softmax over L·P per head of attention_weights(query)
 *   locations = reference points + offsets (2-d points or 4-d boxes, see msDeformSamplingLocations)
 *   output    = output_proj(msDeformAttn(value, shapes, locations, weights))
 *
 * where query = hidden states (+ position embeddings). Offsets, weights and locations are f32;
 * the value may be stored in f16 (half the bytes the sampling kernel reads).
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, Tensor } from '../engine/tensor.js';
import { cast } from '../ops/copy.js';
import { add, mul, unary } from '../ops/elementwise.js';
import { msDeformAttn, type MsDeformAttnKernel } from '../ops/ms-deform-attn.js';
import { FLOAT_DTYPES, parseLevels, type SpatialShapes } from '../ops/index.js';
import { msDeformSamplingLocations } from '../ops/ms-deform-attn.js';
import { softmax } from '../ops/rows.js';
import type { Linear } from './linear.js';
import type { Params } from './params.js';

export interface MsDeformAttnConfig {
  /** Model width d (HF d_model); heads·head_dim. */
  dModel: number;
  /** Attention heads (HF n_heads / encoder_attention_heads). */
  heads: number;
  /** Feature levels (HF num_feature_levels / n_levels). */
  levels: number;
  /** Sampling points per head and level (HF encoder_n_points / decoder_n_points). */
  points: number;
}

export interface MsDeformAttnModuleOptions {
  /** Storage dtype of the projected value the sampling kernel reads; default the input's dtype. */
  valueDtype?: DType;
  /** Force a sampling kernel variant (tests, benchmarks). */
  kernel?: MsDeformAttnKernel;
}

export interface MsDeformAttnParams {
  valueProj: Linear;
  samplingOffsets: Linear;
  attentionWeights: Linear;
  outputProj: Linear;
}

export interface MsDeformAttnInputs {
  /** Hidden states of the queries [B, Lq, d] (HF hidden_states). */
  query: Tensor;
  /** Flattened multi-scale features [B, S, d], S = Σ H_l·W_l (HF encoder_hidden_states). */
  input: Tensor;
  /** [B, Lq, L, 2] normalised (x, y) points, or [B, Lq, L, 4] (cx, cy, w, h) boxes. */
  referencePoints: Tensor;
  /** (height, width) of each level. */
  spatialShapes: SpatialShapes;
  /** Checked against spatialShapes when given. */
  levelStartIndex?: ArrayLike<number>;
  /**
   * [B, S], true or 1 where a position is padding: its value is zeroed (Deformable DETR's
   * input_padding_mask; Hugging Face's attention_mask is the inverse). Host data or a GPU tensor.
   */
  paddingMask?: Tensor | ArrayLike<number | boolean>;
  /** Added to the query before the offset and weight projections (HF position_embeddings) [B, Lq, d]. */
  queryPos?: Tensor;
  /** Added to the output projection in its dispatch (the layer's skip connection), shaped like the output [B, Lq, d]. */
  residual?: Tensor;
}

const NAME = 'MultiscaleDeformableAttention';

export class MultiscaleDeformableAttention {
  readonly headDim: number;

  private constructor(
    readonly config: MsDeformAttnConfig,
    readonly params: MsDeformAttnParams,
    readonly options: MsDeformAttnModuleOptions = {},
  ) {
    this.headDim = config.dModel / config.heads;
  }

  /**
   * Reads `value_proj`, `sampling_offsets`, `attention_weights` and `output_proj` (biases where
   * present) in the scope `p`, e.g. `p.at('model.encoder.layers', 0, 'self_attn')`, after checking
   * the config.
   */
  static load(p: Params, config: MsDeformAttnConfig, options: MsDeformAttnModuleOptions = {}): MultiscaleDeformableAttention {
    const { dModel: d, heads: H, levels: L, points: P } = config;
    for (const [key, v] of Object.entries(config)) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${NAME}: config.${key} must be a positive integer, got ${v}`);
    }
    if (d % H) throw new RangeError(`${NAME}: dModel ${d} is not divisible by ${H} heads`);
    if (options.valueDtype && !FLOAT_DTYPES.includes(options.valueDtype)) {
      throw new TypeError(`${NAME}: valueDtype ${options.valueDtype}; expected ${FLOAT_DTYPES.join(' or ')}`);
    }
    const linear = (name: string, out: number) => p.linear(name, d, out, { bias: 'optional' });
    const params = {
      valueProj: linear('value_proj', d),
      samplingOffsets: linear('sampling_offsets', H * L * P * 2),
      attentionWeights: linear('attention_weights', H * L * P),
      outputProj: linear('output_proj', d),
    };
    return new MultiscaleDeformableAttention(config, params, options);
  }

  /** [B, Lq, d] in the query's dtype. */
  forward(inputs: MsDeformAttnInputs): Tensor {
    const { heads: H, levels: L, points: P } = this.config;
    const { query, input, referencePoints } = inputs;
    const geometry = this.checkInputs(inputs);
    const { B, Lq, S } = geometry;
    const valueDtype = this.options.valueDtype ?? input.dtype;
    const { valueProj, samplingOffsets, attentionWeights, outputProj } = this.params;
    const temps: Tensor[] = [];
    const keep = <T extends Tensor>(t: T): T => (temps.push(t), t);
    try {
      // Value: projected, padding zeroed, stored in the dtype the sampling kernel reads.
      let value = keep(valueProj.forward(input, { dtype: inputs.paddingMask ? 'f32' : valueDtype }));
      if (inputs.paddingMask) value = keep(mul(value, keep(this.keepMask(inputs.paddingMask, B, S, input.engine)), { dtype: valueDtype }));
      const q = inputs.queryPos ? keep(add(query, inputs.queryPos)) : query;
      const offsets = keep(samplingOffsets.forward(q, { dtype: 'f32' }));
      const logits = keep(attentionWeights.forward(q, { dtype: 'f32' }));
      const perHead = keep(logits.reshape([B * Lq * H, L * P]));
      const weights = keep(softmax(perHead));
      const offsets6 = keep(offsets.reshape([B, Lq, H, L, P, 2]));
      const locations = keep(msDeformSamplingLocations(referencePoints, offsets6, inputs.spatialShapes));
      const value4 = keep(value.reshape([B, S, H, this.headDim]));
      const weights5 = keep(weights.reshape([B, Lq, H, L, P]));
      const attended = keep(msDeformAttn(value4, inputs.spatialShapes, locations, weights5, {
        levelStartIndex: inputs.levelStartIndex,
        dtype: valueDtype,
        kernel: this.options.kernel,
      }));
      return outputProj.forward(attended, { dtype: query.dtype, residual: inputs.residual });
    } finally {
      temps.forEach((t) => t.dispose());
    }
  }

  private checkInputs(inputs: MsDeformAttnInputs): { B: number; Lq: number; S: number } {
    const { dModel: d, levels: L } = this.config;
    const { query, input, referencePoints, queryPos } = inputs;
    if (query.rank !== 3 || query.shape[2] !== d) throw new RangeError(`${NAME}: query ${formatShape(query.shape)} must be [batch, queries, ${d}]`);
    const [B, Lq] = query.shape as [number, number];
    if (input.rank !== 3 || input.shape[0] !== B || input.shape[2] !== d) {
      throw new RangeError(`${NAME}: input ${formatShape(input.shape)} must be [${B}, tokens, ${d}] for query ${formatShape(query.shape)}`);
    }
    const S = input.shape[1]!;
    const levels = parseLevels(NAME, inputs.spatialShapes, inputs.levelStartIndex);
    if (levels.shapes.length !== L) throw new RangeError(`${NAME}: ${levels.shapes.length} spatial shapes given for a module of ${L} levels`);
    if (levels.tokens !== S) {
      throw new RangeError(`${NAME}: spatial shapes hold ${levels.tokens} tokens but input ${formatShape(input.shape)} has ${S}`);
    }
    const r = referencePoints.shape;
    if (r.length !== 4 || r[0] !== B || r[1] !== Lq || r[2] !== L || (r[3] !== 2 && r[3] !== 4)) {
      throw new RangeError(`${NAME}: reference points ${formatShape(r)} must be [${B}, ${Lq}, ${L}, 2] or [${B}, ${Lq}, ${L}, 4]`);
    }
    if (queryPos && (queryPos.rank !== 3 || queryPos.shape.some((v, i) => v !== query.shape[i]))) {
      throw new RangeError(`${NAME}: query position embeddings ${formatShape(queryPos.shape)} must match query ${formatShape(query.shape)}`);
    }
    const mask = inputs.paddingMask;
    if (mask !== undefined) {
      const size = isTensor(mask) ? mask.size : mask.length;
      const shapeOk = isTensor(mask) ? mask.rank === 2 && mask.shape[0] === B && mask.shape[1] === S : size === B * S;
      if (!shapeOk) {
        const got = isTensor(mask) ? formatShape(mask.shape) : `${size} values`;
        throw new RangeError(`${NAME}: padding mask has ${got}; expected [${B}, ${S}] to match input ${formatShape(input.shape)}`);
      }
    }
    return { B, Lq, S };
  }

  /** [B, S, 1] f32: 0 at padded positions, 1 elsewhere. */
  private keepMask(mask: Tensor | ArrayLike<number | boolean>, B: number, S: number, engine: Engine): Tensor {
    if (!isTensor(mask)) {
      const keep = new Float32Array(B * S);
      for (let i = 0; i < keep.length; i++) keep[i] = mask[i] ? 0 : 1;
      return engine.tensor(keep, [B, S, 1]);
    }
    // A GPU mask holds 0 or 1: keep = 1 - mask.
    const asFloat = mask.dtype === 'f32' || mask.dtype === 'f16' ? mask.view(mask.shape) : cast(mask, 'f32');
    const keep = unary(asFloat, 'none', { alpha: -1, beta: 1, dtype: 'f32' });
    asFloat.dispose();
    const shaped = keep.reshape([B, S, 1]);
    keep.dispose();
    return shaped;
  }
}

function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}
