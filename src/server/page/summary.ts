/** The decoder results in words: the list beside the picture, and the canvas's accessible label. */
import { imagesOf, isGdino, isUnipose, type DecoderResult } from './results.js';

/** One line per object, e.g. "person 0.91 at (12, 30)–(140, 300), with a mask". */
export function describeResults(results: readonly DecoderResult[]): string[] {
  return results.flatMap((r): string[] => {
    if (isGdino(r)) {
      const lines = (r.detections ?? []).map((d) => `${d.label} ${d.score.toFixed(2)} at ${corners(d.box)}${d.mask ? ', with a mask' : ''}`);
      if (r.semantic) {
        const labels = r.semantic.segments?.map((s) => s.label) ?? r.classes ?? [];
        lines.push(`semantic map of ${r.semantic.width}×${r.semantic.height}${labels.length > 0 ? `: ${labels.join(', ')}` : ''}`);
      }
      return lines;
    }
    if (isUnipose(r)) {
      return (r.instances ?? []).map((p) => `${p.label} ${p.score.toFixed(2)} at ${corners(p.box)}, ${p.keypoints.filter((k) => k.visible > 0).length} keypoints`);
    }
    const images = imagesOf(r);
    if (images.length > 0) return images.map((image) => `${r.task} (${r.decoder}): an image of ${image.width}×${image.height}`);
    return [`${r.task} (${r.decoder})`];
  });
}

function corners([x0, y0, x1, y1]: readonly number[]): string {
  const r = (v: number | undefined) => Math.round(v ?? 0);
  return `(${r(x0)}, ${r(y0)})–(${r(x1)}, ${r(y1)})`;
}
