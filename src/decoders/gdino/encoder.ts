/**
 * Grounding DINO's encoder side (decoders.md 2.A, A.3 steps 3–5): from the backbone's stage maps
 * and the text tokens to the encoder's memory and text, with everything the decoder needs to
 * read them (levels, padding, valid ratios).
 *
 *   input projections   level l < 3: GN(Conv1×1(stage l+2)); level 3: GN(Conv3×3/2(last stage))
 *   masks, positions    the pixel mask nearest-resized per level; 2-D sine of each; + level_embed
 *   flatten             [1, d, h, w] per level -> [N, d], N = Σ h·w
 *   6 × encoder layer   (a) fusion: vision and text attend to each other (BiMultiHeadAttention)
 *                       (b) text enhancer: text self-attention + FFN (torch MultiheadAttention)
 *                       (c) deformable self-attention of the vision tokens + FFN
 *
 * Written from OVGroundingDinoModel.forward (:2388-2450) and GroundingDinoEncoder*
 * (:787-1289, 1560-1722) of the official modeling_ov_grounding_dino_mask_dn.py. Batch 1. Every
 * size comes from GdinoConfig; weights are read under the checkpoint's names in the scope
 * `gdino.model`. The fusion's N × K attentions run through the fused attention kernel, so no
 * score matrix (let alone N × N) is materialised; arithmetic is f32 whatever the weights' dtype.
 */
import type { Engine } from '../../engine/engine.js';
import { formatShape, type Tensor } from '../../engine/tensor.js';
import { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import { MultiheadAttention } from '../../nn/attention.js';
import { MultiscaleDeformableAttention, type MsDeformAttnModuleOptions } from '../../nn/ms-deform-attn.js';
import { GroupNorm, LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { attention } from '../../ops/attention.js';
import { concat, transpose } from '../../ops/copy.js';
import { add, mul } from '../../ops/elementwise.js';
import { embedding } from '../../ops/gather.js';
import type { GdinoConfig } from './config.js';
import { GDINO_NAMES, layerScope, type DeformableLayerNames, type DetrNames, type FusionNames, type TextLayerNames } from './names.js';
import { levelMask, maskSineEmbedding, textSineEmbedding, validRatio, type LevelMask, type PixelMask } from './position.js';

export type { PixelMask } from './position.js';

/** GroupNorm groups of the input projections (nn.GroupNorm(32, d_model) in the official code). */
const INPUT_PROJ_GROUPS = 32;
/** Backbone stages that get a 1×1 input projection: the last three (intermediate_channel_sizes[-3:]). */
const PROJECTED_STAGES = 3;

export interface GdinoEncoderInputs {
  /** The backbone's output stages, [1, C_i, h_i, w_i] NCHW, all of them (levels come from the last three). */
  stages: readonly Tensor[];
  /** The padded input's pixel mask (1 = image). */
  pixelMask: PixelMask;
  /** Text tokens [K, d_model] (one per block from patch2query). */
  text: Tensor;
  /**
   * Leading valid text tokens (default K: all, as VisionLLM v2 always passes). Padding tokens are
   * masked out of the vision←text softmax and see only themselves in the text self-attention
   * (generate_masks_with_text_query_masks), with position id 0.
   */
  textValid?: number;
}

/** One feature level of the flattened memory. */
export interface GdinoLevel {
  height: number;
  width: number;
  /** First token of the level in the flattened memory (level_start_index). */
  start: number;
  /** Valid rows (the mask's first column) and columns (its first row): the image's extent in this level. */
  validHeight: number;
  validWidth: number;
}

/** Where the vision tokens are and which are padding: host data, fixed by the image's sizes. */
export interface GdinoGeometry {
  /** Per level, finest first. */
  levels: GdinoLevel[];
  /** [height, width] per level (spatial_shapes). */
  spatialShapes: [number, number][];
  /** levels[l].start (level_start_index). */
  levelStartIndex: number[];
  /** N = Σ height·width. */
  tokens: number;
  /** Per level [valid width / width, valid height / height] (valid_ratios; float32 values). */
  validRatios: [number, number][];
  /** [N], 1 where a token is padding (Hugging Face's ~mask_flatten, the decoder's key padding mask). */
  paddingMask: Uint8Array;
  /** Whether any token is padding. */
  padded: boolean;
}

/** The flattened encoder inputs (A.3 step 4): what the layers read besides vision and text. */
export interface GdinoEncoderPrepared extends GdinoGeometry {
  /** Projected sources, flattened [N, d] (source_flatten). */
  sources: Tensor;
  /** Position embeddings + level_embed, flattened [N, d] f32 (lvl_pos_embed_flatten). */
  lvlPos: Tensor;
  /** Level-cell centres per level [1, N, L, 2] (x, y) f32 (GroundingDinoEncoder.get_reference_points). */
  referencePoints: Tensor;
  /** [1, N] f32, 1 at padding: the deformable attention's value mask; undefined without padding. */
  paddingTensor?: Tensor;
  /** [1, 1, 1, N] f32, −∞ at padding: the text←vision softmax's mask; undefined without padding. */
  visionPadBias?: Tensor;
  /** Leading valid text tokens. */
  textValid: number;
  /** [1, 1, 1, K] f32, −∞ at text padding: the vision←text softmax's mask; undefined when all are valid. */
  textPadBias?: Tensor;
  /** [1, 1, K, K] f32 additive text self-attention mask; undefined when all are valid. */
  textSelfMask?: Tensor;
  /** Text position embeddings [K, d] f32 (get_sine_pos_embed of the position ids). */
  textPos: Tensor;
}

/**
 * The contract with the decoder slice: the encoder's memory and text with their geometry. The
 * tensors are the caller's: dispose() frees them.
 */
export interface GdinoEncoderOutput extends GdinoGeometry {
  /** Vision tokens after the encoder [N, d] (last_hidden_state_vision), levels one after another. */
  memory: Tensor;
  /** Text tokens after the encoder [K, d] (last_hidden_state_text): the decoder's text keys and the class embeddings. */
  text: Tensor;
  /** Leading valid text tokens (K when all are valid). */
  textValid: number;
  /** [1, N] f32, 1 at padding (for MultiscaleDeformableAttention's paddingMask); undefined without padding. */
  paddingTensor?: Tensor;
  /** [1, 1, 1, K] f32, −∞ at text padding (an attention mask over the text keys); undefined when all are valid. */
  textPadBias?: Tensor;
  /** Position embeddings + level_embed [N, d] f32 (not needed by the decoder; kept for tests). */
  lvlPos: Tensor;
  dispose(): void;
}

export interface GdinoEncoderOptions {
  /** Passed to every deformable attention (e.g. valueDtype 'f16'). */
  deformable?: MsDeformAttnModuleOptions;
  /** Where the weights are (default Grounding DINO's; UniPose's is unipose/names.ts). */
  names?: DetrNames;
}

interface InputProjection {
  conv: Conv2d;
  norm: GroupNorm;
  /** Index of the stage it reads, or -1: the previous level's source. */
  stage: number;
}

/**
 * GroundingDinoFusionLayer with its GroundingDinoBiMultiHeadAttention (`attn`); UniPose's
 * BiAttentionBlock with its BiMultiHeadAttention is the same maths (modeling_unipose.py:1943-2083,
 * 2169-2203), global-max subtraction and ±5e4 clamps included (stable_softmax_2d and the clamps
 * are all True, :1966-1968, 2030-2044).
 */
class FusionLayer {
  readonly heads: number;
  readonly headDim: number;
  readonly normVision: LayerNorm;
  readonly normText: LayerNorm;
  readonly visionProj: Linear;
  readonly textProj: Linear;
  readonly valuesVisionProj: Linear;
  readonly valuesTextProj: Linear;
  readonly outVisionProj: Linear;
  readonly outTextProj: Linear;
  readonly visionParam: Tensor;
  readonly textParam: Tensor;

  constructor(p: Params, c: GdinoConfig, n: FusionNames) {
    const d = c.dModel;
    // embed_dim = encoder_ffn_dim // 2, num_heads = encoder_attention_heads // 2 (BiMultiHeadAttention.__init__).
    const embed = Math.floor(c.encoderFfnDim / 2);
    this.heads = Math.floor(c.encoderAttentionHeads / 2);
    if (this.heads < 1 || embed % this.heads) {
      throw new RangeError(`${p.name(n.attn)}: fusion width ${embed} (encoder_ffn_dim / 2) is not divisible by ${this.heads} heads (encoder_attention_heads / 2)`);
    }
    this.headDim = embed / this.heads;
    const eps = c.layerNormEps;
    this.normVision = p.layerNorm(n.normVision, d, eps);
    this.normText = p.layerNorm(n.normText, d, eps);
    const a = p.at(n.attn);
    this.visionProj = a.linear(n.visionProj, d, embed);
    this.textProj = a.linear(n.textProj, d, embed);
    this.valuesVisionProj = a.linear(n.valuesVisionProj, d, embed);
    this.valuesTextProj = a.linear(n.valuesTextProj, d, embed);
    this.outVisionProj = a.linear(n.outVisionProj, embed, d);
    this.outTextProj = a.linear(n.outTextProj, embed, d);
    this.visionParam = p.tensor(n.visionParam, [d]);
    this.textParam = p.tensor(n.textParam, [d]);
  }

  /** vision [N, d], text [K, d] -> both updated. Call inside a scope. */
  forward(vision: Tensor, text: Tensor, s: GdinoEncoderPrepared): { vision: Tensor; text: Tensor } {
    const [N, K] = [vision.shape[0]!, text.shape[0]!];
    const heads = (t: Tensor, L: number) => t.reshape([1, L, this.heads, this.headDim]);
    // Pre-norm: the residuals are added to the normed features.
    const v = this.normVision.forward(vision);
    const t = this.normText.forward(text);
    const vq = heads(this.visionProj.forward(v), N);
    const tk = heads(this.textProj.forward(t), K);
    const vv = heads(this.valuesVisionProj.forward(v), N);
    const tv = heads(this.valuesTextProj.forward(t), K);
    const scale = 1 / Math.sqrt(this.headDim);
    // A = (v_q·d_h^-½)·t_kᵀ [heads, N, K]. vision←text: softmax over the text (padding masked);
    // text←vision: softmax of Aᵀ over the vision tokens (padding masked). The official global-max
    // subtraction and ±5e4 clamp change nothing in f32 and are left out.
    const toVision = attention(vq, tk, tv, { layout: 'blhd', scale, mask: s.textPadBias }).reshape([N, -1]);
    const toText = attention(tk, vq, vv, { layout: 'blhd', scale, mask: s.visionPadBias }).reshape([K, -1]);
    // v += vision_param ⊙ Δv, t += text_param ⊙ Δt.
    const dv = mul(this.outVisionProj.forward(toVision, { dtype: 'f32' }), this.visionParam);
    const dt = mul(this.outTextProj.forward(toText, { dtype: 'f32' }), this.textParam);
    return { vision: add(v, dv, { dtype: vision.dtype }), text: add(t, dt, { dtype: text.dtype }) };
  }
}

/**
 * GroundingDinoTextEnhancerLayer: post-norm self-attention (torch MultiheadAttention) and FFN.
 * UniPose's text layer (TransformerEncoderLayer, modeling_unipose.py:2122-2166, seq-first) is the
 * same: q = k = text + pos, v = text, attn_mask only (its key padding mask is commented out, :2159).
 */
class TextEnhancerLayer {
  readonly selfAttn: MultiheadAttention;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly normBefore: LayerNorm;
  readonly normAfter: LayerNorm;

  constructor(p: Params, c: GdinoConfig, n: TextLayerNames) {
    const d = c.dModel;
    const ffn = Math.floor(c.encoderFfnDim / 2);
    this.selfAttn = MultiheadAttention.packed(p.at(n.selfAttn), d, Math.floor(c.encoderAttentionHeads / 2));
    this.fc1 = p.linear(n.fc1, d, ffn, { act: 'relu' });
    this.fc2 = p.linear(n.fc2, ffn, d);
    this.normBefore = p.layerNorm(n.normAttn, d, c.layerNormEps);
    this.normAfter = p.layerNorm(n.normFfn, d, c.layerNormEps);
  }

  /** text [K, d] -> [K, d]: q = k = text + pos, v = text. Call inside a scope. */
  forward(text: Tensor, s: GdinoEncoderPrepared): Tensor {
    const qk = add(text, s.textPos, { dtype: text.dtype });
    const attended = this.selfAttn.forward(qk, qk, { value: text, residual: text, bias: s.textSelfMask });
    const h = this.normBefore.forward(attended);
    return this.normAfter.forward(this.fc2.forward(this.fc1.forward(h), { residual: h }));
  }
}

/**
 * GroundingDinoDeformableLayer: post-norm multi-scale deformable self-attention and FFN; UniPose's
 * DeformableTransformerEncoderLayer (modeling_unipose.py:3132-3185) is the same.
 */
class DeformableLayer {
  readonly selfAttn: MultiscaleDeformableAttention;
  readonly selfAttnLayerNorm: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly finalLayerNorm: LayerNorm;

  constructor(p: Params, c: GdinoConfig, n: DeformableLayerNames, options: MsDeformAttnModuleOptions) {
    const d = c.dModel;
    const config = { dModel: d, heads: c.encoderAttentionHeads, levels: c.numFeatureLevels, points: c.encoderNPoints };
    this.selfAttn = MultiscaleDeformableAttention.load(p.at(n.selfAttn), config, options);
    this.selfAttnLayerNorm = p.layerNorm(n.normAttn, d, c.layerNormEps);
    this.fc1 = p.linear(n.fc1, d, c.encoderFfnDim, { act: 'relu' });
    this.fc2 = p.linear(n.fc2, c.encoderFfnDim, d);
    this.finalLayerNorm = p.layerNorm(n.normFfn, d, c.layerNormEps);
  }

  /** vision [N, d] -> [N, d]. Call inside a scope. */
  forward(vision: Tensor, s: GdinoEncoderPrepared): Tensor {
    const v = vision.reshape([1, s.tokens, -1]);
    const attended = this.selfAttn.forward({
      query: v,
      input: v,
      referencePoints: s.referencePoints,
      spatialShapes: s.spatialShapes,
      levelStartIndex: s.levelStartIndex,
      paddingMask: s.paddingTensor,
      queryPos: s.lvlPos.reshape([1, s.tokens, -1]),
      residual: v,
    });
    const h = this.selfAttnLayerNorm.forward(attended.reshape(vision.shape));
    return this.finalLayerNorm.forward(this.fc2.forward(this.fc1.forward(h), { residual: h }));
  }
}

/**
 * GroundingDinoEncoderLayer: fusion, then the text enhancer, then the deformable layer. UniPose's
 * TransformerEncoder.forward runs the same order from three lists (fusion_layers[i], text_layers[i],
 * layers[i]; modeling_unipose.py:2826-2866).
 */
class EncoderLayer {
  readonly fusionLayer: FusionLayer;
  readonly textEnhancerLayer: TextEnhancerLayer;
  readonly deformableLayer: DeformableLayer;

  constructor(p: Params, i: number, c: GdinoConfig, options: GdinoEncoderOptions) {
    const n = options.names ?? GDINO_NAMES;
    this.fusionLayer = new FusionLayer(layerScope(p, n.encoder.fusion, i), c, n.fusion);
    this.textEnhancerLayer = new TextEnhancerLayer(layerScope(p, n.encoder.text, i), c, n.textLayer);
    this.deformableLayer = new DeformableLayer(layerScope(p, n.encoder.deformable, i), c, n.deformableLayer, options.deformable ?? {});
  }

  forward(vision: Tensor, text: Tensor, s: GdinoEncoderPrepared): { vision: Tensor; text: Tensor } {
    const fused = this.fusionLayer.forward(vision, text, s);
    return { text: this.textEnhancerLayer.forward(fused.text, s), vision: this.deformableLayer.forward(fused.vision, s) };
  }
}

export class GdinoEncoder {
  private constructor(
    readonly config: GdinoConfig,
    readonly stageChannels: readonly number[],
    readonly inputProj: readonly InputProjection[],
    readonly levelEmbed: Tensor,
    readonly layers: readonly EncoderLayer[],
  ) {}

  /**
   * Reads `input_proj_vision.*`, `level_embed` and `encoder.layers.*` in the scope `p`
   * (`gdino.model`), or the same modules under `options.names` (UniPose's: `input_proj.*`,
   * `transformer.level_embed`, `transformer.encoder.{fusion_layers,text_layers,layers}.*` in the
   * scope `unipose`). `stageChannels`: the channels of each of the backbone's output stages.
   */
  static load(p: Params, config: GdinoConfig, stageChannels: readonly number[], options: GdinoEncoderOptions = {}): GdinoEncoder {
    const d = config.dModel;
    const L = config.numFeatureLevels;
    if (stageChannels.length < PROJECTED_STAGES || !stageChannels.every((c) => Number.isInteger(c) && c > 0)) {
      throw new RangeError(`GdinoEncoder: stage channels ${JSON.stringify(stageChannels)} must be at least ${PROJECTED_STAGES} positive integers`);
    }
    if (!(config.encoderLayers >= 1)) throw new RangeError(`GdinoEncoder: encoder_layers ${config.encoderLayers} must be at least 1`);
    if (L < PROJECTED_STAGES) throw new RangeError(`GdinoEncoder: num_feature_levels ${L} < ${PROJECTED_STAGES} is not supported (the release has 4)`);
    const names = options.names ?? GDINO_NAMES;
    const inputProj: InputProjection[] = [];
    const first = stageChannels.length - PROJECTED_STAGES;
    for (let l = 0; l < L; l++) {
      const q = p.at(names.inputProj, l);
      const projected = l < PROJECTED_STAGES;
      // Extra levels: a 3×3 stride-2 convolution of the last stage, then of the previous level.
      const inChannels = projected ? stageChannels[first + l]! : l === PROJECTED_STAGES ? stageChannels[stageChannels.length - 1]! : d;
      const conv = projected ? q.conv2d('0', inChannels, d, 1) : q.conv2d('0', inChannels, d, 3, { stride: 2, padding: 1 });
      inputProj.push({ conv, norm: q.groupNorm('1', INPUT_PROJ_GROUPS, d), stage: projected ? first + l : l === PROJECTED_STAGES ? stageChannels.length - 1 : -1 });
    }
    const levelEmbed = p.tensor(names.levelEmbed, [L, d]);
    const layers = Array.from({ length: config.encoderLayers }, (_, i) => new EncoderLayer(p, i, config, options));
    return new GdinoEncoder(config, stageChannels, inputProj, levelEmbed, layers);
  }

  private get engine(): Engine {
    return this.levelEmbed.engine;
  }

  /** The whole encoder side: prepare, then every layer. */
  forward(inputs: GdinoEncoderInputs): GdinoEncoderOutput {
    const s = this.prepare(inputs);
    let vision = s.sources;
    let text = inputs.text;
    for (let i = 0; i < this.layers.length; i++) {
      const next = this.layer(i, vision, text, s);
      if (vision !== s.sources) vision.dispose();
      if (text !== inputs.text) text.dispose();
      ({ vision, text } = next);
    }
    const { sources, referencePoints, visionPadBias, textSelfMask, textPos, ...kept } = s;
    [sources, referencePoints, visionPadBias, textSelfMask, textPos].forEach((t) => t?.dispose());
    const owned = [vision, text, kept.lvlPos, kept.paddingTensor, kept.textPadBias];
    return { ...kept, memory: vision, text, dispose: () => owned.forEach((t) => t?.dispose()) };
  }

  /** Encoder layer i: (vision [N, d], text [K, d]) -> both updated (new tensors; the inputs are kept). */
  layer(i: number, vision: Tensor, text: Tensor, s: GdinoEncoderPrepared): { vision: Tensor; text: Tensor } {
    const layer = this.layers[i];
    if (!layer) throw new RangeError(`GdinoEncoder: no layer ${i} (encoder_layers ${this.layers.length})`);
    return this.engine.scope(() => layer.forward(vision, text, s));
  }

  /**
   * A.3 steps 3–4: input projections, masks, position embeddings, valid ratios, reference points
   * and flattening. The tensors are the caller's.
   */
  prepare(inputs: GdinoEncoderInputs): GdinoEncoderPrepared {
    const c = this.config;
    const d = c.dModel;
    const engine = this.engine;
    const { stages, text } = this.checkInputs(inputs);
    const K = text.shape[0]!;
    const textValid = inputs.textValid ?? K;
    if (!Number.isInteger(textValid) || textValid < 1 || textValid > K) {
      throw new RangeError(`GdinoEncoder: textValid ${textValid} must be an integer in [1, ${K}] for text ${formatShape(text.shape)}`);
    }
    return engine.scope(() => {
      // Input projections, each [1, d, h, w].
      const maps: Tensor[] = [];
      for (const proj of this.inputProj) {
        const x = proj.stage >= 0 ? stages[proj.stage]! : maps[maps.length - 1]!;
        maps.push(proj.norm.forward(proj.conv.forward(x, { dtype: 'f32' })));
      }
      // Host geometry: each level's mask from the pixel mask, valid ratios, padding.
      const masks = maps.map((m) => levelMask(inputs.pixelMask, m.shape[2]!, m.shape[3]!));
      const geometry = levelGeometry(masks);
      const N = geometry.tokens;
      // Flatten: [1, d, h, w] -> [h·w, d], levels one after another.
      const sources = concat(maps.map((m) => transpose(m.reshape([d, -1]))), 0);
      // Position embeddings (host, see position.ts) + level_embed[l] for every token of level l.
      // UniPose's PositionEmbeddingSineHW (modeling_unipose.py:1054-1078) cumsums ~mask, its mask
      // True at padding: the same cumsum of valid cells, with T_H = T_W (20 in the release).
      const pos = new Float32Array(N * d);
      masks.forEach((m, l) => pos.set(maskSineEmbedding(m, d / 2, c.positionalEmbeddingTemperature), geometry.levels[l]!.start * d));
      const levelIds = new Uint32Array(N);
      geometry.levels.forEach((lv, l) => levelIds.fill(l, lv.start, lv.start + lv.height * lv.width));
      const lvlPos = add(engine.tensor(pos, [N, d]), embedding(this.levelEmbed, levelIds, 'f32'));
      const referencePoints = engine.tensor(referencePointValues(geometry), [1, N, geometry.levels.length, 2]);
      // Masks as the attention kernels take them.
      const minusInf = (flags: ArrayLike<number | boolean>) => Float32Array.from(flags, (f) => (f ? -Infinity : 0));
      let paddingTensor: Tensor | undefined;
      let visionPadBias: Tensor | undefined;
      if (geometry.padded) {
        paddingTensor = engine.tensor(Float32Array.from(geometry.paddingMask), [1, N]);
        visionPadBias = engine.tensor(minusInf(geometry.paddingMask), [1, 1, 1, N]);
      }
      let textPadBias: Tensor | undefined;
      let textSelfMask: Tensor | undefined;
      if (textValid < K) {
        const padded = Array.from({ length: K }, (_, k) => k >= textValid);
        textPadBias = engine.tensor(minusInf(padded), [1, 1, 1, K]);
        // Full among the valid tokens; a padding token sees only itself.
        const self = new Float32Array(K * K).fill(-Infinity);
        for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) if ((i < textValid && j < textValid) || i === j) self[i * K + j] = 0;
        textSelfMask = engine.tensor(self, [1, 1, K, K]);
      }
      const positionIds = Array.from({ length: K }, (_, k) => (k < textValid ? k : 0));
      const textPos = textSineEmbedding(engine, positionIds, d);
      return { ...geometry, sources, lvlPos, referencePoints, paddingTensor, visionPadBias, textValid, textPadBias, textSelfMask, textPos };
    });
  }

  private checkInputs(inputs: GdinoEncoderInputs): { stages: readonly Tensor[]; text: Tensor } {
    const d = this.config.dModel;
    const { stages, text } = inputs;
    if (stages.length !== this.stageChannels.length) {
      throw new RangeError(`GdinoEncoder: ${stages.length} stage maps given for a backbone of ${this.stageChannels.length} stages`);
    }
    stages.forEach((s, i) => {
      if (s.rank !== 4 || s.shape[0] !== 1 || s.shape[1] !== this.stageChannels[i]) {
        throw new RangeError(`GdinoEncoder: stage ${i + 1} ${formatShape(s.shape)} must be [1, ${this.stageChannels[i]}, height, width]`);
      }
    });
    if (text.rank !== 2 || text.shape[1] !== d || text.shape[0] === 0) {
      throw new RangeError(`GdinoEncoder: text ${formatShape(text.shape)} must be [tokens, ${d}] (d_model ${d})`);
    }
    return { stages, text };
  }
}

/** Levels, valid ratios and the flattened padding mask of the levels' masks. */
function levelGeometry(masks: readonly LevelMask[]): GdinoGeometry {
  const levels: GdinoLevel[] = [];
  let start = 0;
  for (const m of masks) {
    const [rw, rh] = validRatio(m);
    levels.push({ height: m.height, width: m.width, start, validHeight: Math.round(rh * m.height), validWidth: Math.round(rw * m.width) });
    start += m.height * m.width;
  }
  const paddingMask = new Uint8Array(start);
  masks.forEach((m, l) => m.valid.forEach((v, i) => (paddingMask[levels[l]!.start + i] = v ? 0 : 1)));
  return {
    levels,
    spatialShapes: levels.map((l) => [l.height, l.width]),
    levelStartIndex: levels.map((l) => l.start),
    tokens: start,
    validRatios: masks.map(validRatio),
    paddingMask,
    padded: paddingMask.some((v) => v !== 0),
  };
}

/**
 * GroundingDinoEncoder.get_reference_points: token (i, j) of level l sits at
 * ((j + 0.5) / (vr_x,l · W_l), (i + 0.5) / (vr_y,l · H_l)), then times every level's valid ratios:
 * [N, L, 2] (x, y), in float32 as torch computes it.
 */
export function referencePointValues(g: GdinoGeometry): Float32Array {
  const f32 = Math.fround;
  const L = g.levels.length;
  const out = new Float32Array(g.tokens * L * 2);
  g.levels.forEach((lv, l) => {
    const [rx, ry] = g.validRatios[l]!;
    const dx = f32(rx * lv.width);
    const dy = f32(ry * lv.height);
    for (let i = 0; i < lv.height; i++) {
      const y = f32(f32(i + 0.5) / dy);
      for (let j = 0; j < lv.width; j++) {
        const x = f32(f32(j + 0.5) / dx);
        const n = lv.start + i * lv.width + j;
        for (let m = 0; m < L; m++) {
          out[(n * L + m) * 2] = f32(x * g.validRatios[m]![0]);
          out[(n * L + m) * 2 + 1] = f32(y * g.validRatios[m]![1]);
        }
      }
    }
  });
  return out;
}
