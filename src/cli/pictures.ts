/**
 * The picture a result gives: the image a diffusion decoder made, or the input image with the
 * detections, masks, semantic map or poses drawn over it (image/annotate.ts).
 */
import type { DecoderOutput } from '../decoders/decoder.js';
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

/**
 * A chat's picture, or why there is none: its first made image, else what its outputs hold to draw
 * (detections, a semantic map, pose instances) over the image. Read by field, not by decoder name,
 * so a new decoder's output draws without code here.
 */
export async function chatPicture(image: RgbImage | undefined, outputs: readonly DecoderOutput[]): Promise<RgbImage | { none: string }> {
  if (outputs.length === 0) return { none: 'the answer has no decoder results' };
  const made = outputs.flatMap((o) => (o as Drawable).images ?? []);
  if (made.length > 0) return made[0]!;
  const drawn = outputs.map(annotationsOf).filter((a) => a.detections?.length || a.semantic || a.instances?.length);
  if (drawn.length === 0) return { none: `no decoder of the answer (${outputs.map((o) => o.decoder).join(', ')}) gave anything to draw` };
  if (!image) return { none: 'the answer has detections, and no image to draw them on' };
  return annotate(image, drawn);
}

/** The fields of an output that make a picture (Grounding DINO's, UniPose's, the diffusion decoders'). */
type Drawable = Annotations & { images?: RgbImage[]; keypointNames?: string[] };

function annotationsOf(o: DecoderOutput): Annotations {
  const { detections, semantic, classes, instances, keypointNames } = o as Drawable;
  return { detections, semantic, classes, instances, skeleton: keypointNames && skeletonOf(keypointNames) };
}
