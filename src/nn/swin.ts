/**
 * The Swin Transformer's maths (Liu et al. 2021), free of any checkpoint's names: patch embedding,
 * blocks of (shifted) window attention with a relative position bias, patch merging, and the stage
 * loop. Loaders build the modules from their own names: Hugging Face's SwinBackbone
 * (src/decoders/gdino/swin.ts: separate query/key/value) or Microsoft's code (one fused `qkv`,
 * split with Linear.rows()).
 *
 * Tokens are [H·W, C] rows in row-major map order (batch 1). Every re-arrangement of a block
 * (zero padding to whole windows, the cyclic shift, the cut into windows, and back, cropped) is one
 * row gather with indices computed on the host (ops.embedding; an index past the end gives a zero
 * row, which is the padding). All windows go through one attention call as its batch, with the
 * relative position bias [heads, w², w²] and, in shifted blocks, the −100 mask [windows, 1, w², w²]
 * as the kernel's additive terms. The output projection runs after the gather back, on the map's
 * own tokens only, with the residual fused.
 */
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { attention, embedding, pad, permute } from '../ops/index.js';
import type { Conv2d } from './conv.js';
import type { Linear } from './linear.js';
import type { LayerNorm } from './norm.js';

/** Marks a padding position in a gather: embedding() gives a zero row for any index past the table. */
const PAD = 0xffffffff;
/** Added to the scores of keys from another region of the rolled map (Swin's shifted-window mask). */
const MASKED = -100;

/** A block's window and shift over a map of size h x w. */
export interface WindowGeometry {
  window: number;
  shift: number;
}

/**
 * The window a block uses on an h x w map. `shrink` is Hugging Face's rule (transformers 4.34,
 * `set_shift_and_window_size`, applied per call): a map whose smaller side is within the window gets
 * a window of that side and no shift. Without it (Microsoft's detection code) the window stays and
 * the map is padded to it.
 */
export function windowGeometry(h: number, w: number, window: number, shift: number, shrink: boolean): WindowGeometry {
  if (shrink && Math.min(h, w) <= window) return { window: Math.min(h, w), shift: 0 };
  return { window, shift };
}

/**
 * Where each window token comes from, and where each map token went: the host side of one
 * geometry on one map size, shared by the blocks that use it; dispose() frees its tensors.
 */
export class WindowPlan {
  readonly paddedH: number;
  readonly paddedW: number;
  readonly windows: number;
  /** [windows·w²] u32: the map token of each window token (PAD for padding). */
  readonly partition: Tensor;
  /** [h·w] u32: the window token of each map token. */
  readonly reverse: Tensor;
  /** [windows, 1, w², w²] f32 of 0 and −100, in shifted plans only. */
  readonly mask?: Tensor;

  constructor(engine: Engine, readonly h: number, readonly w: number, readonly geometry: WindowGeometry) {
    const { window: n, shift } = geometry;
    const hp = Math.ceil(h / n) * n;
    const wp = Math.ceil(w / n) * n;
    const perRow = wp / n;
    [this.paddedH, this.paddedW, this.windows] = [hp, wp, (hp / n) * perRow];
    // Window token (wy, wx, i, j) sits at (wy·n + i, wx·n + j) of the rolled padded map, which holds
    // the padded map's ((y + shift) mod hp, (x + shift) mod wp): torch.roll by −shift.
    const partition = new Uint32Array(this.windows * n * n);
    const reverse = new Uint32Array(h * w);
    for (let y = 0; y < hp; y++) {
      const sy = (y + shift) % hp;
      for (let x = 0; x < wp; x++) {
        const sx = (x + shift) % wp;
        const token = ((Math.floor(y / n) * perRow + Math.floor(x / n)) * n + (y % n)) * n + (x % n);
        if (sy < h && sx < w) {
          partition[token] = sy * w + sx;
          reverse[sy * w + sx] = token;
        } else {
          partition[token] = PAD;
        }
      }
    }
    this.partition = engine.tensor(partition, [partition.length], 'u32');
    this.reverse = engine.tensor(reverse, [reverse.length], 'u32');
    if (shift > 0) this.mask = engine.tensor(shiftMask(hp, wp, n, shift), [this.windows, 1, n * n, n * n], 'f32');
  }

  dispose(): void {
    [this.partition, this.reverse, this.mask].forEach((t) => t?.dispose());
  }
}

/**
 * The rolled map is cut into regions by the rows and columns [0, size − window), [size − window,
 * size − shift), [size − shift, size); a query and a key from different regions were not
 * neighbours before the roll, and get −100. Only the last row and column of windows straddle regions.
 */
function shiftMask(hp: number, wp: number, n: number, shift: number): Float32Array {
  const region = (v: number, size: number) => (v < size - n ? 0 : v < size - shift ? 1 : 2);
  const perRow = wp / n;
  const rows = hp / n;
  const area = n * n;
  const mask = new Float32Array(rows * perRow * area * area);
  const label = new Int32Array(area);
  for (let wy = 0; wy < rows; wy++) {
    for (let wx = 0; wx < perRow; wx++) {
      if (wy < rows - 1 && wx < perRow - 1) continue;
      for (let t = 0; t < area; t++) label[t] = 3 * region(wy * n + Math.floor(t / n), hp) + region(wx * n + (t % n), wp);
      const base = (wy * perRow + wx) * area * area;
      for (let a = 0; a < area; a++) {
        for (let b = 0; b < area; b++) if (label[a] !== label[b]) mask[base + a * area + b] = MASKED;
      }
    }
  }
  return mask;
}

/**
 * Rows of the relative position bias table [(2W − 1)², heads] for each (query, key) of an n x n
 * window: the table row of offset (dy, dx) is (dy + W − 1)·(2W − 1) + (dx + W − 1), W being the
 * window the table was trained for (n = W is Hugging Face's relative_position_index; a smaller,
 * shrunk window reads the same offsets).
 */
export function relativePositionIndex(n: number, tableWindow: number): Uint32Array {
  const area = n * n;
  const side = 2 * tableWindow - 1;
  const index = new Uint32Array(area * area);
  for (let a = 0; a < area; a++) {
    for (let b = 0; b < area; b++) {
      const dy = Math.floor(a / n) - Math.floor(b / n);
      const dx = (a % n) - (b % n);
      index[a * area + b] = (dy + tableWindow - 1) * side + (dx + tableWindow - 1);
    }
  }
  return index;
}

/** Window multi-head self-attention with a learned relative position bias (Swin's W-MSA / SW-MSA). */
export class WindowAttention {
  /** [heads, n², n²] f32 per window size n, made on first use and kept (persistent) until dispose(). */
  private readonly biases = new Map<number, Tensor>();

  constructor(
    readonly query: Linear,
    readonly key: Linear,
    readonly value: Linear,
    /** Applied by the block after the tokens are back in map order (SwinBlock.forward). */
    readonly output: Linear,
    /** [(2W − 1)², heads] */
    readonly table: Tensor,
    readonly heads: number,
    /** W: the window the table was trained for. */
    readonly tableWindow: number,
  ) {
    const side = 2 * tableWindow - 1;
    if (table.rank !== 2 || table.shape[0] !== side * side || table.shape[1] !== heads) {
      throw new RangeError(`WindowAttention: relative position bias table ${formatShape(table.shape)} must be [${side * side}, ${heads}] for window ${tableWindow}`);
    }
  }

  /** The bias term of an n x n window, [heads, n², n²]. */
  bias(n: number): Tensor {
    let b = this.biases.get(n);
    if (!b) {
      const engine = this.table.engine;
      const area = n * n;
      b = engine.persist(engine.scope(() => permute(embedding(this.table, relativePositionIndex(n, this.tableWindow), 'f32').reshape([area, area, this.heads]), [2, 0, 1])));
      this.biases.set(n, b);
    }
    return b;
  }

  /** [windows·n², C] window tokens -> [windows·n², C] attended heads, before the output projection. */
  attend(tokens: Tensor, plan: WindowPlan): Tensor {
    const n2 = plan.geometry.window ** 2;
    const width = tokens.shape[1]!;
    const split = (t: Tensor) => t.reshape([plan.windows, n2, this.heads, width / this.heads]);
    const heads = attention(split(this.query.forward(tokens)), split(this.key.forward(tokens)), split(this.value.forward(tokens)), {
      layout: 'blhd',
      bias: this.bias(plan.geometry.window),
      mask: plan.mask,
    });
    return heads.reshape([plan.windows * n2, width]);
  }

  dispose(): void {
    this.biases.forEach((b) => b.dispose());
    this.biases.clear();
  }
}

/** One Swin block: x + W-MSA(LN(x)), then x + MLP(LN(x)) with a GELU (HF's SwinLayer). */
export class SwinBlock {
  constructor(
    readonly normBefore: LayerNorm,
    readonly attention: WindowAttention,
    readonly normAfter: LayerNorm,
    /** C -> mlp_ratio·C, the GELU fused. */
    readonly fc1: Linear,
    readonly fc2: Linear,
  ) {}

  /** [h·w, C] -> [h·w, C]; `plan` is this block's geometry on the map. Call inside a scope. */
  forward(x: Tensor, plan: WindowPlan): Tensor {
    const windows = embedding(this.normBefore.forward(x), plan.partition); // [windows·n², C], padding zero
    const attended = embedding(this.attention.attend(windows, plan), plan.reverse); // [h·w, C] in map order
    const h = this.attention.output.forward(attended, { residual: x });
    return this.fc2.forward(this.fc1.forward(this.normAfter.forward(h)), { residual: h });
  }
}

/** 2x2 neighbours concatenated ((0,0), (1,0), (0,1), (1,1) as (row, column)), LayerNorm(4C), Linear 4C -> 2C. */
export class PatchMerging {
  constructor(
    readonly norm: LayerNorm,
    /** [2C, 4C], no bias. */
    readonly reduction: Linear,
  ) {}

  /** [h·w, C] -> [ceil(h/2)·ceil(w/2), 2C]; odd sides are padded with zeros. Call inside a scope. */
  forward(x: Tensor, h: number, w: number): Tensor {
    const [h2, w2] = [Math.ceil(h / 2), Math.ceil(w / 2)];
    const index = new Uint32Array(h2 * w2 * 4);
    for (let y = 0; y < h2; y++) {
      for (let xx = 0; xx < w2; xx++) {
        [[0, 0], [1, 0], [0, 1], [1, 1]].forEach(([dy, dx], k) => {
          const [sy, sx] = [2 * y + dy!, 2 * xx + dx!];
          index[(y * w2 + xx) * 4 + k] = sy < h && sx < w ? sy * w + sx : PAD;
        });
      }
    }
    const ids = x.engine.tensor(index, [index.length], 'u32');
    const merged = embedding(x, ids).reshape([h2 * w2, 4 * x.shape[1]!]);
    return this.reduction.forward(this.norm.forward(merged));
  }
}

export class SwinStage {
  constructor(
    readonly blocks: readonly SwinBlock[],
    readonly downsample?: PatchMerging,
  ) {}
}

/** A stage's output map before merging: [h·w, C] tokens. */
export interface StageTokens {
  tokens: Tensor;
  h: number;
  w: number;
}

export interface SwinOptions {
  windowSize: number;
  patchSize: number;
  /** Hugging Face's window rule (windowGeometry). */
  shrinkWindow: boolean;
}

/** Patch embedding (conv + LayerNorm) and the stages: the maths of every Swin backbone. */
export class SwinTransformer {
  constructor(
    /** kernel = stride = patch size. */
    readonly patchEmbed: Conv2d,
    readonly patchNorm: LayerNorm,
    readonly stages: readonly SwinStage[],
    readonly options: SwinOptions,
  ) {}

  /**
   * pixels [1, channels, H, W] -> each stage's tokens before merging. The input is zero-padded
   * right and bottom to whole patches. Call inside a scope.
   */
  forward(pixels: Tensor): StageTokens[] {
    const { patchSize: p, windowSize, shrinkWindow } = this.options;
    const engine = pixels.engine;
    const [H, W] = pixels.shape.slice(2) as [number, number];
    let [h, w] = [Math.ceil(H / p), Math.ceil(W / p)];
    let x = engine.scope(() => {
      const padded = H % p || W % p ? pad(pixels, [0, (p - (W % p)) % p, 0, (p - (H % p)) % p]) : pixels;
      const patches = this.patchEmbed.forward(padded); // [1, C, h, w]
      return this.patchNorm.forward(permute(patches.reshape([patches.shape[1]!, h * w]), [1, 0])); // [h·w, C]
    });
    // Each step in a scope of its own, and the previous tokens freed unless a stage returns them:
    // a forward then holds a few maps at a time rather than all of its intermediates.
    const out: StageTokens[] = [];
    const advance = (step: () => Tensor) => {
      const next = engine.scope(step);
      if (!out.some((o) => o.tokens === x)) x.dispose();
      x = next;
    };
    for (const stage of this.stages) {
      const plans = new Map<string, WindowPlan>();
      for (const [j, block] of stage.blocks.entries()) {
        // Odd blocks shift by half a window; the block's plan may drop it (windowGeometry).
        const geometry = windowGeometry(h, w, windowSize, j % 2 ? Math.floor(windowSize / 2) : 0, shrinkWindow);
        const key = `${geometry.window}:${geometry.shift}`;
        const plan = plans.get(key) ?? new WindowPlan(engine, h, w, geometry);
        plans.set(key, plan);
        advance(() => block.forward(x, plan));
      }
      out.push({ tokens: x, h, w });
      if (stage.downsample) {
        const merge = stage.downsample;
        advance(() => merge.forward(x, h, w));
        [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
      }
      plans.forEach((plan) => plan.dispose());
    }
    return out;
  }

  /**
   * What a backbone returns: pixels [1, channels, H, W] f32 -> the `stages` (0-based) each normed
   * by its `norms` entry, [1, C, h, w] f32. `op` names the backbone in errors.
   */
  outputs(op: string, pixels: Tensor, stages: readonly number[], norms: readonly LayerNorm[]): Tensor[] {
    const channels = this.patchEmbed.weight.shape[1]!;
    if (pixels.rank !== 4 || pixels.shape[0] !== 1 || pixels.shape[1] !== channels || pixels.shape[2] === 0 || pixels.shape[3] === 0) {
      throw new RangeError(`${op}: pixels ${formatShape(pixels.shape)} must be [1, ${channels}, H, W] with H, W >= 1`);
    }
    if (pixels.dtype !== 'f32') throw new TypeError(`${op}: pixels ${formatShape(pixels.shape)} are ${pixels.dtype}; expected f32`);
    return pixels.engine.scope(() => {
      const maps = this.forward(pixels);
      return stages.map((s, k) => {
        const { tokens, h, w } = maps[s]!;
        return tokensToNCHW(norms[k]!.forward(tokens), h, w);
      });
    });
  }

  dispose(): void {
    this.stages.forEach((s) => s.blocks.forEach((b) => b.attention.dispose()));
  }
}

/**
 * Stage i is embedDim·2^i wide; the attention kernels need head dims that are multiples of 4.
 * `where` and `firstStage` (HF counts stages from 1, Microsoft's code from 0) shape the message.
 */
export function checkSwinHeads(where: string, embedDim: number, numHeads: readonly number[], firstStage: 0 | 1): void {
  numHeads.forEach((heads, i) => {
    const width = embedDim * 2 ** i;
    const headDim = width / heads;
    if (!Number.isInteger(headDim) || headDim % 4) {
      throw new RangeError(`${where}: stage ${i + firstStage} has head dim ${width} / ${heads} = ${headDim}; the attention kernels need a multiple of 4`);
    }
  });
}

/** [h·w, C] tokens -> [1, C, h, w]. */
export function tokensToNCHW(tokens: Tensor, h: number, w: number): Tensor {
  const C = tokens.shape[1]!;
  return permute(tokens, [1, 0]).reshape([1, C, h, w]);
}
