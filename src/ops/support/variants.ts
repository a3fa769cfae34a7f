/**
 * Kernel variant choices per adapter. On lavapipe (profile 'cpu') barriers are very expensive and
 * subgroup operations cheap, so row kernels use one 8-lane subgroup per row and never synchronise;
 * on GPUs (profile 'gpu') a row gets a 256-wide workgroup. Without a fixed subgroup size the
 * reductions fall back to workgroup memory.
 */
import type { Engine } from '../../engine/engine.js';

export interface RowKernelConfig {
  includes: { reduce: 'subgroup' | 'shared' };
  overrides: { WG: number; SG: number };
}

const cache = new WeakMap<Engine, RowKernelConfig>();

/** Whether subgroups are exactly 8 lanes (lavapipe on AVX2): what the CPU-profile subgroup kernels assume. */
export function subgroupsOf8(engine: Engine): boolean {
  const s = engine.gpu.summary;
  return engine.has('subgroups') && s.subgroupMinSize === 8 && s.subgroupMaxSize === 8;
}

export function rowKernelConfig(engine: Engine): RowKernelConfig {
  let config = cache.get(engine);
  if (!config) {
    const { subgroupMinSize: min, subgroupMaxSize: max } = engine.gpu.summary;
    const fixedSubgroup = engine.has('subgroups') && min > 0 && min === max && min <= 128;
    const cpu = engine.profile === 'cpu';
    config = fixedSubgroup
      ? { includes: { reduce: 'subgroup' }, overrides: { WG: cpu ? min : 256, SG: min } }
      : { includes: { reduce: 'shared' }, overrides: { WG: cpu ? 64 : 256, SG: 0 } };
    cache.set(engine, config);
  }
  return config;
}
