/**
 * UniPose's configuration, read from config.json's `unipose_config` (the official free-form
 * UniPoseConfig; names and defaults of IDEA-Research/UniPose config_model/UniPose_SwinT.py and
 * VisionLLM v2's train.py, decoders.md B.1). The detector half becomes a GdinoConfig, so that
 * Grounding DINO's encoder, selection and decoder layer read it unchanged.
 *
 * Three keys are this project's, for models smaller than the release (the official code has none):
 * `num_group` (the pose groups; the official code hard-codes 50), `backbone_config`
 * ({embed_dim, depths, num_heads, window_size}: a Swin that is not one of build_swin_transformer's)
 * and `image_scale` ([max_size, size] of the resize, default [1333, 800]).
 */
import type { ConfigReader } from '../../io/config-reader.js';
import { scalePair, type GdinoConfig, type SwinConfig } from '../gdino/config.js';
import { ADE20K_SCALE } from '../gdino/image.js';
import { UNIPOSE_MAX_SIZE, UNIPOSE_SIZE } from './image.js';
import type { PoseQueryConfig } from './pose-queries.js';
import { UNIPOSE_SWIN_PRESETS, uniposeSwinConfig, type UniposeSwinConfig } from './swin.js';

export interface UniposeConfig {
  /** The Grounding-DINO-shaped detector (its `backbone` is unused: see `swin`). */
  detector: GdinoConfig;
  swin: UniposeSwinConfig;
  pose: PoseQueryConfig;
  /** dec_pred_bbox_embed_share: one bbox_embed (and one pose_embed) for every layer. */
  sharedHeads: boolean;
  /** The LLM width the projections read. */
  lHiddenSize: number;
}

const OFFICIAL_GROUPS = 50;

export function parseUniposeConfig(r: ConfigReader): UniposeConfig {
  const swin = parseBackbone(r);
  const d = r.positive('hidden_dim', 256);
  const heads = r.positive('nheads', 8);
  const ffn = r.positive('dim_feedforward', 2048);
  const temperature = r.positiveNumber('pe_temperatureH', 20);
  if (r.positiveNumber('pe_temperatureW', 20) !== temperature) {
    throw new Error(`${r.where('pe_temperatureW')} must equal pe_temperatureH (${temperature}): one temperature for both axes is supported`);
  }
  const detector: GdinoConfig = {
    backbone: unusedSwin(swin),
    dModel: d,
    numQueries: r.positive('num_queries', 900),
    encoderLayers: r.positive('enc_layers', 6),
    decoderLayers: r.positive('dec_layers', 6),
    encoderAttentionHeads: heads,
    decoderAttentionHeads: heads,
    encoderFfnDim: ffn,
    decoderFfnDim: ffn,
    numFeatureLevels: r.positive('num_feature_levels', 4),
    encoderNPoints: r.positive('enc_n_points', 4),
    decoderNPoints: r.positive('dec_n_points', 4),
    maxTextLen: r.positive('max_text_len', 256),
    positionalEmbeddingTemperature: temperature,
    layerNormEps: 1e-5, // nn.LayerNorm's default, everywhere in UniPose
    maskDim: d,
    lHiddenSize: r.positive('l_hidden_size', 4096),
    numEmbs: r.positive('num_embs', 4),
    // (max_size, size) of UniPose's own resize rule (image.ts): our key `image_scale`, as the
    // detector's, defaulting to the release's 1333 and 800; small models trained on small pictures set it lower.
    imageScale: scalePair(r, 'image_scale', [UNIPOSE_MAX_SIZE, UNIPOSE_SIZE]),
    semanticImageScale: ADE20K_SCALE, // unused: UniPose has no semantic task
  };
  const pose: PoseQueryConfig = {
    dModel: d,
    maxKeypoints: r.positive('num_body_points', 68),
    groups: r.positive('num_group', OFFICIAL_GROUPS),
    boxLayers: r.positive('num_box_decoder_layers', 2),
    decoderLayers: detector.decoderLayers,
  };
  // What the release runs and this implementation computes; anything else would silently differ.
  const fixed: [string, unknown, unknown][] = [
    ['two_stage_type', r.value('two_stage_type') ?? 'standard', 'standard'],
    ['embed_init_tgt', r.value('embed_init_tgt') ?? true, true],
    ['query_dim', r.value('query_dim') ?? 4, 4],
    ['transformer_activation', r.value('transformer_activation') ?? 'relu', 'relu'],
    ['decoder_sa_type', r.value('decoder_sa_type') ?? 'sa', 'sa'],
    ['num_patterns', r.value('num_patterns') ?? 0, 0],
    ['two_stage_add_query_num', r.value('two_stage_add_query_num') ?? 0, 0],
    ['binary_query_selection', r.value('binary_query_selection') ?? false, false],
    ['use_text_enhancer', r.value('use_text_enhancer') ?? true, true],
    ['use_fusion_layer', r.value('use_fusion_layer') ?? true, true],
    ['use_text_cross_attention', r.value('use_text_cross_attention') ?? true, true],
    ['dec_pred_class_embed_share', r.value('dec_pred_class_embed_share') ?? true, true],
  ];
  for (const [key, got, want] of fixed) {
    if (got !== want) throw new Error(`${r.where(key)} ${JSON.stringify(got)} is not supported (the release uses ${JSON.stringify(want)})`);
  }
  if (pose.boxLayers >= detector.decoderLayers) {
    throw new Error(`${r.where('num_box_decoder_layers')} ${pose.boxLayers} leaves no pose layer of dec_layers ${detector.decoderLayers}`);
  }
  if (pose.groups > detector.numQueries) throw new Error(`${r.where('num_group')} ${pose.groups} exceeds num_queries ${detector.numQueries}`);
  const levels = swin.returnIntermIndices.length;
  if (levels < 3 || detector.numFeatureLevels < levels || detector.numFeatureLevels > levels + 1) {
    // Levels are the returned stages (at least three: the encoder projects the last three), plus at most one stride-2 conv.
    throw new Error(`${r.where('num_feature_levels')} ${detector.numFeatureLevels} does not fit return_interm_indices [${swin.returnIntermIndices.join(', ')}] (${levels} or ${levels + 1} levels, at least 3 stages)`);
  }
  if (d % heads) throw new Error(`${r.where('nheads')}: hidden_dim ${d} is not divisible by ${heads} heads`);
  return { detector, swin, pose, sharedHeads: r.bool('dec_pred_bbox_embed_share', true), lHiddenSize: detector.lHiddenSize };
}

function parseBackbone(r: ConfigReader): UniposeSwinConfig {
  const raw = r.value('return_interm_indices') ?? [1, 2, 3];
  if (!Array.isArray(raw) || !raw.length || !raw.every((i) => Number.isInteger(i) && i >= 0)) {
    throw new Error(`${r.where('return_interm_indices')} must be a non-empty list of stage indices (e.g. [1, 2, 3]), got ${JSON.stringify(raw)}`);
  }
  const indices = raw as number[];
  if (r.has('backbone_config')) {
    const b = r.sub('backbone_config');
    const depths = b.positives('depths');
    const numHeads = b.positives('num_heads');
    if (numHeads.length !== depths.length) throw new Error(`${b.where('num_heads')} has ${numHeads.length} entries for ${depths.length} stages (depths)`);
    return { embedDim: b.positive('embed_dim'), depths, numHeads, windowSize: b.positive('window_size', 7), patchSize: 4, numChannels: 3, mlpRatio: 4, qkvBias: true, returnIntermIndices: indices };
  }
  const name = r.str('backbone', Object.keys(UNIPOSE_SWIN_PRESETS) as (keyof typeof UNIPOSE_SWIN_PRESETS)[], 'swin_T_224_1k');
  return uniposeSwinConfig(name, indices);
}

/** GdinoConfig wants a Hugging Face SwinConfig; UniPose's encoder never reads it (MicrosoftSwin does the backbone). */
function unusedSwin(s: UniposeSwinConfig): SwinConfig {
  return {
    modelType: 'swin', embedDim: s.embedDim, depths: s.depths, numHeads: s.numHeads, windowSize: s.windowSize, patchSize: s.patchSize, numChannels: s.numChannels,
    mlpRatio: s.mlpRatio, qkvBias: s.qkvBias, layerNormEps: 1e-5, hiddenAct: 'gelu', useAbsoluteEmbeddings: false,
    outStages: s.returnIntermIndices.map((i) => i + 1),
  };
}
