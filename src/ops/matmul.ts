/**
 * Matrix products with f32 accumulation, for f32 or f16 operands:
 *   matmul(a [..., M, K], b [..., K, N])            batched, batch dims broadcast
 *   matmul(a, w [..., N, K], { transposeB: true })  = a · wᵀ, PyTorch Linear weights as stored
 *   linear(x, weight [N, K], bias?, act?)           fused bias and activation
 *
 * Kernel choice: one-row inputs against a weight take the GEMV path (weight streaming); otherwise
 * the subgroup-broadcast kernel on CPU adapters with 8-wide subgroups, the shared-memory tiled
 * kernel elsewhere. Weights larger than one storage binding are split along N (output columns),
 * activations along M (rows).
 *
 * Two neighbours of a projection can be fused in (options preNorm and gated): the GEMV kernels do
 * them in the same dispatch, which matters in decoding, where each dependent dispatch costs a
 * fixed overhead on lavapipe; other shapes compose the separate ops, with the same result.
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { KernelSpec } from '../engine/pipeline.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { add, gated } from './elementwise.js';
import { rmsNorm } from './rows.js';
import { activationCode, type Activation } from './support/activation.js';
import { rowChunks } from './support/chunks.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';
import { rowKernelConfig, subgroupsOf8 } from './support/variants.js';

export interface MatmulOptions {
  /** b is [..., N, K] and used transposed (Linear weights). */
  transposeB?: boolean;
  /** Added to every row: [N]. */
  bias?: Tensor;
  /** Added after the activation, shaped like the output: the transformer's skip connection. */
  residual?: Tensor;
  act?: Activation;
  dtype?: DType;
  /** Force a kernel (tests and benchmarks); by default chosen per adapter and shape. */
  kernel?: MatmulKernel;
  /** RMS-normalise each row of a first: a / rms(a) * weight (LLaMA's RMSNorm before a projection). */
  preNorm?: { weight: Tensor; eps: number };
  /**
   * b holds gate rows then up rows (2H of them): the output is act(gate) * up, [..., H] (SwiGLU
   * with 'silu'). `bias`, if any, covers all 2H rows; `act` must be unset.
   */
  gated?: Activation;
}

export type MatmulKernel = 'subgroup' | 'tiled' | 'gemv_rows' | 'gemv_split';

interface Geometry {
  M: number;
  N: number;
  K: number;
  batch: number;
  aBatched: boolean;
  bBatched: boolean;
  outShape: number[];
}

export function linear(x: Tensor, weight: Tensor, bias?: Tensor, act?: Activation, dtype?: DType): Tensor {
  return matmul(x, weight, { transposeB: true, bias, act, dtype });
}

/** residual + x·Wᵀ (+ bias): a projection back onto the residual stream in one dispatch. */
export function linearResidual(x: Tensor, weight: Tensor, residual: Tensor, bias?: Tensor): Tensor {
  return matmul(x, weight, { transposeB: true, bias, residual });
}

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const g = geometry(a, b, options);
  const engine = a.engine;
  const kernel = options.kernel ?? chooseKernel(engine, g, options);
  if ((options.preNorm || options.gated) && !(isGemv(kernel) && b.byteLength <= engine.maxBindingBytes)) {
    return composeFusions(a, b, options);
  }
  const dtype = options.dtype ?? (a.dtype === b.dtype ? a.dtype : 'f32');
  if (options.residual && (options.residual.rank !== g.outShape.length || options.residual.shape.some((d, i) => d !== g.outShape[i]))) {
    throw new RangeError(`matmul: residual ${formatShape(options.residual.shape)} must match the output ${formatShape(g.outShape)}`);
  }
  const c = engine.empty(g.outShape, dtype);
  if (g.M === 0 || g.N === 0 || g.batch === 0) return c;
  if (g.K === 0) throw new RangeError(`matmul: inner dimension K is 0 for ${formatShape(a.shape)} x ${formatShape(b.shape)}`);
  if (g.bBatched) runBatched(engine, kernel, g, a, b, c, options);
  else runSplit(engine, kernel, g, a, b, c, options);
  return c;
}

function isGemv(kernel: MatmulKernel): boolean {
  return kernel === 'gemv_rows' || kernel === 'gemv_split';
}

/** preNorm and gated by the separate ops: rmsNorm, the product, the gated activation, the residual. */
function composeFusions(a: Tensor, b: Tensor, options: MatmulOptions): Tensor {
  const { preNorm, gated: gate, residual, ...rest } = options;
  return a.engine.scope(() => {
    const input = preNorm ? rmsNorm(a, preNorm.weight, preNorm.eps) : a;
    if (!gate) return matmul(input, b, { ...rest, residual });
    const both = matmul(input, b, { ...rest, kernel: undefined, dtype: 'f32' });
    const out = gated(both, gate, residual ? 'f32' : options.dtype);
    return residual ? add(out, residual, { dtype: options.dtype ?? out.dtype }) : out;
  });
}

function geometry(a: Tensor, b: Tensor, options: MatmulOptions): Geometry {
  expectDType('matmul', a, FLOAT_DTYPES, 'a');
  expectDType('matmul', b, FLOAT_DTYPES, 'b');
  // Only error messages use it: built when one is thrown, not on every call (decoding makes ~40 a step).
  const shapes = () => `${formatShape(a.shape)} x ${formatShape(b.shape)}${options.transposeB ? 'ᵀ' : ''}`;
  if (a.rank < 1 || b.rank < 2) throw new RangeError(`matmul: ${shapes()}: a needs rank >= 1 and b rank >= 2`);
  const K = a.shape[a.rank - 1]!;
  const M = a.rank >= 2 ? a.shape[a.rank - 2]! : 1;
  const bK = options.transposeB ? b.shape[b.rank - 1]! : b.shape[b.rank - 2]!;
  const N = options.transposeB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
  if (bK !== K) throw new RangeError(`matmul: ${shapes()}: inner dimensions differ (${K} vs ${bK})`);
  if (options.preNorm) {
    const w = options.preNorm.weight;
    expectDType('matmul', w, FLOAT_DTYPES, 'preNorm weight');
    if (w.rank !== 1 || w.shape[0] !== K) throw new RangeError(`matmul: preNorm weight ${formatShape(w.shape)} must be [${K}] for ${shapes()}`);
  }
  if (options.gated) {
    if (options.act) throw new RangeError(`matmul: gated and act cannot both be set (the gate's activation is gated: '${options.gated}')`);
    if (N % 2) throw new RangeError(`matmul: gated needs an even number of weight rows (gate | up), ${shapes()} has ${N}`);
    activationCode('matmul', options.gated);
  }
  const aBatchShape = a.shape.slice(0, Math.max(0, a.rank - 2));
  const bBatchShape = b.shape.slice(0, b.rank - 2);
  const aBatch = aBatchShape.reduce((x, y) => x * y, 1);
  const bBatch = bBatchShape.reduce((x, y) => x * y, 1);
  if (options.residual) {
    expectDType('matmul', options.residual, FLOAT_DTYPES, 'residual');
  }
  if (options.bias) {
    expectDType('matmul', options.bias, FLOAT_DTYPES, 'bias');
    if (options.bias.rank !== 1 || options.bias.shape[0] !== N) {
      throw new RangeError(`matmul: bias ${formatShape(options.bias.shape)} must be [${N}] for ${shapes()}`);
    }
  }
  const outRows = a.rank >= 2 ? [M] : [];
  const outN = options.gated ? N / 2 : N;
  if (bBatch === 1) {
    // b is one matrix: a's batch dimensions are just more rows.
    return { M: aBatch * M, N, K, batch: 1, aBatched: false, bBatched: false, outShape: [...aBatchShape, ...outRows, outN] };
  }
  if (options.preNorm || options.gated) throw new RangeError(`matmul: preNorm and gated take one weight matrix, not the batch in ${shapes()}`);
  const same = aBatchShape.length === bBatchShape.length && aBatchShape.every((d, i) => d === bBatchShape[i]);
  if (!same && aBatch !== 1) {
    throw new RangeError(`matmul: ${shapes()}: batch dimensions must match or a must have none`);
  }
  return { M, N, K, batch: bBatch, aBatched: aBatch > 1, bBatched: true, outShape: [...bBatchShape, ...outRows, N] };
}

function chooseKernel(engine: Engine, g: Geometry, options: MatmulOptions): MatmulKernel {
  const cpu = engine.profile === 'cpu';
  const subgroup8 = subgroupsOf8(engine);
  if (g.M === 1 && g.batch === 1 && options.transposeB) return cpu && subgroup8 ? 'gemv_rows' : 'gemv_split';
  return cpu && subgroup8 ? 'subgroup' : 'tiled';
}

/** Workgroup tile (rows, columns) of each kernel. */
function tile(kernel: MatmulKernel): [number, number] {
  switch (kernel) {
    case 'subgroup': return [8 * SG_ROWS, 32 * (8 / SG_ROWS)];
    case 'tiled': return [64, 64];
    case 'gemv_rows': return [1, 256];
    case 'gemv_split': return [1, 1];
  }
}

const SG_ROWS = 2;

function spec(engine: Engine, kernel: MatmulKernel, a: Tensor, b: Tensor, bias: Tensor, residual: Tensor, c: Tensor, options: MatmulOptions, K: number): KernelSpec {
  const dtypes: Record<string, DType> = { a: a.dtype, b: b.dtype, bias: bias.dtype, c: c.dtype, residual: residual.dtype };
  const overrides: Record<string, number | boolean> = {
    ACT: activationCode('matmul', options.gated ?? options.act),
    HAS_BIAS: options.bias !== undefined,
    HAS_RESIDUAL: options.residual !== undefined,
  };
  // Two f16 weights per 32-bit load needs every pair to start at an even element; four k per load
  // of both operands needs k contiguous in both and every row to start at a multiple of 4.
  const pairs = b.dtype === 'f16' && options.transposeB === true && K % 2 === 0;
  const quads = options.transposeB === true && K % 4 === 0;
  switch (kernel) {
    case 'subgroup':
      return {
        file: 'matmul_subgroup.wgsl',
        entry: 'matmul',
        dtypes,
        includes: { operands: quads ? 'quads' : 'scalar' },
        overrides: { ...overrides, SG_ROWS, B_PAIRS: pairs, QUADS: quads },
      };
    case 'tiled':
      return { file: 'matmul_tiled.wgsl', entry: 'matmul', dtypes, overrides: { ...overrides, B_K_CONTIGUOUS: options.transposeB === true } };
    case 'gemv_rows':
    case 'gemv_split': {
      const rows = rowKernelConfig(engine);
      dtypes.norm = options.preNorm?.weight.dtype ?? 'f32';
      return {
        file: 'matmul_gemv.wgsl',
        entry: kernel,
        dtypes,
        includes: rows.includes,
        overrides: { ...overrides, ...rows.overrides, B_PAIRS: pairs, PRE_NORM: options.preNorm !== undefined, GATED: options.gated !== undefined },
      };
    }
  }
}

function grid(kernel: MatmulKernel, M: number, N: number, batch: number, gatedOutputs = false): number | [number, number, number] {
  const [tm, tn] = tile(kernel);
  if (kernel === 'gemv_split') return N; // one workgroup per output
  if (kernel === 'gemv_rows') return Math.ceil(N / (gatedOutputs ? tn / 2 : tn)); // 4 rows per lane: 4 outputs, or 2 gate/up pairs
  return [Math.ceil(N / tn), Math.ceil(M / tm), batch];
}

/** One matrix b (possibly a Linear weight): split a/c along M and b/bias/c-columns along N as bindings require. */
function runSplit(engine: Engine, kernel: MatmulKernel, g: Geometry, a: Tensor, b: Tensor, c: Tensor, options: MatmulOptions): void {
  const { M, N, K } = g;
  // Output columns: N, or N / 2 when gate and up rows fold into one output (then b is never split).
  const outN = options.gated ? N / 2 : N;
  const a2 = a.reshape([M, K]);
  const c2 = c.reshape([M, outN]);
  const b2 = options.transposeB ? b.reshape([N, K]) : b.reshape([K, N]);
  const bias = options.bias ?? placeholder(engine);
  const residual2 = options.residual ? options.residual.reshape([M, outN]) : placeholder(engine);
  const residualRowBytes = options.residual ? outN * DTYPE_BYTES[options.residual.dtype] : 0;
  const mChunks = rowChunks(engine, 'matmul', M, [K * DTYPE_BYTES[a.dtype], outN * DTYPE_BYTES[c.dtype], residualRowBytes]);
  // GEMV kernels also bind the (optional) RMSNorm weight fused in front.
  const gemvInputs: Record<string, Tensor> = isGemv(kernel) ? { norm: options.preNorm?.weight ?? placeholder(engine) } : {};
  let nChunks: [number, number][] = [[0, N]];
  if (b.byteLength > engine.maxBindingBytes) {
    if (!options.transposeB) {
      throw new RangeError(`matmul: b ${formatShape(b.shape)} exceeds the ${engine.maxBindingBytes}-byte binding limit; store it as [N, K] and use transposeB`);
    }
    const biasBytes = options.bias ? DTYPE_BYTES[options.bias.dtype] : 0;
    nChunks = rowChunks(engine, 'matmul', N, [K * DTYPE_BYTES[b.dtype], biasBytes]);
  }
  const kernelSpec = spec(engine, kernel, a, b, bias, residual2, c, options, K);
  for (const [m0, m1] of mChunks) {
    const as = a2.rows(m0, m1);
    const cs = c2.rows(m0, m1);
    const rs = options.residual ? residual2.rows(m0, m1) : residual2;
    for (const [n0, n1] of nChunks) {
      const whole = n0 === 0 && n1 === N;
      const bs = whole ? b2 : b2.rows(n0, n1);
      const biasPart = options.bias && !whole ? options.bias.rows(n0, n1) : bias;
      engine.run(
        kernelSpec,
        { a: as, b: bs, bias: biasPart, c: cs, residual: rs, ...gemvInputs },
        {
          M: m1 - m0, N: options.gated ? outN : n1 - n0, K,
          a_batch_stride: 0, a_row_stride: K,
          b_batch_stride: 0, b_k_stride: options.transposeB ? 1 : N, b_n_stride: options.transposeB ? K : 1,
          c_batch_stride: 0, c_row_stride: outN, c_col_offset: n0,
          eps: options.preNorm?.eps ?? 0,
        },
        grid(kernel, m1 - m0, options.gated ? outN : n1 - n0, 1, options.gated !== undefined),
      );
      if (!whole) {
        bs.dispose();
        if (biasPart !== bias) biasPart.dispose();
      }
    }
    as.dispose();
    cs.dispose();
    if (rs !== residual2) rs.dispose();
  }
  a2.dispose();
  b2.dispose();
  c2.dispose();
  if (options.residual) residual2.dispose();
}

/** Batched b: split along the batch dimension as bindings require; a may be shared by all batches. */
function runBatched(engine: Engine, kernel: MatmulKernel, g: Geometry, a: Tensor, b: Tensor, c: Tensor, options: MatmulOptions): void {
  const { M, N, K, batch } = g;
  if (kernel === 'gemv_rows' || kernel === 'gemv_split') throw new RangeError(`matmul: kernel ${kernel} takes no batch`);
  const a3 = g.aBatched ? a.reshape([batch, M * K]) : a.reshape([1, M * K]);
  const b3 = b.reshape([batch, N * K]);
  const c3 = c.reshape([batch, M * N]);
  const bias = options.bias ?? placeholder(engine);
  const residual3 = options.residual ? options.residual.reshape([batch, M * N]) : placeholder(engine);
  const perBatch = [
    g.aBatched ? M * K * DTYPE_BYTES[a.dtype] : 0,
    N * K * DTYPE_BYTES[b.dtype],
    M * N * DTYPE_BYTES[c.dtype],
    options.residual ? M * N * DTYPE_BYTES[options.residual.dtype] : 0,
  ];
  if (!g.aBatched && a.byteLength > engine.maxBindingBytes) {
    throw new RangeError(`matmul: shared a ${formatShape(a.shape)} exceeds the ${engine.maxBindingBytes}-byte binding limit`);
  }
  const kernelSpec = spec(engine, kernel, a, b, bias, residual3, c, options, K);
  for (const [z0, z1] of rowChunks(engine, 'matmul', batch, perBatch)) {
    const as = g.aBatched ? a3.rows(z0, z1) : a3;
    const bs = b3.rows(z0, z1);
    const cs = c3.rows(z0, z1);
    const rs = options.residual ? residual3.rows(z0, z1) : residual3;
    engine.run(
      kernelSpec,
      { a: as, b: bs, bias, c: cs, residual: rs },
      {
        M, N, K,
        a_batch_stride: g.aBatched ? M * K : 0, a_row_stride: K,
        b_batch_stride: N * K, b_k_stride: options.transposeB ? 1 : N, b_n_stride: options.transposeB ? K : 1,
        c_batch_stride: M * N, c_row_stride: N, c_col_offset: 0,
        eps: 0,
      },
      grid(kernel, M, N, z1 - z0),
    );
    if (as !== a3) as.dispose();
    if (rs !== residual3) rs.dispose();
    bs.dispose();
    cs.dispose();
  }
  a3.dispose();
  b3.dispose();
  c3.dispose();
  if (options.residual) residual3.dispose();
}
