/**
 * Pixels in and out of the diffusion pipelines, as diffusers 0.28.2's VaeImageProcessor does them:
 *
 *   in   (InstructPix2Pix) the size floored to a multiple of the VAE's factor (8), Pillow's Lanczos
 *        resize to it, then 2·(v / 255) − 1: [1, 3, H, W] in [−1, 1]
 *   out  (x / 2 + 0.5) clamped to [0, 1], × 255, rounded: RGB bytes
 *
 * and the pipelines' Gaussian noise (latents, Euler ancestral's per-step noise) from a seeded
 * xoshiro128** (src/engine/random.ts normalValues). torch.randn draws other numbers from the same
 * distribution, so a seed reproduces our images, not PyTorch's; tests inject the reference's noise.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { normalizeImage, pilResize, uploadImage, type RgbImage } from '../../image/gpu-image.js';
import { normalValues, SeededRandom } from '../../engine/random.js';
import { roundHalfEven } from '../../engine/dtype.js';

/** An image a pipeline made: RGB bytes, row-major. */
export interface GeneratedImage extends RgbImage {}

/** The image as InstructPix2Pix's VAE reads it: [1, 3, H, W] in [−1, 1], H and W floored to `factor`. */
export function editInput(engine: Engine, rgb: RgbImage, factor = 8): Tensor {
  const [w, h] = [rgb.width - (rgb.width % factor), rgb.height - (rgb.height % factor)];
  if (w < factor || h < factor) throw new RangeError(`edit: the image is ${rgb.width}x${rgb.height}; it must be at least ${factor}x${factor}`);
  return engine.scope(() => {
    const pixels = pilResize(uploadImage(engine, rgb), w, h, { filter: 'lanczos' });
    return normalizeImage(pixels, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }).reshape([1, 3, h, w]);
  });
}

/** A decoded image [1, 3, H, W] (VAE output, about [−1, 1]) as RGB bytes. */
export async function toRgb(decoded: Tensor): Promise<GeneratedImage> {
  const [, channels, height, width] = decoded.shape as [number, number, number, number];
  if (decoded.rank !== 4 || decoded.shape[0] !== 1 || channels !== 3) throw new RangeError(`toRgb: ${JSON.stringify(decoded.shape)} must be [1, 3, H, W]`);
  const values = (await decoded.toArray()) as Float32Array;
  const plane = width * height;
  const data = new Uint8Array(plane * 3);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.min(Math.max(f(f(values[c * plane + i]! / 2) + 0.5), 0), 1);
      data[i * 3 + c] = roundHalfEven(f(v * 255));
    }
  }
  return { width, height, data };
}


/** N(0, 1) noise from a seeded generator (one generator serves a whole generation). */
export class GaussianNoise {
  private readonly random: SeededRandom;

  constructor(seed: number) {
    this.random = new SeededRandom(seed);
  }

  /** The next draws, as a tensor of `shape`. */
  sample(engine: Engine, shape: readonly number[]): Tensor {
    return engine.tensor(normalValues(() => this.random.next(), shape.reduce((a, b) => a * b, 1)), shape);
  }

  /** The generator's uniform draws, for a scheduler that draws its own noise (Euler ancestral). */
  get uniform(): () => number {
    return () => this.random.next();
  }
}
