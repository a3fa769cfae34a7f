/**
 * GPU buffer pool with size buckets, and memory accounting.
 *
 * Activations are allocated and freed at a high rate during a forward pass; creating GPU buffers
 * is slow, so freed buffers are kept in per-bucket free lists and handed out again. Buckets are the
 * power of two at or above the size, split in quarters (waste at most 25%). Long-lived tensors
 * (weights) bypass buckets and get exact sizes. Reusing a buffer right after it is freed is safe
 * because every GPU access goes through one queue in recording order (see CommandRecorder).
 */
import './webgpu.js';

export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface MemoryStats {
  /** Bytes held by live tensors' buffers. */
  liveBytes: number;
  /** Highest liveBytes since the engine started or resetPeak(). */
  peakBytes: number;
  /** Bytes in freed buffers kept for reuse. */
  pooledBytes: number;
  liveBuffers: number;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private stats: MemoryStats = { liveBytes: 0, peakBytes: 0, pooledBytes: 0, liveBuffers: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    /** Freed bytes kept for reuse beyond which buffers are destroyed instead. */
    private readonly maxPooledBytes = 1 << 30,
    /**
     * Called before buffers are destroyed: work already recorded may still use them, and WebGPU
     * refuses a submit that references a destroyed buffer, so the engine submits that work first
     * (and drops cached bind groups that name them).
     */
    private readonly beforeDestroy: (buffers: GPUBuffer[]) => void = () => {},
  ) {}

  /** Allocates at least `bytes`. `exact` skips bucketing, for long-lived tensors. */
  acquire(bytes: number, exact = false): GPUBuffer {
    const size = exact ? roundUp(Math.max(bytes, 4), 16) : bucketSize(bytes);
    if (size > this.maxBufferSize) {
      throw new RangeError(`buffer of ${bytes} bytes exceeds the device's maxBufferSize of ${this.maxBufferSize} bytes`);
    }
    // Last freed, first reused: scope() frees in reverse creation order, so a step that allocates
    // the same sequence as the previous one gets the same buffers back in the same order, and the
    // recorder's cached bind groups keep matching.
    let buffer = this.free.get(size)?.pop();
    if (buffer) {
      this.stats.pooledBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage: STORAGE_USAGE });
    }
    this.stats.liveBytes += size;
    this.stats.liveBuffers += 1;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.stats.liveBytes -= size;
    this.stats.liveBuffers -= 1;
    if (this.stats.pooledBytes + size > this.maxPooledBytes || size !== bucketSize(size)) {
      this.beforeDestroy([buffer]);
      buffer.destroy();
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.stats.pooledBytes += size;
  }

  /** Destroys every pooled (free) buffer. */
  trim(): void {
    const all = [...this.free.values()].flat();
    if (all.length) this.beforeDestroy(all);
    for (const b of all) b.destroy();
    this.free.clear();
    this.stats.pooledBytes = 0;
  }

  memory(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.liveBytes;
  }
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/** Smallest bucket >= bytes: 256 B minimum, then powers of two in quarter steps. */
export function bucketSize(bytes: number): number {
  if (bytes <= 256) return 256;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  if (pow === bytes) return bytes;
  const quarter = pow / 4;
  return pow + Math.ceil((bytes - pow) / quarter) * quarter;
}
