/**
 * Scoring the miniature's generated and edited pictures against what was asked:
 *   - generation: the largest foreground component (pixels farther than FOREGROUND levels from the
 *     picture's border colour, 4-connected) must have the asked colour, the nearest of the world's
 *     palette to its median; its shape is judged by the model's own detector (decoder-eval.ts);
 *   - editing: the edited object's pixels must take the asked colour (nearest of the palette to
 *     their median), and the other pixels, those more than a pixel away from the object, must stay
 *     within KEPT_LEVELS of the input (at least KEPT_SHARE of them).
 */
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { Box } from './detection-metrics.js';

/** scripts/shapesworld/world.py's COLOURS. */
export const WORLD_COLOURS: Readonly<Record<string, readonly [number, number, number]>> = {
  red: [220, 40, 40], green: [40, 170, 60], blue: [40, 80, 220], yellow: [240, 210, 40],
  purple: [150, 60, 190], orange: [245, 140, 30], white: [245, 245, 245], black: [20, 20, 20],
};
/** world.py's MIN_BACKGROUND_DISTANCE: an object's colour is farther than this from the background. */
export const FOREGROUND = 60;
export const KEPT_LEVELS = 20;
export const KEPT_SHARE = 0.9;

export function nearestColour(rgb: readonly number[]): string {
  let best = '';
  let bestDistance = Infinity;
  for (const [name, c] of Object.entries(WORLD_COLOURS)) {
    const d = (rgb[0]! - c[0]) ** 2 + (rgb[1]! - c[1]) ** 2 + (rgb[2]! - c[2]) ** 2;
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/** The per-channel median of the pixels whose index `keep` accepts. */
export function medianColour(image: RgbImage, keep: (pixel: number) => boolean): number[] {
  const channels: number[][] = [[], [], []];
  for (let p = 0; p < image.width * image.height; p++) {
    if (keep(p)) for (let c = 0; c < 3; c++) channels[c]!.push(image.data[3 * p + c]!);
  }
  return channels.map((values) => {
    values.sort((a, b) => a - b);
    const n = values.length;
    return n % 2 ? values[(n - 1) / 2]! : (values[n / 2 - 1]! + values[n / 2]!) / 2;
  });
}

const chebyshev = (image: RgbImage, p: number, rgb: readonly number[]) =>
  Math.max(Math.abs(image.data[3 * p]! - rgb[0]!), Math.abs(image.data[3 * p + 1]! - rgb[1]!), Math.abs(image.data[3 * p + 2]! - rgb[2]!));

export interface Component {
  /** Its pixels' indices (row-major). */
  pixels: number[];
  /** [x0, y0, x1, y1] in pixel edges. */
  box: Box;
  colour: string;
}

/** The largest 4-connected group of pixels unlike the border's median colour, or undefined when there is none. */
export function largestComponent(image: RgbImage): Component | undefined {
  const { width: w, height: h } = image;
  const border = medianColour(image, (p) => p < w || p >= (h - 1) * w || p % w === 0 || p % w === w - 1);
  const label = new Int32Array(w * h).fill(-1);
  let best: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (label[start] !== -1 || chebyshev(image, start, border) <= FOREGROUND) continue;
    const pixels = [start];
    label[start] = start;
    for (let k = 0; k < pixels.length; k++) {
      const p = pixels[k]!;
      const x = p % w;
      for (const q of [x > 0 ? p - 1 : -1, x < w - 1 ? p + 1 : -1, p - w, p + w]) {
        if (q < 0 || q >= w * h || label[q] !== -1 || chebyshev(image, q, border) <= FOREGROUND) continue;
        label[q] = start;
        pixels.push(q);
      }
    }
    if (pixels.length > best.length) best = pixels;
  }
  if (!best.length) return undefined;
  const xs = best.map((p) => p % w);
  const ys = best.map((p) => Math.floor(p / w));
  const inside = new Set(best);
  return {
    pixels: best,
    box: [Math.min(...xs), Math.min(...ys), Math.max(...xs) + 1, Math.max(...ys) + 1],
    colour: nearestColour(medianColour(image, (p) => inside.has(p))),
  };
}

export interface EditScore {
  /** The nearest palette colour of the edited object's pixels. */
  colour: string;
  /** The share of the other pixels within KEPT_LEVELS of the input. */
  kept: number;
}

/**
 * An edit's outcome. `mask`: the object's pixels at the images' size (1 inside); the other pixels
 * are those whose 3 x 3 neighbourhood misses the mask (its anti-aliased edge belongs to the edit).
 */
export function scoreEdit(input: RgbImage, output: RgbImage, mask: Uint8Array): EditScore {
  const { width: w, height: h } = input;
  if (output.width !== w || output.height !== h || mask.length !== w * h) {
    throw new Error(`scoreEdit: input ${w}x${h}, output ${output.width}x${output.height} and mask of ${mask.length} pixels differ`);
  }
  const nearObject = (p: number) => {
    const x = p % w;
    const y = Math.floor(p / w);
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const [u, v] = [x + dx, y + dy];
        if (u >= 0 && u < w && v >= 0 && v < h && mask[v * w + u]) return true;
      }
    }
    return false;
  };
  let others = 0;
  let kept = 0;
  for (let p = 0; p < w * h; p++) {
    if (nearObject(p)) continue;
    others++;
    if (chebyshev(output, p, [input.data[3 * p]!, input.data[3 * p + 1]!, input.data[3 * p + 2]!]) <= KEPT_LEVELS) kept++;
  }
  return { colour: nearestColour(medianColour(output, (p) => mask[p] === 1)), kept: others ? kept / others : 1 };
}

/** A full-size mask (1 inside, row-major) sampled at `width` x `height` pixel centres, as nearest-neighbour resizing does. */
export function resampleMask(mask: Uint8Array, fromWidth: number, fromHeight: number, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(fromHeight - 1, Math.floor(((y + 0.5) * fromHeight) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(fromWidth - 1, Math.floor(((x + 0.5) * fromWidth) / width));
      out[y * width + x] = mask[sy * fromWidth + sx]!;
    }
  }
  return out;
}
