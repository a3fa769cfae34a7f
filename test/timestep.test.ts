import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { timestepEmbedding } from '../src/ops/timestep.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('timestep');
const META = JSON.parse(golden.metadata.cases!) as {
  timesteps: number[];
  embeddings: Record<string, { dim: number; flip_sin_to_cos: boolean; downscale_freq_shift: number }>;
};

describe('timestep embedding', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it.each(Object.keys(META.embeddings))('timestep embedding %s matches diffusers', async (name) => {
    const c = META.embeddings[name]!;
    const y = timestepEmbedding(engine, META.timesteps, c.dim, { flipSinToCos: c.flip_sin_to_cos, downscaleFreqShift: c.downscale_freq_shift });
    expect(y.shape).toEqual([META.timesteps.length, c.dim]);
    // PyTorch's f32 exp may differ from a correctly rounded one by an ulp, which t = 999 turns into ~6e-5 radians.
    expectClose(await y.toArray(), golden.values(`timestep.${name}`), { rel: TOL.f32, label: `timestep ${name}` });
    y.dispose();
  });
});
