/**
 * UniPose's own copy of the image (decoders.md B.2): the DETR test pipeline of VisionLLM v2's
 * `coco_pose_llava.py` (make_coco_transforms('val'): RandomResize([800], max_size=1333),
 * ToTensor, Normalize), then the padding of `modeling_visionllmv2.py`
 * (nested_tensor_from_tensor_list, size_divisibility=32):
 *   1. the size rule of `transform_coco.py` resize() (get_size_with_aspect_ratio): with
 *      s = `size`, if max/min · s > maxSize then s = int(round(maxSize · min / max)) (Python's
 *      round: halves to even); an image whose short side is already s keeps its size; else the
 *      short side becomes s and the long one int(s · long / short) (truncated);
 *   2. torchvision's F.resize of the PIL image = Pillow's bilinear resize, with its antialiasing
 *      (a support widened by the scale when shrinking), byte for byte (src/image pilResize);
 *   3. ToTensor (v / 255) and ImageNet's mean and std, f32;
 *   4. the official code then casts to bf16: not reproduced (as gdino/image.ts);
 *   5. zeros on the bottom and right up to multiples of 32;
 *   6. the mask, as the official NestedTensor mask: 1 (True) on padding, 0 on the image.
 * Keypoints and boxes from the detector are relative to the resized (unpadded) image; `toOriginal`
 * takes resized-image pixels to original pixels (continuous coordinates).
 */
import { roundHalfEven, type DType } from '../../engine/dtype.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { ImageMap } from '../../image/affine.js';
import { normalizeImage, pilResize, uploadImage, type RgbImage } from '../../image/gpu-image.js';
import { paddedSize, paddingMask, padToMultiple } from '../../image/preprocess.js';

/** ToTensor + Normalize: ImageNet's mean and std in 0..1 units. */
export const UNIPOSE_MEAN = [0.485, 0.456, 0.406] as const;
export const UNIPOSE_STD = [0.229, 0.224, 0.225] as const;
/** make_coco_transforms('val'): RandomResize([max(scales)], max_size). */
export const UNIPOSE_SIZE = 800;
export const UNIPOSE_MAX_SIZE = 1333;
export const UNIPOSE_SIZE_DIVISOR = 32;

export interface UniposeImageOptions {
  /** The short side (default 800). */
  size?: number;
  /** The long side's limit (default 1333). */
  maxSize?: number;
  /** Storage of `pixels` (default f32). */
  dtype?: DType;
}

export interface UniposeImage {
  /** [1, 3, Hp, Wp], normalised RGB, zero beyond the resized image. */
  pixels: Tensor;
  /** Hp * Wp bytes, row-major: 1 where the pixel is padding, 0 where it is image (the official mask's True/False). */
  mask: Uint8Array;
  /** [h, w] after resizing (the target's `size`), [h, w] of the input (`orig_size`), [Hp, Wp] padded. */
  imgShape: [number, number];
  oriShape: [number, number];
  padShape: [number, number];
  /** Resized-image (and padded-image) pixels to original pixels. */
  toOriginal: ImageMap;
  dispose(): void;
}


function checkSizes(size: unknown, maxSize: unknown): asserts size is number {
  for (const [name, v] of [['size', size], ['maxSize', maxSize]] as const) {
    if (!(typeof v === 'number' && Number.isInteger(v) && v > 0)) {
      throw new RangeError(`uniposeImage: option ${name} must be a positive integer (e.g. ${name === 'size' ? 800 : 1333}), got ${JSON.stringify(v)}`);
    }
  }
}

/** transform_coco.py's get_size_with_aspect_ratio for an h x w image: [new_h, new_w]. */
export function uniposeResizeShape(height: number, width: number, size: number = UNIPOSE_SIZE, maxSize: number = UNIPOSE_MAX_SIZE): [number, number] {
  checkSizes(size, maxSize);
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) {
    throw new RangeError(`uniposeImage: image size ${width}x${height} must be positive integers`);
  }
  const [lo, hi] = [Math.min(height, width), Math.max(height, width)];
  let s = size;
  if ((hi / lo) * s > maxSize) s = roundHalfEven((maxSize * lo) / hi);
  let out: [number, number];
  if ((width <= height && width === s) || (height <= width && height === s)) out = [height, width];
  else if (width < height) out = [Math.trunc((s * height) / width), s];
  else out = [s, Math.trunc((s * width) / height)];
  if (out[0] < 1 || out[1] < 1) {
    throw new RangeError(`uniposeImage: a ${width}x${height} image resized to short side ${size} (long side at most ${maxSize}) would be ${out[1]}x${out[0]} (an empty side); its aspect ratio is too extreme`);
  }
  return out;
}

/** UniPose's input from a decoded image (decoders.md B.2). */
export function uniposeImage(engine: Engine, rgb: RgbImage, options: UniposeImageOptions = {}): UniposeImage {
  const size = options.size ?? UNIPOSE_SIZE;
  const maxSize = options.maxSize ?? UNIPOSE_MAX_SIZE;
  const [h, w] = uniposeResizeShape(rgb.height, rgb.width, size, maxSize);
  const [hp, wp] = paddedSize(h, w, UNIPOSE_SIZE_DIVISOR);
  const pixels = engine.scope(() => {
    const resized = pilResize(uploadImage(engine, rgb), w, h, { filter: 'bilinear' });
    const chw = normalizeImage(resized, { mean: UNIPOSE_MEAN, std: UNIPOSE_STD, dtype: options.dtype ?? 'f32' });
    return padToMultiple(chw, UNIPOSE_SIZE_DIVISOR);
  });
  return {
    pixels,
    mask: paddingMask(h, w, hp, wp, 0),
    imgShape: [h, w],
    oriShape: [rgb.height, rgb.width],
    padShape: [hp, wp],
    toOriginal: ImageMap.resize({ width: w, height: h }, { width: rgb.width, height: rgb.height }),
    dispose: () => pixels.dispose(),
  };
}
