/**
 * Model configurations read from a checkpoint's config.json: VisionLLM v2 ("visionllmv2", the
 * official keys) or a plain Hugging Face LLaMA ("llama" / LlamaForCausalLM). Missing or
 * inconsistent values are errors that name the file and the key.
 */
import path from 'node:path';
import { DEFAULT_DECODERS, type AnyDecoder } from '../decoders/index.js';
import { ConfigReader, readJsonFile } from '../io/config-reader.js';
import type { Llama2cHeader } from '../io/llama2c.js';
import { parseClipEncoderConfig } from '../nn/clip-layer.js';
import { parseRegionEncoderConfig, type RegionEncoderConfig } from './region-encoder.js';

export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  act: 'quick_gelu' | 'gelu';
}

export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  eosTokenId: number;
}

export interface VisionLLMConfig {
  kind: 'visionllmv2';
  vision: ClipVisionConfig;
  llm: LlamaConfig;
  /** Index into CLIP's hidden states (-2: the second-to-last layer). */
  visOutputLayer: number;
  bridgeType: 'mlp2x_gelu' | 'linear';
  numEmbs: number;
  numEmbsGen: number;
  /** Tiling of the official evaluation scripts. */
  imageSize: number;
  maxTiles: number;
  /** The decoders present (use_gdino, ...), by name, with their parsed configs. */
  decoders: ReadonlyMap<string, unknown>;
  /** use_region_encoder: `<region>` tokens take region embeddings (region_encoder_config, our key, for its pooling). */
  regionEncoder?: RegionEncoderConfig;
  /**
   * class_names (our key): the object classes a checkpoint was trained on, which the task helpers
   * ask for by default instead of COCO's 80 (detect, segment) and ADE20K's 150 (semantic maps).
   */
  classNames?: string[];
}

export interface PlainLlamaConfig {
  kind: 'llama';
  llm: LlamaConfig;
}

export type ModelConfig = VisionLLMConfig | PlainLlamaConfig;

export function readConfigFile(dir: string, decoders: readonly AnyDecoder[] = DEFAULT_DECODERS): ModelConfig {
  const file = path.join(dir, 'config.json');
  const json = readJsonFile(file);
  if (json === undefined) throw new Error(`${dir}: no config.json (is this a checkpoint directory?)`);
  return parseConfig(json, file, decoders);
}

/**
 * `json`: the parsed config.json (anything: a non-object is an error naming `file`). `decoders`: the
 * registered decoders, each of which reads its own part (use_<name>, <name>_config).
 */
export function parseConfig(json: unknown, file = 'config.json', decoders: readonly AnyDecoder[] = DEFAULT_DECODERS): ModelConfig {
  const r = new ConfigReader(file, json);
  const type = r.value('model_type');
  if (type === 'visionllmv2') {
    const config: VisionLLMConfig = {
      kind: 'visionllmv2',
      vision: parseClipVision(r.sub('vis_encoder_config')),
      llm: parseLlama(r.sub('llm_config')),
      visOutputLayer: r.integer('vis_output_layer', -2),
      bridgeType: parseBridge(r),
      numEmbs: r.positive('num_embs', 4),
      numEmbsGen: r.positive('num_embs_gen', 64),
      imageSize: r.positive('image_size', 336),
      maxTiles: r.positive('image_max_tile', 4),
      decoders: parseDecoders(r, decoders),
    };
    if (r.has('class_names')) {
      config.classNames = r.strings('class_names');
      if (config.classNames.length === 0) throw new Error(`${r.where('class_names')} is empty; leave it out to ask for COCO's classes by default`);
    }
    if (r.bool('use_region_encoder', false)) {
      const section = r.has('region_encoder_config') ? r.sub('region_encoder_config') : new ConfigReader(file, {}, 'region_encoder_config');
      config.regionEncoder = parseRegionEncoderConfig(section, config.vision, config.llm.hiddenSize);
    }
    if (r.bool('use_pixelshuffle', false)) throw new Error(`${file}: use_pixelshuffle is not supported (the released 7B model does not use it)`);
    // LoRA renames the LLM's weights (llm.base_model.model.*, lora_A/B); the 7B release merged them.
    if (r.bool('use_llm_lora', false)) throw new Error(`${file}: use_llm_lora true is not supported (merge the LoRA weights into the LLM first)`);
    const layers = config.vision.layers;
    if (config.visOutputLayer < -(layers + 1) || config.visOutputLayer > layers) {
      throw new Error(`${r.where('vis_output_layer')} ${config.visOutputLayer} is outside the ${layers + 1} hidden states of vis_encoder_config's ${layers} layers`);
    }
    if (config.imageSize !== config.vision.imageSize) {
      throw new Error(`${file}: image_size ${config.imageSize} differs from vis_encoder_config.image_size ${config.vision.imageSize}`);
    }
    return config;
  }
  const architectures = r.value('architectures');
  if (type === 'llama' || (Array.isArray(architectures) && architectures.includes('LlamaForCausalLM'))) {
    return { kind: 'llama', llm: parseLlama(r) };
  }
  throw new Error(`${file}: model_type ${JSON.stringify(type)} is not supported (expected "visionllmv2" or "llama")`);
}

function parseDecoders(r: ConfigReader, decoders: readonly AnyDecoder[]): Map<string, unknown> {
  const configs = new Map<string, unknown>();
  for (const d of decoders) {
    const c = d.parseConfig(r);
    if (c !== undefined) configs.set(d.name, c);
  }
  return configs;
}

function parseBridge(r: ConfigReader): VisionLLMConfig['bridgeType'] {
  // internvl_mlp (LayerNorm + MLP) belongs to the unreleased 26B model.
  if (r.value('vl_bridge_type') === 'internvl_mlp') {
    throw new Error(`${r.where('vl_bridge_type')} internvl_mlp is not supported (only the 7B model's mlp2x_gelu, or linear)`);
  }
  return r.str('vl_bridge_type', ['mlp2x_gelu', 'linear'] as const, 'mlp2x_gelu');
}

/**
 * Sizes and head counts must be at least 1 (0 only fails later, as NaN or empty shapes). The
 * layer count may be 0: hidden state 0 (the embeddings) is well defined, and vis_output_layer is
 * checked against the count.
 */
function parseClipVision(r: ConfigReader): ClipVisionConfig {
  const c: ClipVisionConfig = {
    ...parseClipEncoderConfig(r, { hiddenSize: 1024, intermediateSize: 4096, layers: 24, heads: 16 }),
    imageSize: r.positive('image_size', 336),
    patchSize: r.positive('patch_size', 14),
  };
  if (c.imageSize % c.patchSize) throw new Error(`${r.where('image_size')} ${c.imageSize} is not a multiple of patch_size ${c.patchSize}`);
  return c;
}

/** Every size, count and epsilon must be positive: an LLM without layers has no output to take. */
function parseLlama(r: ConfigReader): LlamaConfig {
  const hiddenSize = r.positive('hidden_size');
  const heads = r.positive('num_attention_heads');
  const kvHeads = r.positive('num_key_value_heads', heads);
  if (hiddenSize % heads) throw new Error(`${r.where('hidden_size')} ${hiddenSize} is not divisible by num_attention_heads ${heads}`);
  if (heads % kvHeads) throw new Error(`${r.where('num_attention_heads')} ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  // RoPE rotates pairs of a head's channels.
  if ((hiddenSize / heads) % 2) throw new Error(`${r.where('hidden_size')} ${hiddenSize} / num_attention_heads ${heads} gives heads of ${hiddenSize / heads} channels; RoPE needs an even number`);
  r.str('hidden_act', ['silu'] as const, 'silu');
  if (r.has('rope_scaling')) throw new Error(`${r.where('rope_scaling')} is not supported (Vicuna-7B v1.5 uses plain RoPE)`);
  return {
    vocabSize: r.positive('vocab_size'),
    hiddenSize,
    intermediateSize: r.positive('intermediate_size'),
    layers: r.positive('num_hidden_layers'),
    heads,
    kvHeads,
    headDim: hiddenSize / heads,
    rmsNormEps: r.positiveNumber('rms_norm_eps', 1e-6),
    ropeTheta: r.positiveNumber('rope_theta', 10000),
    maxPositions: r.positive('max_position_embeddings', 4096),
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    bosTokenId: r.int('bos_token_id', 1),
    eosTokenId: r.int('eos_token_id', 2),
  };
}

/** A llama2.c checkpoint's LLaMA: its header, and the values run.c fixes (eps 1e-5, theta 10000, ids 1 and 2). */
export function llamaConfigOfLlama2c(h: Llama2cHeader): LlamaConfig {
  return {
    vocabSize: h.vocabSize, hiddenSize: h.dim, intermediateSize: h.hiddenDim, layers: h.layers, heads: h.heads, kvHeads: h.kvHeads,
    headDim: h.dim / h.heads, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: h.seqLen, tieWordEmbeddings: h.sharedClassifier, bosTokenId: 1, eosTokenId: 2,
  };
}
