/**
 * Consecutive one-row products (LLM decoding), each able to read earlier ones' outputs:
 *
 *   const [x1, h, x2] = gemvChain([
 *     { input: attn, weight: o, residual: x },                               // x1 = x + attn·oᵀ
 *     { input: 0, weight: gateUp, preNorm: { weight: norm, eps }, gated: 'silu' }, // h = SwiGLU(rmsnorm(x1))
 *     { input: 1, weight: down, residual: 0 },                               // x2 = x1 + h·downᵀ
 *   ]);
 *
 * On lavapipe (profile 'cpu', 8-wide subgroups) up to four stages run as one dispatch whose
 * workgroups, one per worker thread, take chunks of rows stage after stage and wait in memory for
 * the chunks a stage needs (kernels/gemv_chain.wgsl): no dispatch boundary between stages, each
 * a hand-over to lavapipe's worker threads and back. Elsewhere, and for chains the fused kernel
 * does not take (more stages or outside inputs than it binds, a weight over the binding limit),
 * each stage is its own matmul, with the same results. Outputs are f32 [1, N].
 *
 * With options.attention the chain starts with a layer's attention for the decoding step (its
 * q|k|v row, appended to and attending over a KV cache), and stages read its output as input
 * 'attention': on lavapipe that makes a whole decoding layer one dispatch
 * (kernels/lib/chain_attention.wgsl); elsewhere it is KVCache.appendAndAttend, then the chain.
 */
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import type { KVCache } from './kv-cache.js';
import { matmul } from './matmul.js';
import { activationCode, type Activation } from './support/activation.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';
import { subgroupsOf8 } from './support/variants.js';
import { onDemandWorkgroups, workCounters } from './support/work-sharing.js';

export interface GemvStage {
  /** Linear weight [N, K]; [2N, K] gate rows then up rows when `gated`. */
  weight: Tensor;
  /**
   * The input row ([1, K] or [K]): a tensor, the index of an earlier stage whose output it is, or
   * 'attention' (the chain's attention output, options.attention).
   */
  input: Tensor | number | 'attention';
  /** RMS-normalise the input first: x / rms(x) * weight. */
  preNorm?: { weight: Tensor; eps: number };
  /** The output is act(gate·x) * (up·x) (SwiGLU with 'silu'). */
  gated?: Activation;
  /** Added to the output: a tensor of N elements, or an earlier stage's output. */
  residual?: Tensor | number;
}

/** Stages one fused dispatch takes (the kernel's four weight bindings). */
const MAX_FUSED_STAGES = 4;
/** Tensors from outside the chain one fused dispatch reads (src0, src1). */
const MAX_SOURCES = 2;
/** Storage bindings of the fused kernel: four weights, four norms, two sources, the arena, the counters. */
const FUSED_STORAGE_BINDINGS = 12;
/** And with an attention first: the cache's keys and values, the rotary table. */
const ATTENTION_STORAGE_BINDINGS = FUSED_STORAGE_BINDINGS + 3;
/** Stage outputs start at multiples of this many elements, so each can be bound on its own. */
const OUTPUT_ALIGN = 64;
// A stage's form (kernels/gemv_chain.wgsl): flags, the input's and residual's sources (bits 4-5,
// 6-7: src0, src1 or ARENA), the gate's activation code from bit 8.
const PRE_NORM = 1;
const GATED = 2;
const RESIDUAL = 4;
const ARENA = 2;

/** A decoding layer's attention at the head of a chain (gemvChain's options.attention). */
export interface ChainAttention {
  /** The layer's KV cache: the step's key (rotated by its rotary table) and value join it. */
  cache: KVCache;
  /** The step's fused projection [heads·D | kvHeads·D | kvHeads·D] (q, k, v; D the cache's head dim). */
  qkv: Tensor;
  /** Query heads: a multiple of the cache's heads. */
  heads: number;
}

export interface ChainOptions {
  attention?: ChainAttention;
}

interface Checked {
  N: number;
  K: number;
}

export function gemvChain(stages: readonly GemvStage[], options: ChainOptions = {}): Tensor[] {
  if (stages.length === 0) throw new RangeError('gemvChain: no stages');
  const engine = stages[0]!.weight.engine;
  const attention = options.attention;
  const attentionSize = attention ? checkAttention(attention) : null;
  const dims = stages.map((s, i) => check(stages, s, i, attentionSize));
  const sources = externalTensors(stages, attention?.qkv);
  const fused =
    fusesChains(engine) &&
    stages.length <= MAX_FUSED_STAGES &&
    sources.length <= MAX_SOURCES &&
    stages.every((s) => s.weight.byteLength <= engine.maxBindingBytes) &&
    (!attention || attentionFuses(attention));
  if (fused) return runFused(engine, stages, dims, sources, attention);
  if (!attention) return runEach(stages);
  // The attention on its own, then the chain reading its output.
  const out = attendAlone(attention);
  const resolve = <T>(ref: T | 'attention') => (ref === 'attention' ? out : ref);
  const outputs = gemvChain(stages.map((s) => ({ ...s, input: resolve(s.input), residual: resolve(s.residual) })));
  out.dispose();
  return outputs;
}

/** The chain's attention as KVCache.appendAndAttend: [1, heads·D]. */
function attendAlone({ cache, qkv, heads }: ChainAttention): Tensor {
  const [D, kvHeads] = [cache.headDim, cache.heads];
  const parts = [[0, heads], [heads * D, kvHeads], [(heads + kvHeads) * D, kvHeads]].map(([at, h]) => qkv.view([1, h!, D], at));
  try {
    const attended = cache.appendAndAttend(parts[0]!, parts[1]!, parts[2]!, { causal: true, layout: 'blhd' });
    const out = attended.reshape([1, heads * D]);
    attended.dispose();
    return out;
  } finally {
    parts.forEach((t) => t.dispose());
  }
}

/** Whether chains (of up to four stages) run as one dispatch on this engine, or as a matmul per stage. */
export function fusesChains(engine: Engine): boolean {
  return engine.profile === 'cpu' && subgroupsOf8(engine) && engine.gpu.limits.maxStorageBuffersPerShaderStage >= FUSED_STORAGE_BINDINGS;
}

function check(stages: readonly GemvStage[], s: GemvStage, i: number, attentionSize: number | null): Checked {
  const what = `gemvChain: stage ${i}`;
  expectDType(what, s.weight, FLOAT_DTYPES, 'weight');
  if (s.weight.rank !== 2) throw new RangeError(`${what}: weight ${formatShape(s.weight.shape)} must be [N, K]`);
  const [rows, K] = s.weight.shape as [number, number];
  if (s.gated !== undefined && rows % 2) throw new RangeError(`${what}: gated weight ${formatShape(s.weight.shape)} needs an even number of rows (gate, then up)`);
  const N = outputsOf(s);
  const size = (ref: Tensor | number | 'attention', role: string): number => {
    if (ref === 'attention') {
      if (attentionSize === null) throw new RangeError(`${what}: ${role} is 'attention', and the chain has no attention`);
      return attentionSize;
    }
    if (typeof ref !== 'number') {
      expectDType(what, ref, FLOAT_DTYPES, role);
      return ref.size;
    }
    if (!Number.isInteger(ref) || ref < 0 || ref >= i) throw new RangeError(`${what}: ${role} refers to stage ${ref}; only earlier stages (0 to ${i - 1}) can feed it`);
    return outputsOf(stages[ref]!);
  };
  const inputSize = size(s.input, 'input');
  if (inputSize !== K) throw new RangeError(`${what}: input has ${inputSize} elements, the weight ${formatShape(s.weight.shape)} takes ${K}`);
  if (s.residual !== undefined) {
    const r = size(s.residual, 'residual');
    if (r !== N) throw new RangeError(`${what}: residual has ${r} elements, the stage makes ${N}`);
  }
  if (s.preNorm && s.preNorm.weight.size !== K) {
    throw new RangeError(`${what}: preNorm weight ${formatShape(s.preNorm.weight.shape)} must have ${K} elements`);
  }
  activationCode(what, s.gated);
  return { N, K };
}

/** A stage's output size: its weight rows, or half of them when gate and up rows make one output. */
function outputsOf(s: GemvStage): number {
  const rows = s.weight.shape[0]!;
  return s.gated !== undefined ? rows / 2 : rows;
}

/** The attention output's size, heads·D, once its inputs are checked. */
function checkAttention({ cache, qkv, heads }: ChainAttention): number {
  const what = 'gemvChain: attention';
  expectDType(what, qkv, FLOAT_DTYPES, 'qkv');
  if (!Number.isInteger(heads) || heads <= 0 || heads % cache.heads) {
    throw new RangeError(`${what}: ${heads} query heads must be a positive multiple of the cache's ${cache.heads} heads`);
  }
  const want = (heads + 2 * cache.heads) * cache.headDim;
  if (qkv.size !== want) {
    throw new RangeError(`${what}: qkv ${formatShape(qkv.shape)} must hold (${heads} + 2 x ${cache.heads}) heads of ${cache.headDim}: ${want} elements`);
  }
  return heads * cache.headDim;
}

/** Whether the fused kernel takes this attention: head dims up to 256, bindings within the limit. */
function attentionFuses({ cache }: ChainAttention): boolean {
  const { engine } = cache;
  const limit = engine.maxBindingBytes;
  const table = cache.rotary?.tableFor(cache.length);
  return (
    engine.gpu.limits.maxStorageBuffersPerShaderStage >= ATTENTION_STORAGE_BINDINGS &&
    cache.headDim <= 256 &&
    cache.keys.byteLength <= limit &&
    (!table || table.byteLength <= limit)
  );
}

/** The distinct tensors the chain reads from outside (the attention's q|k|v first, then inputs and residuals). */
function externalTensors(stages: readonly GemvStage[], first?: Tensor): Tensor[] {
  const found: Tensor[] = first ? [first] : [];
  for (const s of stages) {
    for (const ref of [s.input, s.residual]) {
      if (typeof ref === 'object' && !found.some((t) => sameElements(t, ref))) found.push(ref);
    }
  }
  return found;
}

function sameElements(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.size === b.size && a.dtype === b.dtype;
}

/** Each stage as its own matmul (GPUs, and chains the fused kernel does not take). */
function runEach(stages: readonly GemvStage[]): Tensor[] {
  const outputs: Tensor[] = [];
  const resolve = (ref: Tensor | number | 'attention'): Tensor => {
    if (ref === 'attention') throw new Error('gemvChain: attention output without an attention'); // check() refuses it first
    return typeof ref === 'number' ? outputs[ref]! : ref;
  };
  for (const s of stages) {
    const input = resolve(s.input);
    const row = input.reshape([1, input.size]);
    const residual = s.residual === undefined ? undefined : resolve(s.residual).reshape([1, outputsOf(s)]);
    outputs.push(matmul(row, s.weight, { transposeB: true, preNorm: s.preNorm, gated: s.gated, residual, dtype: 'f32' }));
    row.dispose();
    residual?.dispose();
  }
  return outputs;
}

/** What one fused dispatch binds, specialises and packs. */
interface FusedCall {
  workers: number;
  tensors: Record<string, Tensor>;
  dtypes: Record<string, Tensor['dtype']>;
  overrides: Record<string, number | boolean>;
  params: Record<string, number | number[]>;
}

function runFused(engine: Engine, stages: readonly GemvStage[], dims: Checked[], sources: Tensor[], attention?: ChainAttention): Tensor[] {
  // The arena: the attention's output (when there is one), then each stage's.
  const padded = (n: number) => Math.ceil(n / OUTPUT_ALIGN) * OUTPUT_ALIGN;
  const offsets: number[] = [];
  let total = attention ? padded(attention.heads * attention.cache.headDim) : 0;
  for (const { N } of dims) {
    offsets.push(total);
    total += padded(N);
  }
  const arena = engine.empty([total], 'f32');
  try {
    const call = fusedCall(engine, stages, dims, sources, offsets, arena);
    if (attention) runAttentionFirst(engine, call, attention);
    else engine.run({ file: 'gemv_chain.wgsl', entry: 'gemv_chain', dtypes: call.dtypes, overrides: call.overrides }, call.tensors, call.params, call.workers);
  } catch (err) {
    arena.dispose();
    throw err;
  }
  const outputs = dims.map(({ N }, s) => arena.view([1, N], offsets[s]!));
  arena.dispose();
  return outputs;
}

/** Bindings, stage forms and parameters of the fused kernel; the attention's fields are left zero. */
function fusedCall(engine: Engine, stages: readonly GemvStage[], dims: Checked[], sources: Tensor[], offsets: number[], arena: Tensor): FusedCall {
  const spare = placeholder(engine);
  /** Where a stage reads a vector: source slot and element offset (the attention's output starts the arena). */
  const locate = (ref: Tensor | number | 'attention'): [number, number] =>
    ref === 'attention' ? [ARENA, 0] : typeof ref === 'number' ? [ARENA, offsets[ref]!] : [sources.findIndex((t) => sameElements(t, ref)), 0];
  const tensors: Record<string, Tensor> = { src0: sources[0]!, src1: sources[1] ?? sources[0]!, arena, counters: workCounters(engine) };
  const dtypes: Record<string, Tensor['dtype']> = { src0: tensors.src0!.dtype, src1: tensors.src1!.dtype };
  const workers = onDemandWorkgroups(engine);
  const overrides: Record<string, number | boolean> = { STAGES: stages.length, NWG: workers };
  const dimsParam: number[] = [];
  const residualAt: number[] = [];
  const eps: number[] = [];
  for (let s = 0; s < MAX_FUSED_STAGES; s++) {
    const stage = stages[s];
    // Unused slots bind stage 0's weight and a placeholder norm: read-only, never read.
    tensors[`w${s}`] = (stage ?? stages[0]!).weight;
    tensors[`norm${s}`] = stage?.preNorm?.weight ?? spare;
    dtypes[`w${s}`] = tensors[`w${s}`]!.dtype;
    dtypes[`norm${s}`] = tensors[`norm${s}`]!.dtype;
    if (!stage) continue;
    const [input, inputAt] = locate(stage.input);
    const [residual, residualOffset] = stage.residual !== undefined ? locate(stage.residual) : [0, 0];
    overrides[`FORM${s}`] =
      (stage.preNorm ? PRE_NORM : 0) |
      (stage.gated !== undefined ? GATED | (activationCode('gemvChain', stage.gated) << 8) : 0) |
      (stage.residual !== undefined ? RESIDUAL : 0) |
      (input << 4) |
      (residual << 6);
    dimsParam.push(dims[s]!.N, dims[s]!.K, inputAt, offsets[s]!);
    residualAt.push(residualOffset);
    eps.push(stage.preNorm?.eps ?? 0);
  }
  // Two f16 weights per 32-bit load needs every row to start at an even element.
  overrides.B_PAIRS = stages.every((s) => s.weight.dtype !== 'f16' || s.weight.shape[1]! % 2 === 0);
  const params = { eps, dims: dimsParam, residual_at: residualAt, attend: [0, 0, 0, 0], heads: [0, 0, 0, 0], scale: 0 };
  return { workers, tensors, dtypes, overrides, params };
}

/** The fused dispatch with the layer's attention first: the cache's next row is the step's. */
function runAttentionFirst(engine: Engine, call: FusedCall, { cache, heads }: ChainAttention): void {
  const D = cache.headDim;
  cache.withNextRow('gemvChain', ({ row, table, replay }) => {
    const attend = (at: number) => [at, at * D, 0, cache.maxLength];
    const tensors = { ...call.tensors, keys: cache.keys, values: cache.values, table: table ?? placeholder(engine) };
    const dtypes = { ...call.dtypes, keys: cache.dtype, values: cache.dtype };
    const overrides: Record<string, number | boolean> = { ...call.overrides, ROPE: table !== undefined, HB: Math.ceil(D / 32), QB: Math.ceil(D / 8) };
    const params = { ...call.params, attend: attend(row), heads: [heads, cache.heads, D, 0], scale: 1 / Math.sqrt(D) };
    engine.run({ file: 'gemv_chain.wgsl', entry: 'attend_then_chain', dtypes, overrides }, tensors, params, call.workers);
    // A replay appends the cache's next row, while the capture still fits it (KVCache.withNextRow).
    if (replay) {
      engine.onReplay(() => {
        const next = replay();
        return next && { params: { attend: attend(next.row) }, apply: next.apply };
      });
    }
  });
}
