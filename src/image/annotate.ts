/**
 * Pictures of decoder results, drawn as detectron2's and mmdet's visualisers draw them: semantic
 * tints, translucent masks with a solid outline, unfilled boxes, skeletons and keypoints, then the
 * label tags on top. Masks are painted as pixels (annotate-overlay.ts), everything else is SVG
 * (annotate-svg.ts); sharp composites both over the image, and librsvg renders the text.
 */
import type { OverlayOptions } from 'sharp';
import { OverlayLayer } from './annotate-overlay.js';
import { paletteColour } from './annotate-style.js';
import { SvgCanvas, type Keypoint, type LegendEntry } from './annotate-svg.js';
import { loadSharp } from './decode.js';
import { checkRgbImage, type RgbImage } from './gpu-image.js';
import type { Mask } from './mask.js';

/**
 * What annotate reads of a result. Structural: chat() outputs and the task results fit, with gdino's
 * Detection and SemanticMap (src/decoders/gdino/postprocess.ts) and unipose's PoseDetection
 * (src/decoders/unipose/postprocess.ts). The shapes are written out here because src/decoders and
 * src/model import src/image, which may not import them back; test/annotate.test.ts checks they fit.
 */
export interface Annotations {
  /** Boxes [x0, y0, x1, y1] in original pixels, coloured by class; a mask, when there, is the image's size. */
  detections?: readonly { label: string; classIndex: number; score: number; box: readonly number[]; mask?: Mask }[];
  /** Pose instances, coloured by their place in the list; keypoints in original pixels. */
  instances?: readonly { label: string; score: number; box: readonly number[]; keypoints: readonly Keypoint[] }[];
  /** Class index per pixel, row-major, the image's size. */
  semantic?: { width: number; height: number; classes: Uint32Array };
  /** Names of the semantic class indices, for the legend. */
  classes?: readonly string[];
  /** The instances' limbs as pairs of keypoint names (a pose task result carries COCO's). */
  skeleton?: readonly (readonly [string, string])[];
}

export interface AnnotateOptions {
  /** Draw text: "label 0.87" tags above boxes and the semantic legend (default true). */
  labels?: boolean;
  /** Include the score in the tags (default true). */
  scores?: boolean;
  /** Opacity of mask and semantic tints, in [0, 1] (default 0.45). */
  maskOpacity?: number;
  /** Box and skeleton stroke in pixels (default max(2, round(min(width, height) / 200))). */
  lineWidth?: number;
  /** Limbs as pairs of keypoint names, for every result (default: each result's own `skeleton`, else none). */
  skeleton?: readonly (readonly [string, string])[];
}

/** The image with the results drawn over it: a new RGB image of the same size. */
export async function annotate(image: RgbImage, results: Annotations | readonly Annotations[], options: AnnotateOptions = {}): Promise<RgbImage> {
  const list = (Array.isArray(results) ? results : [results]) as readonly Annotations[];
  const { width, height, data } = image;
  const lineWidth = options.lineWidth ?? Math.max(2, Math.round(Math.min(width, height) / 200));
  const opacity = options.maskOpacity ?? 0.45;
  checkInputs(image, list, opacity, lineWidth);
  const labels = options.labels ?? true;

  const bitmaps = paintBitmaps(width, height, list, opacity);
  // detectron2's text size: legible on small pictures, growing with large ones.
  const canvas = new SvgCanvas(width, height, lineWidth, Math.max(10, Math.round(Math.sqrt(width * height) / 90)));
  const detections = list.flatMap((r) => r.detections ?? []);
  const instances = list.flatMap((r) => (r.instances ?? []).map((p) => ({ ...p, skeleton: options.skeleton ?? r.skeleton ?? [] })));
  for (const d of detections) canvas.box(d.box, paletteColour(d.classIndex));
  instances.forEach((p, i) => canvas.box(p.box, paletteColour(i)));
  instances.forEach((p, i) => canvas.pose(p.keypoints, p.skeleton, paletteColour(i)));
  if (labels) {
    canvas.legend(legendEntries(list));
    const text = (label: string, score: number) => (options.scores ?? true) && Number.isFinite(score) ? `${label} ${score.toFixed(2)}` : label;
    for (const d of detections) canvas.tag(d.box, text(d.label, d.score), paletteColour(d.classIndex));
    instances.forEach((p, i) => canvas.tag(p.box, text(p.label, p.score), paletteColour(i)));
  }

  const layers: OverlayOptions[] = [];
  if (bitmaps) layers.push({ input: bitmaps.toRgba(), raw: { width, height, channels: 4 } });
  if (!canvas.empty) layers.push({ input: Buffer.from(canvas.toString()) });
  if (layers.length === 0) return { width, height, data: data.slice() };
  const sharp = await loadSharp();
  const out = await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
    .composite(layers)
    .removeAlpha()
    .raw()
    .toBuffer();
  return { width, height, data: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) };
}

/** Every size and option checked before anything is drawn, each error naming what is wrong. */
function checkInputs(image: RgbImage, list: readonly Annotations[], opacity: number, lineWidth: number): void {
  checkRgbImage('annotate', image);
  const { width: w, height: h } = image;
  if (!(opacity >= 0 && opacity <= 1)) throw new RangeError(`annotate: maskOpacity must be in [0, 1], got ${opacity}`);
  if (!(lineWidth > 0 && Number.isFinite(lineWidth))) throw new RangeError(`annotate: lineWidth must be a positive number of pixels, got ${lineWidth}`);
  list.forEach((r, k) => {
    const where = list.length > 1 ? ` in results[${k}]` : '';
    r.detections?.forEach((d, i) => {
      if (d.mask && (d.mask.width !== w || d.mask.height !== h)) {
        throw new RangeError(`annotate: the mask of detection ${i} ('${d.label}')${where} is ${d.mask.width}x${d.mask.height}, the image ${w}x${h}`);
      }
    });
    const s = r.semantic;
    if (s && (s.width !== w || s.height !== h || s.classes.length !== w * h)) {
      throw new RangeError(`annotate: the semantic map${where} is ${s.width}x${s.height} with ${s.classes.length} classes, the image ${w}x${h} needs ${w * h}`);
    }
  });
}

/** Semantic tints, then masks, in one translucent layer; undefined when there is neither. */
function paintBitmaps(width: number, height: number, list: readonly Annotations[], opacity: number): OverlayLayer | undefined {
  const masked = list.flatMap((r) => r.detections ?? []).filter((d) => d.mask);
  if (!list.some((r) => r.semantic) && masked.length === 0) return undefined;
  const layer = new OverlayLayer(width, height);
  for (const r of list) if (r.semantic) layer.semantic(r.semantic.classes, opacity);
  for (const d of masked) layer.mask(d.mask!.toBitmap(), paletteColour(d.classIndex), opacity);
  return layer;
}

/** The semantic classes present, largest area first (over every map, a class counted by index and name). */
function legendEntries(list: readonly Annotations[]): LegendEntry[] {
  const area = new Map<string, { index: number; name: string; pixels: number }>();
  for (const r of list) {
    if (!r.semantic) continue;
    const counts = new Map<number, number>();
    for (const c of r.semantic.classes) counts.set(c, (counts.get(c) ?? 0) + 1);
    for (const [index, pixels] of counts) {
      const name = r.classes?.[index] ?? String(index);
      const key = `${index}\u0000${name}`;
      const entry = area.get(key) ?? { index, name, pixels: 0 };
      entry.pixels += pixels;
      area.set(key, entry);
    }
  }
  return [...area.values()].sort((a, b) => b.pixels - a.pixels || a.index - b.index).map((e) => ({ name: e.name, colour: paletteColour(e.index) }));
}
