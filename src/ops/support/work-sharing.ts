/**
 * Kernels whose workgroups share work out on demand (kernels/gemv_chain.wgsl, and the decoding
 * attention on lavapipe): a few workgroups, one per worker thread, take chunks of work from a
 * counter in memory instead of one workgroup per chunk. lavapipe hands a dispatch's workgroups to
 * its threads in fixed shares, so a thread slow to wake (an idle virtual core) or pre-empted by
 * our own host thread holds up the whole dispatch; taken on demand, chunks go to whoever is free.
 * A workgroup waits at most for chunks that others have taken (so are running): nothing deadlocks
 * whatever runs at once. The last workgroup out resets the counters it used.
 */
import os from 'node:os';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';

/** Words of the shared counters (a kernel uses a prefix, and leaves it zeroed). */
const COUNTER_WORDS = 16;
/** CPU cores to keep busy (a syscall to ask, and ops ask while recording: so asked once). */
export const CORES = os.availableParallelism();

/**
 * Workgroups for on-demand kernels: one per lavapipe worker thread, and no more than there are
 * cores, since a workgroup waiting for another's chunk spins and would hold a core its
 * descheduled peer needs. Elsewhere one: only lavapipe is known to run several at once.
 */
export function onDemandWorkgroups(engine: Engine): number {
  return Math.max(1, Math.min(engine.gpu.summary.workerThreads, CORES));
}

/** The engine's shared work counters: zero between dispatches (each kernel resets what it used). */
export function workCounters(engine: Engine): Tensor {
  return engine.constant('work counters', new Uint32Array(COUNTER_WORDS));
}
