import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { UNet2DConditionModel } from '../src/decoders/diffusion/unet.js';
import { AutoencoderKLVae } from '../src/decoders/diffusion/vae.js';
import type { Weights } from '../src/nn/weights.js';
import { numel, randomHidden, randomReleaseTensors, releaseLayout, releaseVariant } from '../bench/release.js';
import {
  ip2pUnetLayout, loadRandomUnet, loadRandomVae, UNET_RELEASE_FILE, unetInputs, unetReleaseConfig, VAE_RELEASE_FILE, vaeReleaseConfig,
} from '../bench/diffusion.js';
import { testEngine } from './helpers.js';

// The release checkpoint's sd.sd_unet.* and sd.sd_vae.* names, shapes and dtypes: reference_unet.py
// --layout --write and vae_release.py, from the PyTorch references at SD-1.5's configs. Values are
// random, generated here (bench/release.ts), with matrices in f16 as the default storage policy loads them.
const unetLayout = releaseLayout(UNET_RELEASE_FILE);
const vaeLayout = releaseLayout(VAE_RELEASE_FILE);
const unetConfig = unetReleaseConfig(unetLayout);
const vaeConfig = vaeReleaseConfig(vaeLayout);
/**
 * One U-Net call at 64x64 latents (batch 2, as classifier-free guidance makes it) and one VAE decode,
 * on the adapter's own kernel profile, the decode to 256x256: on lavapipe a decode to 512x512 takes
 * longer than the U-Net call, and the default suite stays within a few minutes. `npm run test:release`
 * (DIFFUSION_RELEASE_FULL=1) runs both kernel profiles, each with the decode to 512x512.
 */
const FULL = process.env.DIFFUSION_RELEASE_FULL === '1';
const PROFILES: [string, 'cpu' | 'gpu' | undefined][] = FULL ? [['cpu', 'cpu'], ['gpu', 'gpu']] : [["the adapter's own", undefined]];
const T = 981;
const BATCH = 2;
const ownParameters = (tensors: readonly { shape: number[] }[]) => tensors.reduce((n, t) => n + numel(t.shape), 0);
const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const seconds = (ms: number) => (ms / 1000).toFixed(1);

describe('the release layouts', () => {
  it("have SD-1.5's U-Net config and its 859.52 M parameters", () => {
    expect(unetConfig).toMatchObject({
      inChannels: 4, outChannels: 4, blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2, heads: [8, 8, 8, 8], crossAttentionDim: 768,
      normNumGroups: 32, downAttention: [true, true, true, false], upAttention: [false, true, true, true],
    });
    expect(unetLayout.tensors.every((t) => t.name.startsWith('sd.sd_unet.') && t.dtype === 'F32' && !t.alias_of && !t.buffer)).toBe(true);
    expect(ownParameters(unetLayout.tensors)).toBe(unetLayout.parameters);
    expect(Math.round(unetLayout.parameters / 1e4) / 100).toBe(859.52);
    expect(unetLayout.tensors.find((t) => t.name === 'sd.sd_unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight')?.shape).toEqual([320, 768]);
  });

  it("InstructPix2Pix's U-Net is the same with conv_in.weight [320, 8, 3, 3]", () => {
    const ip2p = ip2pUnetLayout(unetLayout);
    expect(unetReleaseConfig(ip2p).inChannels).toBe(8);
    expect(ip2p.tensors.every((t) => t.name.startsWith('ip2p.sd_unet.'))).toBe(true);
    expect(ip2p.tensors.find((t) => t.name === 'ip2p.sd_unet.conv_in.weight')?.shape).toEqual([320, 8, 3, 3]);
    expect(ownParameters(ip2p.tensors)).toBe(ip2p.parameters);
    expect(ip2p.parameters - unetLayout.parameters).toBe(320 * 4 * 9);
  });

  it("have SD-1.5's VAE config and its 83.65 M parameters", () => {
    expect(vaeConfig).toMatchObject({ inChannels: 3, outChannels: 3, blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, latentChannels: 4, normNumGroups: 32, scalingFactor: 0.18215 });
    expect(vaeLayout.tensors.every((t) => t.name.startsWith('sd.sd_vae.') && t.dtype === 'F32' && !t.alias_of && !t.buffer)).toBe(true);
    expect(ownParameters(vaeLayout.tensors)).toBe(vaeLayout.parameters);
    expect(Math.round(vaeLayout.parameters / 1e4) / 100).toBe(83.65);
    expect(vaeLayout.tensors.find((t) => t.name === 'sd.sd_vae.decoder.mid_block.attentions.0.to_q.weight')?.shape).toEqual([512, 512]);
  });
});

describe.each(PROFILES)('a U-Net and a VAE with the release names and shapes (random values), %s kernels', (_label, requested) => {
  let engine: Engine;
  let unetTensors: Map<string, Tensor>;
  let vaeTensors: Map<string, Tensor>;
  let unet: { weights: Weights; model: UNet2DConditionModel };
  let vae: { weights: Weights; model: AutoencoderKLVae };
  /** Peak GPU memory over the weights of the U-Net call and of the decode. */
  const working: { unet?: number; decode?: number } = {};

  /** The profile the engine runs: `requested`, or the adapter's own. */
  let profile: string;

  beforeAll(async () => {
    engine = await testEngine({ profile: requested });
    profile = engine.profile;
    const start = performance.now();
    unetTensors = randomReleaseTensors(engine, unetLayout);
    unet = loadRandomUnet(unetTensors, unetLayout, unetConfig);
    vaeTensors = randomReleaseTensors(engine, vaeLayout);
    vae = loadRandomVae(vaeTensors, vaeLayout, vaeConfig);
    await engine.sync();
    console.log(
      `diffusion release, ${profile} kernels: U-Net ${unetLayout.tensors.length} tensors, ${MiB(unet.weights.byteLength)} MiB; ` +
        `VAE ${vaeLayout.tensors.length} tensors, ${MiB(vae.weights.byteLength)} MiB on the GPU; made and loaded in ${seconds(performance.now() - start)} s`,
    );
  }, 300_000);

  afterAll(() => {
    if (working.unet !== undefined && working.decode !== undefined) {
      const whole = unet.weights.byteLength + vae.weights.byteLength + Math.max(working.unet, working.decode);
      console.log(`diffusion release, ${profile} kernels: a generation holds both models' weights and the larger working set: about ${MiB(whole)} MiB (text encoder not counted)`);
    }
    unet?.model.dispose();
    unet?.weights.dispose();
    vae?.weights.dispose();
  });

  it('loads every tensor', () => {
    expect(unet.weights.unused()).toEqual([]);
    expect(vae.weights.unused()).toEqual([]);
  });

  it.each([
    'sd.sd_unet.conv_in.weight',
    'sd.sd_unet.time_embedding.linear_2.bias',
    'sd.sd_unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight',
    'sd.sd_unet.down_blocks.2.downsamplers.0.conv.bias',
    'sd.sd_unet.down_blocks.3.resnets.1.norm2.weight',
    'sd.sd_unet.mid_block.resnets.1.time_emb_proj.weight',
    'sd.sd_unet.mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight',
    'sd.sd_unet.up_blocks.0.resnets.2.conv_shortcut.weight',
    'sd.sd_unet.up_blocks.2.upsamplers.0.conv.weight',
    'sd.sd_unet.up_blocks.3.attentions.2.proj_out.bias',
    'sd.sd_unet.conv_norm_out.bias',
  ])('a missing %s is named', (name) => {
    expect(() => UNet2DConditionModel.load(releaseVariant(unetLayout, unetTensors, name).at(unetLayout.prefix), unetConfig)).toThrow(`missing weight '${name}'`);
  });

  it.each([
    'sd.sd_vae.encoder.conv_in.weight',
    'sd.sd_vae.encoder.down_blocks.0.downsamplers.0.conv.weight',
    'sd.sd_vae.encoder.mid_block.attentions.0.group_norm.bias',
    'sd.sd_vae.quant_conv.bias',
    'sd.sd_vae.post_quant_conv.weight',
    'sd.sd_vae.decoder.mid_block.attentions.0.to_out.0.weight',
    'sd.sd_vae.decoder.up_blocks.3.resnets.0.conv_shortcut.weight',
    'sd.sd_vae.decoder.conv_norm_out.weight',
  ])('a missing %s is named', (name) => {
    expect(() => AutoencoderKLVae.load(releaseVariant(vaeLayout, vaeTensors, name).at(vaeLayout.prefix), vaeConfig)).toThrow(`missing weight '${name}'`);
  });

  it.each([
    ['U-Net', 'sd.sd_unet.conv_in.weight', [320, 8, 3, 3], '[320, 4, 3, 3]'], // InstructPix2Pix's conv_in under SD's name
    ['U-Net', 'sd.sd_unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight', [1280, 1024], '[1280, 768]'],
    ['VAE', 'sd.sd_vae.decoder.mid_block.attentions.0.to_k.weight', [512, 256], '[512, 512]'],
  ] as const)('a misshapen %s tensor, %s, is named with both shapes', (model, name, shape, expected) => {
    const wrong = engine.tensor(new Float32Array(numel(shape)), [...shape]);
    try {
      const load = model === 'U-Net'
        ? () => UNet2DConditionModel.load(releaseVariant(unetLayout, unetTensors, name, wrong).at(unetLayout.prefix), unetConfig)
        : () => AutoencoderKLVae.load(releaseVariant(vaeLayout, vaeTensors, name, wrong).at(vaeLayout.prefix), vaeConfig);
      expect(load).toThrow(`${name} [${shape.join(', ')}] must be ${expected}`);
    } finally {
      wrong.dispose();
    }
  });

  const latent = 64;
  const decoded = FULL ? 512 : 256;

  it(`one U-Net call at ${latent}x${latent} latents (batch ${BATCH}, condition [${BATCH}, 77, 768], t ${T}) completes with finite outputs`, async () => {
    const { sample, condition } = unetInputs(engine, unetConfig, BATCH, latent);
    try {
      await engine.sync();
      const before = engine.memory().liveBytes;
      engine.pool.resetPeak();
      const start = performance.now();
      const eps = unet.model.forward(sample, T, condition);
      await engine.sync();
      const took = performance.now() - start;
      const peak = engine.memory().peakBytes;
      try {
        expect(eps.shape).toEqual([BATCH, 4, latent, latent]);
        expect(eps.dtype).toBe('f32');
        const values = await eps.toArray();
        const bad = values.findIndex((v) => !Number.isFinite(v));
        expect(bad, `eps[${bad}] = ${values[bad]}`).toBe(-1);
      } finally {
        eps.dispose();
      }
      working.unet = peak - before;
      console.log(
        `diffusion release, ${profile} kernels: U-Net call at ${latent}x${latent} latents, batch ${BATCH}: ${seconds(took)} s; ` +
          `peak GPU memory ${MiB(peak)} MiB (${MiB(before)} MiB before: weights and inputs; +${MiB(peak - before)} MiB)`,
      );
    } finally {
      [sample, condition].forEach((t) => t.dispose());
    }
  }, 1_200_000);

  it(`one VAE decode to ${decoded}x${decoded} completes with finite outputs`, async () => {
    const latents = randomHidden(engine, [1, 4, decoded / 8, decoded / 8], 9);
    try {
      await engine.sync();
      const before = engine.memory().liveBytes;
      engine.pool.resetPeak();
      const start = performance.now();
      const image = vae.model.decode(latents);
      await engine.sync();
      const took = performance.now() - start;
      const peak = engine.memory().peakBytes;
      try {
        expect(image.shape).toEqual([1, 3, decoded, decoded]);
        const values = await image.toArray();
        const bad = values.findIndex((v) => !Number.isFinite(v));
        expect(bad, `image[${bad}] = ${values[bad]}`).toBe(-1);
      } finally {
        image.dispose();
      }
      working.decode = peak - before;
      console.log(
        `diffusion release, ${profile} kernels: VAE decode to ${decoded}x${decoded}: ${seconds(took)} s; ` +
          `peak GPU memory ${MiB(peak)} MiB (${MiB(before)} MiB before: both models' weights and the latents; +${MiB(peak - before)} MiB)`,
      );
    } finally {
      latents.dispose();
    }
  }, 1_200_000);
});
