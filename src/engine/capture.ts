/**
 * Step capture and replay, like CUDA graphs or tinygrad's JIT: the commands one call records
 * (pipelines, bind groups, packed parameters, grids, copies) are kept, and re-issued later without
 * running the ops that produced them. A decoding step records the same dispatches every token,
 * and working them out again in JavaScript (shapes, kernel choice, bindings, parameters) costs the
 * host more than the commands themselves; on a CPU adapter that time is taken from the GPU's own
 * worker threads.
 *
 *   const { result: out, capture } = engine.capture(() => step(input));
 *   ...
 *   if (!capture.replay()) { capture.dispose(); ... record the step afresh ... }
 *
 * What may differ between the recorded call and a replay is declared by the ops that know it,
 * through Engine.onReplay while capturing: a hook returns the new values of its dispatch's
 * changing parameters (a KV cache's length, a sampling draw) and a host-side effect to apply once
 * the whole step is issued (the cache taking its row), or null when the recorded commands no
 * longer fit the current state (a chunking that changed, a table that grew); replay() then issues
 * nothing and returns false. Everything else must be a pure function of GPU memory: an upload or
 * read-back inside the captured call makes the capture unreplayable.
 *
 * Every buffer the commands bind is retained until dispose(), so the pool cannot hand a captured
 * intermediate to other work between replays. Replays use the same bind groups; their parameter
 * slots go into the recorder's uniform arena like any other dispatch.
 */
import type { CompiledKernel, Params } from './pipeline.js';
import type { CommandRecorder } from './recorder.js';
import type { Storage } from './tensor.js';

/** One recorded command: a dispatch with its packed parameter slot, or a buffer copy. */
export type CapturedCommand =
  | { kind: 'dispatch'; kernel: CompiledKernel; bindGroup: GPUBindGroup; workgroups: [number, number, number]; params: Uint8Array | null }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };

/** What a replay changes: parameters of the hook's dispatch, and a host-side effect applied after issuing. */
export interface ReplayUpdate {
  params?: Params;
  apply?: () => void;
}

/** Called before each replay; null when the captured commands no longer fit the current state. */
export type ReplayHook = () => ReplayUpdate | null;

export class StepCapture {
  readonly commands: CapturedCommand[] = [];
  private readonly hooks: { command: number; hook: ReplayHook }[] = [];
  private readonly retained = new Set<Storage>();
  /** Why the capture cannot be replayed (null while it can). */
  private spoiled: string | null = null;
  private disposed = false;

  constructor(private readonly recorder: CommandRecorder) {}

  /** Why replay() would refuse, or null. */
  get unreplayableBecause(): string | null {
    return this.disposed ? 'disposed' : this.spoiled;
  }

  /** Keeps a bound buffer out of the pool while the capture lives. */
  retain(storage: Storage): void {
    if (this.retained.has(storage)) return;
    storage.retain();
    this.retained.add(storage);
  }

  /** Attaches a hook to the last recorded command. */
  addHook(hook: ReplayHook): void {
    if (!this.commands.length) throw new Error('StepCapture: a replay hook must follow the dispatch it updates');
    this.hooks.push({ command: this.commands.length - 1, hook });
  }

  /** Marks the capture unreplayable (the first reason is kept). */
  spoil(reason: string): void {
    this.spoiled ??= reason;
  }

  /**
   * Issues the captured commands again with the hooks' updates, into the recorder's current
   * submission. Returns false, issuing nothing, when the capture is spoiled or a hook declines.
   */
  replay(): boolean {
    if (this.unreplayableBecause) return false;
    // Every hook is asked before anything changes, so a refusal leaves no half-applied step.
    const updates: ReplayUpdate[] = [];
    for (const { hook } of this.hooks) {
      const update = hook();
      if (!update) return false;
      updates.push(update);
    }
    updates.forEach((u, i) => {
      if (!u.params) return;
      const command = this.commands[this.hooks[i]!.command]!;
      if (command.kind !== 'dispatch' || !command.params) throw new Error('StepCapture: parameters updated for a command without a parameter slot');
      command.kernel.repackParams(u.params, new DataView(command.params.buffer, command.params.byteOffset, command.params.byteLength), 0);
    });
    this.recorder.replay(this.commands);
    for (const u of updates) u.apply?.();
    return true;
  }

  /** Releases the retained buffers. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // Newest first, as scope() frees: the pool hands them out again in the order they were taken,
    // so the next capture of the same step binds the same buffers and finds its bind groups cached.
    for (const s of [...this.retained].reverse()) s.release();
    this.retained.clear();
  }
}
