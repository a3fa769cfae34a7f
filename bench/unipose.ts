/**
 * UniPose whole, at the release's size: random weights under the release checkpoint's names and
 * shapes (test/golden/unipose_release.json, from scripts/golden/unipose_release.py) in the default
 * storage (f16 matrices), an 800x1333 image, 1 object class and the 17 COCO keypoints, pose
 * detection and post-processing of the 50 groups. One warm run after one warm-up, split into the
 * stages detect() reports, with the peak GPU memory; and the pose phase's masked self-attention
 * over 50 x (1 + 68) = 3450 queries alone (a median over a few runs), the pose layers' costliest
 * step. When a python3 with torch is there, the same model in PyTorch on the CPU
 * (scripts/golden/reference_unipose.py --time / --attention, 2 threads) gives
 * ratio_vs_pytorch = PyTorch ms / our ms per stage.
 *
 * The loader and the random prompt are exported for test/unipose-release.test.ts.
 */
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseUniposeConfig, type UniposeConfig } from '../src/decoders/unipose/config.js';
import { uniposeImage } from '../src/decoders/unipose/image.js';
import { UniPose } from '../src/decoders/unipose/model.js';
import { poseAttentionBias } from '../src/decoders/unipose/pose-mask.js';
import { poseDetections } from '../src/decoders/unipose/postprocess.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import { MultiheadAttention } from '../src/nn/attention.js';
import { Params } from '../src/nn/params.js';
import type { Weights } from '../src/nn/weights.js';
import type { Harness, Measurement } from './harness.js';
import {
  annotateVsPytorch, benchRelease, memoryBaseline, ms, peakFields, pytorchJson, randomHidden, randomReleaseTensors, releaseConfigReader, releaseLayout,
  releaseWeights, stageRows, syntheticImage, timedSync, uniformValues, warmRun, type ReleaseLayout,
} from './release.js';

// ---- the release layout and random weights in it ----

export const UNIPOSE_RELEASE_FILE = 'unipose_release.json';

export function uniposeReleaseConfig(layout: ReleaseLayout): UniposeConfig {
  return parseUniposeConfig(releaseConfigReader(layout, 'unipose_config'));
}

/** Weights (source 'random release weights') from the tensors, and the model read from them. */
export async function loadRandomUnipose(tensors: Map<string, Tensor>, config: UniposeConfig): Promise<{ weights: Weights; model: UniPose }> {
  const weights = releaseWeights(tensors);
  return { weights, model: await UniPose.load(new Params(weights), config, config.lHiddenSize) };
}

/** Random LLM hidden states of a pose prompt: `objects` [DET] blocks and `keypoints` [POSE] blocks of num_embs rows. */
export function randomPromptHidden(engine: Engine, config: UniposeConfig, objects: number, keypoints: number, seed = 3): { objects: Tensor; keypoints: Tensor } {
  const { numEmbs: n, lHiddenSize: llm } = config.detector;
  return { objects: randomHidden(engine, [objects, n, llm], seed), keypoints: randomHidden(engine, [keypoints, n, llm], seed + 1) };
}

/** Names for the first k keypoint slots. */
export const keypointNames = (k: number) => Array.from({ length: k }, (_, j) => `kp${j}`);

// ---- the benchmark ----

const KEYPOINTS = 17;
const SHAPE = `800x1333 1 object ${KEYPOINTS} keypoints`;

interface PoseRun {
  preprocessMs: number;
  /** projection_llava / projection_kpt_llava of the prompt's blocks (PyTorch counts them in its encoder stage). */
  textMs: number;
  backboneMs: number;
  encoderMs: number;
  boxPhaseMs: number;
  posePhaseMs: number;
  postprocessMs: number;
  /** Text, detect() and post-processing: everything but the image preprocessing. */
  totalMs: number;
  peakBytes: number;
  baseBytes: number;
  instances: number;
}

async function poseRun(engine: Engine, model: UniPose, image: RgbImage, hidden: { objects: Tensor; keypoints: Tensor }): Promise<PoseRun> {
  const baseBytes = await memoryBaseline(engine);
  const { value: input, ms: preprocessMs } = await timedSync(engine, () => uniposeImage(engine, image));
  let text: { value: [Tensor, Tensor]; ms: number } | undefined;
  try {
    const start = performance.now();
    text = await timedSync(engine, () => [model.objectText(hidden.objects), model.keypointText(hidden.keypoints)] as [Tensor, Tensor]);
    const result = await model.detect(input, ...text.value); // host arrays: nothing to free
    const t = performance.now();
    const found = poseDetections(result, { oriShape: input.oriShape, keypointNames: keypointNames(KEYPOINTS), numClasses: 1 });
    const postprocessMs = performance.now() - t;
    return {
      preprocessMs, textMs: text.ms, ...result.timings, postprocessMs, totalMs: performance.now() - start,
      peakBytes: engine.memory().peakBytes, baseBytes, instances: found.length,
    };
  } finally {
    text?.value.forEach((x) => x.dispose());
    input.dispose();
  }
}

/**
 * The pose layers' self-attention alone, as the decoder runs it: a release layer's packed
 * in_proj/out_proj (f16 matrices) over [3450, 256] with the shared [1, 1, L, L] f16 mask.
 */
async function poseAttention(h: Harness, layout: ReleaseLayout, config: UniposeConfig): Promise<Measurement | null> {
  const engine = h.engine;
  const { dModel: d, decoderAttentionHeads: heads } = config.detector;
  const { groups: G, maxKeypoints: m, boxLayers } = config.pose;
  const L = G * (1 + m);
  const scope = `${layout.prefix}.transformer.decoder.layers.${boxLayers}.self_attn`;
  const tensors = randomReleaseTensors(engine, layout, { include: (t) => t.name.startsWith(`${scope}.`) });
  const mha = MultiheadAttention.packed(Params.of(tensors, 'random release weights').at(scope), d, heads);
  const x = engine.tensor(uniformValues(L * d, 7, 0, 1), [L, d]);
  const mask = poseAttentionBias(engine, G, m, KEYPOINTS, 'f16');
  try {
    // Dense work: the four projections and the two L x L x d products (masked scores are computed too).
    const flops = 8 * L * d * d + 4 * L * L * d;
    return await h.gpu({
      name: 'unipose_pose_attention', shape: `${L}x${d} ${heads}h, mask ${KEYPOINTS}/${m} kpts`, flops,
      run: () => engine.scope(() => mha.forward(x, x, { bias: mask })), iterations: 5, time: 0,
    });
  } finally {
    [x, mask, ...tensors.values()].forEach((t) => t.dispose());
  }
}

export async function benchUnipose(h: Harness): Promise<void> {
  const stages = ['unipose_total', 'unipose_backbone', 'unipose_encoder', 'unipose_box_phase', 'unipose_pose_phase', 'unipose_postprocess', 'unipose_preprocess'];
  const wantTorch = h.wanted('unipose_pytorch_cpu') || h.wanted('unipose_total');
  if (![...stages, 'unipose_pose_attention', 'unipose_pytorch_cpu'].some((n) => h.wanted(n))) return;
  const engine = h.engine;
  const layout = releaseLayout(UNIPOSE_RELEASE_FILE);
  const config = uniposeReleaseConfig(layout);

  const attention = h.wanted('unipose_pose_attention') ? await poseAttention(h, layout, config) : null;
  const { rows, record } = stageRows(h, SHAPE);
  if (stages.some((n) => h.wanted(n)) || wantTorch) {
    const { weights, model } = await benchRelease(engine, layout, (tensors) => loadRandomUnipose(tensors, config));
    const hidden = randomPromptHidden(engine, config, 1, KEYPOINTS);
    try {
      const image = syntheticImage(1333, 800);
      const run = await warmRun(() => poseRun(engine, model, image, hidden));
      record('unipose_total', run.totalMs, { ...peakFields(run.peakBytes, run.baseBytes), instances: run.instances });
      record('unipose_backbone', run.backboneMs);
      record('unipose_encoder', run.textMs + run.encoderMs, { includes: 'text projections', text_ms: ms(run.textMs) });
      record('unipose_box_phase', run.boxPhaseMs, { includes: 'selection, box layers, group selection' });
      record('unipose_pose_phase', run.posePhaseMs, { includes: 'pose layers, heads' });
      record('unipose_postprocess', run.postprocessMs);
      record('unipose_preprocess', run.preprocessMs, { excluded_from_total: 1 });
    } finally {
      [hidden.objects, hidden.keypoints].forEach((x) => x.dispose());
      model.dispose();
      weights.dispose();
    }
  }

  if (wantTorch) {
    const torch = pytorchJson('reference_unipose.py', ['--time', '--height', '800', '--width', '1333', '--keypoints', String(KEYPOINTS), '--threads', '2']);
    if ('skipped' in torch) {
      console.log(`  PyTorch comparison skipped: ${torch.skipped}`);
    } else {
      const split = (torch.json.split_ms ?? {}) as Record<string, number | undefined>;
      const total = torch.json.total_ms as number | undefined;
      if (total !== undefined) {
        const extra = Object.fromEntries(Object.entries(split).map(([k, v]) => [`${k}_ms`, v]));
        h.record({ name: 'unipose_pytorch_cpu', shape: SHAPE, median_ms: total, threads: 2, ...extra, peak_rss_mb: torch.json.peak_rss_mb });
      }
      annotateVsPytorch(h, [
        [rows.get('unipose_total'), total],
        [rows.get('unipose_backbone'), split.backbone],
        [rows.get('unipose_encoder'), split.encoder],
        [rows.get('unipose_box_phase'), split.box_phase],
        [rows.get('unipose_pose_phase'), split.pose_phase],
      ]);
    }
  }
  if (attention) {
    const torch = pytorchJson('reference_unipose.py', ['--attention', '--threads', '2']);
    if ('skipped' in torch) console.log(`  PyTorch attention comparison skipped: ${torch.skipped}`);
    else annotateVsPytorch(h, [[attention, torch.json.attention_ms as number | undefined]]);
  }
}
