/**
 * The region encoder's pooling weights, on the host (official region_encoder.py, decoders.md D3).
 * `mean` and `grid_sample` pooling are both weighted sums of the g×g mask-embedding cells, so each
 * region becomes one weight vector over the cells and the GPU does one matrix product:
 *
 *   mean         binary = bilinear(mask → g×g, align_corners False) > 0.5;  w = binary / (g·g)
 *                (the official mean divides by every cell, not by the mask's area)
 *   grid_sample  points = rand_sample(mask): every mask pixel when there are at most num_points, else
 *                num_points of them drawn uniformly without replacement; each point is the pixel's
 *                corner (y/H, x/W) sampled bilinearly (align_corners False, zeros outside);
 *                w = Σ point weights / points (an empty mask gives w = 0, as nan_to_num does)
 *
 * The official draw is torch.multinomial, not seeded and not reproducible; ours is a seeded uniform
 * subset (the same distribution). Masks with at most num_points pixels need no draw and match exactly.
 * Arithmetic in f32 as torch's.
 */
import { SeededRandom } from '../engine/random.js';

/** A region's mask at the encoder's input resolution: size × size bytes, row-major, nonzero = inside. */
export interface RegionMask {
  size: number;
  data: Uint8Array;
}

const f = Math.fround;

/** mean pooling: binary(mask) / g² over the g×g cells. */
export function meanPoolWeights(mask: RegionMask, grid: number): Float32Array {
  const binary = downsampledBinary(mask, grid);
  return Float32Array.from(binary, (b) => b / (grid * grid));
}

/** F.interpolate(mask, (g, g), mode='bilinear', align_corners=False) > 0.5, as 0/1 bytes. */
export function downsampledBinary(mask: RegionMask, grid: number): Uint8Array {
  return bilinearAbove({ width: mask.size, height: mask.size, data: mask.data }, grid, grid, 0.5);
}

/**
 * torch's bilinear resize (F.interpolate, align_corners=False, no antialias) of a 0/1 plane to
 * width × height, then 1 where the value is above `threshold`; in f32 as torch.
 */
export function bilinearAbove(src: { width: number; height: number; data: ArrayLike<number> }, width: number, height: number, threshold: number): Uint8Array {
  const taps = (out: number, size: number) => {
    const scale = f(size / out);
    return Array.from({ length: out }, (_, i) => {
      const at = Math.max(f(f(f(i + 0.5) * scale) - 0.5), 0); // area_pixel_compute_source_index: negative clamps to 0
      const i0 = Math.floor(at);
      const l1 = f(at - i0);
      return { i0, i1: Math.min(i0 + 1, size - 1), l0: f(1 - l1), l1 };
    });
  };
  const [rows, cols] = [taps(height, src.height), taps(width, src.width)];
  const at = (y: number, x: number) => (src.data[y * src.width + x] ? 1 : 0);
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const ty = rows[y]!;
    for (let x = 0; x < width; x++) {
      const tx = cols[x]!;
      const top = f(f(tx.l0 * at(ty.i0, tx.i0)) + f(tx.l1 * at(ty.i0, tx.i1)));
      const bottom = f(f(tx.l0 * at(ty.i1, tx.i0)) + f(tx.l1 * at(ty.i1, tx.i1)));
      out[y * width + x] = f(f(ty.l0 * top) + f(ty.l1 * bottom)) > threshold ? 1 : 0;
    }
  }
  return out;
}

/**
 * rand_sample: the pixel indices (y·size + x, ascending) the points are taken at. All of them when
 * the mask has at most `numPoints`; else a uniform subset of `numPoints` drawn from `random`.
 */
export function samplePixels(mask: RegionMask, numPoints: number, random: SeededRandom): Int32Array {
  const inside: number[] = [];
  mask.data.forEach((v, i) => v && inside.push(i));
  if (inside.length <= numPoints) return Int32Array.from(inside);
  // A partial Fisher-Yates shuffle: the first numPoints entries are a uniform subset.
  for (let i = 0; i < numPoints; i++) {
    const j = i + Math.floor(random.next() * (inside.length - i));
    [inside[i], inside[j]] = [inside[j]!, inside[i]!];
  }
  return Int32Array.from(inside.slice(0, numPoints)).sort();
}

/** grid_sample pooling: the mean over the points of their bilinear weights on the g×g cells. */
export function gridSampleWeights(pixels: Int32Array, size: number, grid: number): Float32Array {
  const w = new Float64Array(grid * grid);
  // grid_sample's unnormalisation of p in [0, 1): ((2p − 1 + 1)·g − 1) / 2, in f32.
  const cell = (v: number) => f(f(f(f(f(2 * f(v / size)) - 1) + 1) * grid - 1) / 2);
  for (const p of pixels) {
    const gx = cell(p % size);
    const gy = cell(Math.floor(p / size));
    const [x0, y0] = [Math.floor(gx), Math.floor(gy)];
    const [fx, fy] = [f(gx - x0), f(gy - y0)];
    const corners: [number, number, number][] = [
      [x0, y0, f(f(1 - fx) * f(1 - fy))],
      [x0 + 1, y0, f(fx * f(1 - fy))],
      [x0, y0 + 1, f(f(1 - fx) * fy)],
      [x0 + 1, y0 + 1, f(fx * fy)],
    ];
    for (const [x, y, weight] of corners) if (x >= 0 && x < grid && y >= 0 && y < grid) w[y * grid + x]! += weight;
  }
  const n = pixels.length;
  return Float32Array.from(w, (v) => (n ? v / n : 0));
}
