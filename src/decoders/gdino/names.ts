/**
 * Where a Grounding-DINO-style detector keeps its modules. Grounding DINO (`gdino.*`, Hugging Face
 * names, decoders.md A.5) and UniPose (`unipose.*`, IDEA's DINO names, decoders.md B.5) build the
 * same encoder layer (fusion, text enhancer, deformable layer) and the same decoder layer under
 * different names; the loaders of encoder.ts, decoder.ts and selection.ts read their weights
 * through one of these tables, Grounding DINO's by default. UniPose's is ../unipose/names.ts.
 *
 * Paths are relative to the scope the loader is given (`gdino.model` / `unipose`); `{i}` stands for
 * a layer's index. The leaf names of torch.nn.MultiheadAttention (`in_proj_weight`, `in_proj_bias`,
 * `out_proj`), of the deformable attention (`sampling_offsets`, `attention_weights`, `value_proj`,
 * `output_proj`) and of the MLP heads (`layers.{j}`) are the same in both and are not listed.
 */
import type { Params } from '../../nn/params.js';

/** The fusion layer (BiMultiHeadAttention with its layer norms and layer scales). */
export interface FusionNames {
  normVision: string;
  normText: string;
  /** The BiMultiHeadAttention; the six projections below are inside it. */
  attn: string;
  visionProj: string;
  textProj: string;
  valuesVisionProj: string;
  valuesTextProj: string;
  outVisionProj: string;
  outTextProj: string;
  /** Layer scales [d]. */
  visionParam: string;
  textParam: string;
}

/** The text enhancer: torch MultiheadAttention and FFN, post-norm. */
export interface TextLayerNames {
  selfAttn: string;
  fc1: string;
  fc2: string;
  /** After the attention's residual, and after the FFN's. */
  normAttn: string;
  normFfn: string;
}

/** The encoder's deformable layer: MSDA self-attention and FFN, post-norm. */
export interface DeformableLayerNames {
  selfAttn: string;
  normAttn: string;
  fc1: string;
  fc2: string;
  normFfn: string;
}

/** A decoder layer: self-attention, text cross-attention, MSDA cross-attention, FFN, each followed by its norm. */
export interface DecoderLayerNames {
  selfAttn: string;
  selfAttnNorm: string;
  textAttn: string;
  textAttnNorm: string;
  deformAttn: string;
  deformAttnNorm: string;
  fc1: string;
  fc2: string;
  finalNorm: string;
}

export interface DetrNames {
  /** The detector, for messages ('Grounding DINO', 'UniPose'). */
  model: string;
  /** Input projections `{inputProj}.{l}.{0 conv, 1 GroupNorm}`. */
  inputProj: string;
  levelEmbed: string;
  /** Per encoder layer i: the scopes of its three sub-layers. */
  encoder: { fusion: string; text: string; deformable: string };
  fusion: FusionNames;
  textLayer: TextLayerNames;
  deformableLayer: DeformableLayerNames;
  /** Decoder layer i's scope, the intermediate output's norm, the query-position MLP, the learned content queries. */
  decoder: { layer: string; norm: string; refPointHead: string; content: string };
  decoderLayer: DecoderLayerNames;
  /** Two-stage selection: the memory's projection and norm, and its box head. */
  selection: { encOutput: string; encOutputNorm: string; bboxEmbed: string };
}

/** Grounding DINO (OVGroundingDinoModel, Hugging Face GroundingDino* modules), in the scope `gdino.model`. */
export const GDINO_NAMES: DetrNames = {
  model: 'Grounding DINO',
  inputProj: 'input_proj_vision',
  levelEmbed: 'level_embed',
  encoder: { fusion: 'encoder.layers.{i}.fusion_layer', text: 'encoder.layers.{i}.text_enhancer_layer', deformable: 'encoder.layers.{i}.deformable_layer' },
  fusion: {
    normVision: 'layer_norm_vision',
    normText: 'layer_norm_text',
    attn: 'attn',
    visionProj: 'vision_proj',
    textProj: 'text_proj',
    valuesVisionProj: 'values_vision_proj',
    valuesTextProj: 'values_text_proj',
    outVisionProj: 'out_vision_proj',
    outTextProj: 'out_text_proj',
    visionParam: 'vision_param',
    textParam: 'text_param',
  },
  textLayer: { selfAttn: 'self_attn', fc1: 'fc1', fc2: 'fc2', normAttn: 'layer_norm_before', normFfn: 'layer_norm_after' },
  deformableLayer: { selfAttn: 'self_attn', normAttn: 'self_attn_layer_norm', fc1: 'fc1', fc2: 'fc2', normFfn: 'final_layer_norm' },
  decoder: { layer: 'decoder.layers.{i}', norm: 'decoder.layer_norm', refPointHead: 'decoder.reference_points_head', content: 'query_position_embeddings.weight' },
  decoderLayer: {
    selfAttn: 'self_attn',
    selfAttnNorm: 'self_attn_layer_norm',
    textAttn: 'encoder_attn_text',
    textAttnNorm: 'encoder_attn_text_layer_norm',
    deformAttn: 'encoder_attn',
    deformAttnNorm: 'encoder_attn_layer_norm',
    fc1: 'fc1',
    fc2: 'fc2',
    finalNorm: 'final_layer_norm',
  },
  selection: { encOutput: 'enc_output', encOutputNorm: 'enc_output_norm', bboxEmbed: 'encoder_output_bbox_embed' },
};

/** The scope of layer i under a `{i}` path template. */
export function layerScope(p: Params, template: string, i: number): Params {
  if (!template.includes('{i}')) throw new Error(`layer path '${template}' has no {i}`);
  return p.at(template.replace('{i}', String(i)));
}
