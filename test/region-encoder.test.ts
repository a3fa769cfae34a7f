/**
 * The region encoder (src/model/region-encoder.ts, region-pooling.ts) against
 * scripts/golden/region_encoder.py: the official RegionEncoder at a tiny config (CLIP width 64, LLM
 * width 128, a 112 × 112 tile: an 8 × 8 grid) with seeded f16-valued weights, for a box, a noisy disc
 * and a 7-pixel mask, with each pooling: mean and cross_attn exactly, grid_sample with the reference's
 * sample points injected (and with every point when a mask has fewer than num_points), on both kernel
 * profiles, f32 and f16 weights.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { Params } from '../src/nn/params.js';
import { RegionEncoder, type MaskPoolType, type RegionEncoderConfig } from '../src/model/region-encoder.js';
import { downsampledBinary, samplePixels, type RegionMask } from '../src/model/region-pooling.js';
import { SeededRandom } from '../src/engine/random.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('region_encoder');
const raw = JSON.parse(golden.metadata.config!) as Record<string, number>;
const image = JSON.parse(golden.metadata.image!) as { size: [number, number]; grid: [number, number]; regions: number; levels: number };
const S = image.size[0];
const G = image.grid[0];
const PREFIX = golden.metadata.prefix!;

const config = (poolType: MaskPoolType, numPoints = Number(golden.metadata['grid_sample.num_points'])): RegionEncoderConfig => ({
  hiddenDim: raw.hidden_dim!, embedDim: raw.embed_dim!, outDim: raw.out_dim!, patchSize: raw.patch_size!, poolType, numPoints, heads: raw.num_heads!,
});

const maskBytes = golden.values('masks');
const masks: RegionMask[] = Array.from({ length: image.regions }, (_, i) => ({ size: S, data: Uint8Array.from(maskBytes.subarray(i * S * S, (i + 1) * S * S)) }));

/** The reference's points of `name`, per region, as pixel indices y·S + x. */
function injected(name: string): Int32Array[] {
  const counts = golden.values(`${name}.counts`);
  const yx = golden.values(`${name}.pixels`);
  let at = 0;
  return Array.from(counts, (c) => {
    const out = Int32Array.from({ length: c }, (_, k) => yx[2 * (at + k)]! * S + yx[2 * (at + k) + 1]!);
    at += c;
    return out;
  });
}

function weights(engine: Engine, dtype: 'f32' | 'f16'): Params {
  return Params.of(golden.weights(engine, dtype, PREFIX), 'region_encoder golden').at('region_encoder');
}

describe.each(['cpu', 'gpu'] as const)('the region encoder against the official RegionEncoder, %s profile', (profile) => {
  let engine: Engine;
  let levels: Tensor[];
  let tile: Tensor;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    tile = golden.upload(engine, 'image');
    const features = golden.values('image_features');
    levels = Array.from({ length: image.levels }, (_, l) => engine.tensor(features.subarray(l * G * G * raw.embed_dim!, (l + 1) * G * G * raw.embed_dim!), [G * G, raw.embed_dim!]));
  });

  it('the mean pooling binary mask: bilinear to the grid, > 0.5 (a cell at exactly 0.5 stays off)', () => {
    const want = golden.values('mean.binary');
    masks.forEach((m, i) => expect(Array.from(downsampledBinary(m, G)), `region ${i}`).toEqual(Array.from(want.subarray(i * G * G, (i + 1) * G * G))));
  });

  it('rand_sample takes every pixel, in order, when a mask has at most num_points', () => {
    const reference = injected('grid_sample');
    const pixels = JSON.parse(golden.metadata.mask_pixels!) as number[];
    masks.forEach((m, i) => {
      const ours = samplePixels(m, 2304, new SeededRandom(1));
      if (pixels[i]! <= 2304) expect(Array.from(ours), `region ${i}`).toEqual(Array.from(reference[i]!));
      else expect(ours.length, `region ${i}: subsampled`).toBe(2304);
    });
    expect(pixels.filter((n) => n <= 2304).length, 'regions drawn without randomness').toBe(2);
    // A subsample: distinct mask pixels, ascending, reproducible from the seed.
    const some = samplePixels(masks[0]!, 64, new SeededRandom(7));
    expect(some.length).toBe(64);
    expect(Array.from(some).every((p, k) => masks[0]!.data[p] && (k === 0 || p > some[k - 1]!))).toBe(true);
    expect(Array.from(samplePixels(masks[0]!, 64, new SeededRandom(7)))).toEqual(Array.from(some));
  });

  it.each([
    ['mean', 'mean', undefined],
    ['cross_attn', 'cross_attn', undefined],
    ['grid_sample', 'grid_sample', 'grid_sample'],
    ['grid_sample, 64 points', 'grid_sample_sub', 'grid_sample_sub'],
  ] as const)('%s pooling, f32 and f16 weights', async (_, name, points) => {
    const poolType = name.startsWith('grid_sample') ? 'grid_sample' : (name as MaskPoolType);
    const numPoints = Number(golden.metadata[`${name}.num_points`] ?? 2304);
    for (const [dtype, tol] of [['f32', TOL.f32], ['f16', TOL.f16]] as const) {
      const p = weights(engine, dtype);
      const encoder = RegionEncoder.load(p, config(poolType, numPoints));
      const out = encoder.forward({ image: tile, masks, levels, samplePixels: points ? injected(points) : undefined });
      expectClose(await out.toArray(), golden.values(`${name}.out`), { rel: tol, label: `${name} (${dtype})` });
      out.dispose();
      p.weights.dispose();
    }
  });

  it('an empty mask gives up_dim.bias (grid_sample)', async () => {
    const p = weights(engine, 'f32');
    const encoder = RegionEncoder.load(p, config('grid_sample'));
    const empty = { size: S, data: new Uint8Array(S * S) };
    const out = encoder.forward({ image: tile, masks: [masks[2]!, empty], levels });
    expectClose(await out.toArray(), golden.values('grid_sample_empty.out'), { rel: TOL.f32, label: 'empty mask' });
    out.dispose();
    p.weights.dispose();
  });

  it('errors name the tensor and the shapes', () => {
    const p = weights(engine, 'f32');
    expect(() => RegionEncoder.load(p, { ...config('mean'), embedDim: 32 })).toThrow(/region_encoder\.mask_embedding\.6\.weight \[64, 256, 1, 1\] must be \[32, 256, 1, 1\]/);
    const encoder = RegionEncoder.load(p, config('mean'));
    expect(() => encoder.forward({ image: tile, masks: [{ size: 56, data: new Uint8Array(56 * 56) }], levels })).toThrow("region encoder: region 0's mask is 56x56 (3136 bytes); the tile is 112x112");
    expect(() => encoder.forward({ image: tile, masks, levels: [levels[0]!.reshape([8, 8, 64])] })).toThrow(/image features .* must be levels of \[64, 64\]/);
    p.weights.dispose();
  });
});
