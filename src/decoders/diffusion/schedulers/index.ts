/**
 * The denoising schedulers of the Stable Diffusion (PNDM) and InstructPix2Pix (Euler-ancestral) pipelines,
 * and DDIM, as diffusers 0.28.2 runs them. The sample stays on the GPU; each step is a weighted sum of
 * tensors whose weights are computed on the host. Reference: scripts/golden/reference_schedulers.py.
 */
import { DdimScheduler } from './ddim.js';
import { EulerAncestralScheduler } from './euler-ancestral.js';
import { PndmScheduler } from './pndm.js';
import type { Scheduler, SchedulerConfig, SchedulerKind, SchedulerOptions } from './schedule.js';

export { DdimScheduler, EulerAncestralScheduler, PndmScheduler };
export { alphasCumprod, parseSchedulerConfig, SD15_SCHEDULER_CONFIG } from './schedule.js';
export type { BetaSchedule, Scheduler, SchedulerConfig, SchedulerKind, SchedulerOptions, TimestepSpacing } from './schedule.js';

/** A scheduler for one generation of `steps` denoising steps. */
export function createScheduler(kind: SchedulerKind, config: SchedulerConfig, steps: number, options: SchedulerOptions = {}): Scheduler {
  switch (kind) {
    case 'pndm': return new PndmScheduler(config, steps);
    case 'euler_ancestral': return new EulerAncestralScheduler(config, steps, options);
    case 'ddim': return new DdimScheduler(config, steps);
    default: throw new Error(`unknown scheduler '${kind as string}' (use pndm, euler_ancestral or ddim)`);
  }
}
