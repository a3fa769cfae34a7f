/**
 * A stopwatch for a decoder's stages: each reading waits for the GPU to finish what was recorded,
 * so the split of a forward is the GPU's time per stage, not the time to record it.
 */
import type { Engine } from '../engine/engine.js';

/** Milliseconds since the previous reading (or since the clock was made). */
export function stageClock(engine: Engine): () => Promise<number> {
  let last = performance.now();
  return async () => {
    await engine.sync();
    const now = performance.now();
    const ms = now - last;
    last = now;
    return ms;
  };
}
