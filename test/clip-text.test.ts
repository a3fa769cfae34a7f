import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { CLIP_BOS, CLIP_EOS, ClipTextEncoder, parseClipTextConfig } from '../src/decoders/diffusion/text-encoder.js';
import { Params } from '../src/nn/params.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

// Goldens: scripts/golden/clip_text.py (transformers' CLIPTextModel, transcribed in reference_clip_text.py).
const golden = loadGolden('clip_text');
const SOURCE = 'clip_text.safetensors';
const PREFIX = golden.metadata.prefix!;
const CONFIG_JSON = JSON.parse(golden.metadata.config!) as Record<string, unknown>;
const config = parseClipTextConfig(new ConfigReader('text_encoder/config.json', CONFIG_JSON));
const POSITION_IDS = `${PREFIX}.text_model.embeddings.position_ids`;

/** The encoder's weights under their checkpoint names (f16 values, so both uploads hold the same numbers); position_ids as i32. */
function weights(engine: Engine, dtype: 'f32' | 'f16', skip?: string): Map<string, Tensor> {
  return golden.weights(engine, dtype, `${PREFIX}.`, skip);
}

describe.each(['cpu', 'gpu'] as const)('CLIP text encoder, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(['f32', 'f16'] as const)('%s weights: last_hidden_state of random ids and the null condition', async (dtype) => {
    const tensors = weights(engine, dtype);
    const encoder = ClipTextEncoder.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    expect(tensors.get(POSITION_IDS)!.isDisposed, 'the position_ids buffer is freed unread').toBe(true);
    const ids = Array.from(golden.values('ids'));
    const hidden = encoder.forward(ids);
    expect(hidden.shape).toEqual([ids.length, 16]);
    expect(hidden.dtype).toBe('f32');
    const errs = [`hidden ${expectClose(await hidden.toArray(), golden.values('ids.hidden'), { rel: TOL[dtype], label: `${profile} ${dtype} hidden` }).toExponential(1)}`];
    // The null condition is made once, survives the caller's scope, and is freed by dispose().
    const live = engine.memory().liveBytes;
    const { pending } = engine.scope(() => ({ pending: encoder.nullCondition() }));
    const nullCondition = await pending;
    expect(nullCondition.isDisposed).toBe(false);
    expect(await encoder.nullCondition()).toBe(nullCondition);
    expect(nullCondition.shape).toEqual([77, 16]);
    errs.push(`null ${expectClose(await nullCondition.toArray(), golden.values('null'), { rel: TOL[dtype], label: `${profile} ${dtype} null` }).toExponential(1)}`);
    await encoder.dispose();
    expect(nullCondition.isDisposed).toBe(true);
    expect(engine.memory().liveBytes, 'bytes left after dispose').toBe(live);
    console.log(`${profile} ${dtype}: ${errs.join(', ')}`);
    hidden.dispose();
    tensors.forEach((t) => t.dispose());
  });
});

describe('CLIP text encoder config and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('defaults to SD-1.5\'s text encoder and reads the tiny config', () => {
    expect(parseClipTextConfig(new ConfigReader('text_encoder/config.json', {}))).toEqual({
      vocabSize: 49408, hiddenSize: 768, intermediateSize: 3072, layers: 12, heads: 12, maxPositions: 77, layerNormEps: 1e-5, act: 'quick_gelu',
    });
    expect(config).toEqual({ vocabSize: 49408, hiddenSize: 16, intermediateSize: 32, layers: 2, heads: 2, maxPositions: 77, layerNormEps: 1e-5, act: 'quick_gelu' });
    expect([CLIP_BOS, CLIP_EOS]).toEqual([49406, 49407]);
  });

  it("refuses an empty prompt's id outside the vocabulary", () => {
    const encoder = ClipTextEncoder.load(Params.of(weights(engine, 'f32'), SOURCE).at(PREFIX), config);
    expect(() => encoder.nullCondition({ bos: 49406, eos: 49408 })).toThrow("ClipTextEncoder: the empty prompt's eos id 49408 is outside the vocabulary of 49408");
  });

  it('names a bad config key', () => {
    const parse = (patch: Record<string, unknown>) => () => parseClipTextConfig(new ConfigReader('text_encoder/config.json', { ...CONFIG_JSON, ...patch }));
    expect(parse({ num_attention_heads: 3 })).toThrow('text_encoder/config.json: hidden_size 16 is not divisible by num_attention_heads 3');
    expect(parse({ hidden_act: 'relu' })).toThrow('text_encoder/config.json: hidden_act must be one of quick_gelu, gelu, got "relu"');
    expect(parse({ max_position_embeddings: 0 })).toThrow('text_encoder/config.json: max_position_embeddings must be at least 1, got 0');
  });

  it('names the checkpoint and the tensor a missing or misshapen weight would be, and refuses bad ids', () => {
    for (const missing of [`${PREFIX}.text_model.encoder.layers.1.self_attn.q_proj.weight`, `${PREFIX}.text_model.final_layer_norm.bias`, `${PREFIX}.text_model.embeddings.token_embedding.weight`]) {
      const tensors = weights(engine, 'f32', missing);
      expect(() => ClipTextEncoder.load(Params.of(tensors, SOURCE).at(PREFIX), config)).toThrow(`${SOURCE}: missing weight '${missing}'`);
      tensors.forEach((t) => t.dispose());
    }
    let tensors = weights(engine, 'f32');
    expect(() => ClipTextEncoder.load(Params.of(tensors, SOURCE).at(PREFIX), { ...config, maxPositions: 64 }))
      .toThrow(`${SOURCE}: ${POSITION_IDS} [1, 77] must be [1, 64]`);
    tensors.forEach((t) => t.dispose());
    tensors = weights(engine, 'f32', POSITION_IDS);
    expect(() => ClipTextEncoder.load(Params.of(tensors, SOURCE).at(PREFIX), { ...config, intermediateSize: 64 }))
      .toThrow(`${SOURCE}: ${PREFIX}.text_model.encoder.layers.0.mlp.fc1.weight [32, 16] must be [64, 16]`);
    const encoder = ClipTextEncoder.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    expect(() => encoder.forward([])).toThrow('ClipTextEncoder: 0 ids; expected 1 to 77');
    expect(() => encoder.forward(Array(78).fill(CLIP_EOS))).toThrow('ClipTextEncoder: 78 ids; expected 1 to 77');
    expect(() => encoder.forward([CLIP_BOS, 49408])).toThrow('embedding: id 49408 at position 1 is outside the vocabulary [0, 49408)');
    tensors.forEach((t) => t.dispose());
  });
});
