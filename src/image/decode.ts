/**
 * Image decoding: PNG, JPEG (and WebP, GIF's first frame, TIFF, AVIF) from files or buffers to
 * 8-bit RGB, with EXIF orientation applied.
 *
 * Decoding is sharp's (libvips with libjpeg-turbo and libpng, prebuilt binaries shipped as npm
 * packages): its JPEG pixels are Pillow's byte for byte, where pure-JS decoders differ by several
 * levels (no "fancy" chroma upsampling), and every later step here reproduces Pillow exactly.
 * Like Pillow's Image.open(...).convert('RGB'), embedded ICC profiles are not applied, alpha is
 * dropped (not composited), grayscale is replicated to three channels and CMYK is converted with
 * Pillow's formula (cmykToRgb). Unlike it, the EXIF
 * orientation is applied (ImageOps.exif_transpose); `orientation` and `storedWidth/Height` keep
 * what the file said, for mapping coordinates back to the stored pixels (src/image/affine.ts).
 */
import fs from 'node:fs';
import type { Metadata, OutputInfo, Sharp, SharpOptions } from 'sharp';
import type { RgbImage } from './gpu-image.js';

export interface DecodeOptions {
  /** Largest width x height accepted, checked from the header before decoding (default: Pillow's decompression-bomb limit, 89,478,485). */
  maxPixels?: number;
  /** Name used in errors when decoding a buffer (default 'image buffer'). */
  name?: string;
}

export interface DecodedImage extends RgbImage {
  format: string;
  /** EXIF orientation of the file (1 when absent): the pixels returned are already turned upright. */
  orientation: number;
  /** Size of the pixels as stored in the file, before orientation. */
  storedWidth: number;
  storedHeight: number;
}

export const DEFAULT_MAX_PIXELS = 89_478_485;

const RASTER_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif']);

export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
}

type SharpFactory = (input: Buffer, options?: SharpOptions) => Sharp;
let sharpModule: Promise<SharpFactory> | undefined;

/** sharp is loaded on first use: the engine works without its native binary, and starts faster. */
export function loadSharp(): Promise<SharpFactory> {
  sharpModule ??= import('sharp').then(
    (m) => m.default as unknown as SharpFactory,
    (err: Error) => {
      sharpModule = undefined;
      throw new ImageDecodeError(`image decoding needs the 'sharp' package, which failed to load: ${err.message}`);
    },
  );
  return sharpModule;
}

/** Decodes an image file. */
export async function decodeImageFile(file: string, options: DecodeOptions = {}): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (err) {
    throw new ImageDecodeError(`${file}: cannot read (${(err as Error).message})`);
  }
  return decodeImage(bytes, { ...options, name: options.name ?? file });
}

/** Decodes an image held in memory. */
export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodedImage> {
  const name = options.name ?? 'image buffer';
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels >= 1)) throw new RangeError(`decodeImage: maxPixels must be at least 1, got ${maxPixels}`);
  if (bytes.byteLength === 0) throw new ImageDecodeError(`${name}: empty (0 bytes), not an image`);
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sharp = await loadSharp();

  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ImageDecodeError(`${name}: not a readable image (${(err as Error).message})`);
  }
  const format = meta.format ?? 'unknown';
  if (!RASTER_FORMATS.has(format)) throw new ImageDecodeError(`${name}: unsupported format '${format}' (use PNG, JPEG, WebP, GIF, TIFF or AVIF)`);
  const storedWidth = meta.width ?? 0;
  const storedHeight = meta.height ?? 0;
  if (storedWidth * storedHeight > maxPixels) {
    throw new ImageDecodeError(`${name}: ${storedWidth}x${storedHeight} ${format} has ${storedWidth * storedHeight} pixels, over the limit of ${maxPixels} (maxPixels)`);
  }

  const cmyk = meta.space === 'cmyk';
  let raw: { data: Buffer; info: OutputInfo };
  try {
    let pipeline = sharp(input, { autoOrient: true, ignoreIcc: true, failOn: 'warning', limitInputPixels: maxPixels }).removeAlpha();
    // libvips would take CMYK to sRGB through a profile (its own when the file has none), levels
    // away from Pillow; kept CMYK, its samples are Pillow's (JPEG's Adobe inversion undone by both).
    if (cmyk) pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
    raw = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new ImageDecodeError(`${name}: corrupt or truncated ${format} (${(err as Error).message.trim()})`);
  }
  const { width, height, channels } = raw.info;
  const pixels = width * height;
  const data = cmyk ? cmykToRgb(raw.data, pixels, channels, name) : toRgb(raw.data, pixels, channels, name);
  return { width, height, data, format, orientation: meta.orientation ?? 1, storedWidth, storedHeight };
}

function toRgb(data: Buffer, pixels: number, channels: number, name: string): Uint8Array {
  if (channels === 3) return new Uint8Array(data.buffer, data.byteOffset, pixels * 3);
  if (channels !== 1) throw new ImageDecodeError(`${name}: decoded to ${channels} channels, expected 1 or 3`);
  const rgb = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i]!;
  return rgb;
}

/**
 * Pillow's convert('RGB') of CMYK (libImaging/Convert.c cmyk2rgb, unchanged from Pillow 5 to 12):
 * no profile, each ink scaled by the white left after black, r = (255 - k) - c * (255 - k) / 255
 * with its rounded integer division MULDIV255. The result is never negative, so CLIP8 is not needed.
 */
function cmykToRgb(data: Buffer, pixels: number, channels: number, name: string): Uint8Array {
  if (channels !== 4) throw new ImageDecodeError(`${name}: CMYK decoded to ${channels} channels, expected 4`);
  const rgb = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - data[4 * i + 3]!;
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = nk - mulDiv255(data[4 * i + c]!, nk);
  }
  return rgb;
}

/** Pillow's MULDIV255: a * b / 255 rounded, by shifts. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}
