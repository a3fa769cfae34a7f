/**
 * What the task helpers return (VisionLLM.detect, segment, ground, pose, generate, edit): plain
 * data in original-image pixels, JSON-serialisable apart from pixel buffers (a Mask serialises to
 * its RLE; a Picture's pixels are bytes, its PNG one call away). Nothing here holds GPU memory.
 */
import type { Detection, SemanticMap } from '../../decoders/gdino/postprocess.js';
import type { PoseDetection } from '../../decoders/unipose/postprocess.js';
import { encodePng } from '../../image/encode.js';
import { checkRgbImage, type RgbImage } from '../../image/gpu-image.js';
import type { ChatTimings } from '../vision-llm.js';

export type { Detection, SemanticMap } from '../../decoders/gdino/postprocess.js';
export type { PoseDetection, PoseKeypoint } from '../../decoders/unipose/postprocess.js';

export type TaskName = 'detect' | 'segment' | 'ground' | 'pose' | 'generate' | 'edit';

interface TaskResultBase {
  task: TaskName;
  /** The official question the helper asked (its template filled) and the answer the model ran. */
  prompt: string;
  text: string;
  /** The input image's size (upright, after EXIF orientation); for generate, the generated image's. */
  width: number;
  height: number;
  /** The chat's stages; `decodersMs` is the decoder's share. */
  timings: ChatTimings;
}

export interface DetectResult extends TaskResultBase {
  task: 'detect';
  /** The classes asked for, in prompt order (class k of a detection is classes[k]). */
  classes: string[];
  /** Best first, score >= threshold, at most topK; boxes [x0, y0, x1, y1] in original pixels. */
  detections: Detection[];
}

export interface SegmentResult extends TaskResultBase {
  task: 'segment';
  /** instance: COCO-style instances with masks; semantic: a class per pixel; regions: the objects like each region. */
  mode: 'instance' | 'semantic' | 'regions';
  classes: string[];
  /** instance and regions: best first, each with its mask. */
  detections: Detection[];
  /** semantic: the class index (into classes) of every original pixel. */
  semantic?: SemanticMap;
}

export interface GroundResult extends TaskResultBase {
  task: 'ground';
  phrase: string;
  /** The phrase's best box and mask, labelled with the phrase (none without an image). */
  detections: Detection[];
}

export interface PoseResult extends TaskResultBase {
  task: 'pose';
  /** The object classes (default ['person']) and the keypoints asked for, in prompt order. */
  classes: string[];
  keypointNames: string[];
  /** Best first, score >= threshold: each instance's box and named keypoints in original pixels. */
  instances: PoseDetection[];
  /** COCO's limbs between the keypoints asked for, as pairs of names (what image.annotate connects). */
  skeleton: [string, string][];
}

export interface ImageResult extends TaskResultBase {
  task: 'generate' | 'edit';
  image: Picture;
}

export type TaskResult = DetectResult | SegmentResult | GroundResult | PoseResult | ImageResult;

/** RGB pixels (row-major bytes) that encode themselves. */
export class Picture implements RgbImage {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly data: Uint8Array,
  ) {
    checkRgbImage('Picture', this);
  }

  static from(image: RgbImage): Picture {
    return image instanceof Picture ? image : new Picture(image.width, image.height, image.data);
  }

  toPNG(): Promise<Buffer> {
    return encodePng(this);
  }

  /** The pixels are left out of JSON (a 512x512 image would be 786,432 numbers). */
  toJSON(): { width: number; height: number } {
    return { width: this.width, height: this.height };
  }
}
