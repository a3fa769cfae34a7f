import { describe, expect, it } from 'vitest';
import { anyresGrid } from '../src/image/preprocess.js';
import { loadGolden } from './helpers.js';

const golden = loadGolden('mllm');
const grid = (width: number, height: number) => anyresGrid({ width, height }, 336, 1, 4);

describe('anyres grid', () => {
  it('picks the same grid as the official dynamic_preprocess for many aspect ratios', () => {
    const sizes = golden.values('grid_sizes');
    const grids = golden.values('grids');
    for (let i = 0; i < sizes.length / 2; i++) {
      expect(grid(sizes[2 * i]!, sizes[2 * i + 1]!), `${sizes[2 * i]}x${sizes[2 * i + 1]}`).toEqual([grids[2 * i], grids[2 * i + 1]]);
    }
  });

  it('never depends on the order of equal-area grids (up to 4 tiles)', () => {
    // Python's set order among equal-area grids is not reproduced: check it cannot matter, i.e.
    // wherever two equal-area grids tie for distance, some other grid is strictly closer.
    const ratios = [[1, 2], [2, 1], [1, 3], [3, 1], [1, 4], [2, 2], [4, 1]];
    for (const [a, b] of ratios) {
      for (const [c, d] of ratios) {
        if (a! * b! !== c! * d! || (a === c && b === d)) continue;
        const mid = (a! / b! + c! / d!) / 2;
        const [cols, rows] = grid(mid * 1000, 1000);
        expect(cols * rows === a! * b! && Math.abs(mid - cols / rows) === Math.abs(mid - a! / b!)).toBe(false);
      }
    }
  });
});
