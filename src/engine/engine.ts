/**
 * The engine: one GPU device with its buffer pool, kernel cache and command recorder.
 * Ops (src/ops) are written against `Engine.run`; models against ops.
 */
import { StepCapture, type ReplayHook } from './capture.js';
import { DTYPE_BYTES, dtypeOfHostArray, f32ArrayToF16, hostArrayFor, type DType, type HostArray } from './dtype.js';
import { GpuDevice, type DeviceOptions, type KernelProfile } from './device.js';
import { KernelCache, type KernelSpec, type Params } from './pipeline.js';
import { BufferPool, roundUp, type MemoryStats } from './pool.js';
import { CommandRecorder, type BufferRange } from './recorder.js';
import { Storage, Tensor, checkShape, formatShape, numel } from './tensor.js';

export interface EngineOptions extends DeviceOptions {
  /**
   * Largest storage binding the ops may use, in bytes (at most the device's
   * maxStorageBufferBindingSize). Larger tensors are split across dispatches; tests set it small.
   */
  maxBindingBytes?: number;
  /** Dispatches recorded before a submit (default 16). */
  dispatchesPerSubmit?: number;
  /** Freed buffer bytes kept for reuse (default 1 GiB). */
  maxPooledBytes?: number;
}

export interface TensorOptions {
  /**
   * Long-lived (weights, caches): an exact-size buffer outside the pool's buckets, and never
   * disposed by an enclosing scope(); the owner disposes it.
   */
  persistent?: boolean;
}

/** Host data accepted by Engine.tensor: typed arrays, or plain numbers converted to `dtype`. */
export type HostData = HostArray | ArrayLike<number>;

const UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024;

export class Engine {
  readonly pool: BufferPool;
  readonly kernels: KernelCache;
  readonly recorder: CommandRecorder;
  readonly maxBindingBytes: number;
  /** Byte alignment of a storage binding's offset. */
  readonly storageAlign: number;
  private readonly maxGrid: number;
  private disposed = false;
  /** Tensors created inside each open scope() (innermost last). */
  private readonly scopes: Set<Tensor>[] = [];
  private readonly kept = new Set<Tensor>();
  private readonly constants = new Map<string, Tensor>();

  private constructor(
    readonly gpu: GpuDevice,
    options: EngineOptions,
  ) {
    const deviceMax = gpu.limits.maxStorageBufferBindingSize;
    const requested = options.maxBindingBytes ?? deviceMax;
    if (!(requested >= 1024)) throw new RangeError(`maxBindingBytes must be at least 1024, got ${requested}`);
    this.maxBindingBytes = Math.min(requested, deviceMax) & ~3;
    this.storageAlign = gpu.limits.minStorageBufferOffsetAlignment;
    // Read once: a device limit is a native getter, and grid() runs on every dispatch.
    this.maxGrid = gpu.limits.maxComputeWorkgroupsPerDimension;
    this.pool = new BufferPool(gpu.device, gpu.limits.maxBufferSize, options.maxPooledBytes, (buffers) => {
      this.recorder.flush();
      this.recorder.forget(buffers);
    });
    this.kernels = new KernelCache(gpu);
    this.recorder = new CommandRecorder(gpu, options.dispatchesPerSubmit ?? 16);
  }

  static async create(options: EngineOptions = {}): Promise<Engine> {
    return new Engine(await GpuDevice.acquire(options), options);
  }

  get profile(): KernelProfile {
    return this.gpu.profile;
  }

  has(feature: 'shader-f16' | 'subgroups' | 'timestamp-query'): boolean {
    return this.gpu.features.has(feature);
  }

  /** An uninitialised tensor. */
  empty(shape: readonly number[], dtype: DType = 'f32', options: TensorOptions = {}): Tensor {
    this.assertAlive();
    checkShape(shape);
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    const buffer = this.pool.acquire(bytes, options.persistent);
    const t = new Tensor(this, new Storage(buffer, bytes, (b) => this.pool.release(b)), shape, dtype);
    if (options.persistent) this.scopes[this.scopes.length - 1]?.delete(t); // long-lived: no scope() disposes it
    return t;
  }

  /** Uploads host data. Plain arrays are converted to `dtype` (f32 by default; f16 is rounded to nearest even). */
  tensor(data: HostData, shape: readonly number[], dtype?: DType, options: TensorOptions = {}): Tensor {
    checkShape(shape);
    const isTyped = ArrayBuffer.isView(data);
    const type = dtype ?? (isTyped ? dtypeOfHostArray(data as ArrayBufferView) : 'f32');
    const host = toHostArray(data, type);
    if (host.length !== numel(shape)) {
      throw new RangeError(`tensor ${formatShape(shape)} needs ${numel(shape)} elements, data has ${host.length}`);
    }
    const t = this.empty(shape, type, options);
    this.write(t, host);
    return t;
  }

  /**
   * A small constant tensor made once per key and kept until dispose(), shared by every model on
   * the engine: placeholders bound where a kernel's optional input is absent, zeroed work counters.
   */
  constant(key: string, data: HostArray): Tensor {
    let t = this.constants.get(key);
    if (!t || t.isDisposed) {
      t = this.tensor(data, [data.length], undefined, { persistent: true });
      this.constants.set(key, t);
    }
    return t;
  }

  /** Overwrites a tensor's elements from the host. */
  write(t: Tensor, data: HostArray): void {
    t.assertAlive();
    if (dtypeOfHostArray(data) !== t.dtype || data.length !== t.size) {
      throw new RangeError(`write: ${data.constructor.name}(${data.length}) does not match ${t}`);
    }
    // A replay would not repeat the upload.
    this.recorder.capture?.spoil(`an upload into ${t} while capturing`);
    // Recorded work may still read a buffer the pool just handed out again; writeBuffer would
    // jump ahead of it in the queue, so submit that work first.
    this.recorder.flush();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at < bytes.byteLength; at += UPLOAD_CHUNK_BYTES) {
      const piece = bytes.subarray(at, Math.min(at + UPLOAD_CHUNK_BYTES, bytes.byteLength));
      const dst = t.byteOffset + at;
      if (piece.byteLength % 4 === 0 && dst % 4 === 0) {
        this.gpu.queue.writeBuffer(t.buffer, dst, piece);
      } else {
        this.writeUnaligned(t, dst, piece); // an f16 tensor of odd length, or a view at an odd element
      }
    }
  }

  /** Runs a kernel: binds tensors by binding name, packs params by uniform member name. */
  run(spec: KernelSpec, tensors: Record<string, Tensor>, params: Params, workgroups: number | [number, number?, number?]): void {
    this.assertAlive();
    const kernel = this.kernels.get(spec);
    const buffers = new Map<number, BufferRange>();
    const writes: { name: string; range: BufferRange }[] = [];
    const capture = this.recorder.capture;
    for (const b of kernel.bindings) {
      if (b.access === 'uniform') continue;
      const t = tensors[b.name];
      if (!t) throw new Error(`${kernel.label}: no tensor for binding '${b.name}'`);
      capture?.retain(t.storage); // replays bind it again: keep it from the pool
      const range = this.bindingRange(t, () => `${kernel.label} '${b.name}'`);
      buffers.set(b.binding, range);
      if (b.access === 'read_write') writes.push({ name: b.name, range });
    }
    // Every binding found its tensor, so any extra name is unknown (named only when thrown).
    if (Object.keys(tensors).length !== buffers.size) {
      const unknown = Object.keys(tensors).filter((name) => !kernel.bindings.some((b) => b.name === name && b.access !== 'uniform'));
      throw new Error(`${kernel.label}: unknown tensor binding(s) ${unknown.join(', ')}`);
    }
    for (const w of writes) {
      for (const b of kernel.bindings) {
        const other = buffers.get(b.binding);
        if (b.name === w.name || !other || other.buffer !== w.range.buffer) continue;
        if (other.offset < w.range.offset + w.range.size && w.range.offset < other.offset + other.size) {
          throw new Error(`${kernel.label}: output '${w.name}' overlaps input '${b.name}' in the same buffer; write to a new tensor`);
        }
      }
    }
    this.recorder.dispatch(kernel, buffers, params, this.grid(workgroups, kernel.label));
  }

  /**
   * Runs `fn` while logging the commands it records, for replay without running it again (see
   * src/engine/capture.ts). The commands are recorded as usual too. Captures do not nest.
   */
  capture<T>(fn: () => T): { result: T; capture: StepCapture } {
    if (this.recorder.capture) throw new Error('capture: already capturing (captures do not nest)');
    const capture = new StepCapture(this.recorder);
    this.recorder.capture = capture;
    try {
      return { result: fn(), capture };
    } catch (err) {
      capture.dispose();
      throw err;
    } finally {
      this.recorder.capture = null;
    }
  }

  /** True inside capture(): ops whose dispatches depend on host state register onReplay hooks. */
  get capturing(): boolean {
    return this.recorder.capture !== null;
  }

  /** While capturing: how the dispatch just recorded changes at each replay (ignored otherwise). */
  onReplay(hook: ReplayHook): void {
    this.recorder.capture?.addHook(hook);
  }

  /** Records a buffer copy between tensors' ranges (both 4-byte aligned). */
  copyBytes(src: Tensor, srcByte: number, dst: Tensor, dstByte: number, bytes: number): void {
    const s = src.byteOffset + srcByte;
    const d = dst.byteOffset + dstByte;
    if (s % 4 || d % 4 || bytes % 4) throw new RangeError(`copyBytes needs 4-byte aligned offsets and size (got ${s}, ${d}, ${bytes})`);
    this.recorder.capture?.retain(src.storage);
    this.recorder.capture?.retain(dst.storage);
    this.recorder.copy(src.buffer, s, dst.buffer, d, bytes);
  }

  /**
   * Moves a tensor into an exact-size buffer of its own that no scope() frees, as a weight's, and
   * disposes the original: for what a module computes once from scoped operations and keeps until
   * its dispose() (folded weights, cached tables).
   */
  persist(t: Tensor): Tensor {
    const kept = this.empty(t.shape, t.dtype, { persistent: true });
    this.copyBytes(t, 0, kept, 0, Math.ceil(t.byteLength / 4) * 4);
    t.dispose();
    return kept;
  }

  /**
   * Runs `fn` and disposes every tensor created inside it (views included) except those it returns
   * (a tensor, or arrays, maps, sets and plain objects of them) and those passed to keep(); those move to the
   * enclosing scope. Keeps model code free of manual dispose() calls for intermediates.
   */
  scope<T>(fn: () => T): T {
    const created = new Set<Tensor>();
    this.scopes.push(created);
    let result: T;
    try {
      result = fn();
      if (result instanceof Promise) throw new TypeError('scope() takes a synchronous function; await outside it');
    } catch (err) {
      this.scopes.pop();
      for (const t of [...created].reverse()) t.dispose();
      throw err;
    }
    this.scopes.pop();
    const survivors = new Set<Tensor>();
    collectTensors(result, survivors);
    // Newest first, like a stack: with the pool's last-in-first-out reuse, the next identical step
    // receives the same buffers in the same order.
    for (const t of [...created].reverse()) {
      if (survivors.has(t) || this.kept.has(t)) {
        this.kept.delete(t);
        this.scopes[this.scopes.length - 1]?.add(t);
      } else {
        t.dispose();
      }
    }
    return result;
  }

  /** Lets a tensor created inside scope() outlive it. */
  keep<T extends Tensor>(t: T): T {
    this.kept.add(t);
    return t;
  }

  /** Called by every Tensor constructor: registers the tensor with the innermost scope. */
  track(t: Tensor): void {
    this.scopes[this.scopes.length - 1]?.add(t);
  }

  /** Reads a tensor back to the host. Submits pending work and surfaces any GPU error first. */
  async read(t: Tensor): Promise<HostArray> {
    t.assertAlive();
    this.recorder.capture?.spoil(`a read-back of ${t} while capturing`);
    const start = t.byteOffset & ~3;
    const size = roundUp(t.byteOffset + t.byteLength, 4) - start;
    const staging = this.gpu.device.createBuffer({ size: Math.max(size, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      if (size) this.recorder.copy(t.buffer, start, staging, 0, size);
      this.recorder.flush();
      await this.kernels.settled();
      this.gpu.check(`reading ${t}`);
      await this.gpu.wait(staging.mapAsync(GPUMapMode.READ));
      this.gpu.check(`reading ${t}`);
      const copy = staging.getMappedRange().slice(t.byteOffset - start, t.byteOffset - start + t.byteLength);
      staging.unmap();
      return hostArrayFor(t.dtype, copy);
    } catch (err) {
      this.gpu.check(`reading ${t}`); // prefer the GPU's own explanation (validation error, device loss)
      throw err;
    } finally {
      staging.destroy();
    }
  }

  /**
   * Runs `fn` with its dispatches kept in one submission (the periodic submits are held back; a
   * full uniform arena still forces one): a decoding step is submitted once. The caller submits,
   * by flush() or a read.
   */
  batch<T>(fn: () => T): T {
    return this.recorder.holding(fn);
  }

  /** Submits recorded work now (the GPU starts on it while the CPU goes on). */
  flush(): void {
    this.recorder.flush();
  }

  /** Submits pending work, waits for the GPU to finish it, and throws any GPU error. */
  async sync(): Promise<void> {
    this.recorder.flush();
    await this.kernels.settled();
    await this.gpu.wait(this.gpu.queue.onSubmittedWorkDone());
    this.gpu.check('sync');
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  memory(): MemoryStats {
    return this.pool.memory();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.recorder.destroy();
    this.pool.trim();
    this.gpu.destroy();
  }

  /**
   * The buffer range a tensor binds as; checks alignment and the binding size limit. `what` names
   * the binding in errors (a function, so the name is built only when one is thrown).
   */
  bindingRange(t: Tensor, what: () => string): BufferRange {
    t.assertAlive();
    if (t.byteOffset % this.storageAlign) {
      throw new RangeError(`${what()}: ${t} starts at byte ${t.byteOffset}, not a multiple of ${this.storageAlign}; make it contiguous first`);
    }
    const size = Math.max(roundUp(t.byteLength, 4), 4);
    if (size > this.maxBindingBytes) {
      throw new RangeError(`${what()}: ${t} is ${t.byteLength} bytes, over the ${this.maxBindingBytes}-byte binding limit`);
    }
    return { buffer: t.buffer, offset: t.byteOffset, size };
  }

  private grid(workgroups: number | [number, number?, number?], label: string): [number, number, number] {
    const max = this.maxGrid;
    let [x, y, z] = typeof workgroups === 'number' ? [workgroups, 1, 1] : [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    // A long 1-D grid folds into 2-D; kernels linearise with num_workgroups and guard the tail.
    if (x > max && y === 1 && z === 1) [x, y] = [max, Math.ceil(x / max)];
    if (x > max || y > max || z > max) throw new RangeError(`${label}: grid ${x}x${y}x${z} exceeds ${max} workgroups per dimension`);
    return [x, y, z];
  }

  private writeUnaligned(t: Tensor, dst: number, piece: Uint8Array): void {
    // writeBuffer wants whole 4-byte words. Padding the last word is safe only where it holds no
    // other tensor's element: at the end of the storage. Reading the neighbour back first would
    // need an async round trip, so views that share a word with another view are refused.
    const end = dst + piece.byteLength;
    if (dst % 4 || (end % 4 && end !== t.storage.byteLength)) {
      throw new RangeError(`write: ${t} shares a 4-byte word with a neighbouring element (bytes ${dst}..${end}); write the whole tensor`);
    }
    const padded = new Uint8Array(roundUp(piece.byteLength, 4));
    padded.set(piece, 0);
    this.gpu.queue.writeBuffer(t.buffer, dst, padded);
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error('engine used after dispose()');
  }
}

function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) into.add(value);
  else if (depth < 4 && (Array.isArray(value) || value instanceof Set)) value.forEach((v) => collectTensors(v, into, depth + 1));
  else if (depth < 4 && value instanceof Map) value.forEach((v) => collectTensors(v, into, depth + 1));
  else if (depth < 4 && value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    Object.values(value).forEach((v) => collectTensors(v, into, depth + 1));
  }
}

function toHostArray(data: HostData, dtype: DType): HostArray {
  if (ArrayBuffer.isView(data) && dtypeOfHostArray(data as ArrayBufferView) === dtype) return data as HostArray;
  const values = data as ArrayLike<number>;
  switch (dtype) {
    case 'f32': return Float32Array.from(values);
    case 'f16': return f32ArrayToF16(values);
    case 'i32': return Int32Array.from(values);
    case 'u32': return Uint32Array.from(values);
  }
}
