/**
 * The U-Net (src/decoders/diffusion/unet.ts, unet-blocks.ts) against scripts/golden/diffusion_unet.py:
 * diffusers 0.28.2's UNet2DConditionModel transcribed (and checked against diffusers' own code) at a
 * tiny config (block_out_channels [32, 64], one layer per block, 2 heads, cross-attention width 48),
 * f16-valued weights: ε at t = 981 and t = 1 for odd latents (9 × 11: the up path resizes to the
 * skips' sizes), and InstructPix2Pix's 8-channel input at fractional Euler timesteps (batch 3), with
 * the intermediate stages, on both kernel profiles, f32 and f16 weights.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { parseUNetConfig, UNet2DConditionModel } from '../src/decoders/diffusion/unet.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('diffusion_unet');
const CASES = [
  { name: 'sd', prefix: golden.metadata.prefix!, config: golden.metadata.config!, key: '' },
  { name: 'ip2p', prefix: golden.metadata.ip2p_prefix!, config: golden.metadata.ip2p_config!, key: 'ip2p.' },
];

function checkpoint(engine: Engine, dtype: 'f32' | 'f16', drop?: string): Params {
  const m = new Map(CASES.flatMap((c) => [...golden.weights(engine, dtype, `${c.prefix}.`, drop)]));
  return Params.of(m, 'diffusion_unet golden');
}

describe.each(['cpu', 'gpu'] as const)('UNet2DConditionModel against diffusers, %s profile', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(CASES)('$name: ε, f32 and f16 weights', async ({ prefix, config, key }) => {
    const c = parseUNetConfig(new ConfigReader('diffusion_unet golden', JSON.parse(config)));
    for (const [dtype, tol] of [['f32', TOL.f32], ['f16', TOL.f16]] as const) {
      const p = checkpoint(engine, dtype);
      const unet = UNet2DConditionModel.load(p.at(prefix), c);
      const sample = golden.upload(engine, `${key}input.sample`);
      const condition = golden.upload(engine, `${key}input.encoder_hidden_states`);
      const timesteps = Array.from(golden.values(`${key}input.timesteps`));
      const emb = engine.scope(() => unet.timeEmbedding(engine, timesteps));
      expectClose(await emb.toArray(), golden.values(`${key}debug.emb`), { rel: tol, label: `time embedding (${dtype})` });
      const out = unet.forward(sample, timesteps, condition);
      expect(out.shape).toEqual(golden.shape(`${key}out`));
      expectClose(await out.toArray(), golden.values(`${key}out`), { rel: tol, label: `ε (${dtype})` });
      [emb, out, sample, condition].forEach((t) => t.dispose());
      unet.dispose();
      expect(p.weights.unused(`${prefix}.`)).toEqual([]);
      p.weights.dispose();
    }
  });

  it('errors name the tensor, the config key and the shapes', () => {
    const c = parseUNetConfig(new ConfigReader('diffusion_unet golden', JSON.parse(CASES[0]!.config)));
    const missing = `${CASES[0]!.prefix}.up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight`;
    const p = checkpoint(engine, 'f32', missing);
    expect(() => UNet2DConditionModel.load(p.at(CASES[0]!.prefix), c)).toThrow(`missing weight '${missing}'`);
    p.weights.dispose();
    expect(() => parseUNetConfig(new ConfigReader('unet.json', { block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D'] }))).toThrow('unet.json: down_block_types has 1 blocks for 2 block_out_channels');
    expect(() => parseUNetConfig(new ConfigReader('unet.json', { block_out_channels: [30, 64], norm_num_groups: 8, down_block_types: ['DownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'UpBlock2D'] }))).toThrow("block 0's 30 channels do not split into 8 groups");
  });
});
