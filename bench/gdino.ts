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
 * The detector's loader and class embeddings are exported for test/gdino-release.test.ts (the
 * release layout and random values: bench/release.ts).
 */
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseGdinoConfig, type GdinoConfig } from '../src/decoders/gdino/config.js';
import { ADE20K_SCALE, gdinoImage } from '../src/decoders/gdino/image.js';
import { GroundingDino, type GdinoResult } from '../src/decoders/gdino/model.js';
import { detections, instanceMasks, semanticMap } from '../src/decoders/gdino/postprocess.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import { Params } from '../src/nn/params.js';
import type { Weights } from '../src/nn/weights.js';
import type { Harness } from './harness.js';
import {
  annotateVsPytorch, benchRelease, memoryBaseline, ms, peakFields, pytorchJson, randomHidden, releaseConfigReader, releaseLayout, releaseWeights,
  stageRows, syntheticImage, timedSync, warmRun, type ReleaseLayout,
} from './release.js';

// ---- the release layout and random weights in it ----

export const GDINO_RELEASE_FILE = 'gdino_release.json';

export function releaseConfig(layout: ReleaseLayout): GdinoConfig {
  return parseGdinoConfig(releaseConfigReader(layout, 'gdino_config'));
}

/** Weights (source 'random release weights') from the tensors, and the detector read from them. */
export function loadRandomRelease(tensors: Map<string, Tensor>, config: GdinoConfig): { weights: Weights; model: GroundingDino } {
  const weights = releaseWeights(tensors);
  return { weights, model: GroundingDino.load(new Params(weights), config, config.lHiddenSize) };
}

/** K class embeddings through patch2query: random LLM hidden states of K blocks x num_embs queries -> [K, d_model]. */
export function randomClassEmbeddings(engine: Engine, model: GroundingDino, K: number, seed = 3): Tensor {
  const { numEmbs, lHiddenSize } = model.config;
  const hidden = randomHidden(engine, [K, numEmbs, lHiddenSize], seed);
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
  const baseBytes = await memoryBaseline(engine);
  const { value: input, ms: preprocessMs } = await timedSync(engine, () => gdinoImage(engine, image));
  let result: GdinoResult | undefined;
  try {
    const start = performance.now();
    result = await model.detect(input, text, { masks: true });
    let t = performance.now();
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
  const baseBytes = await memoryBaseline(engine);
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

function pytorchTiming(): { stages: Record<string, number> } | { skipped: string } {
  const r = pytorchJson('reference_gdino.py', ['--time', '--height', '800', '--width', '1333', '--classes', String(K_COCO), '--threads', '2']);
  if ('skipped' in r) return r;
  const stages = torchStages(r.json);
  if (stages.total === undefined) return { skipped: `reference_gdino.py --time printed no total: ${JSON.stringify(r.json)}` };
  return { stages };
}

export async function benchGdino(h: Harness): Promise<void> {
  const names = ['gdino_total', 'gdino_backbone', 'gdino_encoder', 'gdino_decoder', 'gdino_masks', 'gdino_postprocess', 'gdino_preprocess', 'gdino_semantic', 'gdino_pytorch_cpu'];
  if (!names.some((n) => h.wanted(n))) return;
  const engine = h.engine;
  const layout = releaseLayout(GDINO_RELEASE_FILE);
  const config = releaseConfig(layout);
  const { weights, model } = await benchRelease(engine, layout, (tensors) => loadRandomRelease(tensors, config));
  const text = randomClassEmbeddings(engine, model, K_COCO);
  const textAde = randomClassEmbeddings(engine, model, K_ADE, 5);
  try {
    const image = syntheticImage(1333, 800);
    const run = await warmRun(() => detectionRun(engine, model, image, text));
    const peak = peakFields(run.peakBytes, run.baseBytes);
    const { rows, record } = stageRows(h, SHAPE);
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
        ...peakFields(sem.peakBytes, sem.baseBytes),
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
        annotateVsPytorch(h, pairs.map(([name, torchMs]) => [rows.get(name), torchMs]));
      }
    }
  } finally {
    text.dispose();
    textAde.dispose();
    model.dispose();
    weights.dispose();
  }
}
