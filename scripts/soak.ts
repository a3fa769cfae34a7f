/**
 * npm run soak [-- --chats N --weights DIR]: many chats on one model, the way a server would send
 * them. Alternates image and text, greedy and sampled (a few fixed seeds), runs every fourth as a
 * concurrent pair and aborts every tenth midway or while it waits its turn. Every 100 chats it
 * reports the engine's live GPU buffers and the process RSS.
 *
 * Fails (exit 1) when, after the warm-up (the first report), the live buffers differ at a later
 * report, the RSS grows by more than its allowance, or any deterministic answer (greedy, or
 * sampled with a given seed) differs from its first occurrence.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.js';
import { VisionLLM, type ChatOptions, type ChatResult } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';

const REPORT_EVERY = 100;
/** RSS may grow this much past the warm-up (allocator noise, V8's heap settling); a leak of a chat's worth per chat would pass it within a few hundred chats. */
const RSS_ALLOWANCE_BYTES = 48 * 2 ** 20;

const IMAGES = ['wide.png', 'square.png', 'small.jpg'].map((f) => path.join(projectRoot(), 'test', 'fixtures', 'images', f));
const PROMPTS = ['What is in the picture?', 'Describe the colours.', 'Tell me a story about a dog.', 'Name three animals.'];
const SEEDS = [1, 2, 3];

interface Plan {
  key: string;
  options: ChatOptions;
  /** Aborted after this many tokens, or while waiting its turn (0). */
  abortAfter?: number;
}

/** The i-th chat: image or not, greedy or sampled, by turns. */
function planChat(i: number): Plan {
  const image = i % 2 === 0 ? IMAGES[(i >> 1) % IMAGES.length] : undefined;
  const sampled = i % 3 === 0;
  const seed = SEEDS[Math.floor(i / 3) % SEEDS.length]!;
  const prompt = PROMPTS[i % PROMPTS.length]!;
  const options: ChatOptions = { prompt, image, maxNewTokens: 12, ...(sampled ? { temperature: 0.9, topP: 0.95, seed } : {}) };
  const key = `${prompt} | ${image ?? 'no image'} | ${sampled ? `seed ${seed}` : 'greedy'}`;
  return { key, options, abortAfter: i % 10 === 9 ? (i % 20 === 19 ? 0 : 3) : undefined };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { chats: { type: 'string' }, weights: { type: 'string' } } });
  const chats = Number(values.chats ?? 1000);
  if (!Number.isInteger(chats) || chats < 2 * REPORT_EVERY) throw new Error(`--chats must be an integer >= ${2 * REPORT_EVERY}, got '${values.chats}'`);
  const weights = values.weights ?? path.join(projectRoot(), 'weights', 'tiny');
  const engine = await Engine.create();
  const model = await VisionLLM.load(weights, { engine });
  const answers = new Map<string, string>();
  const failures: string[] = [];
  const counts = { chats: 0, aborted: 0, pairs: 0, compared: 0 };
  let warm: { buffers: number; rss: number } | null = null;
  const started = performance.now();
  let lastReport = started;

  /** Runs one planned chat; checks a finished deterministic answer against its first occurrence. */
  const run = async (plan: Plan): Promise<void> => {
    const controller = new AbortController();
    let tokens = 0;
    const options: ChatOptions = { ...plan.options, signal: controller.signal };
    if (plan.abortAfter) options.onToken = () => void (++tokens === plan.abortAfter && controller.abort());
    const chat = model.chat(options);
    if (plan.abortAfter === 0) controller.abort(); // while it waits (or as it starts)
    let result: ChatResult;
    try {
      result = await chat;
    } catch (err) {
      if (plan.abortAfter !== undefined && (err as Error).name === 'AbortError') return void (counts.aborted += 1);
      throw err;
    }
    result.dispose();
    if (result.finishReason === 'aborted') return void (counts.aborted += 1);
    const first = answers.get(plan.key);
    if (first === undefined) answers.set(plan.key, result.text);
    else if (first !== result.text) failures.push(`"${plan.key}": ${JSON.stringify(result.text)}, first ${JSON.stringify(first)}`);
    else counts.compared += 1;
  };

  try {
    for (let i = 0; i < chats; ) {
      if (i % 4 === 2 && i + 1 < chats && (i + 1) % REPORT_EVERY !== 0) {
        await Promise.all([run(planChat(i)), run(planChat(i + 1))]);
        counts.pairs += 1;
        i += 2;
      } else {
        await run(planChat(i));
        i += 1;
      }
      counts.chats = i;
      if (i % REPORT_EVERY !== 0) continue;
      (globalThis as { gc?: () => void }).gc?.();
      const now = { buffers: engine.memory().liveBuffers, rss: process.memoryUsage().rss };
      warm ??= now;
      const msPerChat = (performance.now() - lastReport) / REPORT_EVERY;
      lastReport = performance.now();
      console.log(
        `chats ${String(i).padStart(5)}: live GPU buffers ${now.buffers} (${(engine.memory().liveBytes / 1e6).toFixed(1)} MB), ` +
          `RSS ${(now.rss / 2 ** 20).toFixed(0)} MiB, ${msPerChat.toFixed(0)} ms/chat`,
      );
      if (now.buffers !== warm.buffers) failures.push(`chat ${i}: ${now.buffers} live GPU buffers, ${warm.buffers} after the warm-up`);
      if (now.rss > warm.rss + RSS_ALLOWANCE_BYTES) {
        failures.push(`chat ${i}: RSS ${(now.rss / 2 ** 20).toFixed(0)} MiB, over the warm-up's ${(warm.rss / 2 ** 20).toFixed(0)} MiB + ${RSS_ALLOWANCE_BYTES / 2 ** 20} MiB`);
      }
    }
  } finally {
    await model.dispose();
    engine.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${counts.chats} chats in ${seconds.toFixed(0)} s: ${counts.pairs} concurrent pairs, ${counts.aborted} aborted, ` +
      `${answers.size} distinct requests, ${counts.compared} answers compared with their first occurrence`,
  );
  if (failures.length) {
    console.error(`soak FAILED (${failures.length}):\n  ${failures.slice(0, 20).join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log('soak passed: live GPU buffers flat, RSS within its allowance, every repeated answer identical');
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
