/**
 * A model's lifecycle under a caller who does not wait: concurrent chats take turns and answer
 * exactly as they do alone, an aborted signal takes a waiting chat out of line, dispose() during
 * work rejects clearly and frees everything, and load/dispose cycles, failed loads and throwing
 * callbacks leave the engine's live buffers where they were.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DECODERS } from '../src/decoders/index.js';
import { Engine } from '../src/engine/engine.js';
import { VisionLLM, type ChatOptions } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, testEngine } from './helpers.js';

const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'wide.png');
const WITH_IMAGE: ChatOptions = { prompt: 'What is in the picture?', image: IMAGE, maxNewTokens: 16 };
const TEXT_ONLY: ChatOptions = { prompt: 'Tell me a story about a dog.', maxNewTokens: 16 };
const SAMPLED: ChatOptions = { prompt: 'Name three colours.', maxNewTokens: 16, temperature: 0.8, topP: 0.9, seed: 7 };
const FORCED: ChatOptions = { prompt: 'Find the dog.', image: IMAGE, answer: 'dog[DET]' };

/** What a test compares: the answer's ids and text. */
const answerOf = (r: { text: string; tokenIds: number[] }) => ({ text: r.text, ids: r.tokenIds });

/** A chat that calls `act` once it has streamed `after` tokens (and keeps generating). */
const actingAt = (after: number, act: () => void): ChatOptions => {
  let n = 0;
  return { ...TEXT_ONLY, maxNewTokens: 64, minNewTokens: 64, onToken: () => void (++n === after && act()) };
};

describe('concurrent chats on one model', () => {
  let model: VisionLLM;
  const alone: ReturnType<typeof answerOf>[] = [];
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine() });
    for (const options of [WITH_IMAGE, TEXT_ONLY, SAMPLED, FORCED]) alone.push(answerOf(await model.chat(options)));
  });
  afterAll(() => model.dispose());

  it('answer exactly as they do alone, greedy, sampled and teacher-forced', async () => {
    // The answers are not all the same text, or the comparison could not tell them apart.
    expect(new Set(alone.map((a) => a.text)).size).toBeGreaterThan(1);
    for (let trial = 0; trial < 3; trial++) {
      const results = await Promise.all([WITH_IMAGE, TEXT_ONLY, SAMPLED, FORCED].map((o) => model.chat(o)));
      expect(results.map(answerOf)).toEqual(alone);
      results.forEach((r) => r.dispose());
    }
  });

  it('take turns: a later call waits for the running one', async () => {
    const [first, second] = await Promise.all([model.chat(TEXT_ONLY), model.chat(TEXT_ONLY)]);
    expect(second!.timings.queuedMs).toBeGreaterThan(0);
    expect(second!.timings.totalMs).toBeGreaterThan(first!.timings.totalMs - first!.timings.queuedMs);
  });

  it('an aborted signal takes a waiting call out of line without disturbing the others', async () => {
    const controller = new AbortController();
    const running = model.chat(TEXT_ONLY);
    const waiting = model.chat({ ...WITH_IMAGE, signal: controller.signal });
    const after = model.chat(WITH_IMAGE);
    controller.abort();
    const [r, w, a] = await Promise.allSettled([running, waiting, after]);
    expect(w.status === 'rejected' && (w.reason as Error).name).toBe('AbortError');
    expect(r.status === 'fulfilled' && answerOf(r.value)).toEqual(alone[1]);
    expect(a.status === 'fulfilled' && answerOf(a.value)).toEqual(alone[0]);
  });

  it('an already aborted signal rejects before any work', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(model.chat({ ...TEXT_ONLY, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });
});

/**
 * A test engine after one load / chat / dispose cycle, and its live buffers then: the engine makes
 * a few shared constants (placeholders, work counters) on first use and keeps them.
 */
async function warmEngine(): Promise<{ engine: Engine; start: number; constants: number }> {
  const engine = await testEngine();
  const before = engine.memory().liveBuffers;
  const model = await VisionLLM.load(TINY_WEIGHTS, { engine });
  (await model.chat(WITH_IMAGE)).dispose();
  await model.dispose();
  const start = engine.memory().liveBuffers;
  return { engine, start, constants: start - before };
}

describe('dispose during work', () => {
  let engine: Engine;
  let start: number;
  beforeAll(async () => {
    ({ engine, start } = await warmEngine());
  });

  it('model.dispose() rejects the running chat and the waiting ones clearly, then frees everything', async () => {
    const model = await VisionLLM.load(TINY_WEIGHTS, { engine });
    const running = model.chat(actingAt(3, () => void model.dispose()));
    const waiting = model.chat(TEXT_ONLY);
    const [r, w] = await Promise.allSettled([running, waiting]);
    expect(r.status === 'rejected' && (r.reason as Error).message).toBe('model disposed during chat');
    expect(w.status === 'rejected' && (w.reason as Error).message).toBe('model disposed before the chat started');
    await model.dispose();
    expect(engine.memory().liveBuffers).toBe(start);
    await expect(model.chat(TEXT_ONLY)).rejects.toThrow('chat: the model has been disposed');
    await expect(model.encodeImage(IMAGE)).rejects.toThrow('encodeImage: the model has been disposed');
    await expect(model.dispose()).resolves.toBeUndefined(); // twice is harmless
  });

  it('model.dispose() waits for the running chat before it frees the weights', async () => {
    const model = await VisionLLM.load(TINY_WEIGHTS, { engine });
    let disposal: Promise<void> | undefined;
    const running = model.chat(actingAt(2, () => (disposal = model.dispose())));
    await expect(running).rejects.toThrow('model disposed during chat');
    // Freed after the chat settled, not under it: the weights were alive for its last step.
    expect(model.weights.byteLength).toBe(0);
    await disposal;
  });

  it('engine.dispose() under a running chat rejects it clearly; model.dispose() after it does not throw', async () => {
    const own = await Engine.create();
    const model = await VisionLLM.load(TINY_WEIGHTS, { engine: own });
    const running = model.chat(actingAt(3, () => own.dispose()));
    await expect(running).rejects.toThrow('chat: the engine was disposed during the chat');
    await expect(model.dispose()).resolves.toBeUndefined();
  });
});

describe('no GPU memory leaks', () => {
  let engine: Engine;
  let start: number;
  let constants: number;
  beforeAll(async () => {
    ({ engine, start, constants } = await warmEngine());
  });

  it('the engine keeps only a handful of small shared constants', () => {
    expect(constants).toBeGreaterThanOrEqual(0);
    expect(constants).toBeLessThanOrEqual(8);
  });

  it('10 load / chat / dispose cycles on a shared engine', async () => {
    for (let i = 0; i < 10; i++) {
      const model = await VisionLLM.load(TINY_WEIGHTS, { engine });
      (await model.chat(i % 2 ? WITH_IMAGE : TEXT_ONLY)).dispose();
      await model.dispose();
      expect({ cycle: i, liveBuffers: engine.memory().liveBuffers }).toEqual({ cycle: i, liveBuffers: start });
    }
    expect(engine.memory().liveBytes).toBeGreaterThan(0);
  });

  it('10 failed loads on a shared engine (a decoder that fails after the weights are up)', async () => {
    const failing = DEFAULT_DECODERS.map((d) => (d.name === 'unipose' ? { ...d, load: () => { throw new Error('unipose: refused for the test'); } } : d));
    for (let i = 0; i < 10; i++) {
      await expect(VisionLLM.load(TINY_WEIGHTS, { engine, decoders: failing })).rejects.toThrow('unipose: refused for the test');
      expect({ attempt: i, liveBuffers: engine.memory().liveBuffers }).toEqual({ attempt: i, liveBuffers: start });
    }
  });

  it('10 chats whose onToken throws', async () => {
    const model = await VisionLLM.load(TINY_WEIGHTS, { engine });
    (await model.chat(TEXT_ONLY)).dispose(); // the model's own first-use state: its KV cache, the rotary table
    const warm = engine.memory().liveBuffers;
    for (let i = 0; i < 10; i++) {
      const throwing = { ...TEXT_ONLY, minNewTokens: 4, onToken: () => { throw new Error('callback failed'); } };
      await expect(model.chat(throwing)).rejects.toThrow('callback failed');
      expect({ chat: i, liveBuffers: engine.memory().liveBuffers }).toEqual({ chat: i, liveBuffers: warm });
    }
    // The model still answers as before.
    expect((await model.chat(TEXT_ONLY)).text).toBe((await model.chat(TEXT_ONLY)).text);
    await model.dispose();
    expect(engine.memory().liveBuffers).toBe(start);
  });
});

describe('non-finite weights', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'visionllm-nan-'));
    for (const f of fs.readdirSync(TINY_WEIGHTS)) fs.copyFileSync(path.join(TINY_WEIGHTS, f), path.join(dir, f));
    poisonTensor(path.join(dir, 'model.safetensors'), 'llm.model.norm.weight');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('are named at the first step, not as an out-of-range token id', async () => {
    const model = await VisionLLM.load(dir, { engine: await testEngine() });
    try {
      await expect(model.chat(TEXT_ONLY)).rejects.toThrow(/the model produced NaN\/Inf at position \d+; check the weights' dtype/);
    } finally {
      await model.dispose();
    }
  });
});

/** Overwrites a tensor's values in a safetensors file with NaN. */
function poisonTensor(file: string, name: string): void {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const entry = header[name];
  if (!entry) throw new Error(`${file}: no tensor '${name}' to poison`);
  const [begin, end] = entry.data_offsets.map((o) => o + 8 + headerLength) as [number, number];
  for (let at = begin; at < end; at += entry.dtype === 'F32' ? 4 : 2) {
    if (entry.dtype === 'F32') bytes.writeFloatLE(Number.NaN, at);
    else bytes.writeUInt16LE(0x7e00, at); // an f16 / bf16 NaN alike
  }
  fs.writeFileSync(file, bytes);
}
