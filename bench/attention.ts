/**
 * Attention: the fused kernels against the unfused path built from the foundation ops
 * (matmul Q·Kᵀ, [add causal mask], softmax, matmul P·V) on the same inputs in the same run.
 *   prefill, CLIP ViT-L/14 at 336: 577 tokens, 16 heads, D 64, non-causal
 *   causal prefill, LLaMA-7B: 1024 tokens, 32 heads, D 128
 *   decoding, LLaMA-7B: 1 query against 2048 and 4096 cached keys, 32 heads, D 128 (f32 and f16
 *   cache); bandwidth compared with the GEMV bench's (the same weight-streaming regime)
 */
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { attention, type AttentionKernel } from '../src/ops/attention.js';
import { add } from '../src/ops/elementwise.js';
import { matmul } from '../src/ops/matmul.js';
import { softmax } from '../src/ops/rows.js';
import type { Harness, Measurement } from './harness.js';
import { referenceGemv } from './kernels.js';
import { randomTensor } from './random.js';


/** The unfused reference: scores materialised, softmax, second matmul. */
function unfused(q: Tensor, k: Tensor, v: Tensor, scale: number, causalMask?: Tensor): Tensor {
  const scores = matmul(q, k, { transposeB: true });
  let masked = scores;
  if (causalMask) {
    masked = add(scores, causalMask);
    scores.dispose();
  }
  const probs = softmax(masked, { scale });
  masked.dispose();
  const out = matmul(probs, v);
  probs.dispose();
  return out;
}

/** An additive causal mask [L, L] (0 or -inf) for the unfused path. */
function causalMask(engine: Engine, L: number): Tensor {
  const data = new Float32Array(L * L);
  for (let i = 0; i < L; i++) data.fill(-Infinity, i * L + i + 1, (i + 1) * L);
  return engine.tensor(data, [L, L]);
}

interface PrefillCase {
  name: string;
  H: number;
  L: number;
  D: number;
  causal: boolean;
  dtype: DType;
  kernels?: AttentionKernel[];
}

async function prefill(h: Harness, c: PrefillCase): Promise<void> {
  const e = h.engine;
  const fusedName = `attention_${c.name}`;
  if (!h.wanted(fusedName) && !h.wanted(`${fusedName}_unfused`)) return;
  const q = randomTensor(e, [1, c.H, c.L, c.D], 1, { dtype: c.dtype });
  const k = randomTensor(e, [1, c.H, c.L, c.D], 2, { dtype: c.dtype });
  const v = randomTensor(e, [1, c.H, c.L, c.D], 3, { dtype: c.dtype });
  const scale = 1 / Math.sqrt(c.D);
  const mask = c.causal ? causalMask(e, c.L) : undefined;
  // Useful work: two L x L x D products per head, halved when causal.
  const flops = 4 * c.H * c.D * (c.causal ? (c.L * (c.L + 1)) / 2 : c.L * c.L);
  const shape = `${c.L}x${c.H}hx${c.D}${c.causal ? ' causal' : ''} ${c.dtype}`;
  const heavy = c.L * c.L * c.H > 1e7;
  const timing = { iterations: heavy ? 3 : 5, time: heavy ? 0 : 1000 };
  const fused = await h.gpu({ name: fusedName, shape, flops, run: () => attention(q, k, v, { causal: c.causal }), ...timing, always: true });
  const base = await h.gpu({ name: `${fusedName}_unfused`, shape, flops, run: () => unfused(q, k, v, scale, mask), ...timing, always: true });
  h.annotate(fused, { speedup_vs_unfused: ratio(base, fused) });
  for (const kernel of c.kernels ?? []) {
    const other = await h.gpu({ name: `${fusedName}_${kernel}`, shape, flops, run: () => attention(q, k, v, { causal: c.causal, kernel }), ...timing });
    h.annotate(other, { speedup_vs_unfused: ratio(base, other), vs_default_kernel: ratio(fused, other) });
  }
  [q, k, v, mask].forEach((t) => t?.dispose());
}

/** GEMV bandwidth in this run: the kernels suite's measurement, or our own when it was filtered out. */
async function gemvBandwidth(h: Harness, dtype: DType): Promise<number> {
  const known = h.results.find((m) => m.name === `gemv_${dtype}`)?.gbps;
  if (known) return known;
  const gemv = referenceGemv(h.engine, dtype, `attention_decode_gemv_${dtype}_reference`);
  const m = await h.gpu({ ...gemv, flops: undefined, always: true });
  gemv.dispose();
  return m!.gbps!;
}

async function decode(h: Harness, Lk: number, dtype: DType): Promise<void> {
  const e = h.engine;
  const H = 32;
  const D = 128;
  const name = `attention_decode_${Lk}_${dtype}`;
  if (!h.wanted(name) && !h.wanted(`${name}_unfused`)) return;
  const q = randomTensor(e, [1, H, 1, D], 1);
  const k = randomTensor(e, [1, H, Lk, D], 2, { dtype: dtype });
  const v = randomTensor(e, [1, H, Lk, D], 3, { dtype: dtype });
  const scale = 1 / Math.sqrt(D);
  const bytes = 2 * H * Lk * D * (dtype === 'f32' ? 4 : 2);
  const shape = `1x${Lk}x${H}hx${D} ${dtype} kv`;
  const common = { shape, flops: 4 * H * Lk * D, bytes, ceiling: 'read' as const, repeat: 4, always: true };
  const fused = await h.gpu({ name, ...common, run: () => attention(q, k, v, { causal: true }) });
  const split = await h.gpu({ name: `${name}_split8`, ...common, run: () => attention(q, k, v, { causal: true, splits: 8 }) });
  const base = await h.gpu({ name: `${name}_unfused`, ...common, run: () => unfused(q, k, v, scale) });
  const gemv = await gemvBandwidth(h, dtype);
  h.annotate(fused, { speedup_vs_unfused: ratio(base, fused), of_gemv_bandwidth: round2(fused!.gbps! / gemv) });
  h.annotate(split, { speedup_vs_unfused: ratio(base, split), of_gemv_bandwidth: round2(split!.gbps! / gemv) });
  [q, k, v].forEach((t) => t.dispose());
}

function ratio(slow: Measurement | null, fast: Measurement | null): number {
  return slow && fast ? round2(slow.median_ms / fast.median_ms) : NaN;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export async function benchAttention(h: Harness): Promise<void> {
  const gpuKernels: AttentionKernel[] = h.engine.profile === 'cpu' ? ['tiled'] : [];
  await prefill(h, { name: 'clip_577', H: 16, L: 577, D: 64, causal: false, dtype: 'f32', kernels: gpuKernels });
  await prefill(h, { name: 'clip_577_f16', H: 16, L: 577, D: 64, causal: false, dtype: 'f16' });
  await prefill(h, { name: 'llama_prefill_1024', H: 32, L: 1024, D: 128, causal: true, dtype: 'f32' });
  await prefill(h, { name: 'llama_prefill_1024_f16', H: 32, L: 1024, D: 128, causal: true, dtype: 'f16' });
  for (const Lk of [2048, 4096]) {
    await decode(h, Lk, 'f32');
    await decode(h, Lk, 'f16');
  }
}
