/**
 * A decoder at the release's size without the release: the layout JSON that a scripts/golden/*_release.py
 * writes from the reference modules (names, shapes, dtypes, aliases, the Swin index buffer), seeded
 * random values in it stored as a checkpoint load would store them, a synthetic photo-like image,
 * one warm forward's stage rows with its peak GPU memory, and the PyTorch CPU timing of a
 * reference script. Shared by the release benches (bench/gdino.ts, bench/unipose.ts) and tests
 * (test/*-release.test.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import { f32ArrayToF16 } from '../src/engine/dtype.js';
import type { Tensor } from '../src/engine/tensor.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import { defaultStoragePolicy, storageDType, type StoragePolicy } from '../src/io/checkpoint.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { Weights } from '../src/nn/weights.js';
import { projectRoot } from '../src/paths.js';
import type { Harness, Measurement } from './harness.js';

// ---- the layout ----

export interface ReleaseTensor {
  name: string;
  shape: number[];
  dtype: 'F32' | 'I64';
  /** A registered buffer (Swin's relative_position_index), not a parameter. */
  buffer?: boolean;
  /** A shared module's other slot: the name the loaders read. */
  alias_of?: string;
}

export interface ReleaseLayout {
  /** The JSON file it was read from (for messages). */
  file: string;
  prefix: string;
  /** Parameters, each shared one once, no buffers. */
  parameters: number;
  parameters_by_part: Record<string, number>;
  /** Swin's relative_position_index for the release window, [49, 49] row-major (every block's). */
  relative_position_index: number[];
  tensors: ReleaseTensor[];
  /** The decoder's config under its config.json key (gdino_config, unipose_config). */
  [configKey: string]: unknown;
}

/** test/golden/<name>: a layout written by scripts/golden/<stem>.py. */
export function releaseLayout(name: string): ReleaseLayout {
  const file = path.join(projectRoot(), 'test', 'golden', name);
  return { ...(JSON.parse(fs.readFileSync(file, 'utf8')) as object), file } as ReleaseLayout;
}

/** The layout's config, read as config.json's `key` would be. */
export function releaseConfigReader(layout: ReleaseLayout, key: string): ConfigReader {
  return new ConfigReader(layout.file, layout[key], key);
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// ---- random values ----

/** FNV-1a of a name: each tensor's own seed, so aliases (seeded by their canonical name) hold the same values. */
export function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Learned tables of unit-size entries (query tables, level embeddings, keypoint sizes), as their N(0, 1) init. */
const UNIT_SIZE = ['query_position_embeddings.weight', 'level_embed', 'tgt_embed.weight', 'hw.weight', 'hw_append.weight'];

/**
 * Mean and standard deviation of a tensor's random values, kept small so that activations stay
 * finite through 12 Swin blocks and 12 transformer layers: norm scales about 1, biases and layer
 * scales about 0, matrices N(0, 1/fan_in)-sized, the bias table as Swin's trunc_normal(0.02), the
 * learned embeddings of unit size.
 */
export function initStats(name: string, shape: readonly number[]): { mean: number; std: number } {
  if (shape.length <= 1) return name.endsWith('.weight') ? { mean: 1, std: 0.1 } : { mean: 0, std: 0.05 };
  if (name.endsWith('relative_position_bias_table')) return { mean: 0, std: 0.02 };
  if (UNIT_SIZE.some((suffix) => name.endsWith(suffix))) return { mean: 0, std: 1 };
  return { mean: 0, std: 1 / Math.sqrt(numel(shape.slice(1))) };
}

/** n uniform values of the given mean and standard deviation (xorshift32, seeded). */
export function uniformValues(n: number, seed: number, mean: number, std: number): Float32Array {
  const half = std * Math.sqrt(3);
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = mean + ((s >>> 0) / 2 ** 32 * 2 - 1) * half;
  }
  return out;
}

export interface RandomReleaseOptions {
  /** Mixed into every tensor's seed (default 0). */
  seed?: number;
  /** GPU dtypes (default: the engine's default policy, f16 matrices where the adapter can). */
  policy?: StoragePolicy;
  /** Which tensors (default all, aliases and buffers included). */
  include?: (t: ReleaseTensor) => boolean;
}

/** The layout's tensors with seeded random values on the GPU, stored as a checkpoint load would store them. */
export function randomReleaseTensors(engine: Engine, layout: ReleaseLayout, options: RandomReleaseOptions = {}): Map<string, Tensor> {
  const policy = options.policy ?? defaultStoragePolicy(engine);
  const out = new Map<string, Tensor>();
  for (const t of layout.tensors) {
    if (options.include && !options.include(t)) continue;
    const dtype = storageDType({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: 0, file: layout.file }, policy);
    if (t.dtype === 'I64') {
      if (!t.name.endsWith('relative_position_index')) throw new Error(`${layout.file}: no values for the integer tensor '${t.name}'`);
      out.set(t.name, engine.tensor(Int32Array.from(layout.relative_position_index), t.shape, dtype, { persistent: true }));
      continue;
    }
    const source = t.alias_of ?? t.name;
    const { mean, std } = initStats(source, t.shape);
    const values = uniformValues(numel(t.shape), hashName(source) ^ (options.seed ?? 0), mean, std);
    const host = dtype === 'f16' ? f32ArrayToF16(values) : values;
    out.set(t.name, engine.tensor(host, t.shape, dtype, { persistent: true }));
  }
  return out;
}

/** The tensors as a checkpoint's Weights (source 'random release weights'). */
export function releaseWeights(tensors: Map<string, Tensor>): Weights {
  const first = tensors.values().next().value as Tensor;
  return Weights.fromTensors(first.engine, 'random release weights', tensors);
}

/**
 * The layout's canonical tensors (no aliases or index buffers: a first load frees them) with one
 * removed, or replaced by `replacement`: a checkpoint for a loader's error messages.
 */
export function releaseVariant(layout: ReleaseLayout, tensors: ReadonlyMap<string, Tensor>, name: string, replacement?: Tensor): Params {
  if (!layout.tensors.some((t) => t.name === name)) throw new Error(`${layout.file}: '${name}' is not in the release layout`);
  const map = new Map<string, Tensor>();
  for (const t of layout.tensors) if (!t.alias_of && !t.buffer && t.name !== name) map.set(t.name, tensors.get(t.name)!);
  if (replacement) map.set(name, replacement);
  return Params.of(map, 'release variant');
}

/** Random LLM hidden states of a text-side input (e.g. [blocks, num_embs, l_hidden_size]), uniform of unit variance. */
export function randomHidden(engine: Engine, shape: readonly number[], seed: number): Tensor {
  return engine.tensor(uniformValues(numel(shape), seed, 0, 1), shape);
}

/** A deterministic natural-looking RGB image: smooth gradients, a few flat rectangles, some noise. */
export function syntheticImage(width: number, height: number, seed = 1): RgbImage {
  const data = new Uint8Array(width * height * 3);
  const rects = Array.from({ length: 6 }, (_, i) => {
    const v = uniformValues(7, seed * 31 + i, 0.5, 0.29);
    return { x0: v[0]! * width, y0: v[1]! * height, w: v[2]! * width * 0.5, h: v[3]! * height * 0.5, rgb: [v[4]!, v[5]!, v[6]!].map((c) => c * 255) };
  });
  const noise = uniformValues(width * height, seed, 0, 6);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      let rgb = [(255 * x) / width, (255 * y) / height, 128 + 100 * Math.sin((x + y) / 37)];
      for (const r of rects) if (x >= r.x0 && x < r.x0 + r.w && y >= r.y0 && y < r.y0 + r.h) rgb = r.rgb;
      for (let c = 0; c < 3; c++) data[3 * p + c] = Math.max(0, Math.min(255, Math.round(rgb[c]! + noise[p]!)));
    }
  }
  return { width, height, data };
}

// ---- benchmark rows ----

/** Waits for the GPU and counts the peak from here; returns the bytes held now (weights and inputs). */
export async function memoryBaseline(engine: Engine): Promise<number> {
  await engine.sync();
  const base = engine.memory().liveBytes;
  engine.pool.resetPeak();
  return base;
}

/** A model loaded by `load` from the layout's random tensors; logs their size and the time it took. */
export async function benchRelease<T extends { weights: Weights }>(engine: Engine, layout: ReleaseLayout, load: (tensors: Map<string, Tensor>) => T | Promise<T>): Promise<T> {
  const start = performance.now();
  const loaded = await load(randomReleaseTensors(engine, layout));
  await engine.sync();
  const matrices = engine.has('shader-f16') ? 'f16' : 'f32';
  console.log(`  random release weights: ${(layout.parameters / 1e6).toFixed(2)} M parameters, ${MB(loaded.weights.byteLength)} MiB on the GPU (${matrices} matrices), built and loaded in ${ms(performance.now() - start)} ms`);
  return loaded;
}

/** One untimed run (it compiles every pipeline and fills the pool; its time is logged), then the measured one. */
export async function warmRun<T>(run: () => Promise<T>): Promise<T> {
  const start = performance.now();
  await run();
  console.log(`  warm-up run: ${ms(performance.now() - start)} ms`);
  return run();
}

/** fn's value and the milliseconds until the GPU has finished what it recorded. */
export async function timedSync<T>(engine: Engine, fn: () => T): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = fn();
  await engine.sync();
  return { value, ms: performance.now() - start };
}

export const MB = (bytes: number) => Math.round(bytes / 2 ** 20);
export const ms = (v: number) => Math.round(v * 10) / 10;

/** A run's GPU memory as row fields: the peak, what was held before it (the weights), and the difference. */
export function peakFields(peakBytes: number, baseBytes: number): Record<string, number> {
  return { peak_gpu_mb: MB(peakBytes), weights_gpu_mb: MB(baseBytes), activations_peak_mb: MB(peakBytes - baseBytes) };
}

/** Records a forward's stage rows of one shape (those the filter wants), kept by name for later annotations. */
export function stageRows(h: Harness, shape: string): { rows: Map<string, Measurement>; record: (name: string, value: number, extra?: Record<string, unknown>) => void } {
  const rows = new Map<string, Measurement>();
  const record = (name: string, value: number, extra: Record<string, unknown> = {}) => {
    if (!h.wanted(name)) return;
    const m: Measurement = { name, shape, median_ms: ms(value), ...extra };
    h.record(m);
    rows.set(name, m);
  };
  return { rows, record };
}

/** Annotates each recorded row with the PyTorch milliseconds of the same stage and PyTorch ms / our ms. */
export function annotateVsPytorch(h: Harness, pairs: [Measurement | undefined, number | undefined][]): void {
  for (const [m, torchMs] of pairs) {
    if (m && torchMs !== undefined) h.annotate(m, { torch_ms: torchMs, ratio_vs_pytorch: Math.round((torchMs / m.median_ms) * 1000) / 1000 });
  }
}

// ---- the PyTorch reference on the CPU ----

const TORCH_TIMEOUT_MS = 20 * 60 * 1000;

/** A python3 that imports torch (as scripts/golden/generate.sh picks it), or null. */
export function torchPython(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return null;
}

/**
 * Runs scripts/golden/<script> with `args` and returns the last JSON line it printed, or why not
 * (no script, no torch, a failure): a bench skips its PyTorch comparison then.
 */
export function pytorchJson(script: string, args: string[]): { json: Record<string, unknown> } | { skipped: string } {
  const file = path.join(projectRoot(), 'scripts', 'golden', script);
  const what = `${script} ${args[0] ?? ''}`.trim();
  if (!fs.existsSync(file)) return { skipped: `${path.relative(process.cwd(), file)} is not there` };
  const py = torchPython();
  if (!py) return { skipped: 'no python3 that can import torch (Debian: apt-get install python3-torch)' };
  const argv = ['-P', file, ...args];
  console.log(`  PyTorch CPU: ${py} ${argv.join(' ')}`);
  const r = spawnSync(py, argv, { encoding: 'utf8', timeout: TORCH_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 });
  if (r.error || r.status !== 0) {
    return { skipped: `${what} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}` };
  }
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) return { skipped: `${what} printed no JSON line: ${r.stdout.slice(-200)}` };
  return { json: JSON.parse(line) as Record<string, unknown> };
}
