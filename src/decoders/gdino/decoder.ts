/**
 * Grounding DINO's decoder and heads (decoders.md 2.A, A.3 steps 8-9; official GroundingDinoDecoder,
 * GroundingDinoDecoderLayer and OVGroundingDinoForObjectDetection.forward_test):
 *
 *   h   = query_position_embeddings.weight                      learned content queries [Q, d]
 *   ref = the selection's boxes                                 [Q, 4] (cx, cy, w, h)
 *   per layer:
 *     ref_in = ref · (valid_w, valid_h, valid_w, valid_h) per level          [Q, L, 4]
 *     pos    = reference_points_head(sine4(ref_in at level 0))              [Q, d]
 *     h = LN(h + self_attn(q = k = h + pos, v = h))
 *     h = LN(h + encoder_attn_text(q = h + pos, k = v = text))
 *     h = LN(h + encoder_attn(MSDA, query h + pos, value memory, boxes ref_in))
 *     h = LN(h + fc2(relu(fc1(h))))
 *     ref <- sigmoid(bbox_embed(h) + inverse_sigmoid(ref))                  (h not normed)
 *     hidden = decoder.layer_norm(h)                                        the heads' input
 *   heads of a layer (hidden, and the ref it received):
 *     logits = hidden · textᵀ                                              [Q, K]
 *     boxes  = sigmoid(bbox_embed(hidden) + inverse_sigmoid(ref_received)) [Q, 4]
 *
 * The official logits are padded with −inf to max_text_len columns; only the K real ones are
 * returned. bbox_embed is one MLP shared by every layer (the checkpoint repeats it under
 * `bbox_embed.N` and `model.decoder.bbox_embed.N`: the aliases are freed at load).
 *
 * References stay on the host ([Q, 4] per layer): each layer reads back its 4-column box delta and
 * refines the boxes there, in f32 with the official clamps of inverse_sigmoid (the engine has no
 * log op), and the sine embedding of the boxes is computed there too (position.ts).
 */
import type { DType } from '../../engine/dtype.js';
import type { Tensor } from '../../engine/tensor.js';
import { MultiheadAttention } from '../../nn/attention.js';
import type { Linear } from '../../nn/linear.js';
import { Mlp } from '../../nn/mlp.js';
import { MultiscaleDeformableAttention } from '../../nn/ms-deform-attn.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { cast } from '../../ops/copy.js';
import { add } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import type { GdinoConfig } from './config.js';
import { GDINO_NAMES, layerScope, type DecoderLayerNames, type DetrNames } from './names.js';
import { boxSineValues } from './position.js';
import { boxesFrom, checkDecoderInputs, TwoStageSelection, type GdinoDecoderInputs, type Selection } from './selection.js';

export interface GdinoDecoderOptions {
  /** Storage dtype of the deformable attention's projected memory (default f32). */
  valueDtype?: DType;
  /** Where the layers, norm, query-position head, content queries and selection are (default Grounding DINO's). */
  names?: DetrNames;
}

export interface GdinoDecoderLayerOutput {
  /** decoder.layer_norm of the layer's output [Q, d] (f32): what the heads read. */
  hidden: Tensor;
  /** [Q, 4] the reference boxes the layer received (the heads refine these). */
  referenceIn: Float32Array;
  /** [Q, 4] the refined boxes it passes on (official intermediate_reference_points). */
  reference: Float32Array;
}

export interface GdinoHeads {
  /** [Q, K] class logits (plain dot products; the official −inf padding columns are left out). */
  logits: Tensor;
  /** [Q, 4] sigmoid (cx, cy, w, h) relative to the padded input. */
  boxes: Float32Array;
}

export interface GdinoDetections extends GdinoHeads {
  selection: Selection;
  /** Every layer's output (the last one's hidden is the mask head's input). */
  layers: GdinoDecoderLayerOutput[];
  /** Frees the tensors (logits and every layer's hidden). */
  dispose(): void;
}

/** What one decoder layer reads besides its queries. */
export interface DecoderLayerInputs {
  /** query_pos [Q, d]: reference_points_head(sine4(reference)). */
  queryPos: Tensor;
  /** The scaled references [1, Q, L, 4] (cx, cy, w, h per level). */
  referencePoints: Tensor;
  /** Encoder memory [1, N, d]. */
  memory: Tensor;
  /** [1, N] 1 at padding (the deformable attention zeroes those values); undefined without padding. */
  paddingMask?: Tensor;
  spatialShapes: readonly (readonly [number, number])[];
  levelStartIndex: readonly number[];
  /** The encoder's text [K, d]: the text cross-attention's keys and values. */
  text: Tensor;
  /** Additive mask on the text cross-attention's keys ([1, 1, 1, K], −∞ at padding); undefined when all are valid. */
  textMask?: Tensor;
  /** Additive mask on the self-attention ([1, 1, Q, Q] or [1, H, Q, Q]): UniPose's attn_mask2 in its pose phase. */
  selfAttnMask?: Tensor;
}

/**
 * GroundingDinoDecoderLayer (G:1292-1407), post-norm; UniPose's DeformableTransformerDecoderLayer
 * (modeling_unipose.py:3188-3324) runs the same four steps in the same order under other names:
 * self_attn -> norm2, ca_text -> catext_norm, cross_attn (MSDA, 4-d references with the
 * offset / n_points · wh · 0.5 normaliser, use_4D_normalizer False) -> norm1, linear1/linear2 -> norm3.
 */
export class GdinoDecoderLayer {
  private constructor(
    readonly selfAttn: MultiheadAttention,
    readonly selfAttnNorm: LayerNorm,
    readonly textAttn: MultiheadAttention,
    readonly textAttnNorm: LayerNorm,
    readonly deformAttn: MultiscaleDeformableAttention,
    readonly deformAttnNorm: LayerNorm,
    readonly fc1: Linear,
    readonly fc2: Linear,
    readonly finalNorm: LayerNorm,
  ) {}

  /** `p`: the layer's scope (`gdino.model.decoder.layers.{i}`, `unipose.transformer.decoder.layers.{i}`). */
  static load(p: Params, config: GdinoConfig, names: DecoderLayerNames = GDINO_NAMES.decoderLayer, options: { valueDtype?: DType } = {}): GdinoDecoderLayer {
    const d = config.dModel;
    const heads = config.decoderAttentionHeads;
    const eps = config.layerNormEps;
    return new GdinoDecoderLayer(
      MultiheadAttention.packed(p.at(names.selfAttn), d, heads),
      p.layerNorm(names.selfAttnNorm, d, eps),
      MultiheadAttention.packed(p.at(names.textAttn), d, heads),
      p.layerNorm(names.textAttnNorm, d, eps),
      MultiscaleDeformableAttention.load(
        p.at(names.deformAttn),
        { dModel: d, heads, levels: config.numFeatureLevels, points: config.decoderNPoints },
        { valueDtype: options.valueDtype },
      ),
      p.layerNorm(names.deformAttnNorm, d, eps),
      p.linear(names.fc1, d, config.decoderFfnDim, { act: 'relu' }),
      p.linear(names.fc2, config.decoderFfnDim, d),
      p.layerNorm(names.finalNorm, d, eps),
    );
  }

  /** h [Q, d] -> [Q, d] (not normed: the refinement reads it). Call inside a scope. */
  forward(h: Tensor, x: DecoderLayerInputs): Tensor {
    const [Q, d] = [h.shape[0]!, h.shape[1]!];
    const pos = x.queryPos;
    const qk = add(h, pos);
    let y = this.selfAttnNorm.forward(this.selfAttn.forward(qk, qk, { value: h, residual: h, bias: x.selfAttnMask }));
    y = this.textAttnNorm.forward(this.textAttn.forward(add(y, pos), x.text, { residual: y, bias: x.textMask }));
    const y3 = y.reshape([1, Q, d]);
    const attended = this.deformAttn.forward({
      query: y3,
      input: x.memory,
      referencePoints: x.referencePoints,
      spatialShapes: x.spatialShapes,
      levelStartIndex: x.levelStartIndex,
      paddingMask: x.paddingMask,
      queryPos: pos.reshape([1, Q, d]),
      residual: y3,
    });
    y = this.deformAttnNorm.forward(attended.reshape([Q, d]));
    return this.finalNorm.forward(this.fc2.forward(this.fc1.forward(y), { residual: y }));
  }
}

const NAME = 'GdinoDecoder';

/** Official inverse_sigmoid (eps 1e-5), in f32 steps like torch. */
export function inverseSigmoid(x: number, eps = 1e-5): number {
  const f = Math.fround;
  const c = Math.min(Math.max(x, 0), 1);
  return f(Math.log(f(Math.max(c, eps) / Math.max(f(1 - c), eps))));
}

export class GdinoDecoder {
  private constructor(
    readonly config: GdinoConfig,
    readonly selection: TwoStageSelection,
    /** query_position_embeddings.weight [Q, d] in f32 (a copy of contentSource when that is f16). */
    private readonly content: Tensor,
    private readonly contentSource: Tensor,
    private readonly layers: GdinoDecoderLayer[],
    private readonly norm: LayerNorm,
    private readonly referencePointsHead: Mlp,
    /** The shared bbox_embed. */
    readonly bboxEmbed: Mlp,
  ) {}

  /**
   * `p`: the `gdino` scope (its `model.*` and the shared heads). `options.names` moves the layers,
   * norm, query-position head, content queries and selection (the bbox_embed heads and their
   * aliases stay Grounding DINO's).
   */
  static load(p: Params, config: GdinoConfig, options: GdinoDecoderOptions = {}): GdinoDecoder {
    const d = config.dModel;
    const eps = config.layerNormEps;
    const names = options.names ?? GDINO_NAMES;
    const m = p.at('model');
    const layers = Array.from({ length: config.decoderLayers }, (_, i) =>
      GdinoDecoderLayer.load(layerScope(m, names.decoder.layer, i), config, names.decoderLayer, { valueDtype: options.valueDtype }),
    );
    const table = m.tensor(names.decoder.content, [config.numQueries, d]);
    const content = table.dtype === 'f32' ? table : persistentF32(table);
    const bboxEmbed = Mlp.gdino(p.at('bbox_embed.0'), [d, d, d, 4]);
    const range = (from: number) => Array.from({ length: config.decoderLayers - from }, (_, i) => i + from);
    p.releaseAliases('bbox_embed.0', [...range(1).map((i) => `bbox_embed.${i}`), ...range(0).map((i) => `model.decoder.bbox_embed.${i}`)]);
    return new GdinoDecoder(
      config,
      TwoStageSelection.load(m, config, names),
      content,
      table,
      layers,
      m.layerNorm(names.decoder.norm, d, eps),
      Mlp.gdino(m.at(names.decoder.refPointHead), [2 * d, d, d]),
      bboxEmbed,
    );
  }

  /** Selection, every decoder layer, and the last layer's heads. */
  async forward(inputs: GdinoDecoderInputs): Promise<GdinoDetections> {
    const selection = await this.selection.select(inputs);
    const layers = await this.decode(inputs, selection.reference);
    const last = layers[layers.length - 1]!;
    try {
      const heads = await this.heads(last.hidden, inputs.text, last.referenceIn);
      return { ...heads, selection, layers, dispose: () => [heads.logits, ...layers.map((l) => l.hidden)].forEach((t) => t.dispose()) };
    } catch (err) {
      layers.forEach((l) => l.hidden.dispose());
      throw err;
    }
  }

  /** The decoder layers from the given first reference [Q, 4] (the selection's). */
  async decode(inputs: GdinoDecoderInputs, reference: Float32Array): Promise<GdinoDecoderLayerOutput[]> {
    const n = checkDecoderInputs(inputs, this.config);
    const { dModel: d, numQueries: Q, numFeatureLevels: L } = this.config;
    if (reference.length !== Q * 4) throw new RangeError(`${NAME}: reference has ${reference.length} values; expected [${Q}, 4]`);
    const engine = inputs.memory.engine;
    const memory = inputs.memory.reshape([1, n, d]);
    const padding = engine.tensor(Float32Array.from(inputs.paddingMask, Number), [1, n]);
    const outputs: GdinoDecoderLayerOutput[] = [];
    let h = this.content;
    let ref = reference;
    try {
      for (const layer of this.layers) {
        const refIn = this.scaledReference(ref, inputs.validRatios);
        const step = engine.scope(() => {
          const x = layer.forward(h, {
            queryPos: this.queryPosition(refIn),
            referencePoints: engine.tensor(refIn, [1, Q, L, 4]),
            memory,
            paddingMask: padding,
            spatialShapes: inputs.spatialShapes,
            levelStartIndex: inputs.levelStartIndex,
            text: inputs.text,
          });
          return { h: x, delta: this.bboxEmbed.forward(x), hidden: this.norm.forward(x) };
        });
        if (h !== this.content) h.dispose();
        h = step.h;
        outputs.push({ hidden: step.hidden, referenceIn: ref, reference: ref });
        const prev = ref;
        ref = await boxesFrom(step.delta, (q, c) => inverseSigmoid(prev[q * 4 + c]!));
        outputs[outputs.length - 1]!.reference = ref;
      }
      return outputs;
    } catch (err) {
      outputs.forEach((o) => o.hidden.dispose());
      throw err;
    } finally {
      if (h !== this.content) h.dispose();
      padding.dispose();
      memory.dispose();
    }
  }

  /** Logits and boxes of one layer: its hidden [Q, d] and the reference it received [Q, 4]. */
  async heads(hidden: Tensor, text: Tensor, referenceIn: Float32Array): Promise<GdinoHeads> {
    const engine = hidden.engine;
    const { logits, delta } = engine.scope(() => ({
      logits: matmul(hidden, text, { transposeB: true, dtype: 'f32' }),
      delta: this.bboxEmbed.forward(hidden),
    }));
    try {
      const boxes = await boxesFrom(delta, (q, c) => inverseSigmoid(referenceIn[q * 4 + c]!));
      return { logits, boxes };
    } catch (err) {
      logits.dispose();
      throw err;
    }
  }

  /** reference_points_head(sine4(level-0 reference)) [Q, d] of scaled references [Q, L, 4]. Call inside a scope. */
  queryPosition(referenceIn: Float32Array): Tensor {
    return queryPosition(this.referencePointsHead, referenceIn, this.config.numFeatureLevels);
  }

  /** ref [Q, 4] · (valid_w, valid_h, valid_w, valid_h) of each level -> [Q, L, 4] (f32). */
  scaledReference(ref: Float32Array, validRatios: readonly (readonly [number, number])[]): Float32Array {
    return scaledReference(ref, validRatios);
  }

  /** Frees the f32 copy of an f16 query table (the weights belong to the caller's Weights). */
  dispose(): void {
    if (this.ownsContent) this.content.dispose();
  }

  private get ownsContent(): boolean {
    return this.content.storage !== this.contentSource.storage;
  }
}

/**
 * reference_points_head(sine4(level-0 reference)) [Q, d] of scaled references [Q, L, 4]
 * (the head's input is 2·d wide). Call inside a scope.
 */
export function queryPosition(head: Mlp, referenceIn: Float32Array, levels: number): Tensor {
  const weight = head.layers[0]!.weight; // [d, 2·d]
  const d = weight.shape[1]! / 2;
  const Q = referenceIn.length / (4 * levels);
  const level0 = new Float32Array(Q * 4);
  for (let q = 0; q < Q; q++) level0.set(referenceIn.subarray(q * levels * 4, q * levels * 4 + 4), q * 4);
  return head.forward(weight.engine.tensor(boxSineValues(level0, d), [Q, 2 * d]));
}

/** ref [Q, 4] · (valid_w, valid_h, valid_w, valid_h) of each level -> [Q, L, 4] (f32). */
export function scaledReference(ref: Float32Array, validRatios: readonly (readonly [number, number])[]): Float32Array {
  const L = validRatios.length;
  const Q = ref.length / 4;
  const out = new Float32Array(Q * L * 4);
  for (let q = 0; q < Q; q++) {
    for (let l = 0; l < L; l++) {
      for (let c = 0; c < 4; c++) out[(q * L + l) * 4 + c] = ref[q * 4 + c]! * validRatios[l]![c % 2]!;
    }
  }
  return out;
}

/** An f32 copy that no enclosing scope frees (like a weight): the content queries of an f16 checkpoint. */
export function persistentF32(t: Tensor): Tensor {
  return t.engine.persist(t.engine.scope(() => cast(t, 'f32')));
}
