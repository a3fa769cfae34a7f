import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { readLlama2c } from '../src/io/llama2c.js';
import { llamaConfigOfLlama2c } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { fusesChains } from '../src/ops/gemv-chain.js';
import { Llama } from '../src/model/llama.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { Params } from '../src/nn/params.js';
import { Weights } from '../src/nn/weights.js';
import { SHARED_DIR, TEST_DIR, expectClose, loadGolden, referenceModel, testEngine } from './helpers.js';

const LOGIT_TOL = 1e-3;

describe('plain Hugging Face LLaMA checkpoint (text-only mode)', () => {
  const golden = loadGolden('tiny_llama');
  let engine: Engine;
  let model: VisionLLM;
  beforeAll(async () => {
    ({ engine, model } = await referenceModel(path.join(TEST_DIR, 'fixtures', 'tiny-llama')));
  });

  it('logits at every prompt position match the reference (multi-query attention, 4:1)', async () => {
    const ids = Array.from(golden.values('prompt_ids'));
    const cache = model.llm.newCache({ maxLength: 256, dtype: 'f32' });
    const logits = engine.scope(() => model.llm.logits(model.llm.forward(model.llm.embed(ids), cache)));
    expectClose(await logits.toArray(), golden.values('logits'), { rel: LOGIT_TOL, label: 'logits' });
    logits.dispose();
    cache.dispose();
  });

  it('chat() generates the reference greedy tokens, and refuses an image', async () => {
    const result = await model.chat({ prompt: 'Describe a red cat on the table.', maxNewTokens: 20 });
    expect(result.tokenIds).toEqual(Array.from(golden.values('greedy_ids')));
    expect(result.timings.promptTokens).toBe(golden.shape('prompt_ids')[0]);
    // A decoding step, in one submission: the embedding, then per layer five products and
    // attention (on lavapipe one chain: the attention and the products up to the next layer's
    // q|k|v; the first layer's q|k|v on its own), the head, sampling.
    const layers = model.llm.config.layers;
    expect(result.timings.dispatchesPerToken).toBe(fusesChains(engine) ? layers + 3 : 5 * layers + 3);
    expect(result.timings.submitsPerToken).toBeLessThanOrEqual(1);
    // Once warm, every step binds the same buffers: no bind group is made while decoding. (The
    // buffer pool's reuse order takes two answers to settle: the second makes one bind group.)
    await model.chat({ prompt: 'Describe a red cat on the table.', maxNewTokens: 20 });
    const again = await model.chat({ prompt: 'Describe a red cat on the table.', maxNewTokens: 20 });
    expect(again.tokenIds).toEqual(result.tokenIds);
    expect(again.timings.bindGroupsPerToken).toBe(0);
    await expect(model.chat({ prompt: 'x', image: new Uint8Array(4) })).rejects.toThrow(/no vision encoder; it is text-only/);
  });

  it('replays captured decoding steps exactly as recorded ones, across table growth and a chunking change', async () => {
    // 500 prompt positions and 24 tokens: the rotary table grows at position 512, and the decoding
    // kernel's key chunks change there (4 query rows: 2 chunks from 512 keys), so the capture must
    // decline and be made afresh, as well as replay in between.
    const llm = model.llm;
    const prompt = llm.embed(Array.from({ length: 500 }, (_, i) => 3 + ((i * 37) % 300)));
    const run = async (replay: boolean, sampling: { temperature?: number; topP?: number }) => {
      const cache = llm.newCache({ maxLength: 600 });
      const r = await generate(llm, cache, prompt, { maxNewTokens: 24, stopIds: [], replay, seed: 3, ...sampling });
      expect(cache.length).toBe(500 + 23);
      cache.dispose();
      return r;
    };
    for (const sampling of [{}, { temperature: 0.8, topP: 0.9 }]) {
      const recorded = await run(false, sampling);
      const replayed = await run(true, sampling);
      expect(recorded.timings.replayedSteps).toBe(0);
      expect(replayed.timings.replayedSteps).toBeGreaterThan(15);
      expect(replayed.tokenIds).toEqual(recorded.tokenIds);
      expect(new Set(replayed.tokenIds).size).toBeGreaterThan(1);
    }
    prompt.dispose();
  });

  it('samples reproducibly from a seed', async () => {
    const a = await model.chat({ prompt: 'Describe a dog.', maxNewTokens: 12, temperature: 0.9, topP: 0.95, seed: 7 });
    const b = await model.chat({ prompt: 'Describe a dog.', maxNewTokens: 12, temperature: 0.9, topP: 0.95, seed: 7 });
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(a.tokenIds.length).toBeGreaterThan(0);
  });
});

const STORIES = path.join(SHARED_DIR, 'models', 'stories260K.bin');

describe.skipIf(!fs.existsSync(STORIES))('a real trained model: llama2.c stories260K', () => {
  const golden = loadGolden('stories260k');
  let engine: Engine;
  let llm: Llama;
  let weights: Weights;
  beforeAll(async () => {
    engine = await testEngine();
    const ckpt = readLlama2c(STORIES);
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of ckpt.tensors) tensors.set(name, engine.tensor(t.data, t.shape, 'f32', { persistent: true }));
    weights = Weights.fromTensors(engine, STORIES, tensors);
    llm = Llama.load(new Params(weights), llamaConfigOfLlama2c(ckpt.header));
  });
  afterAll(() => weights?.dispose());

  it('logits of a token sequence match PyTorch', async () => {
    const ids = Array.from(golden.values('ids'));
    const cache = llm.newCache({ maxLength: 64, dtype: 'f32' });
    const logits = engine.scope(() => llm.logits(llm.forward(llm.embed(ids), cache)));
    expectClose(await logits.toArray(), golden.values('logits'), { rel: LOGIT_TOL, label: 'stories260K logits' });
    logits.dispose();
    cache.dispose();
  });

  it('greedy decoding from <s> gives the reference story tokens', async () => {
    const cache = llm.newCache({ maxLength: 64, dtype: 'f32' });
    const bos = llm.embed([1]);
    const result = await generate(llm, cache, bos, { maxNewTokens: 40, stopIds: [] });
    expect(result.tokenIds).toEqual(Array.from(golden.values('greedy_from_bos')));
    bos.dispose();
    cache.dispose();
  });
});
