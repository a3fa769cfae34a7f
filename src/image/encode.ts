/** Encoding RGB pixels as PNG through sharp (libpng), for the images the pipelines make. */
import type { RgbImage } from './gpu-image.js';
import { loadSharp } from './decode.js';

/** The image as PNG bytes (8-bit RGB). */
export async function encodePng(image: RgbImage): Promise<Buffer> {
  const { width, height, data } = image;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) || data.length !== width * height * 3) {
    throw new RangeError(`encodePng: ${width}x${height} RGB needs ${width * height * 3} bytes, got ${data.length}`);
  }
  const sharp = await loadSharp();
  return sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer();
}
