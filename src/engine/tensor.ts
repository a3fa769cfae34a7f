/**
 * A tensor is a shape and dtype over a range of a GPU buffer. Views (reshape, rows) share the
 * buffer without copying; the buffer goes back to the pool when the last view is disposed.
 * Tensors are always contiguous (row-major); strided layouts are produced by ops that copy.
 */
import { DTYPE_BYTES, f16ArrayToF32, type DType, type HostArray } from './dtype.js';
import type { Engine } from './engine.js';

/** A GPU buffer shared by a tensor and its views. */
export class Storage {
  private refs = 1;

  constructor(
    readonly buffer: GPUBuffer,
    /** Bytes of the tensor the storage was created for (the buffer may be larger). */
    readonly byteLength: number,
    private readonly onRelease: (buffer: GPUBuffer) => void,
  ) {}

  retain(): void {
    this.refs += 1;
  }

  release(): void {
    if (--this.refs === 0) this.onRelease(this.buffer);
  }
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function checkShape(shape: readonly number[], what = 'shape'): void {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`${what} ${formatShape(shape)} must be non-negative integers`);
  }
}

export class Tensor {
  readonly shape: readonly number[];
  private disposed = false;

  constructor(
    readonly engine: Engine,
    readonly storage: Storage,
    shape: readonly number[],
    readonly dtype: DType,
    /** Byte offset of element 0 inside storage.buffer. */
    readonly byteOffset = 0,
  ) {
    checkShape(shape);
    this.shape = Object.freeze([...shape]);
    engine.track(this);
  }

  get size(): number {
    return numel(this.shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  get buffer(): GPUBuffer {
    this.assertAlive();
    return this.storage.buffer;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** A view with another shape over the same elements; one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    const inferred = inferShape(shape, this.size, this.shape);
    return this.view(inferred, 0);
  }

  /** A view of `shape` starting `elementOffset` elements into this tensor. */
  view(shape: readonly number[], elementOffset = 0): Tensor {
    this.assertAlive();
    checkShape(shape, 'view shape');
    if (!Number.isInteger(elementOffset) || elementOffset < 0 || elementOffset + numel(shape) > this.size) {
      throw new RangeError(`view ${formatShape(shape)} at element ${elementOffset} exceeds tensor ${formatShape(this.shape)}`);
    }
    this.storage.retain();
    return new Tensor(this.engine, this.storage, shape, this.dtype, this.byteOffset + elementOffset * DTYPE_BYTES[this.dtype]);
  }

  /**
   * A view of `shape` at an absolute byte offset in the storage, possibly outside this tensor's own
   * range (within the buffer). For ops that must bind aligned windows around unaligned data.
   */
  window(byteOffset: number, shape: readonly number[]): Tensor {
    this.assertAlive();
    const end = byteOffset + numel(shape) * DTYPE_BYTES[this.dtype];
    if (byteOffset < 0 || end > this.storage.buffer.size) {
      throw new RangeError(`window at byte ${byteOffset} of ${formatShape(shape)} exceeds the ${this.storage.buffer.size}-byte buffer`);
    }
    this.storage.retain();
    return new Tensor(this.engine, this.storage, shape, this.dtype, byteOffset);
  }

  /** A view of rows [start, end) along the first dimension. */
  rows(start: number, end: number): Tensor {
    if (this.rank === 0) throw new RangeError('rows() needs a tensor of rank >= 1');
    const n = this.shape[0]!;
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
      throw new RangeError(`rows [${start}, ${end}) out of range for ${formatShape(this.shape)}`);
    }
    const inner = this.size / Math.max(n, 1);
    return this.view([end - start, ...this.shape.slice(1)], start * inner);
  }

  /** Reads the raw elements back (f16 as IEEE half bits in a Uint16Array). */
  read(): Promise<HostArray> {
    return this.engine.read(this);
  }

  /** Reads the elements back as numbers: f16 is widened to f32, integers stay integers. */
  async toArray(): Promise<Float32Array | Int32Array | Uint32Array> {
    const raw = await this.read();
    return raw instanceof Uint16Array ? f16ArrayToF32(raw) : raw;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
  }

  assertAlive(): void {
    if (this.disposed) throw new Error(`tensor ${formatShape(this.shape)} ${this.dtype} used after dispose()`);
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype})`;
  }
}

function inferShape(shape: readonly number[], size: number, from: readonly number[]): number[] {
  const out = [...shape];
  const holes = out.filter((d) => d === -1).length;
  if (holes > 1) throw new RangeError(`reshape ${formatShape(from)} -> ${formatShape(shape)}: at most one -1`);
  if (holes === 1) {
    const known = out.reduce((a, d) => (d === -1 ? a : a * d), 1);
    if (known === 0 || size % known !== 0) {
      throw new RangeError(`reshape ${formatShape(from)} -> ${formatShape(shape)}: ${size} elements do not fit`);
    }
    out[out.indexOf(-1)] = size / known;
  }
  checkShape(out, 'reshape target');
  if (numel(out) !== size) throw new RangeError(`reshape ${formatShape(from)} -> ${formatShape(shape)}: element counts differ`);
  return out;
}
