/**
 * config.json validation at load (no GPU): every value that would only fail later, as a NaN or an
 * empty shape, is refused by parseConfig with the file, the dotted key and the value.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, readConfigFile, type VisionLLMConfig } from '../src/model/config.js';
import { TEST_DIR, TINY_WEIGHTS, thrownMessage } from './helpers.js';

const FILE = 'x/config.json';
const tiny = JSON.parse(fs.readFileSync(path.join(TINY_WEIGHTS, 'config.json'), 'utf8')) as Record<string, unknown>;
const tinyLlama = JSON.parse(fs.readFileSync(path.join(TEST_DIR, 'fixtures', 'tiny-llama', 'config.json'), 'utf8')) as Record<string, unknown>;

/** The tiny VisionLLM v2 config with `value` at the dotted `key`. */
function withValue(key: string, value: unknown, base = tiny): Record<string, unknown> {
  const json = structuredClone(base);
  const parts = key.split('.');
  let at = json;
  for (const part of parts.slice(0, -1)) at = at[part] as Record<string, unknown>;
  at[parts.at(-1)!] = value;
  return json;
}

describe('config.json', () => {
  it('reads the tiny checkpoint config', () => {
    const c = readConfigFile(TINY_WEIGHTS) as VisionLLMConfig;
    expect([c.kind, c.visOutputLayer, c.vision.layers, c.llm.headDim, c.llm.rmsNormEps, c.maxTiles]).toEqual(['visionllmv2', -2, 3, 32, 1e-5, 4]);
  });

  it.each([
    'vis_encoder_config.hidden_size', 'vis_encoder_config.intermediate_size', 'vis_encoder_config.num_attention_heads',
    'vis_encoder_config.image_size', 'vis_encoder_config.patch_size',
    'llm_config.vocab_size', 'llm_config.hidden_size', 'llm_config.intermediate_size', 'llm_config.num_hidden_layers',
    'llm_config.num_attention_heads', 'llm_config.num_key_value_heads', 'llm_config.max_position_embeddings',
    'image_size', 'image_max_tile', 'num_embs', 'num_embs_gen', 'gdino_config.d_model', 'sd_config.num_queries',
  ])('refuses %s 0', (key) => {
    expect(thrownMessage(() => parseConfig(withValue(key, 0), FILE))).toBe(`${FILE}: ${key} must be at least 1, got 0`);
  });

  it.each([
    ['llm_config.rms_norm_eps', -1], ['llm_config.rms_norm_eps', 0], ['llm_config.rope_theta', 0], ['llm_config.rope_theta', -10000],
    ['vis_encoder_config.layer_norm_eps', 0], ['vis_encoder_config.layer_norm_eps', '1e-5'],
  ])('refuses %s %j: it must be a positive number', (key, value) => {
    expect(thrownMessage(() => parseConfig(withValue(key, value), FILE))).toBe(`${FILE}: ${key} must be a positive number, got ${JSON.stringify(value)}`);
  });

  it('refuses a plain LLaMA config with no layers', () => {
    expect(thrownMessage(() => parseConfig(withValue('num_hidden_layers', 0, tinyLlama), FILE))).toBe(`${FILE}: num_hidden_layers must be at least 1, got 0`);
  });

  it('takes vis_output_layer as an integer, negative counting from the end, within the hidden states', () => {
    expect(thrownMessage(() => parseConfig(withValue('vis_output_layer', '-2'), FILE))).toBe(`${FILE}: vis_output_layer must be an integer, got "-2"`);
    expect(thrownMessage(() => parseConfig(withValue('vis_output_layer', 1.5), FILE))).toBe(`${FILE}: vis_output_layer must be an integer, got 1.5`);
    expect(thrownMessage(() => parseConfig(withValue('vis_output_layer', -5), FILE))).toBe(`${FILE}: vis_output_layer -5 is outside the 4 hidden states of vis_encoder_config's 3 layers`);
    expect((parseConfig(withValue('vis_output_layer', -4), FILE) as VisionLLMConfig).visOutputLayer).toBe(-4);
  });

  it('accepts a CLIP tower of 0 layers (its embeddings) only with vis_output_layer 0 or -1', () => {
    const noLayers = withValue('vis_encoder_config.num_hidden_layers', 0);
    expect(thrownMessage(() => parseConfig(noLayers, FILE))).toMatch(/vis_output_layer -2 is outside the 1 hidden states/);
    for (const layer of [0, -1]) expect((parseConfig({ ...noLayers, vis_output_layer: layer }, FILE) as VisionLLMConfig).vision.layers).toBe(0);
  });

  it('reads our keys class_names and gdino_config.image_scale / semantic_image_scale, with the release defaults', () => {
    const plain = parseConfig(tiny, FILE) as VisionLLMConfig;
    expect(plain.classNames).toBeUndefined();
    expect(plain.decoders.get('gdino')).toMatchObject({ imageScale: [1333, 800], semanticImageScale: [2048, 512] });
    const own = parseConfig(withValue('gdino_config.image_scale', [512, 320], withValue('class_names', ['star', 'circle'])), FILE) as VisionLLMConfig;
    expect(own.classNames).toEqual(['star', 'circle']);
    expect(own.decoders.get('gdino')).toMatchObject({ imageScale: [512, 320], semanticImageScale: [2048, 512] });
    expect(thrownMessage(() => parseConfig(withValue('class_names', []), FILE))).toBe(`${FILE}: class_names is empty; leave it out to ask for COCO's classes by default`);
    expect(thrownMessage(() => parseConfig(withValue('class_names', 'star'), FILE))).toBe(`${FILE}: class_names must be a list of strings, got "star"`);
    expect(thrownMessage(() => parseConfig(withValue('gdino_config.semantic_image_scale', [512, 320, 1]), FILE))).toBe(`${FILE}: gdino_config.semantic_image_scale must be [long, short] edge limits, got 3 numbers`);
  });

  it('names the file in consistency errors', () => {
    expect(thrownMessage(() => parseConfig(withValue('llm_config.num_key_value_heads', 3), FILE))).toBe(`${FILE}: llm_config.num_attention_heads 4 is not a multiple of num_key_value_heads 3`);
    expect(thrownMessage(() => parseConfig(withValue('vis_encoder_config.num_attention_heads', 3), FILE))).toBe(`${FILE}: vis_encoder_config.hidden_size 64 is not divisible by num_attention_heads 3`);
    expect(thrownMessage(() => parseConfig(withValue('vis_encoder_config.patch_size', 15), FILE))).toBe(`${FILE}: vis_encoder_config.image_size 336 is not a multiple of patch_size 15`);
    expect(thrownMessage(() => parseConfig(withValue('llm_config.hidden_size', 132), FILE))).toBe(`${FILE}: llm_config.hidden_size 132 / num_attention_heads 4 gives heads of 33 channels; RoPE needs an even number`);
    expect(thrownMessage(() => parseConfig(withValue('vis_encoder_config', null), FILE))).toBe(`${FILE}: vis_encoder_config must be an object, got null`);
  });

  it('refuses a file that holds no JSON object, naming it', () => {
    for (const [json, got] of [[null, 'null'], [[tiny], 'an array'], [7, '7'], ['llama', '"llama"']] as const) {
      expect(thrownMessage(() => parseConfig(json, FILE))).toBe(`${FILE}: must hold a JSON object, got ${got}`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'config-'));
    try {
      fs.writeFileSync(path.join(dir, 'config.json'), 'null');
      expect(thrownMessage(() => readConfigFile(dir))).toBe(`${path.join(dir, 'config.json')}: must hold a JSON object, got null`);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});
