/**
 * Where results leave the CLI: pictures in the format `--out`'s extension names (sharp encodes),
 * and JSON with only the plain fields (no GPU tensors, no pixel buffers).
 */
import { loadSharp } from '../image/decode.js';
import type { RgbImage } from '../image/gpu-image.js';
import { plainData } from '../server/decoder-json.js';

const FORMATS = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' } as const;
export const PICTURE_EXTENSIONS = Object.keys(FORMATS);

/** The format a file name asks for, by its extension (any case), or undefined. */
export function pictureFormat(file: string): (typeof FORMATS)[keyof typeof FORMATS] | undefined {
  const extension = /\.[^./\\]*$/.exec(file)?.[0].toLowerCase() ?? '';
  return FORMATS[extension as keyof typeof FORMATS];
}

export async function writePicture(file: string, image: RgbImage): Promise<void> {
  const format = pictureFormat(file);
  if (!format) throw new Error(`${file}: not a picture format (${PICTURE_EXTENSIONS.join(', ')})`);
  const { width, height, data } = image;
  const sharp = await loadSharp();
  await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
    .toFormat(format)
    .toFile(file);
}

/**
 * Results as JSON: decoder outputs hold GPU tensors (classEmbeddings, conditions, ...), left out;
 * an RGB image becomes its size, as Picture.toJSON writes it (its bytes would be millions of
 * numbers); other typed arrays (a semantic map's classes) become arrays. The walk is the server's
 * (plainData), which writes images as PNG instead.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(plainData(value, (image) => ({ width: image.width, height: image.height })), null, 2);
}
