/**
 * Command recording: the dispatches of a forward pass go into one command encoder and compute pass,
 * submitted every `dispatchesPerSubmit` dispatches (so the GPU starts while we keep recording) and
 * whenever the CPU needs a result.
 *
 * Each dispatch gets its own slot in a uniform arena. The slots of one chunk are written with a
 * single queue.writeBuffer right before that chunk is submitted; the queue orders that write after
 * every earlier submit, so one arena serves all chunks without a dispatch ever seeing another's
 * parameters.
 */
import type { GpuDevice } from './device.js';
import type { CompiledKernel, Params } from './pipeline.js';

export interface BufferRange {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

export interface RecorderCounters {
  dispatches: number;
  submits: number;
}

const UNIFORM_ARENA_BYTES = 64 * 1024;

export class CommandRecorder {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private chunkDispatches = 0;
  private readonly arena: GPUBuffer;
  private readonly staging = new ArrayBuffer(UNIFORM_ARENA_BYTES);
  private readonly stagingView = new DataView(this.staging);
  private arenaUsed = 0;
  private readonly slotAlign: number;
  readonly counters: RecorderCounters = { dispatches: 0, submits: 0 };

  constructor(
    private readonly gpu: GpuDevice,
    public dispatchesPerSubmit: number,
  ) {
    this.slotAlign = gpu.limits.minUniformBufferOffsetAlignment;
    this.arena = gpu.device.createBuffer({
      size: UNIFORM_ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'uniform arena',
    });
  }

  /** True when commands are recorded but not yet submitted. */
  get pending(): boolean {
    return this.encoder !== null;
  }

  dispatch(kernel: CompiledKernel, buffers: Map<number, BufferRange>, params: Params, workgroups: [number, number, number]): void {
    const entries: GPUBindGroupEntry[] = [];
    if (kernel.uniformBinding !== null) {
      const slotSize = Math.ceil(kernel.uniformSize / this.slotAlign) * this.slotAlign;
      if (this.arenaUsed + slotSize > UNIFORM_ARENA_BYTES) this.flush();
      // Pack first: a bad parameter throws before anything is recorded.
      kernel.packParams(params, this.stagingView, this.arenaUsed);
      entries.push({ binding: kernel.uniformBinding, resource: { buffer: this.arena, offset: this.arenaUsed, size: kernel.uniformSize } });
      this.arenaUsed += slotSize;
    } else if (Object.keys(params).length) {
      throw new Error(`${kernel.label}: takes no parameters, got ${Object.keys(params).join(', ')}`);
    }
    for (const [binding, range] of buffers) entries.push({ binding, resource: range });

    const bindGroup = this.gpu.device.createBindGroup({ layout: kernel.layout, entries, label: kernel.label });
    const pass = this.computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    this.counters.dispatches += 1;
    if (++this.chunkDispatches >= this.dispatchesPerSubmit) this.flush();
  }

  /** Records a buffer-to-buffer copy (ends the compute pass; the next dispatch opens a new one). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    const encoder = this.commandEncoder();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) this.pass.end();
    const commands = this.encoder.finish();
    if (this.arenaUsed) this.gpu.queue.writeBuffer(this.arena, 0, this.staging, 0, this.arenaUsed);
    this.gpu.queue.submit([commands]);
    this.counters.submits += 1;
    this.encoder = null;
    this.pass = null;
    this.chunkDispatches = 0;
    this.arenaUsed = 0;
  }

  destroy(): void {
    this.encoder = null;
    this.pass = null;
    this.arena.destroy();
  }

  private commandEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.gpu.device.createCommandEncoder());
  }

  private computePass(): GPUComputePassEncoder {
    return (this.pass ??= this.commandEncoder().beginComputePass());
  }
}
