/**
 * The picture a result gives: the image a diffusion decoder made, or the input image with the
 * detections, masks, semantic map or poses drawn over it (image/annotate.ts).
 */
import type { DecoderOutput } from '../decoders/decoder.js';
import type { DiffusionOutput } from '../decoders/diffusion/index.js';
import type { GdinoOutput } from '../decoders/gdino/index.js';
import type { UniposeOutput } from '../decoders/unipose/index.js';
import { annotate, type Annotations } from '../image/annotate.js';
import type { RgbImage } from '../image/gpu-image.js';
import type { TaskResult } from '../model/tasks/results.js';
import { skeletonOf } from '../model/tasks/vocabularies.js';

/** A task's picture; `image` is the input (every task but generate has one). */
export function taskPicture(image: RgbImage | undefined, result: TaskResult): Promise<RgbImage> {
  if ('image' in result) return Promise.resolve(result.image);
  if (!image) throw new Error(`${result.task}: no image to draw the results on`);
  return annotate(image, result);
}

/** A chat's picture, or why there is none: its first generated image, else its detections and poses drawn over the image. */
export async function chatPicture(image: RgbImage | undefined, outputs: readonly DecoderOutput[]): Promise<RgbImage | { none: string }> {
  if (outputs.length === 0) return { none: 'the answer has no decoder results' };
  const made = outputs.flatMap((o) => (o.decoder === 'sd' || o.decoder === 'ip2p' ? (o as DiffusionOutput).images : []));
  if (made.length > 0) return made[0]!;
  const drawn = outputs.flatMap(annotationsOf);
  if (drawn.length === 0) return { none: `no decoder of the answer (${outputs.map((o) => o.decoder).join(', ')}) gave anything to draw` };
  if (!image) return { none: 'the answer has detections, and no image to draw them on' };
  return annotate(image, drawn);
}

function annotationsOf(o: DecoderOutput): Annotations[] {
  if (o.decoder === 'gdino') {
    const { detections, semantic, classes } = o as GdinoOutput;
    return [{ detections, semantic, classes }];
  }
  if (o.decoder === 'unipose') {
    const { instances, keypointNames } = o as UniposeOutput;
    return [{ instances, skeleton: skeletonOf(keypointNames) }];
  }
  return [];
}
