/**
 * Decoder outputs as plain JSON for the server's answers: the fields a client can use (boxes,
 * labels, keypoints, timings), masks as COCO's RLE (Mask serialises itself), a semantic map as one
 * RLE per class, generated images as base64 PNG. GPU tensors and dispose() are left out.
 *
 * The walk is generic, so a new decoder's output needs no code here; the CLI's --json goes through
 * the same walk (plainData), with images written as their size instead.
 */
import type { DecoderOutput } from '../decoders/decoder.js';
import { Tensor } from '../engine/tensor.js';
import { encodePng } from '../image/encode.js';
import { isRgbImage, type RgbImage } from '../image/gpu-image.js';
import type { Rle } from '../image/mask.js';
import type { DecoderResultJson } from './backend.js';

/**
 * `value` with only plain data: tensors and functions dropped, RGB images replaced by what `image`
 * makes of them, objects with toJSON (Mask, Picture) by its result, typed arrays by arrays.
 */
export function plainData(value: unknown, image: (picture: RgbImage) => unknown): unknown {
  if (value instanceof Tensor || typeof value === 'function') return undefined;
  if (typeof value !== 'object' || value === null) return value;
  // Before toJSON: a Picture would otherwise be only its size.
  if (isRgbImage(value)) return image(value);
  const withJson = value as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return plainData(withJson.toJSON(), image);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<number>);
  if (Array.isArray(value)) return value.map((v) => plainData(v, image) ?? null);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const plain = plainData(v, image);
    if (plain !== undefined) out[key] = plain;
  }
  return out;
}

/** A generated image in JSON: its size and its PNG bytes in base64. */
export interface PngJson {
  width: number;
  height: number;
  png: string;
}

/** One semantic class in JSON: the pixels of that class as one mask. */
export interface SemanticSegmentJson {
  classIndex: number;
  label: string;
  mask: Rle;
}

/** A decoder's output as JSON; images are encoded as PNG (all at once, after the walk). */
export async function decoderResultJson(output: DecoderOutput): Promise<DecoderResultJson> {
  const encodings: Promise<void>[] = [];
  const semantic = (output as { semantic?: SemanticMapLike }).semantic;
  // The map is walked apart: the generic walk would first make it a number per pixel.
  const json = plainData({ ...output, semantic: undefined }, (picture) => {
    const slot: PngJson = { width: picture.width, height: picture.height, png: '' };
    encodings.push(encodePng(picture).then((png) => void (slot.png = png.toString('base64'))));
    return slot;
  }) as DecoderResultJson;
  if (semantic) json.semantic = semanticJson(semantic, (output as { classes?: string[] }).classes ?? []);
  await Promise.all(encodings);
  return json;
}

interface SemanticMapLike {
  width: number;
  height: number;
  classes: ArrayLike<number>;
}

/**
 * A class per pixel (row-major) as one RLE mask per class present, in class order: the per-pixel
 * list would be a number for every pixel of the image.
 */
export function semanticJson(map: SemanticMapLike, labels: readonly string[]): { width: number; height: number; segments: SemanticSegmentJson[] } {
  const { width, height, classes } = map;
  // COCO's RLE runs down the columns; each class's counts alternate outside, inside, ... from pixel 0.
  const runs = new Map<number, { counts: number[]; end: number }>();
  let current = -1;
  let start = 0;
  const close = (at: number) => {
    if (current < 0) return;
    let r = runs.get(current);
    if (!r) runs.set(current, (r = { counts: [], end: 0 }));
    r.counts.push(start - r.end, at - start);
    r.end = at;
  };
  let i = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++, i++) {
      const c = classes[y * width + x]!;
      if (c === current) continue;
      close(i);
      current = c;
      start = i;
    }
  }
  close(i);
  const total = width * height;
  const segments = [...runs.entries()]
    .sort(([a], [b]) => a - b)
    .map(([classIndex, r]) => ({
      classIndex,
      label: labels[classIndex] ?? String(classIndex),
      mask: { size: [height, width] as [number, number], counts: r.end < total ? [...r.counts, total - r.end] : r.counts },
    }));
  return { width, height, segments };
}
