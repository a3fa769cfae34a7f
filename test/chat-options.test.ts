/**
 * chat()'s options are checked before any GPU work: every value JavaScript would coerce or ignore
 * is an error naming the option and the value, and a prompt too long for the context is refused
 * whatever its length, before anything is embedded.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { VisionLLM, type ChatOptions } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, testEngine } from './helpers.js';

const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'wide.png');

let engine: Engine;
let model: VisionLLM;
beforeAll(async () => {
  engine = await testEngine();
  model = await VisionLLM.load(TINY_WEIGHTS, { engine });
});
afterAll(() => model.dispose());

/** Expects chat(options) to reject with `message` and to have recorded no GPU work. */
async function refused(options: unknown, message: string | RegExp): Promise<void> {
  const before = { dispatches: engine.recorder.counters.dispatches, live: engine.memory().liveBuffers };
  await expect(model.chat(options as ChatOptions)).rejects.toThrow(message);
  expect({ dispatches: engine.recorder.counters.dispatches, live: engine.memory().liveBuffers }).toEqual(before);
}

describe('chat options', () => {
  it('an unknown option is an error, with the spelling it probably meant', async () => {
    await refused({ prompt: 'hi', max_new_tokens: 3 }, "chat: unknown option 'max_new_tokens' (did you mean maxNewTokens?)");
    await refused({ prompt: 'hi', tokens: 3 }, /chat: unknown option 'tokens' \(chat options: prompt, answer, image, .*maxNewTokens/);
  });

  it.each([1.5, Number.NaN, 'abc', '3', -1, 2 ** 32, Infinity])('seed %s is refused, not truncated or wrapped', async (seed) => {
    await refused({ prompt: 'hi', seed }, `chat: seed must be an integer in [0, ${2 ** 32 - 1}], got ${typeof seed === 'string' ? JSON.stringify(seed) : seed}`);
  });

  it('the largest seed is accepted', async () => {
    const r = await model.chat({ prompt: 'hi', seed: 2 ** 32 - 1, temperature: 1, maxNewTokens: 2 });
    expect(r.tokenIds.length).toBeGreaterThan(0);
  });

  it.each([
    [{ maxNewTokens: '3' }, 'chat: maxNewTokens must be an integer >= 0, got "3"'],
    [{ maxNewTokens: 2.5 }, 'chat: maxNewTokens must be an integer >= 0, got 2.5'],
    [{ minNewTokens: -1 }, 'chat: minNewTokens must be an integer >= 0, got -1'],
    [{ topK: -1 }, 'chat: topK must be an integer >= 0, got -1'],
    [{ temperature: '0.7' }, 'chat: temperature must be a finite number >= 0 (0: greedy), got "0.7"'],
    [{ temperature: Number.NaN }, 'chat: temperature must be a finite number >= 0 (0: greedy), got NaN'],
    [{ topP: 0 }, 'chat: topP must be a number in (0, 1], got 0'],
    [{ topP: 1.5 }, 'chat: topP must be a number in (0, 1], got 1.5'],
    [{ onToken: 'print' }, 'chat: onToken must be a function, got "print"'],
    [{ signal: {} }, 'chat: signal must be an AbortSignal, got {}'],
    [{ decoders: [] }, 'chat: decoders must be an object of options by decoder name, got []'],
  ])('%o is refused by name', async (bad, message) => {
    await refused({ prompt: 'hi', ...bad }, message);
  });

  it('the prompt is required and must be a string', async () => {
    await refused({}, 'chat: prompt is required (a string; may be empty)');
    await refused({ prompt: 42 }, 'chat: prompt must be a string, got 42');
    await refused(null, 'chat: options must be an object such as { prompt, image }, got null');
  });

  it('image: null and malformed pixels are refused by name', async () => {
    await refused({ prompt: 'hi', image: null }, 'chat: image must be a file path, encoded bytes (Uint8Array) or RGB pixels {width, height, data}, got null');
    await refused({ prompt: 'hi', image: { width: 4, height: 4, data: new Uint8Array(47) } }, 'chat: image is 4x4 RGB pixels, which need 48 bytes and a size of at least 1x1; data has 47');
  });

  it('a history turn must have both sides', async () => {
    await refused({ prompt: 'and now?', history: [{ user: 'hello' }] }, 'chat: history[0].assistant must be a string, got undefined');
    await refused({ prompt: 'and now?', history: 'hello' }, 'chat: history must be an array of {user, assistant} turns, got "hello"');
  });

  it('<im_patch> typed in the text is refused: it would shift the image splice', async () => {
    await refused({ prompt: '<image> look <im_patch>', image: IMAGE }, 'chat: prompt contains <im_patch>');
    await refused({ prompt: 'hi', history: [{ user: '<im_patch>', assistant: 'ok' }] }, 'chat: history[0].user contains <im_patch>');
  });
});

describe('context length', () => {
  it('a 2 MB prompt is refused with the context-length error, before any GPU work', async () => {
    const prompt = 'The quick brown fox jumps over the lazy dog. '.repeat(Math.ceil(2e6 / 45));
    const start = performance.now();
    await refused({ prompt }, /^chat: the prompt needs \d{6,} positions, and the context holds \d+ \(at least one must remain for the answer\)$/);
    expect(performance.now() - start).toBeLessThan(20_000);
  });

  it('a prompt with an image that overflows the context is refused before the image is encoded', async () => {
    const small = await VisionLLM.load(TINY_WEIGHTS, { engine, contextLength: 600 });
    try {
      const before = engine.recorder.counters.dispatches;
      await expect(small.chat({ prompt: 'hi', image: IMAGE })).rejects.toThrow(/^chat: the prompt needs \d+ positions, and the context holds 600/);
      expect(engine.recorder.counters.dispatches).toBe(before);
    } finally {
      await small.dispose();
    }
  });

  it('a teacher-forced answer that overflows is refused the same way', async () => {
    await refused({ prompt: 'hi', answer: 'dog '.repeat(5000) }, /^chat: the prompt and answer need \d+ positions, and the context holds \d+$/);
  });
});
