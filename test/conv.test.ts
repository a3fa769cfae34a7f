import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Activation } from '../src/ops/support/activation.js';
import { conv2d, type Conv2dKernel } from '../src/ops/conv.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('conv');

interface Case {
  n: number; cin: number; h: number; w: number; cout: number; k: [number, number];
  stride: [number, number]; pad: [number, number]; dilation: [number, number];
  groups: number; upsample: number; bias: boolean; act: Activation;
  seed: number; x_scale: number; w_scale: number; b_scale: number;
}
const CASES = JSON.parse(golden.metadata.cases!) as Record<string, Case>;

function upload(engine: Engine, c: Case, dt: DType) {
  const x = engine.tensor(hashed(c.n * c.cin * c.h * c.w, c.seed, c.x_scale), [c.n, c.cin, c.h, c.w], dt);
  const wShape = [c.cout, c.cin / c.groups, ...c.k];
  const w = engine.tensor(hashed(wShape.reduce((a, b) => a * b), c.seed + 1, c.w_scale), wShape, dt);
  const b = c.bias ? engine.tensor(hashed(c.cout, c.seed + 2, c.b_scale), [c.cout], dt) : undefined;
  return { x, w, b };
}

async function check(engine: Engine, name: string, dt: 'f32' | 'f16', kernel?: Conv2dKernel) {
  const c = CASES[name]!;
  const { x, w, b } = upload(engine, c, dt);
  const y = conv2d(x, w, { stride: c.stride, padding: c.pad, dilation: c.dilation, groups: c.groups, upsample: c.upsample, bias: b, act: c.act, kernel });
  expect(y.shape).toEqual(Array.from(golden.values(`${name}.shape`)));
  const all = await y.toArray();
  const bad = all.findIndex((v) => !Number.isFinite(v));
  expect(bad, `${name}: element ${bad} is ${all[bad]}`).toBe(-1);
  const sampled = Array.from(golden.values(`${name}.idx`), (i) => all[i]!);
  expectClose(sampled, golden.values(`${name}.${dt}`), { rel: TOL[dt], label: `${name} ${dt} ${kernel ?? 'auto'}` });
  [x, w, b, y].forEach((t) => t?.dispose());
}

// 'cpu' picks Winograd for 3x3 stride-1 convolutions and the subgroup-broadcast kernel for the
// rest (matmul for 1x1, direct for depthwise); 'gpu' the tiled one. Pipelines compile slowly on lavapipe, so the gpu profile runs f16 on two cases only.
const F16_ON_GPU = ['sd_3x3', 'depthwise'];
describe.each(['cpu', 'gpu'] as const)('conv2d golden, %s profile', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });
  const runs = Object.keys(CASES).flatMap((name) => (['f32', 'f16'] as const).map((dt) => [name, dt] as const));
  it.each(runs.filter(([name, dt]) => profile === 'cpu' || dt === 'f32' || F16_ON_GPU.includes(name)))('%s %s', async (name, dt) => {
    await check(engine, name, dt);
  });
});

describe('conv2d kernels forced where the automatic choice does not reach', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  const forced: [string, Conv2dKernel, 'f32' | 'f16'][] = [
    ['groups32', 'direct', 'f32'],
    ['dilated_odd', 'direct', 'f32'],
    ['rect', 'direct', 'f16'],
    ['patchify', 'direct', 'f32'],
    ['depthwise', 'subgroup', 'f32'],
    ['sd_1x1', 'subgroup', 'f16'],
    ['sd_1x1_plain', 'tiled', 'f32'],
    ['sd_3x3', 'subgroup', 'f16'],
    ['sd_upsample', 'subgroup', 'f32'],
    ['odd_3x3_pad2', 'subgroup', 'f32'],
  ];
  it.each(forced)('%s with %s (%s)', async (name, kernel, dt) => {
    await check(engine, name, dt, kernel);
  });
  it('refuses the winograd kernel outside 3x3, stride 1, no dilation, one group', () => {
    const { x, w } = upload(engine, CASES.sd_downsample!, 'f32');
    expect(() => conv2d(x, w, { padding: 1, stride: 2, kernel: 'winograd' })).toThrow(/winograd kernel takes only 3x3 convolutions with stride 1/);
    [x, w].forEach((t) => t.dispose());
  });
  it('refuses the matmul kernel for a 3x3 convolution', () => {
    const { x, w } = upload(engine, CASES.sd_conv_in!, 'f32');
    expect(() => conv2d(x, w, { padding: 1, kernel: 'matmul' })).toThrow(/matmul kernel takes only 1x1/);
    [x, w].forEach((t) => t.dispose());
  });
});

/** Float64 reference for the chunking test. */
function convReference(x: Float32Array, xs: number[], w: Float32Array, ws: number[], pad: number): Float64Array {
  const [n, cin, h, wd] = xs as [number, number, number, number];
  const [cout, , kh, kw] = ws as [number, number, number, number];
  const oh = h + 2 * pad - kh + 1;
  const ow = wd + 2 * pad - kw + 1;
  const out = new Float64Array(n * cout * oh * ow);
  for (let b = 0; b < n; b++) for (let co = 0; co < cout; co++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    let s = 0;
    for (let ci = 0; ci < cin; ci++) for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
      const iy = oy - pad + ky;
      const ix = ox - pad + kx;
      if (iy < 0 || ix < 0 || iy >= h || ix >= wd) continue;
      s += x[((b * cin + ci) * h + iy) * wd + ix]! * w[((co * cin + ci) * kh + ky) * kw + kx]!;
    }
    out[((b * cout + co) * oh + oy) * ow + ox] = s;
  }
  return out;
}

// The gpu profile's automatic choice is the tiled kernel; Winograd runs there when asked for.
describe('conv2d winograd kernel on the gpu profile', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile: 'gpu' });
  });
  it.each([['sd_3x3', 'f32'], ['sd_upsample', 'f16'], ['odd_3x3_pad2', 'f32'], ['odd_3x3_up', 'f32']] as const)('%s %s', async (name, dt) => {
    await check(engine, name, dt, 'winograd');
  });
});

describe('conv2d limits and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });

  /** A padded 3x3 convolution with bias of hashed inputs (seeds from `seed`) against the float64 reference. */
  async function checkBiased(xs: number[], cout: number, seed: number, kernel: Conv2dKernel, label: string) {
    const ws = [cout, xs[1]!, 3, 3];
    const plane = xs[2]! * xs[3]!;
    const xd = hashed(xs.reduce((a, b) => a * b), seed);
    const wd = hashed(ws.reduce((a, b) => a * b), seed + 1, 0.125);
    const bd = hashed(cout, seed + 2);
    const x = engine.tensor(xd, xs);
    const w = engine.tensor(wd, ws);
    const b = engine.tensor(bd, [cout]);
    const y = conv2d(x, w, { padding: 1, bias: b, kernel });
    const want = convReference(xd, xs, wd, ws, 1).map((v, i) => v + bd[Math.floor(i / plane) % cout]!);
    expectClose(await y.toArray(), want, { rel: TOL.f32, label });
    [x, w, b, y].forEach((t) => t.dispose());
  }

  it.each(['subgroup', 'tiled', 'direct'] as const)('splits batches and weights over an 8 KiB binding limit (%s)', async (kernel) => {
    // Output 5 x 3072 bytes: batches of 2; weight 48 x 216 bytes: blocks of 32 output channels, the bias read at their offset.
    await checkBiased([5, 6, 4, 4], 48, 7, kernel, `chunked conv ${kernel}`);
  });

  it.each(['subgroup', 'tiled', 'direct'] as const)('splits one image over the limit by channel blocks, f32 partial sums between them (%s)', async (kernel) => {
    // Input image 64 x 16 x 16 x 4 = 64 KiB: blocks of 2 input channels; output 24 planes of 1 KiB: blocks of 8.
    const xs = [2, 64, 16, 16];
    const ws = [24, 64, 3, 3];
    const xd = hashed(2 * 64 * 256, 21);
    const wd = hashed(24 * 64 * 9, 22, 2 ** -5);
    const bd = hashed(24, 23);
    const x = engine.tensor(xd, xs);
    const w = engine.tensor(wd, ws);
    const b = engine.tensor(bd, [24]);
    const y = conv2d(x, w, { padding: 1, bias: b, act: 'relu', kernel });
    const want = convReference(xd, xs, wd, ws, 1).map((v, i) => Math.max(v + bd[Math.floor(i / 256) % 24]!, 0));
    expectClose(await y.toArray(), want, { rel: TOL.f32, label: `split image ${kernel}` });
    const y16 = conv2d(engine.tensor(xd, xs, 'f16'), engine.tensor(wd, ws, 'f16'), { padding: 1, bias: b, act: 'relu', kernel });
    expect(y16.dtype).toBe('f16');
    expectClose(await y16.toArray(), want, { rel: TOL.f16, label: `split image f16 ${kernel}` });
    [x, w, b, y, y16].forEach((t) => t.dispose());
  });

  it('runs Winograd over blocks of tiles when the transformed planes exceed the binding limit', async () => {
    // 40 tiles of 2x2 pixels; 16 transformed values x 10 channels x 4 bytes per tile: blocks of 12.
    await checkBiased([2, 6, 9, 7], 10, 31, 'winograd', 'winograd in blocks');
  });

  it('names what cannot be split, leaving nothing allocated', () => {
    const x = engine.empty([1, 2, 64, 64]); // one channel plane is 16 KiB
    const w = engine.tensor(new Float32Array(8 * 2 * 9), [8, 2, 3, 3]);
    const small = engine.empty([1, 2, 4, 4]);
    conv2d(small, w).dispose(); // creates the engine's persistent bias placeholder
    small.dispose();
    const grouped = engine.empty([2, 1, 3, 3]);
    const before = engine.memory().liveBuffers;
    expect(() => conv2d(x, w, { padding: 1 })).toThrow(/conv2d: 1 row\(s\) of 16384 bytes exceed the 8192-byte binding limit/);
    expect(() => conv2d(x, grouped, { padding: 1, groups: 2 })).toThrow(/splitting grouped convolutions is not implemented/);
    expect(engine.memory().liveBuffers).toBe(before);
    [x, w, grouped].forEach((t) => t.dispose());
  });

  it('names shapes that do not fit', () => {
    const x = engine.empty([1, 6, 5, 5]);
    const w = engine.empty([4, 4, 3, 3]);
    const w2 = engine.empty([4, 3, 3, 3]);
    expect(() => conv2d(x, w)).toThrow(/weight \[4, 4, 3, 3\] needs 6 input channels per group for input \[1, 6, 5, 5\] with groups 1/);
    expect(() => conv2d(x, w2, { groups: 4 })).toThrow(/groups 4 must divide input channels 6 and output channels 4/);
    expect(() => conv2d(x, w2, { groups: 2, dilation: 3 })).toThrow(/kernel 3x3 \(dilation 3x3\) does not fit input \[1, 6, 5, 5\]/);
    expect(() => conv2d(x.reshape([6, 5, 5]), w2)).toThrow(/must be NCHW/);
    expect(() => conv2d(x, w2, { groups: 2, stride: 0 })).toThrow(/stride must be integers >= 1/);
    const b = engine.empty([5]);
    expect(() => conv2d(x, w2, { groups: 2, bias: b })).toThrow(/bias \[5\] must be \[4\]/);
    [x, w, w2, b].forEach((t) => t.dispose());
  });
});
