/**
 * Model configurations read from a checkpoint's config.json: VisionLLM v2 ("visionllmv2", the
 * official keys) or a plain Hugging Face LLaMA ("llama" / LlamaForCausalLM). Missing or
 * inconsistent values are errors that name the file and the key.
 */
import fs from 'node:fs';
import path from 'node:path';

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
  /** The decoders present (use_gdino, ...), with the sizes their super-link inputs need. */
  decoders: DecoderConfigs;
}

export interface DecoderConfigs {
  /** Grounding DINO: its text width (patch2query's output). */
  gdino?: { dModel: number };
  /** UniPose: its hidden width (the projections' output). */
  unipose?: { hiddenDim: number };
  /** Stable Diffusion and InstructPix2Pix: the U-Net's cross-attention width and the mapper's query count. */
  sd?: { dModel: number; queries: number };
  ip2p?: { dModel: number; queries: number };
}

export interface PlainLlamaConfig {
  kind: 'llama';
  llm: LlamaConfig;
}

export type ModelConfig = VisionLLMConfig | PlainLlamaConfig;

type Json = Record<string, unknown>;

class ConfigReader {
  constructor(
    private readonly file: string,
    private readonly json: Json,
    private readonly at: string,
  ) {}

  private where(key: string): string {
    return `${this.file}: ${this.at ? `${this.at}.` : ''}${key}`;
  }

  int(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${this.where(key)} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  }

  num(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${this.where(key)} must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'boolean') throw new Error(`${this.where(key)} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.json[key] ?? fallback;
    if (!allowed.includes(v as T)) throw new Error(`${this.where(key)} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  sub(key: string): ConfigReader {
    const v = this.json[key];
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${this.where(key)} must be an object`);
    return new ConfigReader(this.file, v as Json, this.at ? `${this.at}.${key}` : key);
  }
}

export function readConfigFile(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new Error(`${dir}: no config.json (is this a checkpoint directory?)`);
  let json: Json;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseConfig(json, file);
}

export function parseConfig(json: Json, file = 'config.json'): ModelConfig {
  const r = new ConfigReader(file, json, '');
  const type = json.model_type;
  if (type === 'visionllmv2') {
    const config: VisionLLMConfig = {
      kind: 'visionllmv2',
      vision: parseClipVision(r.sub('vis_encoder_config')),
      llm: parseLlama(r.sub('llm_config')),
      visOutputLayer: (json.vis_output_layer as number | undefined) ?? -2,
      bridgeType: r.str('vl_bridge_type', ['mlp2x_gelu', 'linear'] as const, 'mlp2x_gelu'),
      numEmbs: r.int('num_embs', 4),
      numEmbsGen: r.int('num_embs_gen', 64),
      imageSize: r.int('image_size', 336),
      maxTiles: r.int('image_max_tile', 4),
      decoders: parseDecoders(r),
    };
    if (r.bool('use_pixelshuffle', false)) throw new Error(`${file}: use_pixelshuffle is not supported (the released 7B model does not use it)`);
    const layers = config.vision.layers;
    if (!Number.isInteger(config.visOutputLayer) || config.visOutputLayer < -(layers + 1) || config.visOutputLayer > layers) {
      throw new Error(`${file}: vis_output_layer ${config.visOutputLayer} is outside the ${layers + 1} hidden states`);
    }
    if (config.imageSize !== config.vision.imageSize) {
      throw new Error(`${file}: image_size ${config.imageSize} differs from vis_encoder_config.image_size ${config.vision.imageSize}`);
    }
    return config;
  }
  if (type === 'llama' || (Array.isArray(json.architectures) && json.architectures.includes('LlamaForCausalLM'))) {
    return { kind: 'llama', llm: parseLlama(r) };
  }
  throw new Error(`${file}: model_type ${JSON.stringify(type)} is not supported (expected "visionllmv2" or "llama")`);
}

function parseDecoders(r: ConfigReader): DecoderConfigs {
  const decoders: DecoderConfigs = {};
  if (r.bool('use_gdino', false)) decoders.gdino = { dModel: r.sub('gdino_config').int('d_model', 256) };
  if (r.bool('use_unipose', false)) decoders.unipose = { hiddenDim: r.sub('unipose_config').int('hidden_dim', 256) };
  for (const key of ['sd', 'ip2p'] as const) {
    if (!r.bool(`use_${key}`, false)) continue;
    const c = r.sub(`${key}_config`);
    decoders[key] = { dModel: c.int('sd_hidden_size', 768), queries: c.int('num_queries', 77) };
  }
  return decoders;
}

function parseClipVision(r: ConfigReader): ClipVisionConfig {
  const c: ClipVisionConfig = {
    hiddenSize: r.int('hidden_size', 1024),
    intermediateSize: r.int('intermediate_size', 4096),
    layers: r.int('num_hidden_layers', 24),
    heads: r.int('num_attention_heads', 16),
    imageSize: r.int('image_size', 336),
    patchSize: r.int('patch_size', 14),
    layerNormEps: r.num('layer_norm_eps', 1e-5),
    act: r.str('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
  };
  if (c.hiddenSize % c.heads) throw new Error(`vis_encoder_config: hidden_size ${c.hiddenSize} is not divisible by ${c.heads} heads`);
  if (c.imageSize % c.patchSize) throw new Error(`vis_encoder_config: image_size ${c.imageSize} is not a multiple of patch_size ${c.patchSize}`);
  return c;
}

function parseLlama(r: ConfigReader): LlamaConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  const kvHeads = r.int('num_key_value_heads', heads);
  if (hiddenSize % heads) throw new Error(`llm config: hidden_size ${hiddenSize} is not divisible by ${heads} heads`);
  if (heads % kvHeads) throw new Error(`llm config: ${heads} attention heads are not a multiple of ${kvHeads} key/value heads`);
  r.str('hidden_act', ['silu'] as const, 'silu');
  if (r.has('rope_scaling')) throw new Error('llm config: rope_scaling is not supported (Vicuna-7B v1.5 uses plain RoPE)');
  return {
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    intermediateSize: r.int('intermediate_size'),
    layers: r.int('num_hidden_layers'),
    heads,
    kvHeads,
    headDim: hiddenSize / heads,
    rmsNormEps: r.num('rms_norm_eps', 1e-6),
    ropeTheta: r.num('rope_theta', 10000),
    maxPositions: r.int('max_position_embeddings', 4096),
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    bosTokenId: r.int('bos_token_id', 1),
    eosTokenId: r.int('eos_token_id', 2),
  };
}
