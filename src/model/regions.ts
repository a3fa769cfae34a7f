/**
 * `chat({ regions })`: what a user points at, in original-image pixels, as the region encoder's
 * masks over the global CLIP tile (a plain resize of the whole image to S × S, whatever the anyres
 * grid). The rules are the official data pipelines':
 *
 *   { box: [x0, y0, x1, y1] }   refcoco.py: the box scaled by S/W and S/H, each coordinate clamped to
 *                               [0, S − 1] and truncated; rows y0..y1 and columns x0..x1 inclusive
 *   { mask }                    osprey.py: the mask resized bilinearly to S × S (align_corners False),
 *                               nonzero = inside
 *   { points: [[x, y], ...] }   ours (the official visual prompts are shapes): the tile pixel under
 *                               each point, scaled and truncated as a box corner
 */
import type { RegionMask } from './region-pooling.js';
import { bilinearAbove } from './region-pooling.js';

export type Region =
  | { box: readonly [number, number, number, number] }
  | { mask: { width: number; height: number; data: ArrayLike<number> } }
  | { points: readonly (readonly [number, number])[] };

/** Checks `regions` (chat's option): an array of { box } | { mask } | { points }; errors name the entry. */
export function checkRegions(v: unknown, name = 'regions'): asserts v is Region[] {
  if (!Array.isArray(v)) throw new TypeError(`chat: ${name} must be an array of { box } | { mask } | { points }, got ${typeof v}`);
  v.forEach((r: unknown, i) => {
    const where = `chat: ${name}[${i}]`;
    const keys = r && typeof r === 'object' ? Object.keys(r) : [];
    if (keys.length !== 1 || !['box', 'mask', 'points'].includes(keys[0]!)) throw new TypeError(`${where} must be one of { box: [x0, y0, x1, y1] }, { mask: { width, height, data } }, { points: [[x, y], ...] }`);
    const region = r as Record<string, unknown>;
    const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
    if ('box' in region) {
      const b = region.box as number[];
      if (!Array.isArray(b) || b.length !== 4 || !b.every(finite) || b[0]! > b[2]! || b[1]! > b[3]!) throw new RangeError(`${where}.box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1, got ${JSON.stringify(b)}`);
    } else if ('mask' in region) {
      const m = region.mask as { width: number; height: number; data: ArrayLike<number> };
      const ok = m && Number.isInteger(m.width) && Number.isInteger(m.height) && m.width > 0 && m.height > 0 && m.data && m.data.length === m.width * m.height;
      if (!ok) throw new RangeError(`${where}.mask must be { width, height, data } with width·height values, got ${m && typeof m === 'object' ? `${m.width}x${m.height} with ${m.data?.length} values` : typeof m}`);
    } else {
      const p = region.points as number[][];
      if (!Array.isArray(p) || !p.length || !p.every((q) => Array.isArray(q) && q.length === 2 && q.every(finite))) throw new RangeError(`${where}.points must be a non-empty list of [x, y], got ${JSON.stringify(p)}`);
    }
  });
}

/** The region's mask over the S × S tile of an image of the given original size. */
export function regionMask(region: Region, original: { width: number; height: number }, size: number): RegionMask {
  const { width: W, height: H } = original;
  const data = new Uint8Array(size * size);
  const cell = (v: number, extent: number) => Math.trunc(Math.min(Math.max((v * size) / extent, 0), size - 1));
  if ('box' in region) {
    const [x0, y0, x1, y1] = region.box;
    for (let y = cell(y0, H); y <= cell(y1, H); y++) data.fill(1, y * size + cell(x0, W), y * size + cell(x1, W) + 1);
  } else if ('mask' in region) {
    const m = region.mask;
    if (m.width !== W || m.height !== H) throw new RangeError(`chat: a region mask is ${m.width}x${m.height}; the image is ${W}x${H}`);
    data.set(bilinearAbove(m, size, size, 0));
  } else {
    for (const [x, y] of region.points) data[cell(y, H) * size + cell(x, W)] = 1;
  }
  return { size, data };
}
