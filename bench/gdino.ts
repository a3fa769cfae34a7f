/**
 * Grounding DINO whole, at the release's size: random weights under the release checkpoint's names
 * and shapes (test/golden/gdino_release.json, from scripts/golden/gdino_release.py) in the default
 * storage (f16 matrices), an 800x1333 image and K = 80 classes (a COCO prompt), detection with
 * instance masks for the top 100. One warm run after one warm-up (a run takes seconds), split into
 * the detector's stages, with the peak GPU memory; and the ADE20K semantic input (2048x512, K = 150,
 * every query's mask) for its peak memory. When a python3 with torch is there, the same detector
 * in PyTorch on the CPU (scripts/golden/reference_gdino.py --time, 2 threads) gives
 * ratio_vs_pytorch = PyTorch ms / our ms per stage (the goal is >= 0.5).
 *
 * The random-weight builder is exported for test/gdino-release.test.ts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import { f32ToF16Bits } from '../src/engine/dtype.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseGdinoConfig, type GdinoConfig } from '../src/decoders/gdino/config.js';
import { ADE20K_SCALE, gdinoImage } from '../src/decoders/gdino/image.js';
import { GroundingDino, type GdinoResult } from '../src/decoders/gdino/model.js';
import { detections, instanceMasks, semanticMap } from '../src/decoders/gdino/postprocess.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import { defaultStoragePolicy, storageDType, type StoragePolicy } from '../src/io/checkpoint.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { Weights } from '../src/nn/weights.js';
import { projectRoot } from '../src/paths.js';
import type { Harness, Measurement } from './harness.js';

// ---- the release layout and random weights in it ----

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
  prefix: string;
  gdino_config: Record<string, unknown>;
  /** Parameters, each shared one once, no buffers. */
  parameters: number;
  parameters_by_part: Record<string, number>;
  /** Swin's relative_position_index for the release window, [49, 49] row-major. */
  relative_position_index: number[];
  tensors: ReleaseTensor[];
}

export const RELEASE_LAYOUT_FILE = path.join(projectRoot(), 'test', 'golden', 'gdino_release.json');

export function releaseLayout(): ReleaseLayout {
  return JSON.parse(fs.readFileSync(RELEASE_LAYOUT_FILE, 'utf8')) as ReleaseLayout;
}

export function releaseConfig(layout: ReleaseLayout): GdinoConfig {
  return parseGdinoConfig(new ConfigReader(RELEASE_LAYOUT_FILE, layout.gdino_config, 'gdino_config'));
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** FNV-1a of a name: each tensor's own seed, so aliases (seeded by their canonical name) hold the same values. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Mean and standard deviation of a tensor's random values, kept small so that activations stay
 * finite through 12 Swin blocks and 12 transformer layers: norm scales about 1, biases and layer
 * scales about 0, matrices N(0, 1/fan_in)-sized, the bias table as Swin's trunc_normal(0.02), the
 * learned embeddings of unit size.
 */
export function initStats(name: string, shape: readonly number[]): { mean: number; std: number } {
  if (shape.length <= 1) return name.endsWith('.weight') ? { mean: 1, std: 0.1 } : { mean: 0, std: 0.05 };
  if (name.endsWith('relative_position_bias_table')) return { mean: 0, std: 0.02 };
  if (name.endsWith('query_position_embeddings.weight') || name.endsWith('level_embed')) return { mean: 0, std: 1 };
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

/** The release's gdino.* tensors with seeded random values on the GPU, stored as a checkpoint load would store them. */
export function randomReleaseTensors(engine: Engine, layout: ReleaseLayout, options: RandomReleaseOptions = {}): Map<string, Tensor> {
  const policy = options.policy ?? defaultStoragePolicy(engine);
  const out = new Map<string, Tensor>();
  for (const t of layout.tensors) {
    if (options.include && !options.include(t)) continue;
    const dtype = storageDType({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: 0, file: RELEASE_LAYOUT_FILE }, policy);
    if (t.dtype === 'I64') {
      if (!t.name.endsWith('relative_position_index')) throw new Error(`${RELEASE_LAYOUT_FILE}: no values for the integer tensor '${t.name}'`);
      out.set(t.name, engine.tensor(Int32Array.from(layout.relative_position_index), t.shape, dtype, { persistent: true }));
      continue;
    }
    const source = t.alias_of ?? t.name;
    const { mean, std } = initStats(source, t.shape);
    const values = uniformValues(numel(t.shape), hashName(source) ^ (options.seed ?? 0), mean, std);
    const host = dtype === 'f16' ? Uint16Array.from(values, f32ToF16Bits) : values;
    out.set(t.name, engine.tensor(host, t.shape, dtype, { persistent: true }));
  }
  return out;
}

/** Weights (source 'random release weights') from the tensors, and the detector read from them. */
export function loadRandomRelease(tensors: Map<string, Tensor>, config: GdinoConfig): { weights: Weights; model: GroundingDino } {
  const first = tensors.values().next().value as Tensor;
  const weights = Weights.fromTensors(first.engine, 'random release weights', tensors);
  return { weights, model: GroundingDino.load(new Params(weights), config, config.lHiddenSize) };
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

/** K class embeddings through patch2query: random LLM hidden states of K blocks x num_embs queries -> [K, d_model]. */
export function randomClassEmbeddings(engine: Engine, model: GroundingDino, K: number, seed = 3): Tensor {
  const { numEmbs, lHiddenSize } = model.config;
  const hidden = engine.tensor(uniformValues(K * numEmbs * lHiddenSize, seed, 0, 1), [K, numEmbs, lHiddenSize]);
  try {
    return model.classEmbeddings(hidden);
  } finally {
    hidden.dispose();
  }
}

// ---- the benchmark ----

const K_COCO = 80;
const K_ADE = 150;
const TOPK = 100;
const SHAPE = '800x1333 K=80';
const TORCH_TIMEOUT_MS = 20 * 60 * 1000;

interface DetectionRun {
  preprocessMs: number;
  backboneMs: number;
  encoderMs: number;
  /** Two-stage selection and the decoder layers with the last layer's heads. */
  decoderMs: number;
  /** Mask features and the top-100 queries' masks (logits, resize to the original, threshold, RLE). */
  masksMs: number;
  /** Top-100 over queries x classes, boxes to original pixels (masks excluded). */
  postprocessMs: number;
  /** detect() through the masks: everything but the image preprocessing. */
  totalMs: number;
  /** Highest GPU bytes during the run, and those held before it (the weights). */
  peakBytes: number;
  baseBytes: number;
  detections: number;
}

async function detectionRun(engine: Engine, model: GroundingDino, image: RgbImage, text: Tensor): Promise<DetectionRun> {
  await engine.sync();
  const baseBytes = engine.memory().liveBytes;
  engine.pool.resetPeak();
  let t = performance.now();
  const input = gdinoImage(engine, image);
  await engine.sync();
  const preprocessMs = performance.now() - t;
  let result: GdinoResult | undefined;
  try {
    const start = performance.now();
    result = await model.detect(input, text, { masks: true });
    t = performance.now();
    const found = await detections(result, input, { numClasses: text.shape[0]!, topk: TOPK, masks: false });
    const postprocessMs = performance.now() - t;
    t = performance.now();
    await instanceMasks(result.maskLogits!, [...new Set(found.map((d) => d.query))], input);
    const topMasksMs = performance.now() - t;
    const totalMs = performance.now() - start;
    const { backboneMs, encoderMs, decoderMs, maskFeaturesMs } = result.timings;
    return {
      preprocessMs, backboneMs, encoderMs, decoderMs, masksMs: maskFeaturesMs + topMasksMs, postprocessMs, totalMs,
      peakBytes: engine.memory().peakBytes, baseBytes, detections: found.length,
    };
  } finally {
    result?.dispose();
    input.dispose();
  }
}

/**
 * ADE20K's semantic segmentation: every query's mask, combined by class. Returns the milliseconds,
 * the peak bytes, and the semantic map's error if it failed (the detector's part is measured anyway).
 */
async function semanticRun(engine: Engine, model: GroundingDino, image: RgbImage, text: Tensor): Promise<{ ms: number; peakBytes: number; baseBytes: number; padShape: [number, number]; error?: string }> {
  await engine.sync();
  const baseBytes = engine.memory().liveBytes;
  engine.pool.resetPeak();
  const start = performance.now();
  const input = gdinoImage(engine, image, { scale: ADE20K_SCALE });
  let error: string | undefined;
  try {
    const result = await model.detect(input, text, { masks: true });
    try {
      try {
        await semanticMap(engine, result.logits, result.maskLogits!, input, text.shape[0]!);
      } catch (err) {
        error = (err as Error).message;
      }
    } finally {
      result.dispose();
    }
    await engine.sync();
    return { ms: performance.now() - start, peakBytes: engine.memory().peakBytes, baseBytes, padShape: input.padShape, error };
  } finally {
    input.dispose();
  }
}

const MB = (bytes: number) => Math.round(bytes / 2 ** 20);
const ms = (v: number) => Math.round(v * 10) / 10;

/** The PyTorch timing's JSON line (reference_gdino.py --time): stage -> ms, whichever of its two layouts it prints. */
export function torchStages(json: Record<string, unknown>): Record<string, number> {
  const split = (json.split_ms ?? {}) as Record<string, unknown>;
  const out: Record<string, number> = {};
  for (const key of ['total', 'backbone', 'encoder', 'selection', 'decoder', 'masks']) {
    const v = json[`${key}_ms`] ?? split[key] ?? split[`${key}_ms`];
    if (typeof v === 'number') out[key] = v;
  }
  if (typeof json.peak_rss_mb === 'number') out.peak_rss_mb = json.peak_rss_mb;
  return out;
}

/** A python3 that imports torch (as scripts/golden/generate.sh picks it), or null. */
function torchPython(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return null;
}

function pytorchTiming(): { stages: Record<string, number> } | { skipped: string } {
  const script = path.join(projectRoot(), 'scripts', 'golden', 'reference_gdino.py');
  if (!fs.existsSync(script)) return { skipped: `${path.relative(process.cwd(), script)} is not there` };
  const py = torchPython();
  if (!py) return { skipped: 'no python3 that can import torch (Debian: apt-get install python3-torch)' };
  const args = ['-P', script, '--time', '--height', '800', '--width', '1333', '--classes', String(K_COCO), '--threads', '2'];
  console.log(`  PyTorch CPU: ${py} ${args.join(' ')}`);
  const r = spawnSync(py, args, { encoding: 'utf8', timeout: TORCH_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 });
  if (r.error || r.status !== 0) {
    return { skipped: `reference_gdino.py --time failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}` };
  }
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) return { skipped: `reference_gdino.py --time printed no JSON line: ${r.stdout.slice(-200)}` };
  const stages = torchStages(JSON.parse(line) as Record<string, unknown>);
  if (stages.total === undefined) return { skipped: `reference_gdino.py --time printed no total: ${line}` };
  return { stages };
}

export async function benchGdino(h: Harness): Promise<void> {
  const names = ['gdino_total', 'gdino_backbone', 'gdino_encoder', 'gdino_decoder', 'gdino_masks', 'gdino_postprocess', 'gdino_preprocess', 'gdino_semantic', 'gdino_pytorch_cpu'];
  if (!names.some((n) => h.wanted(n))) return;
  const engine = h.engine;
  const layout = releaseLayout();
  const config = releaseConfig(layout);
  let t = performance.now();
  const tensors = randomReleaseTensors(engine, layout);
  const { weights, model } = loadRandomRelease(tensors, config);
  await engine.sync();
  console.log(`  random release weights: ${(layout.parameters / 1e6).toFixed(2)} M parameters, ${MB(weights.byteLength)} MiB on the GPU (${engine.has('shader-f16') ? 'f16' : 'f32'} matrices), built and loaded in ${ms(performance.now() - t)} ms`);
  const text = randomClassEmbeddings(engine, model, K_COCO);
  const textAde = randomClassEmbeddings(engine, model, K_ADE, 5);
  try {
    const image = syntheticImage(1333, 800);
    t = performance.now();
    await detectionRun(engine, model, image, text); // compiles every pipeline, fills the pool
    console.log(`  warm-up run: ${ms(performance.now() - t)} ms`);
    const run = await detectionRun(engine, model, image, text);
    const peak = { peak_gpu_mb: MB(run.peakBytes), weights_gpu_mb: MB(run.baseBytes), activations_peak_mb: MB(run.peakBytes - run.baseBytes) };
    const rows = new Map<string, Measurement>();
    const record = (name: string, value: number, extra: Record<string, unknown> = {}) => {
      if (!h.wanted(name)) return;
      const m: Measurement = { name, shape: SHAPE, median_ms: ms(value), ...extra };
      h.record(m);
      rows.set(name, m);
    };
    record('gdino_total', run.totalMs, { ...peak, detections: run.detections });
    record('gdino_backbone', run.backboneMs);
    record('gdino_encoder', run.encoderMs);
    record('gdino_decoder', run.decoderMs, { includes: 'selection' });
    record('gdino_masks', run.masksMs, { includes: 'mask features + top-100 masks' });
    record('gdino_postprocess', run.postprocessMs);
    record('gdino_preprocess', run.preprocessMs, { excluded_from_total: 1 });

    if (h.wanted('gdino_semantic')) {
      const image2 = syntheticImage(2048, 512, 2);
      await semanticRun(engine, model, image2, textAde); // warm-up at this size
      const sem = await semanticRun(engine, model, image2, textAde);
      if (sem.error) console.log(`  semantic map FAILED (the row times the detector and the 900 mask logits only): ${sem.error}`);
      h.record({
        name: 'gdino_semantic', shape: `2048x512 (padded ${sem.padShape[1]}x${sem.padShape[0]}) K=150, 900 masks`, median_ms: ms(sem.ms),
        peak_gpu_mb: MB(sem.peakBytes), weights_gpu_mb: MB(sem.baseBytes), activations_peak_mb: MB(sem.peakBytes - sem.baseBytes),
        ...(sem.error ? { semantic_map_error: sem.error } : {}),
      });
    }

    if (h.wanted('gdino_pytorch_cpu') || h.wanted('gdino_total')) {
      const torch = pytorchTiming();
      if ('skipped' in torch) {
        console.log(`  PyTorch comparison skipped: ${torch.skipped}`);
      } else {
        const s = torch.stages;
        h.record({ name: 'gdino_pytorch_cpu', shape: SHAPE, median_ms: s.total!, threads: 2, ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'total').map(([k, v]) => [`${k}${k.endsWith('_mb') ? '' : '_ms'}`, v])) });
        const pairs: [string, number | undefined][] = [
          ['gdino_total', s.total],
          ['gdino_backbone', s.backbone],
          ['gdino_encoder', s.encoder],
          ['gdino_decoder', s.decoder !== undefined ? s.decoder + (s.selection ?? 0) : undefined],
          ['gdino_masks', s.masks],
        ];
        for (const [name, torchMs] of pairs) {
          const m = rows.get(name);
          if (m && torchMs !== undefined) h.annotate(m, { torch_ms: torchMs, ratio_vs_pytorch: Math.round((torchMs / m.median_ms) * 1000) / 1000 });
        }
      }
    }
  } finally {
    text.dispose();
    textAde.dispose();
    model.dispose();
    weights.dispose();
  }
}
