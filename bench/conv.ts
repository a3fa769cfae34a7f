/**
 * Convolution, normalisation and image benchmarks: the U-Net's 3x3 convolution against a matmul timed in the
 * same run, GroupNorm bandwidth, and image resizing.
 */
import { cast } from '../src/ops/copy.js';
import { conv2d, type Conv2dKernel } from '../src/ops/conv.js';
import { matmul } from '../src/ops/matmul.js';
import { groupNorm } from '../src/ops/norm2d.js';
import { resize } from '../src/ops/resize.js';
import { normalizeImage, pilResize, uploadImage, type RgbImage } from '../src/image/gpu-image.js';
import { CLIP_MEAN, CLIP_STD, clipPreprocess } from '../src/image/preprocess.js';
import type { Harness } from './harness.js';
import { randomTensor } from './random.js';


export async function benchConv(h: Harness): Promise<void> {
  const e = h.engine;
  // The baseline every conv ratio is taken against, timed here so the ratio comes from one run.
  const size = 1024;
  const a = randomTensor(e, [size, size], 1);
  const b = randomTensor(e, [size, size], 2);
  const mm = await h.gpu({ name: 'conv_baseline_matmul_f32', shape: `${size}x${size}x${size}`, flops: 2 * size ** 3, run: () => matmul(a, b), always: true });
  [a, b].forEach((t) => t.dispose());

  // One U-Net down block's convolution: 3x3, 320 -> 320 channels, 64x64 latents, batch 2 (CFG).
  const [n, c, s] = [2, 320, 64];
  const x = randomTensor(e, [n, c, s, s], 3);
  const w = randomTensor(e, [c, c, 3, 3], 4, { scale: 0.02 });
  const bias = randomTensor(e, [c], 5);
  const flops = 2 * n * c * c * 9 * s * s;
  const shape = `${n}x${c}x${s}x${s} k3 ->${c}`;
  const ratio = (m: Awaited<ReturnType<Harness['gpu']>>) => {
    if (m?.gflops && mm?.gflops) h.annotate(m, { ratio_to_matmul: Math.round((m.gflops / mm.gflops) * 1000) / 1000 });
  };
  // FLOPs are the direct convolution's throughout, so Winograd's rows give an effective rate.
  const f32 = await h.gpu({ name: 'conv3x3_f32', shape, flops, run: () => conv2d(x, w, { padding: 1, bias }) });
  ratio(f32);
  const x16 = cast(x, 'f16');
  const w16 = cast(w, 'f16');
  const f16 = await h.gpu({ name: 'conv3x3_f16', shape, flops, run: () => conv2d(x16, w16, { padding: 1, bias }) });
  ratio(f16);
  if (e.profile === 'cpu' && e.has('subgroups') && e.gpu.summary.subgroupMinSize === 8) {
    // The implicit GEMM that 3x3 convolutions took before Winograd (and other shapes still take).
    const gemm = await h.gpu({ name: 'conv3x3_f16_subgroup', shape, flops, run: () => conv2d(x16, w16, { padding: 1, bias, kernel: 'subgroup' }), iterations: 3, time: 0 });
    ratio(gemm);
    if (gemm && f16) h.annotate(f16, { speedup_vs_implicit_gemm: Math.round((gemm.median_ms / f16.median_ms) * 100) / 100 });
  }
  const other: Conv2dKernel = e.profile === 'cpu' ? 'tiled' : 'subgroup';
  if (other === 'tiled' || (e.has('subgroups') && e.gpu.summary.subgroupMinSize === 8)) {
    ratio(await h.gpu({ name: `conv3x3_f32_${other}`, shape, flops, run: () => conv2d(x, w, { padding: 1, bias, kernel: other }), iterations: 3, time: 0 }));
  }
  [x, w, bias, x16, w16].forEach((t) => t.dispose());
}

export async function benchNorm2d(h: Harness): Promise<void> {
  const e = h.engine;
  // The U-Net's GroupNorm + SiLU at its largest activation: 2 x 320 x 64 x 64.
  const x = randomTensor(e, [2, 320, 64, 64], 6, { scale: 4 });
  const w = randomTensor(e, [320], 7);
  const b = randomTensor(e, [320], 8);
  const bytes = 2 * x.size * 4; // the input read once for statistics is re-read from cache at best; count one read + one write
  await h.gpu({ name: 'group_norm_silu_f32', shape: '2x320x64x64 g32', bytes, run: () => groupNorm(x, 32, w, b, { act: 'silu' }), repeat: 2 });
  const x16 = cast(x, 'f16');
  await h.gpu({ name: 'group_norm_silu_f16', shape: '2x320x64x64 g32', bytes: bytes / 2, run: () => groupNorm(x16, 32, w, b, { act: 'silu' }), repeat: 2 });
  [x, w, b, x16].forEach((t) => t.dispose());
}

export async function benchResize(h: Harness): Promise<void> {
  const e = h.engine;
  const [width, height] = [1920, 1080];
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const image: RgbImage = { width, height, data };
  const gpu = uploadImage(e, image);
  // Pillow-exact bicubic to 336x336 and normalisation (the CLIP thumbnail), on an image already on the GPU.
  await h.gpu({
    name: 'resize_pil_1080p_to_336',
    shape: `${width}x${height}->336x336`,
    run: () => {
      const small = pilResize(gpu, 336, 336);
      const out = normalizeImage(small, { mean: CLIP_MEAN, std: CLIP_STD });
      small.dispose();
      return out;
    },
  });
  // The same from host pixels: packing and upload included.
  await h.gpu({ name: 'clip_preprocess_1080p', shape: `${width}x${height}->336x336`, run: () => clipPreprocess(e, image, { aspect: 'pad' }).pixelValues });
  // PyTorch-style antialiased bicubic on an f32 NCHW tensor.
  const x = randomTensor(e, [1, 3, height, width], 9);
  await h.gpu({ name: 'resize_bicubic_aa_f32_1080p', shape: `1x3x${height}x${width}->336x336`, run: () => resize(x, [336, 336], { mode: 'bicubic', antialias: true }) });
  [gpu, x].forEach((t) => t.dispose());
}
