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
import { boxSineValues } from './position.js';
import { boxesFrom, checkDecoderInputs, TwoStageSelection, type GdinoDecoderInputs, type Selection } from './selection.js';

export interface GdinoDecoderOptions {
  /** Storage dtype of the deformable attention's projected memory (default f32). */
  valueDtype?: DType;
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

interface DecoderLayer {
  selfAttn: MultiheadAttention;
  selfAttnNorm: LayerNorm;
  textAttn: MultiheadAttention;
  textAttnNorm: LayerNorm;
  deformAttn: MultiscaleDeformableAttention;
  deformAttnNorm: LayerNorm;
  fc1: Linear;
  fc2: Linear;
  finalNorm: LayerNorm;
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
    private readonly layers: DecoderLayer[],
    private readonly norm: LayerNorm,
    private readonly referencePointsHead: Mlp,
    /** The shared bbox_embed. */
    readonly bboxEmbed: Mlp,
  ) {}

  /** `p`: the `gdino` scope (its `model.*` and the shared heads). */
  static load(p: Params, config: GdinoConfig, options: GdinoDecoderOptions = {}): GdinoDecoder {
    const d = config.dModel;
    const heads = config.decoderAttentionHeads;
    const eps = config.layerNormEps;
    const m = p.at('model');
    const layer = (i: number): DecoderLayer => {
      const l = m.at('decoder.layers', i);
      return {
        selfAttn: MultiheadAttention.packed(l.at('self_attn'), d, heads),
        selfAttnNorm: l.layerNorm('self_attn_layer_norm', d, eps),
        textAttn: MultiheadAttention.packed(l.at('encoder_attn_text'), d, heads),
        textAttnNorm: l.layerNorm('encoder_attn_text_layer_norm', d, eps),
        deformAttn: MultiscaleDeformableAttention.load(
          l.at('encoder_attn'),
          { dModel: d, heads, levels: config.numFeatureLevels, points: config.decoderNPoints },
          { valueDtype: options.valueDtype },
        ),
        deformAttnNorm: l.layerNorm('encoder_attn_layer_norm', d, eps),
        fc1: l.linear('fc1', d, config.decoderFfnDim, { act: 'relu' }),
        fc2: l.linear('fc2', config.decoderFfnDim, d),
        finalNorm: l.layerNorm('final_layer_norm', d, eps),
      };
    };
    const layers = Array.from({ length: config.decoderLayers }, (_, i) => layer(i));
    const table = m.tensor('query_position_embeddings.weight', [config.numQueries, d]);
    const content = table.dtype === 'f32' ? table : persistentF32(table);
    const bboxEmbed = Mlp.gdino(p.at('bbox_embed.0'), [d, d, d, 4]);
    const range = (from: number) => Array.from({ length: config.decoderLayers - from }, (_, i) => i + from);
    p.releaseAliases('bbox_embed.0', [...range(1).map((i) => `bbox_embed.${i}`), ...range(0).map((i) => `model.decoder.bbox_embed.${i}`)]);
    return new GdinoDecoder(
      config,
      TwoStageSelection.load(m, config),
      content,
      table,
      layers,
      m.layerNorm('decoder.layer_norm', d, eps),
      Mlp.gdino(m.at('decoder.reference_points_head'), [2 * d, d, d]),
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
          const pos = this.queryPosition(refIn);
          const boxes = engine.tensor(refIn, [1, Q, L, 4]);
          const qk = add(h, pos);
          let x = layer.selfAttnNorm.forward(layer.selfAttn.forward(qk, qk, { value: h, residual: h }));
          x = layer.textAttnNorm.forward(layer.textAttn.forward(add(x, pos), inputs.text, { residual: x }));
          const x3 = x.reshape([1, Q, d]);
          const attended = layer.deformAttn.forward({
            query: x3,
            input: memory,
            referencePoints: boxes,
            spatialShapes: inputs.spatialShapes,
            levelStartIndex: inputs.levelStartIndex,
            paddingMask: padding,
            queryPos: pos.reshape([1, Q, d]),
            residual: x3,
          });
          x = layer.deformAttnNorm.forward(attended.reshape([Q, d]));
          x = layer.finalNorm.forward(layer.fc2.forward(layer.fc1.forward(x), { residual: x }));
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
    const { dModel: d, numFeatureLevels: L } = this.config;
    const Q = referenceIn.length / (4 * L);
    const level0 = new Float32Array(Q * 4);
    for (let q = 0; q < Q; q++) level0.set(referenceIn.subarray(q * L * 4, q * L * 4 + 4), q * 4);
    const sine = this.content.engine.tensor(boxSineValues(level0, d), [Q, 2 * d]);
    return this.referencePointsHead.forward(sine);
  }

  /** ref [Q, 4] · (valid_w, valid_h, valid_w, valid_h) of each level -> [Q, L, 4] (f32). */
  scaledReference(ref: Float32Array, validRatios: readonly (readonly [number, number])[]): Float32Array {
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

  /** Frees the f32 copy of an f16 query table (the weights belong to the caller's Weights). */
  dispose(): void {
    if (this.ownsContent) this.content.dispose();
  }

  private get ownsContent(): boolean {
    return this.content.storage !== this.contentSource.storage;
  }
}

/** An f32 copy that no enclosing scope frees (like a weight). */
function persistentF32(t: Tensor): Tensor {
  const engine = t.engine;
  const out = engine.empty(t.shape, 'f32', { persistent: true });
  engine.scope(() => {
    const c = cast(t, 'f32');
    engine.copyBytes(c, 0, out, 0, c.byteLength);
  });
  return out;
}
