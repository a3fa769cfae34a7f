/** The task commands' stdout without --json: a line per result, numbers rounded for reading. */
import type { DetectResult, TaskResult } from '../model/tasks/results.js';

export function summaryLines(result: TaskResult): string[] {
  switch (result.task) {
    case 'generate':
    case 'edit':
      return [`image ${result.image.width}x${result.image.height}`];
    case 'pose':
      return counted(result.instances, 'instance', (p) => `${p.label} ${p.score.toFixed(2)} ${box(p.box)} ${p.keypoints.length} keypoints`);
    case 'segment':
      return result.semantic ? semanticLines(result.semantic.classes, result.classes) : detectionLines(result.detections);
    case 'detect':
    case 'ground':
      return detectionLines(result.detections);
  }
}

function detectionLines(detections: DetectResult['detections']): string[] {
  return counted(detections, 'detection', (d) => `${d.label} ${d.score.toFixed(2)} ${box(d.box)}${d.mask ? ` mask ${d.mask.area} px` : ''}`);
}

function counted<T>(items: readonly T[], noun: string, line: (item: T) => string): string[] {
  return items.length ? items.map(line) : [`no ${noun} above the threshold`];
}

function box(b: readonly number[]): string {
  return `[${b.map((v) => Math.round(v)).join(', ')}]`;
}

/** Each class present, largest share of the picture first. */
function semanticLines(map: Uint32Array, classes: readonly string[]): string[] {
  const counts = new Map<number, number>();
  for (const c of map) counts.set(c, (counts.get(c) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${classes[c] ?? c} ${((100 * n) / map.length).toFixed(1)}%`);
}
