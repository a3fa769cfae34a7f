/**
 * Grounding DINO's configuration, read from config.json's `gdino_config` (a Hugging Face
 * GroundingDinoConfig with VisionLLM v2's additions) and its `backbone_config`: a SwinConfig (the
 * release's) or a ResNetConfig (`model_type: resnet`, GroundingDinoConfig's own default backbone).
 * Defaults are the classes' own defaults, which are the release's values (decoders.md A.1).
 */
import { ConfigReader } from '../../io/config-reader.js';
import type { ResNetConfig } from '../../nn/resnet.js';
import { ADE20K_SCALE, GDINO_SCALE } from './image.js';

/** Hugging Face SwinConfig: what SwinBackbone reads. */
export interface SwinConfig {
  modelType: 'swin';
  embedDim: number;
  /** Blocks per stage, and attention heads per stage. */
  depths: number[];
  numHeads: number[];
  windowSize: number;
  patchSize: number;
  numChannels: number;
  mlpRatio: number;
  qkvBias: boolean;
  layerNormEps: number;
  hiddenAct: 'gelu';
  useAbsoluteEmbeddings: false;
  /** Indices (1-based, 'stageN') of the stages the backbone returns, in order. */
  outStages: number[];
}

export type BackboneConfig = SwinConfig | ResNetConfig;

export interface GdinoConfig {
  backbone: BackboneConfig;
  /** The transformer's width: the text tokens' width. */
  dModel: number;
  numQueries: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderAttentionHeads: number;
  decoderAttentionHeads: number;
  encoderFfnDim: number;
  decoderFfnDim: number;
  numFeatureLevels: number;
  encoderNPoints: number;
  decoderNPoints: number;
  maxTextLen: number;
  /** Of the backbone's sine position embeddings. */
  positionalEmbeddingTemperature: number;
  layerNormEps: number;
  /** VisionLLM v2's mask head: its width, and the LLM width patch2query reads. */
  maskDim: number;
  lHiddenSize: number;
  numEmbs: number;
  /**
   * (long, short) edge limits of the detector's copy of the image, for detection and grounding and
   * for semantic segmentation: our keys `image_scale` and `semantic_image_scale`, defaulting to the
   * release's mmdet scales (1333 x 800, and ADE20K's 2048 x 512). Small detectors trained on small
   * pictures set them lower.
   */
  imageScale: readonly [number, number];
  semanticImageScale: readonly [number, number];
}

/** `out_features` ('stage1'.. names; default: every stage) as 1-based stage indices. */
function outStages(r: ConfigReader, stages: number): number[] {
  const outFeatures = r.strings('out_features', Array.from({ length: stages }, (_, i) => `stage${i + 1}`));
  return outFeatures.map((name) => {
    const stage = /^stage(\d+)$/.exec(name) ? Number(name.slice(5)) : NaN;
    if (!(stage >= 1 && stage <= stages)) throw new Error(`${r.where('out_features')} names '${name}'; expected stage1..stage${stages}`);
    return stage;
  });
}

export function parseSwinConfig(r: ConfigReader): SwinConfig {
  const depths = r.positives('depths', [2, 2, 6, 2]);
  const numHeads = r.positives('num_heads', [3, 6, 12, 24]);
  if (numHeads.length !== depths.length) throw new Error(`${r.where('num_heads')} has ${numHeads.length} entries for ${depths.length} stages (depths)`);
  if (r.bool('use_absolute_embeddings', false)) throw new Error(`${r.where('use_absolute_embeddings')} true is not supported (Grounding DINO's Swin has none)`);
  const c: SwinConfig = {
    modelType: 'swin',
    embedDim: r.positive('embed_dim', 96),
    depths,
    numHeads,
    windowSize: r.positive('window_size', 7),
    patchSize: r.positive('patch_size', 4),
    numChannels: r.positive('num_channels', 3),
    mlpRatio: r.positiveNumber('mlp_ratio', 4),
    qkvBias: r.bool('qkv_bias', true),
    layerNormEps: r.positiveNumber('layer_norm_eps', 1e-5),
    hiddenAct: r.str('hidden_act', ['gelu'] as const, 'gelu'),
    useAbsoluteEmbeddings: false,
    outStages: outStages(r, depths.length),
  };
  c.numHeads.forEach((h, i) => {
    const width = c.embedDim * 2 ** i;
    if (width % h) throw new Error(`${r.where('num_heads')}: stage ${i + 1} has width ${width}, not divisible by ${h} heads`);
  });
  return c;
}

/** Hugging Face ResNetConfig (`model_type: resnet`), with its defaults (ResNet-50). */
export function parseResNetConfig(r: ConfigReader): ResNetConfig {
  const depths = r.positives('depths', [3, 4, 6, 3]);
  const hiddenSizes = r.positives('hidden_sizes', [256, 512, 1024, 2048]);
  if (hiddenSizes.length !== depths.length) throw new Error(`${r.where('hidden_sizes')} has ${hiddenSizes.length} entries for ${depths.length} stages (depths)`);
  r.str('hidden_act', ['relu'] as const, 'relu');
  if (r.bool('downsample_in_bottleneck', false)) throw new Error(`${r.where('downsample_in_bottleneck')} true is not supported (the stride is in the 3x3 convolution)`);
  return {
    modelType: 'resnet',
    embeddingSize: r.positive('embedding_size', 64),
    hiddenSizes,
    depths,
    layerType: r.str('layer_type', ['basic', 'bottleneck'] as const, 'bottleneck'),
    numChannels: r.positive('num_channels', 3),
    downsampleInFirstStage: r.bool('downsample_in_first_stage', false),
    outStages: outStages(r, depths.length),
  };
}

/** `backbone_config` by its model_type (swin when absent, as the release's). */
export function parseBackboneConfig(r: ConfigReader): BackboneConfig {
  return r.str('model_type', ['swin', 'resnet'] as const, 'swin') === 'resnet' ? parseResNetConfig(r) : parseSwinConfig(r);
}

/** Channels of each map the backbone returns, in order. */
export function backboneChannels(b: BackboneConfig): number[] {
  return b.modelType === 'resnet' ? b.outStages.map((s) => b.hiddenSizes[s - 1]!) : b.outStages.map((s) => b.embedDim * 2 ** (s - 1));
}

/** `gdino_config` of config.json. */
export function parseGdinoConfig(r: ConfigReader): GdinoConfig {
  const c: GdinoConfig = {
    backbone: parseBackboneConfig(r.has('backbone_config') ? r.sub('backbone_config') : new ConfigReader(r.file, {}, r.at ? `${r.at}.backbone_config` : 'backbone_config')),
    dModel: r.positive('d_model', 256),
    numQueries: r.positive('num_queries', 900),
    encoderLayers: r.positive('encoder_layers', 6),
    decoderLayers: r.positive('decoder_layers', 6),
    encoderAttentionHeads: r.positive('encoder_attention_heads', 8),
    decoderAttentionHeads: r.positive('decoder_attention_heads', 8),
    encoderFfnDim: r.positive('encoder_ffn_dim', 2048),
    decoderFfnDim: r.positive('decoder_ffn_dim', 2048),
    numFeatureLevels: r.positive('num_feature_levels', 4),
    encoderNPoints: r.positive('encoder_n_points', 4),
    decoderNPoints: r.positive('decoder_n_points', 4),
    maxTextLen: r.positive('max_text_len', 256),
    positionalEmbeddingTemperature: r.positiveNumber('positional_embedding_temperature', 20),
    layerNormEps: r.positiveNumber('layer_norm_eps', 1e-5),
    maskDim: r.positive('mask_dim', 256),
    lHiddenSize: r.positive('l_hidden_size', 4096),
    numEmbs: r.positive('num_embs', 4),
    imageScale: scalePair(r, 'image_scale', GDINO_SCALE),
    semanticImageScale: scalePair(r, 'semantic_image_scale', ADE20K_SCALE),
  };
  r.str('activation_function', ['relu'] as const, 'relu');
  r.str('position_embedding_type', ['sine'] as const, 'sine');
  r.str('norm', ['GN'] as const, 'GN');
  if (!r.bool('two_stage', true)) throw new Error(`${r.where('two_stage')} false is not supported (the release selects queries in two stages)`);
  if (!r.bool('embedding_init_target', true)) throw new Error(`${r.where('embedding_init_target')} false is not supported (the release learns its content queries)`);
  if (!r.bool('decoder_bbox_embed_share', true)) throw new Error(`${r.where('decoder_bbox_embed_share')} false is not supported (the release shares one box head)`);
  if (r.positive('query_dim', 4) !== 4) throw new Error(`${r.where('query_dim')} must be 4 (boxes as cx, cy, w, h)`);
  const stages = c.backbone.outStages.length;
  if (c.numFeatureLevels < stages - 1 || c.numFeatureLevels > stages) {
    // Levels come from the backbone's stages 2.. (and one extra stride-2 conv on the last when there are more levels than those).
    throw new Error(`${r.where('num_feature_levels')} ${c.numFeatureLevels} does not fit the backbone's ${stages} output stages (${stages - 1} or ${stages})`);
  }
  for (const [key, heads] of [['encoder_attention_heads', c.encoderAttentionHeads], ['decoder_attention_heads', c.decoderAttentionHeads]] as const) {
    if (c.dModel % heads) throw new Error(`${r.where(key)}: d_model ${c.dModel} is not divisible by ${heads} heads`);
  }
  return c;
}

/** A (long, short) pair of edge limits under `key` (our config keys `image_scale`, `semantic_image_scale`). */
export function scalePair(r: ConfigReader, key: string, fallback: readonly [number, number]): readonly [number, number] {
  const v = r.positives(key, [...fallback]);
  if (v.length !== 2) throw new Error(`${r.where(key)} must be [long, short] edge limits, got ${v.length} numbers`);
  return [v[0]!, v[1]!];
}
