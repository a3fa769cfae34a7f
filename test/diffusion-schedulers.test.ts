import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import {
  alphasCumprod,
  createScheduler,
  EulerAncestralScheduler,
  parseSchedulerConfig,
  SD15_SCHEDULER_CONFIG,
  type SchedulerConfig,
  type SchedulerKind,
} from '../src/decoders/diffusion/schedulers/index.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { SeededRandom } from '../src/engine/random.js';
import { hashed } from './hashed.js';
import { expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('diffusion_schedulers');
const META = JSON.parse(golden.metadata.cases!) as {
  shape: number[];
  sample_seed: number;
  output_seed: number;
  noise_seed: number;
  schedules: Record<string, { kind: SchedulerKind; steps: number; overrides: Record<string, string | number> }>;
  pndm_calls: number;
  euler_ancestral_steps: number[];
  euler_ancestral_scales: number[];
  ddim_steps: number[];
};
const N = META.shape.reduce((a, b) => a * b, 1);
/** One step against the float64 reference: a handful of f32 roundings of the inputs' scale. */
const STEP_REL = 1e-6;

/** The golden's configs (diffusers keys) as our config. */
function configOf(overrides: Record<string, string | number> = {}, kind: SchedulerKind): SchedulerConfig {
  const json = {
    beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000, steps_offset: 1,
    ...(kind === 'pndm' ? { skip_prk_steps: true, set_alpha_to_one: false } : kind === 'ddim' ? { set_alpha_to_one: false, clip_sample: false } : {}),
    ...overrides,
  };
  return parseSchedulerConfig(new ConfigReader('scheduler_config.json', json));
}

describe('diffusion scheduler schedules', () => {
  it('alphas_cumprod equals diffusers\' float32 values bit for bit', () => {
    const got = alphasCumprod(SD15_SCHEDULER_CONFIG);
    const want = golden.values('alphas_cumprod');
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it.each(Object.keys(META.schedules))('%s timesteps', (name) => {
    const { kind, steps, overrides } = META.schedules[name]!;
    const s = createScheduler(kind, configOf(overrides, kind), steps);
    expect(Array.from(s.timesteps)).toEqual(Array.from(golden.values(`${name}.timesteps`)));
    if (kind === 'euler_ancestral') {
      expect(Array.from((s as EulerAncestralScheduler).sigmas)).toEqual(Array.from(golden.values(`${name}.sigmas`)));
      expect(s.initNoiseSigma).toBe(golden.values(`${name}.init_noise_sigma`)[0]);
    } else {
      expect(s.initNoiseSigma).toBe(1);
    }
  });

  it('SD-1.5 PNDM runs 51 calls, repeating 961', () => {
    const s = createScheduler('pndm', SD15_SCHEDULER_CONFIG, 50);
    expect(Array.from(s.timesteps.slice(0, 4))).toEqual([981, 961, 961, 941]);
    expect(s.timesteps.length).toBe(51);
    expect(s.timesteps[50]).toBe(1);
  });
});

describe.each(['cpu', 'gpu'] as const)('diffusion scheduler steps (%s profile)', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  const input = (seed: number, scale = 1) => engine.tensor(hashed(N, seed, scale), META.shape);
  async function check(t: Tensor, name: string): Promise<void> {
    expect(t.shape).toEqual(META.shape);
    expect(t.dtype).toBe('f32');
    expectClose(await t.toArray(), golden.values(name), { rel: STEP_REL, label: `${name} (${profile})` });
  }

  it('PNDM: all 51 calls of 50 steps (warm-up, t+20 re-evaluation, 2-4 term multistep, final alpha)', async () => {
    const s = createScheduler('pndm', configOf({}, 'pndm'), 50);
    for (let i = 0; i < META.pndm_calls; i++) {
      const sample = i === 0 ? input(META.sample_seed) : golden.upload(engine, `pndm.step${i - 1}`);
      const output = input(META.output_seed + i);
      const prev = s.step(output, i, sample);
      // The scheduler keeps its own copies: the caller frees its tensors at once.
      sample.dispose();
      output.dispose();
      await check(prev, `pndm.step${i}`);
      prev.dispose();
    }
    s.dispose();
  });

  it('PNDM: scale_model_input is the identity, as a handle of its own; steps out of order are refused', async () => {
    const s = createScheduler('pndm', SD15_SCHEDULER_CONFIG, 50);
    const x = input(1);
    const y = s.scaleModelInput(x, 0);
    expect(y).not.toBe(x);
    expect(Array.from(await y.toArray())).toEqual(Array.from(hashed(N, 1)));
    expect(() => s.step(x, 1, x)).toThrow(/expected call 0, got 1/);
    expect(() => s.step(x, 51, x)).toThrow(/call index 51 is outside \[0, 51\)/);
    [x, y].forEach((t) => t.dispose());
    s.dispose();
  });

  it('Euler-ancestral: scale_model_input at two calls', async () => {
    const s = createScheduler('euler_ancestral', configOf({}, 'euler_ancestral'), 100);
    for (const i of META.euler_ancestral_scales) {
      const x = input(META.sample_seed, 16);
      const y = s.scaleModelInput(x, i);
      await check(y, `euler_ancestral.scale${i}`);
      [x, y].forEach((t) => t.dispose());
    }
  });

  it('Euler-ancestral: calls 0-2 chained and the last call, with injected noise', async () => {
    const s = createScheduler('euler_ancestral', configOf({}, 'euler_ancestral'), 100);
    for (const i of META.euler_ancestral_steps) {
      const sample = i === 0 ? input(META.sample_seed, 16) : i === 99 ? input(META.sample_seed) : golden.upload(engine, `euler_ancestral.step${i - 1}`);
      const [output, noise] = [input(META.output_seed + i), input(META.noise_seed + i)];
      const prev = s.step(output, i, sample, noise);
      await check(prev, `euler_ancestral.step${i}`);
      [sample, output, noise, prev].forEach((t) => t.dispose());
    }
  });

  it('Euler-ancestral: noise drawn from a seeded generator is reproducible, and required', async () => {
    const run = async (seed: number) => {
      const random = new SeededRandom(seed);
      const s = createScheduler('euler_ancestral', SD15_SCHEDULER_CONFIG, 100, { random: () => random.next() });
      const [x, e] = [input(1), input(2)];
      const y = s.step(e, 0, x);
      const values = Array.from(await y.toArray());
      [x, e, y].forEach((t) => t.dispose());
      return values;
    };
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const s = createScheduler('euler_ancestral', SD15_SCHEDULER_CONFIG, 100);
    const x = input(1);
    expect(() => s.step(x, 0, x)).toThrow(/needs noise, or options.random/);
    // The last call adds no noise (sigma_up = 0): nothing to draw.
    s.step(x, 99, x).dispose();
    x.dispose();
  });

  it('DDIM (eta 0): calls 0-1 chained and the last call', async () => {
    const s = createScheduler('ddim', configOf({}, 'ddim'), 50);
    for (const i of META.ddim_steps) {
      const sample = i === 0 || i === 49 ? input(META.sample_seed) : golden.upload(engine, `ddim.step${i - 1}`);
      const output = input(META.output_seed + i);
      const prev = s.step(output, i, sample);
      await check(prev, `ddim.step${i}`);
      [sample, output, prev].forEach((t) => t.dispose());
    }
  });
});

describe('diffusion scheduler config', () => {
  const parse = (json: Record<string, unknown>) => parseSchedulerConfig(new ConfigReader('sd/scheduler_config.json', json));

  it('reads SD-1.5\'s and timbrooks\' files; absent keys take SD-1.5\'s values and the class defaults', () => {
    const sd = parse({
      _class_name: 'PNDMScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000,
      set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false,
    });
    expect(sd).toEqual(SD15_SCHEDULER_CONFIG);
    const ip2p = parse({ _class_name: 'EulerAncestralDiscreteScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000, prediction_type: 'epsilon', steps_offset: 1, trained_betas: null });
    expect(ip2p.timestepSpacing).toBeUndefined();
    // Euler-ancestral's class default is linspace: 999, 988.9..., not the leading 991, 981, ...
    expect(createScheduler('euler_ancestral', ip2p, 100).timesteps[0]).toBe(999);
    expect(parse({})).toMatchObject({ betaStart: 0.00085, stepsOffset: 1, betaSchedule: 'scaled_linear' });
  });

  it.each([
    [{ beta_schedule: 'squaredcos_cap_v2' }, /beta_schedule must be one of linear, scaled_linear, got "squaredcos_cap_v2"/],
    [{ prediction_type: 'v_prediction' }, /prediction_type must be one of epsilon, got "v_prediction"/],
    [{ timestep_spacing: 'uniform' }, /timestep_spacing must be one of leading, linspace, trailing/],
    [{ num_train_timesteps: 0 }, /num_train_timesteps must be at least 1/],
    [{ beta_start: -1 }, /beta_start must be a positive number, got -1/],
    [{ beta_end: 0.0001 }, /beta_end must be in \[beta_start, 1\), got 0.0001/],
    [{ steps_offset: 1.5 }, /steps_offset must be a non-negative integer, got 1.5/],
    [{ set_alpha_to_one: 'no' }, /set_alpha_to_one must be true or false, got "no"/],
    [{ trained_betas: [0.1, 0.2] }, /trained_betas: explicit betas are not supported/],
    [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr true is not supported/],
  ])('refuses %j, naming the key', (json, message) => {
    expect(() => parse(json)).toThrow(message);
    expect(() => parse(json)).toThrow(/sd\/scheduler_config\.json: /);
  });

  it('refuses what the schedulers do not implement, and bad step counts', () => {
    expect(() => createScheduler('pndm', parse({ skip_prk_steps: false }), 50)).toThrow(/skip_prk_steps false/);
    expect(() => createScheduler('pndm', { ...SD15_SCHEDULER_CONFIG, skipPrkSteps: undefined }, 50)).toThrow(/skip_prk_steps false/);
    expect(() => createScheduler('ddim', parse({ clip_sample: true }), 50)).toThrow(/clip_sample true/);
    expect(() => createScheduler('ddim', SD15_SCHEDULER_CONFIG, 1001)).toThrow(/steps must be an integer in \[1, num_train_timesteps 1000\], got 1001/);
    expect(() => createScheduler('euler_ancestral', SD15_SCHEDULER_CONFIG, 0)).toThrow(/got 0/);
    expect(() => createScheduler('lms' as SchedulerKind, SD15_SCHEDULER_CONFIG, 50)).toThrow(/unknown scheduler 'lms'/);
  });
});
