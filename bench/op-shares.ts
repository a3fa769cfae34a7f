/**
 * Where a model's time goes, by op family, without a per-dispatch GPU timer: one forward pass is
 * recorded with the `forward` of chosen module classes wrapped, each call's inputs replaced by
 * random tensors of the same shapes and dtypes; then every recorded call is replayed alone between
 * two syncs. Calls made inside a recorded call (a Linear inside an attention) belong to it.
 */
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import { Tensor } from '../src/engine/tensor.js';
import { randomTensor } from './random.js';

type Forward = (this: unknown, ...args: unknown[]) => unknown;
export type ModuleClass = { prototype: { forward: Forward } };

interface RecordedCall {
  family: string;
  replay: () => Tensor;
}

/** A tensor argument (or one inside an options object) as a fresh random tensor of its shape. */
function freshArgs(engine: Engine, args: unknown[]): () => unknown[] {
  const shapes = args.map((a) => (a instanceof Tensor ? { shape: [...a.shape], dtype: a.dtype } : a));
  return () =>
    shapes.map((a) => {
      if (a && typeof a === 'object' && 'shape' in a && 'dtype' in a && Array.isArray(a.shape)) return randomTensor(engine, a.shape as number[], 1, { dtype: a.dtype as DType });
      if (a && typeof a === 'object') return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v instanceof Tensor ? randomTensor(engine, [...v.shape], 2, { dtype: v.dtype }) : v]));
      return a;
    });
}

/** Runs `pass` with the families' forward methods recording their calls; restores them after. */
export function recordCalls(engine: Engine, families: Record<string, ModuleClass>, pass: () => void): RecordedCall[] {
  const calls: RecordedCall[] = [];
  const originals = Object.entries(families).map(([family, cls]) => [family, cls, cls.prototype.forward] as const);
  let depth = 0;
  for (const [family, cls, forward] of originals) {
    cls.prototype.forward = function (this: unknown, ...args: unknown[]) {
      if (depth === 0) {
        const module = this;
        const fresh = freshArgs(engine, args);
        calls.push({ family, replay: () => engine.scope(() => forward.apply(module, fresh()) as Tensor) });
      }
      depth++;
      try {
        return forward.apply(this, args);
      } finally {
        depth--;
      }
    };
  }
  try {
    pass();
  } finally {
    for (const [, cls, forward] of originals) cls.prototype.forward = forward;
  }
  return calls;
}

/** Each call replayed alone (after a warm-up replay): milliseconds by family, and the calls by family. */
export async function timeCalls(engine: Engine, calls: readonly RecordedCall[]): Promise<{ ms: Record<string, number>; count: Record<string, number> }> {
  const ms: Record<string, number> = {};
  const count: Record<string, number> = {};
  for (const call of calls) {
    call.replay().dispose();
    await engine.sync();
    const start = performance.now();
    const y = call.replay();
    await engine.sync();
    ms[call.family] = (ms[call.family] ?? 0) + performance.now() - start;
    count[call.family] = (count[call.family] ?? 0) + 1;
    y.dispose();
  }
  return { ms, count };
}
