/**
 * The super link's results as the server sends them (choices[0].message.visionllm.results, or the
 * last stream chunk's delta): plain JSON in original-image pixels. Only the fields the page draws.
 */

/** [x0, y0, x1, y1] */
export type Box = [number, number, number, number];

/** pycocotools' uncompressed RLE: column-major runs over [height, width], the first a run of zeros. */
export interface Rle {
  size: [number, number];
  counts: number[];
}

export interface Detection {
  label: string;
  score: number;
  box: Box;
  mask?: Rle;
}

/** One class's pixels of a semantic map, as a mask. */
export interface SemanticSegment {
  classIndex: number;
  label: string;
  mask: Rle;
}

/**
 * A class per pixel: as one mask per class present (src/server/decoder-json.ts sends this), or as a
 * class index (into `classes`) per pixel, row-major.
 */
export interface SemanticMap {
  width: number;
  height: number;
  segments?: SemanticSegment[];
  classes?: number[];
}

export interface GdinoResult {
  decoder: 'gdino';
  task: string;
  classes?: string[];
  detections?: Detection[];
  semantic?: SemanticMap;
}

export interface Keypoint {
  name: string;
  x: number;
  y: number;
  visible: number;
}

export interface PoseInstance {
  label: string;
  score: number;
  box: Box;
  keypoints: Keypoint[];
}

export interface UniposeResult {
  decoder: 'unipose';
  task: string;
  keypointNames?: string[];
  instances?: PoseInstance[];
}

export interface GeneratedImage {
  width: number;
  height: number;
  /** base64 */
  png: string;
}

/** Stable Diffusion (generate) and InstructPix2Pix (edit). */
export interface ImageMakerResult {
  decoder: 'sd' | 'ip2p';
  task: string;
  images?: GeneratedImage[];
}

export type DecoderResult = GdinoResult | UniposeResult | ImageMakerResult | { decoder: string; task: string };

export function isGdino(r: DecoderResult): r is GdinoResult {
  return r.decoder === 'gdino';
}

export function isUnipose(r: DecoderResult): r is UniposeResult {
  return r.decoder === 'unipose';
}

export function imagesOf(r: DecoderResult): GeneratedImage[] {
  return 'images' in r && Array.isArray(r.images) ? r.images : [];
}
