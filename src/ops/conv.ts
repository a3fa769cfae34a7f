/**
 * 2-D convolution over NCHW tensors, PyTorch's conv2d semantics:
 *   conv2d(x [N, Cin, H, W], weight [Cout, Cin / groups, KH, KW], { stride, padding, dilation, groups, bias, act, upsample })
 * with f32 accumulation for f32 or f16 storage. `upsample: 2` convolves the nearest-upsampled input
 * without materialising it (diffusers' Upsample2D: interpolate(scale 2, nearest) then a 3x3 conv).
 *
 * Kernel choice (see kernels/conv_*.wgsl): 1x1 convolutions with stride 1 and no padding are a
 * plain GEMM and take the matmul path; grouped convolutions with few channels per group (depthwise)
 * compute one output per invocation; on CPU adapters with 8-wide subgroups, 3x3 convolutions with
 * stride 1 take Winograd's F(2x2, 3x3) around the matmul kernels (support/conv-winograd.ts) and the
 * rest an implicit GEMM with the subgroup-broadcast kernel; elsewhere the shared-memory tiled kernel.
 * Work too big for one storage binding is split: batches into groups of whole images, weights into
 * blocks of output channels, and a single image too big for a binding into blocks of output and
 * input channels (partial sums carried in f32).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { binary, unary } from './elementwise.js';
import { matmul } from './matmul.js';
import { activationCode, type Activation } from './support/activation.js';
import { rowChunks } from './support/chunks.js';
import { convWinograd, winogradApplies } from './support/conv-winograd.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';
import { subgroupsOf8 } from './support/variants.js';

export type Pair = number | readonly [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  /** Zero padding, [top/bottom, left/right]. */
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: Tensor;
  /** Applied after the bias. */
  act?: Activation;
  /** Nearest upsampling of the input by this integer factor before the convolution. */
  upsample?: number;
  dtype?: DType;
  /** Force a kernel (tests and benchmarks); by default chosen per adapter and shape. */
  kernel?: Conv2dKernel;
}

export type Conv2dKernel = 'winograd' | 'subgroup' | 'tiled' | 'direct' | 'matmul';

export interface Conv2dGeometry {
  batch: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  groups: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  upsample: number;
}

/** Output channels per group below which the direct kernel beats 32-channel GEMM tiles. */
const DIRECT_BELOW = 8;

function pair(op: string, name: string, v: Pair | undefined, fallback: number, min: number): [number, number] {
  const [a, b] = typeof v === 'number' ? [v, v] : v === undefined ? [fallback, fallback] : [v[0], v[1]];
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < min || b < min) {
    throw new RangeError(`${op}: ${name} must be integers >= ${min}, got ${JSON.stringify(v)}`);
  }
  return [a, b];
}

/** Checks shapes and options and works out the output size. */
export function conv2dGeometry(x: Tensor, weight: Tensor, options: Conv2dOptions = {}): Conv2dGeometry {
  const op = 'conv2d';
  expectDType(op, x, FLOAT_DTYPES);
  expectDType(op, weight, FLOAT_DTYPES, 'weight');
  if (x.rank !== 4) throw new RangeError(`${op}: input ${formatShape(x.shape)} must be NCHW (rank 4)`);
  if (weight.rank !== 4) throw new RangeError(`${op}: weight ${formatShape(weight.shape)} must be [Cout, Cin / groups, KH, KW]`);
  const [batch, cin, h, w] = x.shape as [number, number, number, number];
  const [cout, cinG, kh, kw] = weight.shape as [number, number, number, number];
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1 || cin % groups || cout % groups) {
    throw new RangeError(`${op}: groups ${groups} must divide input channels ${cin} and output channels ${cout}`);
  }
  if (cinG !== cin / groups) {
    throw new RangeError(`${op}: weight ${formatShape(weight.shape)} needs ${cin / groups} input channels per group for input ${formatShape(x.shape)} with groups ${groups}`);
  }
  const stride = pair(op, 'stride', options.stride, 1, 1);
  const padding = pair(op, 'padding', options.padding, 0, 0);
  const dilation = pair(op, 'dilation', options.dilation, 1, 1);
  const upsample = options.upsample ?? 1;
  if (!Number.isInteger(upsample) || upsample < 1) throw new RangeError(`${op}: upsample must be an integer >= 1, got ${upsample}`);
  const out = (size: number, k: number, i: 0 | 1) => Math.floor((size * upsample + 2 * padding[i] - dilation[i] * (k - 1) - 1) / stride[i]) + 1;
  const oh = out(h, kh, 0);
  const ow = out(w, kw, 1);
  if (oh < 1 || ow < 1) {
    throw new RangeError(`${op}: kernel ${kh}x${kw} (dilation ${dilation.join('x')}) does not fit input ${formatShape(x.shape)} padded by ${padding.join('x')}`);
  }
  if (options.bias) {
    expectDType(op, options.bias, FLOAT_DTYPES, 'bias');
    if (options.bias.rank !== 1 || options.bias.shape[0] !== cout) {
      throw new RangeError(`${op}: bias ${formatShape(options.bias.shape)} must be [${cout}]`);
    }
  }
  activationCode(op, options.act);
  return { batch, cin, h, w, cout, kh, kw, oh, ow, groups, stride, padding, dilation, upsample };
}

export function conv2d(x: Tensor, weight: Tensor, options: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(x, weight, options);
  const engine = x.engine;
  const dtype = options.dtype ?? x.dtype;
  const yBytes = g.batch * g.cout * g.oh * g.ow * DTYPE_BYTES[dtype];
  const kernel = options.kernel ?? chooseKernel(engine, g, x, weight, yBytes, dtype);
  if (kernel === 'matmul') return conv1x1(x, weight, g, options);
  if (kernel === 'winograd' && !winogradApplies(engine, g, x, weight, yBytes)) {
    throw new RangeError('conv2d: the winograd kernel takes only 3x3 convolutions with stride 1, no dilation, one group, and input, output and transformed filters that each fit one binding');
  }
  const y = engine.empty([g.batch, g.cout, g.oh, g.ow], dtype);
  if (y.size === 0) return y;
  try {
    if (kernel === 'winograd') convWinograd(engine, g, x, weight, y, options);
    else runConv(engine, kernel, g, x, weight, y, options);
  } catch (err) {
    y.dispose();
    throw err;
  }
  return y;
}

function isPointwise(g: Conv2dGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.groups === 1 && g.upsample === 1 &&
    g.stride[0] === 1 && g.stride[1] === 1 && g.padding[0] === 0 && g.padding[1] === 0;
}

function chooseKernel(engine: Engine, g: Conv2dGeometry, x: Tensor, weight: Tensor, yBytes: number, yType: DType): Conv2dKernel {
  // The matmul path splits along images only; bigger images go through the kernels that split channels.
  const imagesFit = g.cin * g.h * g.w * DTYPE_BYTES[x.dtype] <= engine.maxBindingBytes && g.cout * g.oh * g.ow * DTYPE_BYTES[yType] <= engine.maxBindingBytes;
  if (isPointwise(g) && imagesFit) return 'matmul';
  if (g.cout / g.groups < DIRECT_BELOW) return 'direct';
  const cpu = engine.profile === 'cpu' && subgroupsOf8(engine);
  if (cpu && winogradApplies(engine, g, x, weight, yBytes)) return 'winograd';
  return cpu ? 'subgroup' : 'tiled';
}

/** A 1x1 convolution is weight [Cout, Cin] times each image [Cin, H*W]: the matmul kernels, then bias and activation. */
function conv1x1(x: Tensor, weight: Tensor, g: Conv2dGeometry, options: Conv2dOptions): Tensor {
  if (!isPointwise(g)) throw new RangeError('conv2d: the matmul kernel takes only 1x1 convolutions with stride 1, no padding, one group');
  const w2 = weight.reshape([g.cout, g.cin]);
  const x3 = x.reshape([g.batch, g.cin, g.h * g.w]);
  const plain = !options.bias && (options.act ?? 'none') === 'none';
  const product = matmul(w2, x3, { dtype: plain ? (options.dtype ?? x.dtype) : 'f32' });
  w2.dispose();
  x3.dispose();
  let out = product;
  if (options.bias) {
    // The matmul epilogue adds a bias per column; here it is per row (output channel).
    const b2 = options.bias.reshape([g.cout, 1]);
    out = binary('add', product, b2, { act: options.act, dtype: options.dtype ?? x.dtype });
    b2.dispose();
    product.dispose();
  } else if (!plain) {
    out = unary(product, options.act!, { dtype: options.dtype ?? x.dtype });
    product.dispose();
  }
  const y = out.reshape([g.batch, g.cout, g.oh, g.ow]);
  out.dispose();
  return y;
}

/** Output pixels (rows) and channels (columns) of one workgroup tile. */
function tileOf(kernel: Conv2dKernel): [number, number] {
  switch (kernel) {
    case 'subgroup': return [8 * SG_ROWS, 32 * (8 / SG_ROWS)];
    case 'tiled': return [64, 64];
    default: return [64, 1];
  }
}

/** Pixel rows x channel columns of the subgroup kernel: 32 pixels x 64 channels divides SD's 320/640/1280. */
const SG_ROWS = 4;

function biasOrPlaceholder(engine: Engine, bias?: Tensor): Tensor {
  return bias ?? placeholder(engine);
}

interface Dispatch {
  x: Tensor;
  weight: Tensor;
  bias: Tensor;
  y: Tensor;
  partial: Tensor;
  /** Output pixels: images in this dispatch x oh x ow. */
  pixels: number;
  /** Output channels, input channels (per group) and the first input channel of this block. */
  cout: number;
  cin: number;
  cinOffset: number;
  yChannelOffset: number;
  /** First weight row of this block in the bound weight (0 when the weight is a view of the block), and in the bias. */
  wRowOffset: number;
  biasOffset: number;
  hasBias: boolean;
  accumulate: boolean;
  act: Activation | undefined;
}

function runConv(engine: Engine, kernel: Conv2dKernel, g: Conv2dGeometry, x: Tensor, weight: Tensor, y: Tensor, options: Conv2dOptions): void {
  const bias = biasOrPlaceholder(engine, options.bias);
  const placeholder = biasOrPlaceholder(engine);
  const perImage = g.oh * g.ow;
  const cinG = g.cin / g.groups;
  const kk = cinG * g.kh * g.kw;
  const w2 = weight.reshape([g.cout, kk]);
  const run = (d: Dispatch) => dispatch(engine, kernel, g, d, kk);
  const imageBytes = [g.cin * g.h * g.w * DTYPE_BYTES[x.dtype], g.cout * perImage * DTYPE_BYTES[y.dtype]];
  try {
    if (Math.max(...imageBytes) <= engine.maxBindingBytes) {
      // Whole images per dispatch; a weight too big for one binding is split along output channels.
      let channelChunks: [number, number][] = [[0, g.cout]];
      if (weight.byteLength > engine.maxBindingBytes) {
        if (g.groups !== 1) throw new RangeError(`conv2d: grouped weight ${formatShape(weight.shape)} exceeds the ${engine.maxBindingBytes}-byte binding limit`);
        channelChunks = rowChunks(engine, 'conv2d', g.cout, [kk * DTYPE_BYTES[weight.dtype]]);
      }
      const x2 = x.reshape([g.batch, g.cin * g.h * g.w]);
      const y2 = y.reshape([g.batch, g.cout * perImage]);
      for (const [b0, b1] of rowChunks(engine, 'conv2d', g.batch, imageBytes)) {
        const xs = x2.rows(b0, b1);
        const ys = y2.rows(b0, b1);
        for (const [c0, c1] of channelChunks) {
          const whole = c0 === 0 && c1 === g.cout;
          const ws = whole ? w2 : w2.rows(c0, c1);
          // The bias is small enough to bind whole: the kernel reads it from the block's first channel.
          run({ x: xs, weight: ws, bias, y: ys, partial: placeholder, pixels: (b1 - b0) * perImage, cout: c1 - c0, cin: cinG, cinOffset: 0, yChannelOffset: c0, wRowOffset: 0, biasOffset: c0, hasBias: options.bias !== undefined, accumulate: false, act: options.act });
          if (!whole) ws.dispose();
        }
        xs.dispose();
        ys.dispose();
      }
      x2.dispose();
      y2.dispose();
    } else {
      runPerImage(engine, g, x, w2, y, options, bias, placeholder, run);
    }
  } finally {
    w2.dispose();
  }
}

/**
 * Images too big for one binding: one image at a time, its output in blocks of channels, its input
 * in blocks of channels whose partial sums are carried in f32 between dispatches (ping-pong
 * scratch); bias on the first block, activation on the last. Channel planes are contiguous in NCHW,
 * so every block is a plain view.
 */
function runPerImage(engine: Engine, g: Conv2dGeometry, x: Tensor, w2: Tensor, y: Tensor, options: Conv2dOptions,
  bias: Tensor, placeholder: Tensor, run: (d: Dispatch) => void): void {
  const plane = g.oh * g.ow;
  if (g.groups !== 1) {
    throw new RangeError(`conv2d: one image of ${formatShape([1, g.cin, g.h, g.w])} -> ${formatShape([1, g.cout, g.oh, g.ow])} exceeds the ${engine.maxBindingBytes}-byte binding limit; splitting grouped convolutions is not implemented`);
  }
  const kk = w2.shape[1]!;
  const weightWhole = w2.byteLength <= engine.maxBindingBytes;
  const outChunks = rowChunks(engine, 'conv2d', g.cout, [plane * DTYPE_BYTES[y.dtype], plane * 4, weightWhole ? 0 : kk * DTYPE_BYTES[w2.dtype]]);
  const inChunks = rowChunks(engine, 'conv2d', g.cin, [g.h * g.w * DTYPE_BYTES[x.dtype]]);
  const xPlanes = x.reshape([g.batch * g.cin, g.h * g.w]);
  const yPlanes = y.reshape([g.batch * g.cout, plane]);
  try {
    for (let b = 0; b < g.batch; b++) {
      for (const [c0, c1] of outChunks) {
        const ys = yPlanes.rows(b * g.cout + c0, b * g.cout + c1);
        const ws = weightWhole ? w2 : w2.rows(c0, c1);
        const scratch = inChunks.length > 1 ? [0, 1].map(() => engine.empty([c1 - c0, plane], 'f32')) : [];
        try {
          inChunks.forEach(([i0, i1], k) => {
            const last = k === inChunks.length - 1;
            const xs = xPlanes.rows(b * g.cin + i0, b * g.cin + i1);
            try {
              run({
                x: xs, weight: ws, bias, y: last ? ys : scratch[k % 2]!, partial: k > 0 ? scratch[(k - 1) % 2]! : placeholder,
                pixels: plane, cout: c1 - c0, cin: i1 - i0, cinOffset: i0, yChannelOffset: 0,
                wRowOffset: weightWhole ? c0 : 0, biasOffset: c0,
                hasBias: options.bias !== undefined && k === 0, accumulate: k > 0, act: last ? options.act : undefined,
              });
            } finally {
              xs.dispose();
            }
          });
        } finally {
          scratch.forEach((t) => t.dispose());
          ys.dispose();
          if (ws !== w2) ws.dispose();
        }
      }
    }
  } finally {
    xPlanes.dispose();
    yPlanes.dispose();
  }
}

function dispatch(engine: Engine, kernel: Conv2dKernel, g: Conv2dGeometry, d: Dispatch, rowStride: number): void {
  const [tileRows, tileCols] = tileOf(kernel);
  const maxGrid = engine.gpu.limits.maxComputeWorkgroupsPerDimension;
  const coutG = d.cout / g.groups;
  const colTiles = kernel === 'direct' ? coutG : Math.ceil(coutG / tileCols);
  const z = colTiles * g.groups;
  if (z > maxGrid) throw new RangeError(`conv2d: ${z} channel tiles exceed the ${maxGrid}-workgroup grid limit`);
  const tiles = Math.ceil(d.pixels / tileRows);
  engine.run(
    {
      file: `conv_${kernel}.wgsl`,
      entry: 'conv2d',
      dtypes: { x: d.x.dtype, weight: d.weight.dtype, bias: d.bias.dtype, y: d.y.dtype },
      overrides: {
        KH: g.kh, KW: g.kw, UP: g.upsample, ACT: activationCode('conv2d', d.act), HAS_BIAS: d.hasBias, ACCUMULATE: d.accumulate,
        ...(kernel === 'subgroup' ? { SG_ROWS } : {}),
      },
    },
    { x: d.x, weight: d.weight, bias: d.bias, y: d.y, partial: d.partial },
    {
      pixels: d.pixels, oh: g.oh, ow: g.ow, h: g.h, w: g.w, cin_g: d.cin, cout_g: coutG, col_tiles: colTiles,
      x_batch_stride: g.cin * g.h * g.w, y_batch_stride: g.cout * g.oh * g.ow, y_channel_offset: d.yChannelOffset,
      w_row_stride: rowStride, w_k_offset: d.cinOffset * g.kh * g.kw, w_row_offset: d.wRowOffset, bias_offset: d.biasOffset,
      stride_y: g.stride[0], stride_x: g.stride[1], pad_y: g.padding[0], pad_x: g.padding[1],
      dil_y: g.dilation[0], dil_x: g.dilation[1],
    },
    [Math.min(tiles, maxGrid), Math.ceil(tiles / maxGrid), z],
  );
}
