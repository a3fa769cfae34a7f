/** Synthetic 8-bit images and byte checksums shared by the image-input tests and their goldens (scripts/golden/gdino_image.py). */
import type { RgbImage } from '../src/image/gpu-image.js';
import { hashed } from './hashed.js';

const P = 1000003;

/** gdino_image.py synthetic(): RGB h x w, a wrapping gradient plus hashed noise. */
export function synthetic(h: number, w: number, seed: number): RgbImage {
  const noise = hashed(h * w * 3, seed);
  const data = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
    const i = (y * w + x) * 3 + c;
    const u24 = (noise[i]! + 1) * 2 ** 23; // hash >> 8
    data[i] = (x * 7 + y * 3 + c * 50 + ((u24 >>> 16) & 63)) & 255;
  }
  return { width: w, height: h, data };
}

/** gdino_image.py checksums(): two sums modulo a prime over every byte, the second position-weighted. */
export function checksums(data: Uint8Array): [number, number] {
  let a = 0;
  let b = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + data[i]!) % P;
    b = (b + data[i]! * (1 + (i % 251))) % P;
  }
  return [a, b];
}
