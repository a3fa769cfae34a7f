/**
 * Grounding DINO's own copy of the image (decoders.md A.2): mmdet's test pipeline as VisionLLM v2
 * runs it (`coco_llava.py`; `ade20k_llava.py` with another scale), then the padding of
 * `modeling_visionllmv2.py` (nested_tensor_from_tensor_list, size_divisibility=32):
 *   1. keep-ratio size by mmcv's rescale_size: s = min(long / max(h, w), short / min(h, w)),
 *      new = int(x * s + 0.5), with scale (long, short) = (1333, 800), or (2048, 512) for ADE20K;
 *   2. cv2.resize(INTER_LINEAR) of the 8-bit image, byte for byte (src/image cv2Resize). mmdet reads
 *      BGR and Normalize(to_rgb=True) flips it back: per-channel resizing commutes with the flip,
 *      so the result is RGB;
 *   3. (v - mean) / std with ImageNet's mean and std in 0..255 units, f32;
 *   4. the official code then casts to bf16 (util/misc.py): not reproduced, the engine runs f32
 *      (or f16 with `dtype`); its effect is a relative error up to 2^-9 on every input value;
 *   5. zeros on the bottom and right up to multiples of 32;
 *   6. pixel_mask = (channel 0 != 0), 1 = valid. For an 8-bit value v, (v - 123.675) / 58.395 is
 *      never 0 (in f32, or in bf16, whose smallest result here, |123 - 123.675| / 58.395, is far
 *      from underflow), so the mask is exactly the resized region; it is built as that rectangle.
 * Boxes from the detector are relative to the resized (unpadded) image; `toOriginal` takes
 * resized-image pixels to original pixels (continuous coordinates, pixel i covers [i, i + 1)).
 */
import type { DType } from '../../engine/dtype.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { ImageMap } from '../../image/affine.js';
import { cv2Resize, normalizeImage, uploadImage, type RgbImage } from '../../image/gpu-image.js';
import { paddedSize, paddingMask, padToMultiple } from '../../image/preprocess.js';

/** mmdet's img_norm_cfg: ImageNet's mean and std times 255, RGB. */
export const GDINO_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255] as const;
export const GDINO_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255] as const;
/** mmdet's img_scale (long, short): COCO, RefCOCO and the other detection sets. */
export const GDINO_SCALE = [1333, 800] as const;
/** ADE20K semantic segmentation (mmseg's test pipeline). */
export const ADE20K_SCALE = [2048, 512] as const;
/** nested_tensor_from_tensor_list's size_divisibility. */
export const GDINO_SIZE_DIVISOR = 32;

export interface GdinoImageOptions {
  /** (long, short) edge limits, default GDINO_SCALE; the order does not matter (mmcv takes max and min). */
  scale?: readonly [number, number];
  /** Storage of `pixels` (default f32). */
  dtype?: DType;
}

export interface GdinoImage {
  /** [1, 3, Hp, Wp], normalised RGB, zero beyond the resized image. */
  pixels: Tensor;
  /** Hp * Wp bytes, row-major: 1 where the pixel is image, 0 where it is padding. */
  pixelMask: Uint8Array;
  /** [h, w] after resizing (mmdet's img_shape), [h, w] of the input (ori_shape), [Hp, Wp] padded. */
  imgShape: [number, number];
  oriShape: [number, number];
  padShape: [number, number];
  /** Resized-image (and padded-image) pixels to original pixels. */
  toOriginal: ImageMap;
  dispose(): void;
}

/** mmcv's rescale_size for an h x w image: [new_h, new_w]. Errors name the scale and size. */
export function gdinoResizeShape(height: number, width: number, scale: readonly [number, number] = GDINO_SCALE): [number, number] {
  checkScale(scale);
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) {
    throw new RangeError(`gdinoImage: image size ${width}x${height} must be positive integers`);
  }
  const s = Math.min(Math.max(...scale) / Math.max(height, width), Math.min(...scale) / Math.min(height, width));
  const h = Math.trunc(height * s + 0.5);
  const w = Math.trunc(width * s + 0.5);
  if (h < 1 || w < 1) {
    throw new RangeError(`gdinoImage: a ${width}x${height} image rescaled to scale [${scale.join(', ')}] would be ${w}x${h} (an empty side); its aspect ratio is too extreme`);
  }
  return [h, w];
}

function checkScale(scale: unknown): asserts scale is readonly [number, number] {
  if (!Array.isArray(scale) || scale.length !== 2 || !scale.every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0)) {
    throw new RangeError(`gdinoImage: option scale must be [long, short], two positive numbers (e.g. [1333, 800]), got ${JSON.stringify(scale)}`);
  }
}

/** The detector's input from a decoded image (decoders.md A.2). */
export function gdinoImage(engine: Engine, rgb: RgbImage, options: GdinoImageOptions = {}): GdinoImage {
  const scale = options.scale ?? GDINO_SCALE;
  checkScale(scale);
  const [h, w] = gdinoResizeShape(rgb.height, rgb.width, scale);
  const [hp, wp] = paddedSize(h, w, GDINO_SIZE_DIVISOR);
  const pixels = engine.scope(() => {
    const original = uploadImage(engine, rgb);
    const resized = cv2Resize(original, w, h);
    // normalizeImage computes (v / 255 - m) / s: with m and s divided by 255 it is (v - mean) / std up to f32 rounding.
    const chw = normalizeImage(resized, { mean: by255(GDINO_MEAN), std: by255(GDINO_STD), dtype: options.dtype ?? 'f32' });
    return padToMultiple(chw, GDINO_SIZE_DIVISOR);
  });
  const pixelMask = paddingMask(h, w, hp, wp, 1);
  return {
    pixels,
    pixelMask,
    imgShape: [h, w],
    oriShape: [rgb.height, rgb.width],
    padShape: [hp, wp],
    toOriginal: ImageMap.resize({ width: w, height: h }, { width: rgb.width, height: rgb.height }),
    dispose: () => pixels.dispose(),
  };
}

function by255(v: readonly [number, number, number]): [number, number, number] {
  return [v[0] / 255, v[1] / 255, v[2] / 255];
}
