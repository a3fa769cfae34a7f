/**
 * UniPose's names for the modules it shares with Grounding DINO (decoders.md B.3.3, B.3.5, B.5),
 * relative to the scope `unipose`. The maths is Grounding DINO's (see the notes on FusionLayer,
 * TextEnhancerLayer, DeformableLayer and GdinoDecoderLayer), so GdinoEncoder.load, GdinoDecoderLayer.load
 * and TwoStageSelection.load read UniPose's weights through this table. Official code:
 * VisionLLMv2/visionllmv2/model/unipose/modeling_unipose.py (DeformableTransformer :2206-2700,
 * TransformerEncoder :2701-2867, BiAttentionBlock :2169-2203, TransformerEncoderLayer :2122-2166,
 * DeformableTransformerEncoderLayer :3132-3185, DeformableTransformerDecoderLayer :3188-3324).
 */
import type { DetrNames } from '../gdino/names.js';

export const UNIPOSE_NAMES: DetrNames = {
  model: 'UniPose',
  inputProj: 'input_proj',
  levelEmbed: 'transformer.level_embed',
  encoder: {
    fusion: 'transformer.encoder.fusion_layers.{i}',
    text: 'transformer.encoder.text_layers.{i}',
    deformable: 'transformer.encoder.layers.{i}',
  },
  fusion: {
    normVision: 'layer_norm_v',
    normText: 'layer_norm_l',
    attn: 'attn',
    visionProj: 'v_proj',
    textProj: 'l_proj',
    valuesVisionProj: 'values_v_proj',
    valuesTextProj: 'values_l_proj',
    outVisionProj: 'out_v_proj',
    outTextProj: 'out_l_proj',
    visionParam: 'gam_v',
    textParam: 'gam_l',
  },
  textLayer: { selfAttn: 'self_attn', fc1: 'linear1', fc2: 'linear2', normAttn: 'norm1', normFfn: 'norm2' },
  deformableLayer: { selfAttn: 'self_attn', normAttn: 'norm1', fc1: 'linear1', fc2: 'linear2', normFfn: 'norm2' },
  decoder: {
    layer: 'transformer.decoder.layers.{i}',
    norm: 'transformer.decoder.norm',
    refPointHead: 'transformer.decoder.ref_point_head',
    content: 'transformer.tgt_embed.weight',
  },
  decoderLayer: {
    selfAttn: 'self_attn',
    selfAttnNorm: 'norm2',
    textAttn: 'ca_text',
    textAttnNorm: 'catext_norm',
    deformAttn: 'cross_attn',
    deformAttnNorm: 'norm1',
    fc1: 'linear1',
    fc2: 'linear2',
    finalNorm: 'norm3',
  },
  selection: { encOutput: 'transformer.enc_output', encOutputNorm: 'transformer.enc_output_norm', bboxEmbed: 'transformer.enc_out_bbox_embed' },
};
