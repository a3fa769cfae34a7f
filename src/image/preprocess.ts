/**
 * The vision encoder's input, as the reference Python code builds it, on the GPU:
 *   clipPreprocess:   CLIPImageProcessor (shortest edge to `size` with Pillow's bicubic, center
 *                     crop, /255, mean/std), or with aspect 'pad' VisionLLM's expand2square first
 *                     (padding with the mean colour).
 *   anyresPreprocess: VisionLLM v2's dynamic_preprocess ('anyres', the released 7B model): pick a
 *                     grid of tiles (cols x rows <= maxTiles) closest to the image's aspect ratio,
 *                     resize to it, cut tiles row-major, append a thumbnail of the whole image.
 * Every resize is Pillow's, byte for byte (src/image/gpu-image.ts), and each output comes with the
 * ImageMap from original pixels to its pixels, so predictions map back.
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { concat } from '../ops/copy.js';
import { pad } from '../ops/spatial.js';
import { ImageMap, type Size } from './affine.js';
import { normalizeImage, pilResize, uploadImage, type Canvas, type RgbImage } from './gpu-image.js';

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export interface Normalization {
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
  dtype?: DType;
}

export interface PreprocessedImage {
  /** [tiles, 3, size, size] */
  pixelValues: Tensor;
  /** For each tile, original image pixels -> that tile's pixels. */
  maps: ImageMap[];
  /** anyres: tiles across and down (the thumbnail, if any, comes after them). */
  grid?: [number, number];
}

export interface ClipOptions extends Normalization {
  /** Shortest edge after resizing (default 336). */
  size?: number;
  /** Center crop (default 336). */
  cropSize?: number;
  /** 'resize' (CLIPImageProcessor) or 'pad' (expand2square with the mean colour first). */
  aspect?: 'resize' | 'pad';
}

/** An image on the GPU (u32 [h, w]); uploads host pixels, and says whether the caller must dispose it. */
function onGpu(engine: Engine, image: RgbImage | Tensor): { gpu: Tensor; owned: boolean; size: Size } {
  if ('data' in image) return { gpu: uploadImage(engine, image), owned: true, size: { width: image.width, height: image.height } };
  return { gpu: image, owned: false, size: { width: image.shape[1]!, height: image.shape[0]! } };
}

/** transformers' get_resize_output_image_size(default_to_square=False): the shortest edge becomes `size`. */
export function shortestEdgeSize(from: Size, size: number): Size {
  const portrait = from.width <= from.height;
  const [short, long] = portrait ? [from.width, from.height] : [from.height, from.width];
  const other = Math.trunc((size * long) / short);
  return portrait ? { width: size, height: other } : { width: other, height: size };
}

export function clipPreprocess(engine: Engine, image: RgbImage | Tensor, options: ClipOptions = {}): PreprocessedImage {
  const size = options.size ?? 336;
  const crop = options.cropSize ?? size;
  const { gpu, owned, size: original } = onGpu(engine, image);
  try {
    let canvas: Canvas | undefined;
    let toCanvas = ImageMap.identity();
    let frame = original;
    if (options.aspect === 'pad') {
      const side = Math.max(original.width, original.height);
      const left = Math.trunc((side - original.width) / 2);
      const top = Math.trunc((side - original.height) / 2);
      const fill = (options.mean ?? CLIP_MEAN).map((m) => Math.trunc(m * 255)) as [number, number, number];
      canvas = { width: side, height: side, left, top, fill };
      toCanvas = ImageMap.pad(left, top);
      frame = { width: side, height: side };
    }
    const resized = shortestEdgeSize(frame, size);
    if (resized.width < crop || resized.height < crop) {
      throw new RangeError(`clipPreprocess: crop ${crop} is larger than the resized ${resized.width}x${resized.height} image`);
    }
    const left = Math.trunc((resized.width - crop) / 2);
    const top = Math.trunc((resized.height - crop) / 2);
    const big = pilResize(gpu, resized.width, resized.height, { canvas });
    const chw = normalizeImage(big, { ...normalization(options), crop: { x: left, y: top, width: crop, height: crop } });
    big.dispose();
    const pixelValues = chw.reshape([1, 3, crop, crop]);
    chw.dispose();
    return { pixelValues, maps: [toCanvas.then(ImageMap.resize(frame, resized)).then(ImageMap.crop(left, top))] };
  } finally {
    if (owned) gpu.dispose();
  }
}

export interface AnyresOptions extends Normalization {
  tileSize?: number;
  minTiles?: number;
  maxTiles?: number;
  thumbnail?: boolean;
}

/** VisionLLM v2's choice of grid: closest aspect ratio; on ties the larger grid when the image has the pixels for it. */
export function anyresGrid(size: Size, tileSize: number, minTiles: number, maxTiles: number): [number, number] {
  if (!(Number.isInteger(minTiles) && Number.isInteger(maxTiles) && 1 <= minTiles && minTiles <= maxTiles)) {
    throw new RangeError(`anyresGrid: need integers 1 <= minTiles <= maxTiles, got ${minTiles}, ${maxTiles}`);
  }
  const grids: [number, number][] = [];
  for (let n = minTiles; n <= maxTiles; n++) {
    for (let i = 1; i <= n; i++) for (let j = 1; j <= n; j++) {
      if (i * j >= minTiles && i * j <= maxTiles && !grids.some(([a, b]) => a === i && b === j)) grids.push([i, j]);
    }
  }
  // Python sorts a set by area; between grids of equal area its set order decides, which matters
  // only if two of them tie for the best distance. For maxTiles <= 4 (VisionLLM's setting) a
  // smaller-area or square grid is always closer in that case, so ordering by area suffices.
  grids.sort((a, b) => a[0] * a[1] - b[0] * b[1]);
  const aspect = size.width / size.height;
  let best: [number, number] = [1, 1];
  let bestDiff = Infinity;
  for (const g of grids) {
    const diff = Math.abs(aspect - g[0] / g[1]);
    if (diff < bestDiff) {
      best = g;
      bestDiff = diff;
    } else if (diff === bestDiff && size.width * size.height > 0.5 * tileSize * tileSize * g[0] * g[1]) {
      best = g;
    }
  }
  return best;
}

/** The tiles anyresPreprocess makes of an image: its grid, and a thumbnail when the grid has several. */
export function anyresTileCount(size: Size, tileSize: number, maxTiles: number, thumbnail = true): number {
  const [cols, rows] = anyresGrid(size, tileSize, 1, maxTiles);
  return cols * rows + (thumbnail && cols * rows > 1 ? 1 : 0);
}

export function anyresPreprocess(engine: Engine, image: RgbImage | Tensor, options: AnyresOptions = {}): PreprocessedImage {
  const tile = options.tileSize ?? 336;
  const { gpu, owned, size: original } = onGpu(engine, image);
  const parts: Tensor[] = [];
  try {
    const [cols, rows] = anyresGrid(original, tile, options.minTiles ?? 1, options.maxTiles ?? 4);
    const gridSize = { width: cols * tile, height: rows * tile };
    const resized = pilResize(gpu, gridSize.width, gridSize.height);
    const toGrid = ImageMap.resize(original, gridSize);
    const maps: ImageMap[] = [];
    const norm = normalization(options);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        parts.push(normalizeImage(resized, { ...norm, crop: { x: c * tile, y: r * tile, width: tile, height: tile } }));
        maps.push(toGrid.then(ImageMap.crop(c * tile, r * tile)));
      }
    }
    resized.dispose();
    if ((options.thumbnail ?? true) && parts.length > 1) {
      const thumb = pilResize(gpu, tile, tile);
      parts.push(normalizeImage(thumb, norm));
      thumb.dispose();
      maps.push(ImageMap.resize(original, { width: tile, height: tile }));
    }
    const views = parts.map((t) => t.reshape([1, 3, tile, tile]));
    const pixelValues = concat(views, 0);
    views.forEach((t) => t.dispose());
    return { pixelValues, maps, grid: [cols, rows] };
  } finally {
    parts.forEach((t) => t.dispose());
    if (owned) gpu.dispose();
  }
}

function normalization(options: Normalization) {
  return { mean: options.mean ?? CLIP_MEAN, std: options.std ?? CLIP_STD, dtype: options.dtype };
}

/**
 * A detector's batch of one image (DETR's nested_tensor_from_tensor_list with size_divisibility, as
 * Grounding DINO and UniPose use it): [3, h, w] zeros on the right and bottom up to multiples of
 * `divisor`, as [1, 3, Hp, Wp]. Call inside a scope (the unpadded input may be returned as a view).
 */
export function padToMultiple(chw: Tensor, divisor: number): Tensor {
  const [c, h, w] = chw.shape as [number, number, number];
  const [hp, wp] = paddedSize(h, w, divisor);
  const padded = hp === h && wp === w ? chw : pad(chw, [0, wp - w, 0, hp - h]);
  return padded.reshape([1, c, hp, wp]);
}

/** [Hp, Wp]: h and w rounded up to multiples of `divisor`. */
export function paddedSize(h: number, w: number, divisor: number): [number, number] {
  return [Math.ceil(h / divisor) * divisor, Math.ceil(w / divisor) * divisor];
}

/**
 * The Hp x Wp mask of an image in the top-left h x w of its padded batch, row-major bytes:
 * `image` inside that region and 1 - `image` outside (image = 1: HF's pixel_mask, 1 = valid;
 * image = 0: DETR's NestedTensor mask, 1 = padding).
 */
export function paddingMask(h: number, w: number, hp: number, wp: number, image: 0 | 1): Uint8Array {
  const mask = new Uint8Array(hp * wp).fill(1 - image);
  for (let r = 0; r < h; r++) mask.fill(image, r * wp, r * wp + w);
  return mask;
}
