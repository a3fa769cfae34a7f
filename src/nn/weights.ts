/**
 * A model's weights on the GPU, by checkpoint name. Modules take what they need with get(), which
 * checks shapes, and may fuse projections that run on the same input into one matrix (fewer,
 * larger dispatches: each has a fixed cost, see docs/performance.md).
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import type { Checkpoint, Progress, StoragePolicy } from '../io/checkpoint.js';
import { cast, concat } from '../ops/copy.js';

export interface LoadWeightsOptions {
  /** Only tensors whose names start with one of these (default: all). */
  prefixes?: readonly string[];
  /** GPU dtypes by tensor class (default: f16 matrices where the adapter can, f32 vectors). */
  policy?: StoragePolicy;
  onProgress?: (p: Progress) => void;
}

export class Weights {
  private readonly used = new Set<string>();

  private constructor(
    readonly engine: Engine,
    /** Where the weights came from, for messages. */
    readonly source: string,
    private readonly tensors: Map<string, Tensor>,
  ) {}

  static async load(engine: Engine, checkpoint: Checkpoint, options: LoadWeightsOptions = {}): Promise<Weights> {
    const names = checkpoint.names().filter((n) => !options.prefixes || options.prefixes.some((p) => n.startsWith(p)));
    const tensors = await checkpoint.uploadAll(engine, { names, policy: options.policy, onProgress: options.onProgress });
    return new Weights(engine, checkpoint.path, tensors);
  }

  /** Weights already on the GPU (tests, converted formats). */
  static fromTensors(engine: Engine, source: string, tensors: Map<string, Tensor>): Weights {
    return new Weights(engine, source, tensors);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor `name`, checked against `shape`. */
  get(name: string, shape?: readonly number[]): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.source}: missing tensor '${name}'`);
    if (shape && (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new Error(`${this.source}: tensor '${name}' is ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
    }
    this.used.add(name);
    return t;
  }

  /**
   * Rows of several weights stacked into one persistent matrix, e.g. q|k|v projections or a
   * SwiGLU's gate|up. The parts are freed; the fused matrix is held under the names joined by '+',
   * so dispose() frees it with the rest. All must share the dtype and trailing dimensions.
   */
  fuseRows(names: readonly string[], shapes: readonly (readonly number[])[], dtype?: DType): Tensor {
    const parts = names.map((n, i) => this.get(n, shapes[i]));
    const type = dtype ?? parts[0]!.dtype;
    const converted = parts.map((t) => (t.dtype === type ? t : cast(t, type)));
    const joined = concat(converted, 0);
    // concat's output comes from the pool; weights live in exact-size buffers of their own.
    const fused = this.engine.persist(joined);
    converted.forEach((t, i) => t !== parts[i] && t.dispose());
    for (const n of names) this.release(n);
    const name = names.join('+');
    this.tensors.get(name)?.dispose();
    this.tensors.set(name, fused);
    this.used.add(name);
    return fused;
  }

  /** Names held, those starting with `prefix` (default all). */
  names(prefix = ''): string[] {
    return [...this.tensors.keys()].filter((n) => n.startsWith(prefix));
  }

  /** Frees one weight (after fusing it, or when a module does not need it). */
  release(name: string): void {
    this.tensors.get(name)?.dispose();
    this.tensors.delete(name);
  }

  /** Names never asked for: a checkpoint with weights the model does not use, or a misnamed module. */
  unused(prefix = ''): string[] {
    return [...this.tensors.keys()].filter((n) => n.startsWith(prefix) && !this.used.has(n));
  }

  get byteLength(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.byteLength;
    return n;
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}
