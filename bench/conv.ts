/**
 * Convolution and image benchmarks: the U-Net's 3x3 convolution against a matmul timed in the
 * same run, GroupNorm bandwidth, and image resizing.
 */
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { cast } from '../src/ops/copy.js';
import { conv2d, type Conv2dKernel } from '../src/ops/conv.js';
import { matmul } from '../src/ops/matmul.js';
import type { Harness } from './harness.js';

function random(engine: Engine, shape: number[], seed: number, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return engine.tensor(data, shape);
}

export async function benchConv(h: Harness): Promise<void> {
  const e = h.engine;
  // The baseline every conv ratio is taken against, timed here so the ratio comes from one run.
  const size = 1024;
  const a = random(e, [size, size], 1);
  const b = random(e, [size, size], 2);
  const mm = await h.gpu({ name: 'conv_baseline_matmul_f32', shape: `${size}x${size}x${size}`, flops: 2 * size ** 3, run: () => matmul(a, b), always: true });
  [a, b].forEach((t) => t.dispose());

  // One U-Net down block's convolution: 3x3, 320 -> 320 channels, 64x64 latents, batch 2 (CFG).
  const [n, c, s] = [2, 320, 64];
  const x = random(e, [n, c, s, s], 3);
  const w = random(e, [c, c, 3, 3], 4, 0.02);
  const bias = random(e, [c], 5);
  const flops = 2 * n * c * c * 9 * s * s;
  const shape = `${n}x${c}x${s}x${s} k3 ->${c}`;
  const ratio = (m: Awaited<ReturnType<Harness['gpu']>>) => {
    if (m?.gflops && mm?.gflops) h.annotate(m, { ratio_to_matmul: Math.round((m.gflops / mm.gflops) * 1000) / 1000 });
  };
  ratio(await h.gpu({ name: 'conv3x3_f32', shape, flops, run: () => conv2d(x, w, { padding: 1, bias }) }));
  const x16 = cast(x, 'f16');
  const w16 = cast(w, 'f16');
  ratio(await h.gpu({ name: 'conv3x3_f16', shape, flops, run: () => conv2d(x16, w16, { padding: 1, bias }) }));
  const other: Conv2dKernel = e.profile === 'cpu' ? 'tiled' : 'subgroup';
  if (other === 'tiled' || (e.has('subgroups') && e.gpu.summary.subgroupMinSize === 8)) {
    ratio(await h.gpu({ name: `conv3x3_f32_${other}`, shape, flops, run: () => conv2d(x, w, { padding: 1, bias, kernel: other }), iterations: 3, time: 0 }));
  }
  [x, w, bias, x16, w16].forEach((t) => t.dispose());
}
