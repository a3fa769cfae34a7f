/**
 * The decoder seam, from the outside: a decoder defined in this file only (its own routing token,
 * query table and weights, added to a copy of the tiny checkpoint) is registered at load and its
 * typed output comes back from chat(). Also the load-time fixes of the super-link audit: the
 * vocabulary from the embedding table (D4), min_new_tokens (D6) and the unsupported variants (D8).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DECODERS, disposer, noOptions, type Decoder, type DecoderOutput } from '../src/decoders/index.js';
import type { Engine } from '../src/engine/engine.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { parseConfig } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { matmul } from '../src/ops/matmul.js';
import { TINY_WEIGHTS, expectClose, testEngine } from './helpers.js';

const WIDTH = 128; // the tiny LLM's hidden size
const QUERIES = 4; // num_embs
const CLASSES = 3;
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

interface ToyOutput extends DecoderOutput {
  decoder: 'toy';
  /** Each block's mean query state [blocks, WIDTH] and the head's scores [blocks, CLASSES], read back. */
  means: Float32Array;
  scores: Float32Array;
}

/** The mean of a block's query states, then toy.head (no bias). */
const toy: Decoder<{ classes: number }, undefined, ToyOutput> = {
  name: 'toy',
  routes: [{ token: '[TOY]', table: 'emb_embeddings_toy', queries: 'num_embs' }],
  maxBlocks: 8,
  prefixes: ['toy.'],
  absent: 'never absent',
  parseConfig: () => ({ classes: CLASSES }),
  parseOptions: noOptions('toy'),
  load(p, config, llm) {
    const head = p.at('toy').linear('head', llm.hiddenSize, config.classes, { bias: false });
    return {
      async run(group, { engine }) {
        const n = group.hidden.shape[1]!;
        const [means, scores] = engine.scope(() => {
          const average = engine.tensor(new Float32Array(n).fill(1 / n), [1, n]);
          const m = matmul(average, group.hidden).reshape([group.blocks.length, llm.hiddenSize]);
          return [m, head.forward(m)];
        });
        const out = { means: (await means!.toArray()) as Float32Array, scores: (await scores!.toArray()) as Float32Array };
        [means!, scores!].forEach((t) => t.dispose());
        const blocks = group.blocks;
        return { decoder: 'toy', task: 'scoring', tokens: blocks.map((b) => b.token), phrases: blocks.map((b) => b.phrase), ...out, dispose: disposer([]) };
      },
      dispose() {},
    };
  },
};

/** Seeded values in [-0.5, 0.5). */
function hashed(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (Math.sin((i + 1) * 12.9898 + seed * 78.233) * 43758.5453) % 1 / 2);
}

/** The tiny checkpoint plus a [TOY] token (id 346: one more embedding and head row), its query table and toy.head. */
function toyCheckpoint(dir: string): Float32Array {
  for (const f of fs.readdirSync(TINY_WEIGHTS)) fs.copyFileSync(path.join(TINY_WEIGHTS, f), path.join(dir, f));
  const added = JSON.parse(fs.readFileSync(path.join(dir, 'added_tokens.json'), 'utf8')) as Record<string, number>;
  fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify({ ...added, '[TOY]': 346 }));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of readSafetensors(path.join(dir, 'model.safetensors')).tensors) tensors[name] = { dtype: t.dtype, shape: t.shape, data: t.bytes };
  for (const name of ['llm.model.embed_tokens.weight', 'llm.lm_head.weight']) {
    const t = tensors[name]!;
    const grown = new Float32Array(347 * WIDTH);
    grown.set(new Float32Array(t.data.buffer, t.data.byteOffset, 346 * WIDTH));
    grown.set(hashed(WIDTH, 1), 346 * WIDTH);
    tensors[name] = { dtype: 'F32', shape: [347, WIDTH], data: grown };
  }
  tensors['emb_embeddings_toy.weight'] = { dtype: 'F32', shape: [QUERIES, WIDTH], data: hashed(QUERIES * WIDTH, 2) };
  const head = hashed(CLASSES * WIDTH, 3);
  tensors['toy.head.weight'] = { dtype: 'F32', shape: [CLASSES, WIDTH], data: head };
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return head;
}

describe('a decoder registered from outside the library', () => {
  let engine: Engine;
  let dir: string;
  let head: Float32Array;
  const warnings: string[] = [];
  let model: VisionLLM;
  beforeAll(async () => {
    engine = await testEngine();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toy-decoder-'));
    head = toyCheckpoint(dir);
    model = await VisionLLM.load(dir, { engine, policy: F32, cacheDType: 'f32', decoders: [...DEFAULT_DECODERS, toy], warn: (m) => warnings.push(m) });
  });
  afterAll(() => {
    model?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('takes the vocabulary from the embedding table when config.json disagrees, with a warning (D4)', () => {
    expect(model.config.llm.vocabSize).toBe(347);
    expect(warnings.join('\n')).toMatch(/llm_config.vocab_size is 346 but llm.model.embed_tokens.weight has 347 rows; using 347/);
  });

  it('returns the toy decoder\'s typed output from a teacher-forced chat, beside the built-in decoders', async () => {
    const result = await model.chat({ prompt: 'Score these.', answer: 'a red cat[TOY] and a dog[TOY], then a person[DET].' });
    expect(result.outputs.map((o) => o.decoder)).toEqual(['toy', 'gdino']);
    const [out] = result.outputsOf(toy);
    expect(out!.tokens).toEqual(['[TOY]', '[TOY]']);
    expect(out!.phrases).toEqual(['a red cat', 'and a dog']);
    expect(out!.means.length).toBe(2 * WIDTH);
    // The head applied on the CPU to the block means the decoder received: the seam delivered each block's own rows.
    const expected = new Float32Array(2 * CLASSES);
    for (let b = 0; b < 2; b++) for (let c = 0; c < CLASSES; c++) for (let k = 0; k < WIDTH; k++) expected[b * CLASSES + c]! += out!.means[b * WIDTH + k]! * head[c * WIDTH + k]!;
    expectClose(out!.scores, expected, { rel: 1e-4, label: 'toy scores' });
    expect(Math.max(...out!.means.subarray(0, WIDTH).map((v, k) => Math.abs(v - out!.means[WIDTH + k]!)))).toBeGreaterThan(1e-3);
    result.dispose();
  });

  it('checks each decoder\'s options, and names an unknown decoder', async () => {
    await expect(model.chat({ prompt: 'x', answer: 'a[TOY]', decoders: { toy: { threshold: 1 } } })).rejects.toThrow(/decoders.toy takes no options/);
    await expect(model.chat({ prompt: 'x', answer: 'a[DET]', decoders: { gdino: { task: 'boxes' } } })).rejects.toThrow(/decoders.gdino.task must be one of detection, segmentation, semantic, grounding, got "boxes"/);
    await expect(model.chat({ prompt: 'x', decoders: { dino: {} } })).rejects.toThrow(/decoders.dino: no such decoder \(registered: gdino, unipose, sd, ip2p, toy\)/);
  });

  it('refuses two decoders of one name', async () => {
    await expect(VisionLLM.load(dir, { engine, decoders: [...DEFAULT_DECODERS, toy, toy] })).rejects.toThrow(/two decoders are named 'toy'/);
  });
});

describe('generation constraints and unsupported variants', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('minNewTokens keeps the stop ids from ending the answer too early (D6: min_new_tokens=1)', async () => {
    const model = await VisionLLM.load(TINY_WEIGHTS, { engine, policy: F32, cacheDType: 'f32' });
    const run = async (minNewTokens: number, stop: number) => {
      const cache = model.llm.newCache({ maxLength: 64, dtype: 'f32' });
      const embeds = model.llm.embed([1, 319, 4, 25]);
      const r = await generate(model.llm, cache, embeds, { maxNewTokens: 6, stopIds: [stop], minNewTokens });
      embeds.dispose();
      cache.dispose();
      return r.tokenIds;
    };
    const free = await run(0, -1);
    // Make the greedy choices stop ids: without the constraint the answer ends at once.
    expect(await run(0, free[0]!)).toEqual([free[0]]);
    const held = await run(1, free[0]!);
    expect(held[0]).not.toBe(free[0]);
    const three = await run(3, free[0]!);
    expect(three.slice(0, 3)).not.toContain(free[0]);
    model.dispose();
  });

  it('rejects use_llm_lora and the internvl_mlp bridge naming the key (D8)', () => {
    const json = JSON.parse(fs.readFileSync(path.join(TINY_WEIGHTS, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(() => parseConfig({ ...json, use_llm_lora: true }, 'x/config.json')).toThrow(/x\/config.json: use_llm_lora true is not supported/);
    expect(() => parseConfig({ ...json, vl_bridge_type: 'internvl_mlp' }, 'x/config.json')).toThrow(/x\/config.json: vl_bridge_type internvl_mlp is not supported/);
    expect(() => parseConfig({ ...json, sd_config: { ...(json.sd_config as object), num_decoder_layers: 0 } }, 'x/config.json')).toThrow(/sd_config.num_decoder_layers must be at least 1/);
  });
});
