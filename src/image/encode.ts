/** Encoding RGB pixels as PNG through sharp (libpng), for the images the pipelines make. */
import { checkRgbImage, type RgbImage } from './gpu-image.js';
import { loadSharp } from './decode.js';

/** The image as PNG bytes (8-bit RGB). */
export async function encodePng(image: RgbImage): Promise<Buffer> {
  checkRgbImage('encodePng', image);
  const { width, height, data } = image;
  const sharp = await loadSharp();
  return sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer();
}
