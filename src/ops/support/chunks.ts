/**
 * Splitting work that is too big for one storage binding.
 *
 * A binding may cover at most engine.maxBindingBytes (128 MiB on lavapipe) and must start at a
 * multiple of engine.storageAlign. Ops whose tensors are made of independent rows split the rows
 * into ranges that satisfy both for every tensor, and dispatch once per range with row views.
 */
import type { Engine } from '../../engine/engine.js';

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Row ranges [start, end) covering `rows`, such that for every tensor (given by its bytes per row)
 * a range's slice fits a binding and starts aligned. Row bytes of 0 mark tensors bound whole.
 */
export function rowChunks(engine: Engine, op: string, rows: number, rowBytes: readonly number[]): [number, number][] {
  const widest = Math.max(...rowBytes, 1);
  const limit = engine.maxBindingBytes;
  if (rows * widest <= limit) return [[0, rows]];
  // Rows per chunk must make every tensor's chunk start land on an aligned byte offset.
  let step = 1;
  for (const bytes of rowBytes) {
    if (bytes === 0) continue;
    const need = engine.storageAlign / gcd(bytes, engine.storageAlign);
    step = (step * need) / gcd(step, need);
  }
  const perChunk = Math.floor(Math.floor(limit / widest) / step) * step;
  if (perChunk === 0) {
    throw new RangeError(`${op}: ${step} row(s) of ${widest} bytes exceed the ${limit}-byte binding limit; this layout cannot be split further`);
  }
  const chunks: [number, number][] = [];
  for (let r = 0; r < rows; r += perChunk) chunks.push([r, Math.min(rows, r + perChunk)]);
  return chunks;
}
