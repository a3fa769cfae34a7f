/**
 * The picture on a canvas with the decoder results over it, in this order so nothing hides what
 * matters more: semantic tint, instance masks, then boxes with labels and poses, opaque, on top.
 * Results are in original-image pixels; the canvas may be bigger than the image (see MIN_LONG_SIDE).
 */
import { rleToImageData, semanticToImageData, type Rgba } from './rle.js';
import { isGdino, isUnipose, type Box, type DecoderResult, type Keypoint } from './results.js';
import { keypointKey, limbsBetween } from './skeleton.js';

/** Distinct saturated colours: the n-th object drawn (or semantic class n) gets the n-th. */
export const PALETTE: readonly Rgba[] = [
  [255, 59, 48, 255], [52, 199, 89, 255], [10, 132, 255, 255], [255, 204, 0, 255],
  [175, 82, 222, 255], [255, 149, 0, 255], [90, 200, 250, 255], [255, 45, 85, 255],
];

/** Translucent enough to see the object through its mask. */
const MASK_ALPHA = 110;
const SEMANTIC_ALPHA = 100;
/** A small picture is drawn scaled up to this, so its labels and lines stay legible. */
const MIN_LONG_SIDE = 800;

interface View {
  ctx: CanvasRenderingContext2D;
  /** Canvas pixels per image pixel. */
  scale: number;
  /** Stroke width in canvas pixels, the unit every other size derives from. */
  line: number;
}

export function drawPicture(canvas: HTMLCanvasElement, image: HTMLImageElement, results: readonly DecoderResult[]): void {
  const scale = Math.max(1, MIN_LONG_SIDE / Math.max(image.naturalWidth, image.naturalHeight));
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const view: View = { ctx, scale, line: Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300)) };

  const gdinoResults = results.filter(isGdino);
  for (const { semantic } of gdinoResults) {
    for (const segment of semantic?.segments ?? []) tint(view, rleToImageData(segment.mask, withAlpha(colour(segment.classIndex), SEMANTIC_ALPHA)));
    if (semantic?.classes) tint(view, semanticToImageData(semantic.width, semantic.classes, (k) => withAlpha(colour(k), SEMANTIC_ALPHA)));
  }
  // Objects are numbered across results, so the first pose does not take the first detection's colour.
  const detections = gdinoResults.flatMap((r) => r.detections ?? []);
  const instances = results.filter(isUnipose).flatMap((r) => r.instances ?? []);
  detections.forEach((d, i) => d.mask && tint(view, rleToImageData(d.mask, withAlpha(colour(i), MASK_ALPHA))));
  detections.forEach((d, i) => drawBox(view, d.box, `${d.label} ${d.score.toFixed(2)}`, colour(i)));
  instances.forEach((p, i) => {
    drawBox(view, p.box, `${p.label} ${p.score.toFixed(2)}`, colour(detections.length + i));
    drawPose(view, p.keypoints, colour(detections.length + i));
  });
}

function colour(i: number): Rgba {
  return PALETTE[i % PALETTE.length]!;
}

function withAlpha([r, g, b]: Rgba, a: number): Rgba {
  return [r, g, b, a];
}

function css([r, g, b, a]: Rgba): string {
  return `rgba(${r}, ${g}, ${b}, ${a / 255})`;
}

/** Blends a mask-sized layer over the whole canvas (putImageData would replace, not blend). */
function tint({ ctx }: View, layer: ImageData): void {
  const offscreen = new OffscreenCanvas(layer.width, layer.height);
  offscreen.getContext('2d')!.putImageData(layer, 0, 0);
  ctx.save();
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(offscreen, 0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.restore();
}

/** The box, and its label on a tag above it (inside it when the box touches the top). */
function drawBox({ ctx, scale, line }: View, [x0, y0, x1, y1]: Box, label: string, rgba: Rgba): void {
  ctx.lineWidth = line;
  ctx.strokeStyle = css(rgba);
  ctx.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);

  const fontPx = line * 5;
  ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
  const tagW = ctx.measureText(label).width + line * 2;
  const tagH = fontPx + line * 2;
  const left = x0 * scale - line / 2;
  const top = y0 * scale - line / 2 >= tagH ? y0 * scale - line / 2 - tagH : y0 * scale + line / 2;
  ctx.fillStyle = css(rgba);
  ctx.fillRect(left, top, tagW, tagH);
  ctx.fillStyle = luminance(rgba) > 150 ? '#000' : '#fff';
  ctx.textBaseline = 'top';
  ctx.fillText(label, left + line, top + line);
}

/** Limbs in the instance's colour, joints as white dots over them; keypoints not visible are skipped. */
function drawPose({ ctx, scale, line }: View, keypoints: readonly Keypoint[], rgba: Rgba): void {
  const visible = new Map(keypoints.filter((k) => k.visible > 0).map((k) => [keypointKey(k.name), k]));
  ctx.lineWidth = line;
  ctx.lineCap = 'round';
  ctx.strokeStyle = css(rgba);
  for (const [a, b] of limbsBetween(visible.keys())) {
    const from = visible.get(a)!;
    const to = visible.get(b)!;
    ctx.beginPath();
    ctx.moveTo(from.x * scale, from.y * scale);
    ctx.lineTo(to.x * scale, to.y * scale);
    ctx.stroke();
  }
  ctx.fillStyle = '#fff';
  for (const k of visible.values()) {
    ctx.beginPath();
    ctx.arc(k.x * scale, k.y * scale, line * 1.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
}

/** Rec. 601 luma, 0..255: dark text on light tags, light text on dark ones. */
function luminance([r, g, b]: Rgba): number {
  return 0.299 * r + 0.587 * g + 0.114 * b;
}
