/** Foundation kernels: substrate ceilings, matmul, GEMV and row ops. */
import { matmul, type MatmulKernel } from '../src/ops/matmul.js';
import { layerNorm, rmsNorm, softmax } from '../src/ops/rows.js';
import { cast } from '../src/ops/copy.js';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { GpuCase, Harness } from './harness.js';
import { randomTensor } from './random.js';


/** The substrate's ceilings: arithmetic (FMA chains) and memory (a plain copy). Run first. */
export async function benchCeilings(h: Harness): Promise<void> {
  const e = h.engine;

  const invocations = 64 * 512;
  const iterations = 2048;
  const sink = e.empty([invocations]);
  const fma = await h.gpu({
    name: 'probe_fma',
    shape: `${invocations}x${iterations}`,
    flops: invocations * iterations * 64,
    run: () => e.run({ file: 'probe.wgsl', entry: 'fma' }, { sink }, { iterations, n: 0 }, invocations / 64),
    ceiling: 'fma',
    always: true,
  });
  if (fma?.gflops) h.ceilings.fma = fma.gflops;
  if (e.gpu.isCpu) {
    // The same probe waited for with Dawn's own setImmediate polling, which competes with lavapipe for a core.
    e.gpu.gentleWait = false;
    await h.gpu({
      name: 'probe_fma_busy_wait',
      shape: `${invocations}x${iterations}`,
      flops: invocations * iterations * 64,
      run: () => e.run({ file: 'probe.wgsl', entry: 'fma' }, { sink }, { iterations, n: 0 }, invocations / 64),
      ceiling: 'fma',
    });
    e.gpu.gentleWait = true;
  }
  const n = 16 * 1024 * 1024; // 64 MiB of f32, read once and written once
  const src = e.empty([n]);
  const dst = e.empty([n]);
  const copy = await h.gpu({
    name: 'probe_copy',
    shape: `${n}xf32`,
    bytes: 2 * 4 * n,
    run: () => e.run({ file: 'probe.wgsl', entry: 'copy' }, { src, dst }, { iterations: 0, n: n / 4 }, n / 4 / 64 / 32),
    ceiling: 'copy',
    always: true,
  });
  if (copy?.gbps) h.ceilings.copy = copy.gbps;
  const sums = e.empty([n / 4 / 32]);
  const read = await h.gpu({
    name: 'probe_read',
    shape: `${n}xf32`,
    bytes: 4 * n,
    run: () => e.run({ file: 'probe.wgsl', entry: 'read_sum' }, { src, sink: sums }, { iterations: 0, n: n / 4 }, n / 4 / 64 / 32),
    ceiling: 'read',
    always: true,
  });
  if (read?.gbps) h.ceilings.read = read.gbps;
  [sink, src, dst, sums].forEach((t) => t.dispose());
  // Rates measured before their ceiling existed get their ratio now.
  for (const m of [fma, copy, read]) {
    if (m) {
      const rate = m.ceiling === 'fma' ? m.gflops : m.gbps;
      const top = h.ceilings[m.ceiling!];
      if (rate && top) m.ratio_to_ceiling = Math.round((rate / top) * 1e4) / 1e4;
    }
  }
}

export async function benchMatmul(h: Harness): Promise<void> {
  const e = h.engine;
  for (const size of [512, 1024, 2048]) {
    const a = randomTensor(e, [size, size], 1);
    const b = randomTensor(e, [size, size], 2);
    await h.gpu({
      name: 'matmul_f32',
      shape: `${size}x${size}x${size}`,
      flops: 2 * size ** 3,
      run: () => matmul(a, b),
      iterations: size >= 2048 ? 3 : 5,
      time: size >= 2048 ? 0 : 1000,
    });
    if (size === 1024) {
      // Linear layout (weights [N, K], used transposed) with f16 weights, and the GPU-style tiled kernel for comparison.
      const w16 = cast(b, 'f16');
      await h.gpu({ name: 'linear_f16w', shape: `${size}x${size}x${size}`, flops: 2 * size ** 3, run: () => matmul(a, w16, { transposeB: true }) });
      const other: MatmulKernel = e.profile === 'cpu' ? 'tiled' : 'subgroup';
      if (other === 'tiled' || (e.has('subgroups') && e.gpu.summary.subgroupMinSize === 8)) {
        await h.gpu({ name: `matmul_f32_${other}`, shape: `${size}x${size}x${size}`, flops: 2 * size ** 3, run: () => matmul(a, b, { kernel: other }) });
      }
      w16.dispose();
    }
    a.dispose();
    b.dispose();
  }
}

/**
 * The reference GEMV, 1 x 4096 x 4096 with weights of `dtype`: the weight streaming that decoding
 * figures are compared with (gemv_f16 here, and beside the attention and MLLM decode benches).
 * Dispose the case when done.
 */
export function referenceGemv(e: Engine, dtype: DType, name = `gemv_${dtype}`): GpuCase & { dispose(): void } {
  const n = 4096;
  const x = randomTensor(e, [1, n], 3);
  const w = randomTensor(e, [n, n], 4, { scale: 0.02, dtype });
  return {
    name, shape: `1x${n}x${n}`, flops: 2 * n * n, bytes: w.byteLength, ceiling: 'read', repeat: 4,
    run: () => matmul(x, w, { transposeB: true }),
    dispose: () => [x, w].forEach((t) => t.dispose()),
  };
}

export async function benchGemv(h: Harness): Promise<void> {
  for (const dtype of ['f32', 'f16'] as const) {
    const gemv = referenceGemv(h.engine, dtype);
    await h.gpu(gemv);
    gemv.dispose();
  }
}

export async function benchRows(h: Harness): Promise<void> {
  const e = h.engine;
  const rows = 512;
  const width = 4096;
  const x = randomTensor(e, [rows, width], 5, { scale: 4 });
  const w = randomTensor(e, [width], 6);
  const b = randomTensor(e, [width], 7);
  const bytes = 2 * rows * width * 4; // one read and one write of the rows
  await h.gpu({ name: 'softmax', shape: `${rows}x${width}`, bytes, run: () => softmax(x), repeat: 4 });
  await h.gpu({ name: 'layernorm', shape: `${rows}x${width}`, bytes, run: () => layerNorm(x, w, b), repeat: 4 });
  await h.gpu({ name: 'rmsnorm', shape: `${rows}x${width}`, bytes, run: () => rmsNorm(x, w), repeat: 4 });
  [x, w, b].forEach((t) => t.dispose());
}
