/**
 * Command recording: the dispatches of a forward pass go into one command encoder and compute pass,
 * submitted every `dispatchesPerSubmit` dispatches (so the GPU starts while we keep recording) and
 * whenever the CPU needs a result.
 *
 * Each dispatch gets its own slot in a uniform arena. The slots of one chunk are written with a
 * single queue.writeBuffer right before that chunk is submitted; the queue orders that write after
 * every earlier submit, so one arena serves all chunks without a dispatch ever seeing another's
 * parameters. The slot is a dynamic offset, so a bind group depends only on the storage buffers
 * it binds, and is cached: decoding binds the same weights and pooled activations step after step,
 * and creating a bind group is the largest host cost of a dispatch.
 */
import type { CapturedCommand, StepCapture } from './capture.js';
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
  /** Bind groups made (the rest of the dispatches found theirs cached). */
  bindGroupsCreated: number;
}

const UNIFORM_ARENA_BYTES = 64 * 1024;
/** Cached bind groups kept (least recently used dropped first). */
const BIND_GROUP_CACHE = 4096;

const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 1;

function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

export class CommandRecorder {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private chunkDispatches = 0;
  private readonly arena: GPUBuffer;
  private readonly staging = new ArrayBuffer(UNIFORM_ARENA_BYTES);
  private readonly stagingView = new DataView(this.staging);
  private arenaUsed = 0;
  private readonly slotAlign: number;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  /** The dynamic offset of a dispatch's uniform slot (one array, reused: no allocation per dispatch). */
  private readonly offsets = new Uint32Array(1);
  /** Nesting depth of holding(): while positive, dispatchesPerSubmit does not submit. */
  private held = 0;
  readonly counters: RecorderCounters = { dispatches: 0, submits: 0, bindGroupsCreated: 0 };
  /** Where commands are also logged while Engine.capture runs. */
  capture: StepCapture | null = null;

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
    let slot: number | null = null;
    if (kernel.uniformBinding !== null) {
      slot = this.nextSlot(kernel.uniformSize);
      // Pack first: a bad parameter throws before anything is recorded.
      kernel.packParams(params, this.stagingView, slot);
      this.arenaUsed += this.slotBytes(kernel.uniformSize);
    } else if (Object.keys(params).length) {
      throw new Error(`${kernel.label}: takes no parameters, got ${Object.keys(params).join(', ')}`);
    }
    const bindGroup = this.bindGroup(kernel, buffers);
    if (this.capture) {
      const bytes = slot === null ? null : new Uint8Array(this.staging.slice(slot, slot + kernel.uniformSize));
      this.capture.commands.push({ kind: 'dispatch', kernel, bindGroup, workgroups, params: bytes });
    }
    this.issue(kernel, bindGroup, slot, workgroups);
  }

  /** Issues captured commands again (StepCapture.replay): each dispatch's parameters go into a fresh arena slot. */
  replay(commands: readonly CapturedCommand[]): void {
    for (const c of commands) {
      if (c.kind === 'copy') {
        this.copy(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      let slot: number | null = null;
      if (c.params) {
        slot = this.nextSlot(c.params.byteLength);
        new Uint8Array(this.staging, slot, c.params.byteLength).set(c.params);
        this.arenaUsed += this.slotBytes(c.params.byteLength);
      }
      this.issue(c.kernel, c.bindGroup, slot, c.workgroups);
    }
  }

  /** Where the next parameter slot of `size` bytes starts in the arena (a full arena is submitted first); the caller then takes slotBytes(size). */
  private nextSlot(size: number): number {
    if (this.arenaUsed + this.slotBytes(size) > UNIFORM_ARENA_BYTES) this.flush();
    return this.arenaUsed;
  }

  /** Arena bytes a slot of `size` bytes takes: dynamic offsets must be aligned. */
  private slotBytes(size: number): number {
    return Math.ceil(size / this.slotAlign) * this.slotAlign;
  }

  private issue(kernel: CompiledKernel, bindGroup: GPUBindGroup, slot: number | null, workgroups: [number, number, number]): void {
    const pass = this.computePass();
    pass.setPipeline(kernel.pipeline);
    if (slot === null) {
      pass.setBindGroup(0, bindGroup);
    } else {
      this.offsets[0] = slot;
      pass.setBindGroup(0, bindGroup, this.offsets, 0, 1);
    }
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    this.counters.dispatches += 1;
    if (++this.chunkDispatches >= this.dispatchesPerSubmit && !this.held) this.flush();
  }

  /** Runs fn without the periodic submits (see Engine.batch). */
  holding<T>(fn: () => T): T {
    this.held += 1;
    try {
      return fn();
    } finally {
      this.held -= 1;
    }
  }

  /** The bind group for these storage ranges (the uniform slot is a dynamic offset), cached. */
  private bindGroup(kernel: CompiledKernel, buffers: Map<number, BufferRange>): GPUBindGroup {
    let key = `${kernel.id}`;
    for (const [binding, r] of buffers) key += `|${binding}:${bufferId(r.buffer)}:${r.offset}:${r.size}`;
    let group = this.bindGroups.get(key);
    if (group) {
      this.bindGroups.delete(key); // re-insert: most recently used last
    } else {
      const entries: GPUBindGroupEntry[] = [];
      if (kernel.uniformBinding !== null) {
        entries.push({ binding: kernel.uniformBinding, resource: { buffer: this.arena, offset: 0, size: kernel.uniformSize } });
      }
      for (const [binding, range] of buffers) entries.push({ binding, resource: range });
      group = this.gpu.device.createBindGroup({ layout: kernel.layout, entries, label: kernel.label });
      this.counters.bindGroupsCreated += 1;
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.delete(this.bindGroups.keys().next().value!);
    }
    this.bindGroups.set(key, group);
    return group;
  }

  /** Records a buffer-to-buffer copy (ends the compute pass; the next dispatch opens a new one). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.capture?.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
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

  /** Forgets cached bind groups that reference these buffers (called before they are destroyed). */
  forget(buffers: readonly GPUBuffer[]): void {
    const ids = new Set(buffers.map((b) => bufferIds.get(b)).filter((id) => id !== undefined));
    if (!ids.size || !this.bindGroups.size) return;
    for (const key of [...this.bindGroups.keys()]) {
      if (key.split('|').slice(1).some((entry) => ids.has(Number(entry.split(':')[1])))) this.bindGroups.delete(key);
    }
  }

  destroy(): void {
    this.bindGroups.clear();
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
