import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { AutoencoderKLVae, parseVaeConfig } from '../src/decoders/diffusion/vae.js';
import { Params } from '../src/nn/params.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

// Goldens: scripts/golden/diffusion_vae.py (diffusers 0.28.2's AutoencoderKL, transcribed in reference_vae.py).
const golden = loadGolden('diffusion_vae');
const SOURCE = 'diffusion_vae.safetensors';
const PREFIX = golden.metadata.prefix!;
const CONFIG_JSON = JSON.parse(golden.metadata.config!) as Record<string, unknown>;
const config = parseVaeConfig(new ConfigReader('vae/config.json', CONFIG_JSON));

/** The checkpoint's tensors under their names (f16 values: both uploads hold the same numbers). */
const weights = (engine: Engine, dtype: 'f32' | 'f16', skip?: string) => golden.weights(engine, dtype, `${PREFIX}.`, skip);

describe.each(['cpu', 'gpu'] as const)('AutoencoderKL, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(['f32', 'f16'] as const)('%s weights: decode and the encoder mean of odd sizes, with the mid blocks', async (dtype) => {
    const tensors = weights(engine, dtype);
    const vae = AutoencoderKLVae.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    expect(vae.factor).toBe(2);
    const [latents, image] = [golden.upload(engine, 'latents'), golden.upload(engine, 'image')];
    const decoded = vae.decodeStages(latents);
    const encoded = vae.encodeStages(image);
    const errs: string[] = [];
    for (const [name, t] of [['decoder_mid', decoded.mid], ['decoded', decoded.out], ['encoder_mid', encoded.mid], ['mean', encoded.out]] as const) {
      expect(t.shape, name).toEqual(golden.shape(name));
      expect(t.dtype, name).toBe('f32');
      errs.push(`${name} ${expectClose(await t.toArray(), golden.values(name), { rel: TOL[dtype], label: `${profile} ${dtype} ${name}` }).toExponential(1)}`);
    }
    // decode() and encodeMean() are the stages' results without the mid blocks.
    const live = engine.memory().liveBytes;
    const [image2, mean2] = [vae.decode(latents), vae.encodeMean(image)];
    expect(Array.from(await image2.toArray())).toEqual(Array.from(await decoded.out.toArray()));
    expect(Array.from(await mean2.toArray())).toEqual(Array.from(await encoded.out.toArray()));
    [image2, mean2].forEach((t) => t.dispose());
    expect(engine.memory().liveBytes, 'bytes left after the results are disposed').toBe(live);
    // The attention in blocks of query rows (large latents) gives the same mid blocks: 165 tokens in blocks of 40.
    const blocked = AutoencoderKLVae.load(Params.of(tensors, SOURCE).at(PREFIX), config, { attentionRows: 40 });
    for (const [name, stages] of [['decoder_mid', blocked.decodeStages(latents)], ['encoder_mid', blocked.encodeStages(image)]] as const) {
      errs.push(`${name} (blocks of 40 rows) ${expectClose(await stages.mid.toArray(), golden.values(name), { rel: TOL[dtype], label: `${profile} ${dtype} ${name}, attention in blocks` }).toExponential(1)}`);
      [stages.mid, stages.out].forEach((t) => t.dispose());
    }
    console.log(`${profile} ${dtype}: ${errs.join(', ')}`);
    [latents, image, decoded.mid, decoded.out, encoded.mid, encoded.out, ...tensors.values()].forEach((t) => t.dispose());
  });
});

describe('AutoencoderKL config and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('defaults to SD-1.5 and reads the tiny config', () => {
    expect(parseVaeConfig(new ConfigReader('vae/config.json', {}))).toEqual({
      inChannels: 3, outChannels: 3, blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, latentChannels: 4, normNumGroups: 32, scalingFactor: 0.18215,
    });
    expect(config).toEqual({ inChannels: 3, outChannels: 3, blockOutChannels: [32, 64], layersPerBlock: 1, latentChannels: 4, normNumGroups: 16, scalingFactor: 0.18215 });
  });

  it('names a bad config key', () => {
    const parse = (patch: Record<string, unknown>) => () => parseVaeConfig(new ConfigReader('vae/config.json', { ...CONFIG_JSON, ...patch }));
    expect(parse({ norm_num_groups: 24 })).toThrow('vae/config.json: norm_num_groups 24 does not divide block_out_channels [32,64]');
    expect(parse({ act_fn: 'gelu' })).toThrow('vae/config.json: act_fn must be one of silu, got "gelu"');
    expect(parse({ up_block_types: ['UpDecoderBlock2D'] })).toThrow('vae/config.json: up_block_types must be 2 x "UpDecoderBlock2D" (one per block_out_channels), got ["UpDecoderBlock2D"]');
    expect(parse({ block_out_channels: [32, 0] })).toThrow('vae/config.json: block_out_channels must be a non-empty list of integers >= 1, got [32,0]');
    expect(parse({ scaling_factor: 'x' })).toThrow('vae/config.json: scaling_factor must be a positive number, got "x"');
  });

  it('names the checkpoint and the tensor a missing or misshapen weight would be', () => {
    for (const missing of [`${PREFIX}.decoder.mid_block.attentions.0.to_out.0.bias`, `${PREFIX}.encoder.down_blocks.0.downsamplers.0.conv.weight`, `${PREFIX}.decoder.up_blocks.1.resnets.0.conv_shortcut.weight`]) {
      const tensors = weights(engine, 'f32', missing);
      expect(() => AutoencoderKLVae.load(Params.of(tensors, SOURCE).at(PREFIX), config)).toThrow(`${SOURCE}: missing weight '${missing}'`);
      tensors.forEach((t) => t.dispose());
    }
    const tensors = weights(engine, 'f32');
    const p = Params.of(tensors, SOURCE).at(PREFIX);
    expect(() => AutoencoderKLVae.load(p, config, { attentionRows: 0 })).toThrow('AutoencoderKLVae: attentionRows must be an integer >= 1, got 0');
    expect(() => AutoencoderKLVae.load(p, { ...config, latentChannels: 8 })).toThrow(`${SOURCE}: ${PREFIX}.encoder.conv_out.weight [8, 64, 3, 3] must be [16, 64, 3, 3]`);
    const vae = AutoencoderKLVae.load(p, config);
    const bad = engine.empty([1, 3, 11, 15], 'f32');
    expect(() => vae.decode(bad)).toThrow('AutoencoderKLVae.decode: latents [1, 3, 11, 15] must be [B, 4, H, W] with H, W >= 1');
    expect(() => vae.encodeMean(engine.empty([1, 4, 8, 8], 'f32'))).toThrow('AutoencoderKLVae.encodeMean: image [1, 4, 8, 8] must be [B, 3, H, W] with H, W >= 1');
    bad.dispose();
    tensors.forEach((t) => t.dispose());
  });
});
