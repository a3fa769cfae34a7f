/**
 * Stable Diffusion 1.5's U-Net and VAE at the release's size: random weights under the release
 * checkpoint's names and shapes (test/golden/unet_release.json from scripts/golden/reference_unet.py
 * --layout --write, test/golden/vae_release.json from scripts/golden/vae_release.py) in the default
 * storage (f16 matrices). Rows, each one warm run after one warm-up, with its peak GPU memory:
 *   unet_cfg_64      one U-Net call as classifier-free guidance makes it: batch 2, 64x64 latents, [2, 77, 768] condition
 *   unet_ip2p_64     InstructPix2Pix's: batch 3, 8 input channels (the layout with conv_in.weight [320, 8, 3, 3])
 *   vae_decode_512   latents [1, 4, 64, 64] -> image [1, 3, 512, 512]
 *   vae_encode_512   image [1, 3, 512, 512] -> the latent mean [1, 4, 64, 64]
 *   sd_generation_projected  51 U-Net calls and one decode, computed from the rows above (not run)
 *   unet_op_shares   unet_cfg_64 by op family: each Conv2d, GroupNorm, attention, LayerNorm and Linear call
 *                    replayed alone (bench/op-shares.ts), with its share of the measured call
 * When a python3 with torch is there, the same modules in PyTorch on the CPU (reference_unet.py and
 * reference_vae.py --time, 2 threads, f32) give ratio_vs_pytorch = PyTorch ms / our ms.
 *
 * The loaders and the layouts are exported for test/diffusion-release.test.ts.
 */
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseUNetConfig, UNet2DConditionModel, type UNetConfig } from '../src/decoders/diffusion/unet.js';
import { AutoencoderKLVae, parseVaeConfig, type VaeConfig } from '../src/decoders/diffusion/vae.js';
import { MultiheadAttention } from '../src/nn/attention.js';
import { Conv2d } from '../src/nn/conv.js';
import { Linear } from '../src/nn/linear.js';
import { GroupNorm, LayerNorm } from '../src/nn/norm.js';
import { Params } from '../src/nn/params.js';
import type { Weights } from '../src/nn/weights.js';
import type { Harness, Measurement } from './harness.js';
import { recordCalls, timeCalls, type ModuleClass } from './op-shares.js';
import {
  annotateVsPytorch, benchRelease, MB, memoryBaseline, ms, peakFields, pytorchJson, randomHidden, releaseConfigReader, releaseLayout, releaseWeights,
  syntheticImage, timedSync, warmRun, type ReleaseLayout,
} from './release.js';

// ---- the release layouts and random weights in them ----

export const UNET_RELEASE_FILE = 'unet_release.json';
export const VAE_RELEASE_FILE = 'vae_release.json';

export function unetReleaseConfig(layout: ReleaseLayout): UNetConfig {
  return parseUNetConfig(releaseConfigReader(layout, 'unet_config'));
}

export function vaeReleaseConfig(layout: ReleaseLayout): VaeConfig {
  return parseVaeConfig(releaseConfigReader(layout, 'vae_config'));
}

/** InstructPix2Pix's U-Net (`ip2p.sd_unet.*`): SD-1.5's layout with 8 input channels (latents and the image's latents). */
export function ip2pUnetLayout(sd: ReleaseLayout): ReleaseLayout {
  const inChannels = sd.ip2p_in_channels as number;
  const [from, to] = [`${sd.prefix}.`, `${sd.ip2p_prefix as string}.`];
  const tensors = sd.tensors.map((t) => {
    const name = to + t.name.slice(from.length);
    return t.name === `${from}conv_in.weight` ? { ...t, name, shape: [t.shape[0]!, inChannels, ...t.shape.slice(2)] } : { ...t, name };
  });
  return {
    ...sd, prefix: sd.ip2p_prefix as string, parameters: sd.ip2p_parameters as number,
    unet_config: { ...(sd.unet_config as object), in_channels: inChannels }, tensors,
  };
}

/** Weights (source 'random release weights') from the tensors, and the U-Net read from them under the layout's prefix. */
export function loadRandomUnet(tensors: Map<string, Tensor>, layout: ReleaseLayout, config: UNetConfig): { weights: Weights; model: UNet2DConditionModel } {
  const weights = releaseWeights(tensors);
  return { weights, model: UNet2DConditionModel.load(new Params(weights).at(layout.prefix), config) };
}

/** The same for the VAE. */
export function loadRandomVae(tensors: Map<string, Tensor>, layout: ReleaseLayout, config: VaeConfig): { weights: Weights; model: AutoencoderKLVae } {
  const weights = releaseWeights(tensors);
  return { weights, model: AutoencoderKLVae.load(new Params(weights).at(layout.prefix), config) };
}

/** The inputs of one U-Net call: N(0, 1)-sized latents [B, in, s, s] and a unit-variance text condition [B, 77, crossDim]. */
export function unetInputs(engine: Engine, config: UNetConfig, batch: number, size: number, seed = 5): { sample: Tensor; condition: Tensor } {
  return {
    sample: randomHidden(engine, [batch, config.inChannels, size, size], seed),
    condition: randomHidden(engine, [batch, 77, config.crossAttentionDim], seed + 1),
  };
}

/** A synthetic photo as the VAE takes it: [1, 3, H, W] in [-1, 1]. */
export function vaeImage(engine: Engine, width: number, height: number): Tensor {
  const { data } = syntheticImage(width, height);
  const n = width * height;
  const chw = new Float32Array(3 * n);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) chw[c * n + p] = data[3 * p + c]! / 127.5 - 1;
  return engine.tensor(chw, [1, 3, height, width]);
}

// ---- the benchmark ----

/** The timestep of the first of 50 DDIM-like steps (diffusers' SD-1.5 pipeline, 1000 training steps). */
const T = 981;
/** One generation: 50 steps with classifier-free guidance (one batch-2 call each), and one more for the scheduler's first step. */
const GENERATION_CALLS = 51;

interface Run {
  ms: number;
  peakBytes: number;
  baseBytes: number;
}

/** One warm U-Net call after a warm-up, with its peak GPU memory over the weights and inputs. */
async function unetRow(engine: Engine, layout: ReleaseLayout, batch: number): Promise<Run> {
  const config = unetReleaseConfig(layout);
  const { weights, model } = await benchRelease(engine, layout, (tensors) => loadRandomUnet(tensors, layout, config));
  const { sample, condition } = unetInputs(engine, config, batch, 64);
  try {
    return await warmRun(async () => {
      const baseBytes = await memoryBaseline(engine);
      const { value, ms: took } = await timedSync(engine, () => model.forward(sample, T, condition));
      value.dispose();
      return { ms: took, peakBytes: engine.memory().peakBytes, baseBytes };
    });
  } finally {
    [sample, condition].forEach((t) => t.dispose());
    model.dispose();
    weights.dispose();
    engine.pool.trim();
  }
}

/**
 * The U-Net call's time by op family (bench/op-shares.ts): every Conv2d, GroupNorm, attention,
 * LayerNorm and Linear call of one forward replayed alone; `other` is the measured call's remainder
 * (elementwise adds, concatenations, transposes, the time embedding, and what replaying alone hides).
 */
async function unetShares(engine: Engine, layout: ReleaseLayout, callMs: number): Promise<Measurement> {
  const config = unetReleaseConfig(layout);
  const { weights, model } = await benchRelease(engine, layout, (tensors) => loadRandomUnet(tensors, layout, config));
  const { sample, condition } = unetInputs(engine, config, 2, 64);
  try {
    const families = { conv: Conv2d, group_norm: GroupNorm, attention: MultiheadAttention, layer_norm: LayerNorm, linear: Linear } as unknown as Record<string, ModuleClass>;
    const calls = recordCalls(engine, families, () => model.forward(sample, T, condition).dispose());
    await engine.sync();
    const { ms: byFamily, count } = await timeCalls(engine, calls);
    const total = callMs;
    const fields = Object.fromEntries(Object.entries(byFamily).flatMap(([f, v]) => [[`${f}_ms`, ms(v)], [`${f}_share`, Math.round((v / total) * 1000) / 1000], [`${f}_calls`, count[f]]]));
    const replayed = Object.values(byFamily).reduce((a, b) => a + b, 0);
    return { name: 'unet_op_shares', shape: 'unet_cfg_64, each call replayed alone', median_ms: ms(replayed), ...fields, other_share: Math.round(((total - replayed) / total) * 1000) / 1000, of_ms: ms(total) };
  } finally {
    [sample, condition].forEach((t) => t.dispose());
    model.dispose();
    weights.dispose();
    engine.pool.trim();
  }
}

export async function benchDiffusion(h: Harness): Promise<void> {
  const names = ['unet_cfg_64', 'unet_ip2p_64', 'vae_decode_512', 'vae_encode_512', 'sd_generation_projected', 'unet_pytorch_cpu', 'vae_pytorch_cpu', 'unet_op_shares'];
  if (!names.some((n) => h.wanted(n))) return;
  const engine = h.engine;
  const unetLayout = releaseLayout(UNET_RELEASE_FILE);
  const vaeLayout = releaseLayout(VAE_RELEASE_FILE);
  const projected = h.wanted('sd_generation_projected');
  const rows = new Map<string, Measurement>();
  const shapes: Record<string, string> = {
    unet_cfg_64: 'SD-1.5 U-Net, batch 2, latents 64x64, condition 2x77x768, t 981',
    unet_ip2p_64: 'IP2P U-Net (8 in), batch 3, latents 64x64, condition 3x77x768, t 981',
    vae_decode_512: 'SD-1.5 VAE, latents 1x4x64x64 -> 512x512',
    vae_encode_512: 'SD-1.5 VAE, image 1x3x512x512 -> mean 1x4x64x64',
  };
  const runs = new Map<string, Run>();
  const row = (name: string, run: Run) => {
    runs.set(name, run);
    if (!h.wanted(name)) return;
    const m: Measurement = { name, shape: shapes[name]!, median_ms: ms(run.ms), ...peakFields(run.peakBytes, run.baseBytes) };
    h.record(m);
    rows.set(name, m);
  };

  // PyTorch first, while our models hold no memory: the U-Net in f32 takes about 4 GB of RAM, and
  // lavapipe's buffers are host memory too.
  const wantUnetTorch = ['unet_pytorch_cpu', 'unet_cfg_64', 'sd_generation_projected'].some((n) => h.wanted(n));
  const wantVaeTorch = ['vae_pytorch_cpu', 'vae_decode_512', 'vae_encode_512', 'sd_generation_projected'].some((n) => h.wanted(n));
  let unetTorch: number | undefined;
  let decodeTorch: number | undefined;
  let encodeTorch: number | undefined;
  if (wantUnetTorch) {
    const torch = pytorchJson('reference_unet.py', ['--time', '--threads', '2', '--size', '64', '--batch', '2']);
    if ('skipped' in torch) console.log(`  PyTorch U-Net comparison skipped: ${torch.skipped}`);
    else {
      unetTorch = torch.json.unet_ms as number;
      h.record({ name: 'unet_pytorch_cpu', shape: shapes.unet_cfg_64!, median_ms: unetTorch, threads: 2, dtype: 'f32', peak_rss_mb: torch.json.peak_rss_mb });
    }
  }
  if (wantVaeTorch) {
    const torch = pytorchJson('reference_vae.py', ['--time', '--threads', '2', '--size', '512']);
    if ('skipped' in torch) console.log(`  PyTorch VAE comparison skipped: ${torch.skipped}`);
    else {
      decodeTorch = torch.json.decode_ms as number;
      encodeTorch = torch.json.encode_ms as number;
      h.record({ name: 'vae_pytorch_cpu', shape: 'SD-1.5 VAE decode 64x64 -> 512x512', median_ms: decodeTorch, encode_ms: encodeTorch, threads: 2, dtype: 'f32', peak_rss_mb: torch.json.peak_rss_mb });
    }
  }

  if (h.wanted('unet_cfg_64') || projected || h.wanted('unet_op_shares')) row('unet_cfg_64', await unetRow(engine, unetLayout, 2));
  if (h.wanted('unet_op_shares')) h.record(await unetShares(engine, unetLayout, runs.get('unet_cfg_64')!.ms));
  if (h.wanted('unet_ip2p_64')) row('unet_ip2p_64', await unetRow(engine, ip2pUnetLayout(unetLayout), 3));

  if (['vae_decode_512', 'vae_encode_512'].some((n) => h.wanted(n)) || projected) {
    const config = vaeReleaseConfig(vaeLayout);
    const { weights, model } = await benchRelease(engine, vaeLayout, (tensors) => loadRandomVae(tensors, vaeLayout, config));
    const latents = randomHidden(engine, [1, config.latentChannels, 64, 64], 9);
    const image = vaeImage(engine, 512, 512);
    try {
      const timed = (fn: () => Tensor) => warmRun(async (): Promise<Run> => {
        const baseBytes = await memoryBaseline(engine);
        const { value, ms: took } = await timedSync(engine, fn);
        value.dispose();
        return { ms: took, peakBytes: engine.memory().peakBytes, baseBytes };
      });
      if (h.wanted('vae_decode_512') || projected) row('vae_decode_512', await timed(() => model.decode(latents)));
      if (h.wanted('vae_encode_512')) row('vae_encode_512', await timed(() => model.encodeMean(image)));
    } finally {
      [latents, image].forEach((t) => t.dispose());
      weights.dispose();
      engine.pool.trim();
    }
  }

  const unet = runs.get('unet_cfg_64');
  const decode = runs.get('vae_decode_512');
  if (projected && unet && decode) {
    // Both models' weights held at once, and the larger of the two runs' working memory (the text encoder is not counted).
    const peak = unet.baseBytes + decode.baseBytes + Math.max(unet.peakBytes - unet.baseBytes, decode.peakBytes - decode.baseBytes);
    const m: Measurement = {
      name: 'sd_generation_projected', shape: `${GENERATION_CALLS} x unet_cfg_64 + vae_decode_512 (projected, not run)`,
      median_ms: ms(GENERATION_CALLS * unet.ms + decode.ms), projected: 1, unet_calls: GENERATION_CALLS,
      projected_peak_gpu_mb: MB(peak), excludes: 'text encoder, scheduler steps, image conversion',
    };
    h.record(m);
    rows.set(m.name, m);
  }

  annotateVsPytorch(h, [[rows.get('unet_cfg_64'), unetTorch], [rows.get('vae_decode_512'), decodeTorch], [rows.get('vae_encode_512'), encodeTorch]]);
  if (unetTorch !== undefined && decodeTorch !== undefined) annotateVsPytorch(h, [[rows.get('sd_generation_projected'), GENERATION_CALLS * unetTorch + decodeTorch]]);
}
