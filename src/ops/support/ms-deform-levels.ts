/**
 * The feature-pyramid geometry shared by the multi-scale deformable attention ops: level sizes
 * (spatial shapes), where each level starts in the flattened token sequence, and the per-level
 * uniform block the kernels read.
 *
 * Spatial shapes are host data, as in every caller (they come from the image size), because the
 * kernels take them as uniforms; a GPU tensor would need a read-back first.
 */

/** Level sizes as (height, width) pairs, or flat [h0, w0, h1, w1, ...] like a PyTorch [L, 2] tensor. */
export type SpatialShapes = readonly (readonly [number, number])[] | ArrayLike<number>;

/** Levels a kernel's uniform block has room for. */
export const MAX_LEVELS = 16;

export interface Levels {
  /** (height, width) per level. */
  shapes: [number, number][];
  /** First token of each level. */
  starts: number[];
  /** Tokens over all levels: Σ height·width. */
  tokens: number;
  /** Uniform `level_info`: (height, width, first token, 0) per level, MAX_LEVELS entries. */
  info: Uint32Array;
}

export function parseLevels(op: string, spatialShapes: SpatialShapes, levelStartIndex?: ArrayLike<number>): Levels {
  const shapes = toPairs(op, spatialShapes);
  if (shapes.length === 0) throw new RangeError(`${op}: spatial shapes are empty; need at least one level`);
  if (shapes.length > MAX_LEVELS) throw new RangeError(`${op}: ${shapes.length} levels exceed the ${MAX_LEVELS} the kernels support`);
  const starts: number[] = [];
  let tokens = 0;
  shapes.forEach(([h, w], l) => {
    if (!(Number.isInteger(h) && Number.isInteger(w) && h >= 1 && w >= 1)) {
      throw new RangeError(`${op}: level ${l} has spatial shape (${h}, ${w}); heights and widths must be positive integers`);
    }
    starts.push(tokens);
    tokens += h * w;
  });
  if (levelStartIndex !== undefined) {
    const given = Array.from(levelStartIndex);
    if (given.length !== shapes.length || given.some((s, l) => s !== starts[l])) {
      throw new RangeError(`${op}: level start index [${given.join(', ')}] does not match spatial shapes ${formatLevels(shapes)} (expected [${starts.join(', ')}])`);
    }
  }
  const info = new Uint32Array(4 * MAX_LEVELS);
  shapes.forEach(([h, w], l) => info.set([h, w, starts[l]!, 0], 4 * l));
  return { shapes, starts, tokens, info };
}

export function formatLevels(shapes: readonly (readonly [number, number])[]): string {
  return `[${shapes.map(([h, w]) => `${h}x${w}`).join(', ')}]`;
}

function toPairs(op: string, s: SpatialShapes): [number, number][] {
  const first = (s as ArrayLike<unknown>)[0];
  if (Array.isArray(first) || ArrayBuffer.isView(first)) {
    return Array.from(s as readonly (readonly number[])[], (pair, l) => {
      if (pair.length !== 2) throw new RangeError(`${op}: spatial shape of level ${l} has ${pair.length} entries; expected (height, width)`);
      return [pair[0]!, pair[1]!];
    });
  }
  const flat = Array.from(s as ArrayLike<number>);
  if (flat.length % 2) throw new RangeError(`${op}: flat spatial shapes need (height, width) pairs; got ${flat.length} numbers`);
  const pairs: [number, number][] = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
  return pairs;
}
