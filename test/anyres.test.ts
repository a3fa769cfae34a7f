import { describe, expect, it } from 'vitest';
import { tileGrid, tilePlan } from '../src/model/anyres.js';
import { loadGolden } from './helpers.js';

const golden = loadGolden('mllm');

describe('anyres tiling', () => {
  it('picks the same grid as the official dynamic_preprocess for many aspect ratios', () => {
    const sizes = golden.values('grid_sizes');
    const grids = golden.values('grids');
    for (let i = 0; i < sizes.length / 2; i++) {
      const g = tileGrid(sizes[2 * i]!, sizes[2 * i + 1]!);
      expect([g.cols, g.rows], `${sizes[2 * i]}x${sizes[2 * i + 1]}`).toEqual([grids[2 * i], grids[2 * i + 1]]);
    }
  });

  it('never depends on the order of equal-area grids (up to 4 tiles)', () => {
    // Every aspect ratio where two grids of equal area tie has a strictly closer grid.
    const ratios = [[1, 2], [2, 1], [1, 3], [3, 1], [1, 4], [2, 2], [4, 1]];
    for (const [a, b] of ratios) {
      for (const [c, d] of ratios) {
        if (a! * b! !== c! * d! || (a === c && b === d)) continue;
        const mid = (a! / b! + c! / d!) / 2;
        const g = tileGrid(mid * 1000, 1000);
        expect(g.cols * g.rows === a! * b! && Math.abs(mid - g.cols / g.rows) === Math.abs(mid - a! / b!)).toBe(false);
      }
    }
  });

  it('cuts row-major tiles and appends a thumbnail only when there are several', () => {
    const wide = tilePlan(520, 260);
    expect(wide.grid).toEqual({ cols: 2, rows: 1 });
    expect(wide.resized).toEqual({ width: 672, height: 336 });
    expect(wide.tiles).toEqual([
      { kind: 'crop', x: 0, y: 0, size: 336 },
      { kind: 'crop', x: 336, y: 0, size: 336 },
      { kind: 'thumbnail', x: 0, y: 0, size: 336 },
    ]);
    expect(tilePlan(300, 300).tiles).toEqual([{ kind: 'crop', x: 0, y: 0, size: 336 }]);
    expect(() => tileGrid(0, 10)).toThrow(/must be positive/);
  });
});
