#!/usr/bin/env node
/**
 * visionllm <command> [options]
 *   chat   answer a prompt about an image, streaming the answer (default command)
 *   info   the WebGPU adapter, its limits and kernel profile, and a check of the core kernels
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from './engine/engine.js';
import { VisionLLM } from './model/vision-llm.js';
import { linear } from './ops/matmul.js';
import { softmax } from './ops/rows.js';
import { projectRoot } from './paths.js';

const USAGE = `usage: visionllm [chat] [--weights DIR] [--image FILE] [--prompt TEXT] [options]
       visionllm info

chat options:
  --weights DIR        a VisionLLM v2 or Hugging Face LLaMA checkpoint directory (default: weights/tiny)
  --image FILE         a PNG or JPEG (default with the tiny weights: its test picture)
  --prompt TEXT        the question (default: "What is in the picture? Describe the colours.")
  --max-new-tokens N   default 64
  --temperature T      0 (default) decodes greedily
  --top-p P, --top-k K, --seed S
  --f32                keep weights in f32 (default: f16 matrices where the adapter can)
  --stats              print timings and memory after the answer`;

async function chat(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      weights: { type: 'string' },
      image: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      f32: { type: 'boolean' },
      stats: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return void console.log(USAGE);
  const tiny = path.join(projectRoot(), 'weights', 'tiny');
  const weights = values.weights ?? tiny;
  const image = values.image ?? (weights === tiny ? path.join(projectRoot(), 'test', 'fixtures', 'images', 'wide.png') : undefined);
  const prompt = values.prompt ?? 'What is in the picture? Describe the colours.';
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${v}'`);
    return n;
  };

  const t0 = performance.now();
  const progress = (done: number, total: number) => {
    if (!process.stderr.isTTY) return;
    const width = 30;
    const filled = Math.round((done / Math.max(total, 1)) * width);
    process.stderr.write(`\rloading ${'#'.repeat(filled)}${'.'.repeat(width - filled)} ${(done / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB`);
  };
  const model = await VisionLLM.load(weights, {
    policy: values.f32 ? { matrix: 'f32', vector: 'f32', integer: 'i32' } : undefined,
    onProgress: (p) => progress(p.bytesDone, p.bytesTotal),
  });
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  console.error(`loaded ${weights} (${model.config.kind}, ${(model.weights.byteLength / 1e6).toFixed(1)} MB on the GPU) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    if (image) console.error(`image: ${image}`);
    console.error(`USER: ${prompt}`);
    process.stdout.write('ASSISTANT: ');
    const result = await model.chat({
      prompt,
      image,
      maxNewTokens: num('max-new-tokens', values['max-new-tokens']) ?? 64,
      temperature: num('temperature', values.temperature),
      topP: num('top-p', values['top-p']),
      topK: num('top-k', values['top-k']),
      seed: num('seed', values.seed),
      onToken: (text) => process.stdout.write(text),
    });
    process.stdout.write('\n');
    if (values.stats) {
      const t = result.timings;
      const m = model.engine.memory();
      console.error(
        [
          `finish: ${result.finishReason}, ${result.tokenIds.length} tokens`,
          `image: ${t.imageTiles} tile(s), ${t.visionMs.toFixed(0)} ms`,
          `prefill: ${t.promptTokens} tokens in ${t.prefillMs.toFixed(0)} ms (${((t.promptTokens / t.prefillMs) * 1000).toFixed(1)} tokens/s)`,
          `decode: ${t.decodeTokens} tokens in ${t.decodeMs.toFixed(0)} ms (${t.decodeTokens ? ((t.decodeTokens / t.decodeMs) * 1000).toFixed(1) : '-'} tokens/s), ` +
            `${t.dispatchesPerToken.toFixed(0)} dispatches and ${t.submitsPerToken.toFixed(1)} submits per token, ${t.recordMsPerToken.toFixed(2)} ms recording`,
          `GPU memory: ${(m.peakBytes / 1e6).toFixed(1)} MB peak`,
        ].join('\n'),
      );
    }
  } finally {
    model.dispose();
  }
}

async function info(): Promise<void> {
  const engine = await Engine.create();
  try {
    const s = engine.gpu.summary;
    const l = engine.gpu.limits;
    console.log(`adapter        ${s.description || s.device} (${s.vendor}, ${s.architecture})`);
    console.log(`kernel profile ${engine.profile}${s.isCpu ? ' (CPU adapter: barrier-free kernels)' : ''}`);
    console.log(`features       ${[...engine.gpu.features].filter((f) => ['shader-f16', 'subgroups', 'timestamp-query'].includes(f)).join(', ') || 'none of shader-f16, subgroups, timestamp-query'}`);
    console.log(`subgroup size  ${s.subgroupMinSize}-${s.subgroupMaxSize}`);
    console.log(`limits         binding ${mib(l.maxStorageBufferBindingSize)}, buffer ${mib(l.maxBufferSize)}, workgroup memory ${l.maxComputeWorkgroupStorageSize / 1024} KiB`);

    // A linear layer and a softmax against a float64 CPU reference.
    const [m, k, n] = [37, 129, 53];
    const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37));
    const w = Float32Array.from({ length: n * k }, (_, i) => Math.cos(i * 0.11) * 0.1);
    const y = softmax(linear(engine.tensor(x, [m, k]), engine.tensor(w, [n, k])));
    const got = await y.toArray();
    let worst = 0;
    for (let r = 0; r < m; r++) {
      const logits = Array.from({ length: n }, (_, j) => {
        let acc = 0;
        for (let i = 0; i < k; i++) acc += x[r * k + i]! * w[j * k + i]!;
        return acc;
      });
      const top = Math.max(...logits);
      const sum = logits.reduce((s, v) => s + Math.exp(v - top), 0);
      logits.forEach((v, j) => (worst = Math.max(worst, Math.abs(got[r * n + j]! - Math.exp(v - top) / sum))));
    }
    const ok = worst < 1e-5;
    console.log(`self-check     softmax(x·Wᵀ) ${m}x${k}x${n}: max error ${worst.toExponential(2)} ${ok ? 'OK' : 'FAILED'}`);
    if (!ok) process.exitCode = 1;
  } finally {
    engine.dispose();
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command.startsWith('-')) return chat(argv);
  switch (command) {
    case 'chat':
      return chat(rest);
    case 'info':
      return info();
    case 'help':
      return void console.log(USAGE);
    default:
      console.error(`unknown command '${command}'\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
