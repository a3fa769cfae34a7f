/**
 * VisionLLM v2's "anyres" tiling (visionllmv2/mm_utils.py dynamic_preprocess): pick the tile grid
 * (cols x rows, at most maxTiles tiles) whose aspect ratio is closest to the image's, resize the
 * image to (tile*cols, tile*rows), cut tiles row-major, and when there is more than one tile append
 * a thumbnail of the whole image resized to one tile. Each tile becomes 576 image tokens.
 */
export interface TileGrid {
  cols: number;
  rows: number;
}

export interface TilePlan {
  grid: TileGrid;
  /** Size the whole image is resized to before cutting tiles. */
  resized: { width: number; height: number };
  /** Tiles in order: crops of the resized image, then the thumbnail (a resize of the original) if any. */
  tiles: { kind: 'crop' | 'thumbnail'; x: number; y: number; size: number }[];
}

/** Candidate grids in the official order: by tile count, then as Python's sorted() leaves them. */
function candidateGrids(maxTiles: number): TileGrid[] {
  const seen = new Set<string>();
  const grids: TileGrid[] = [];
  for (let n = 1; n <= maxTiles; n++) {
    for (let i = 1; i <= n; i++) {
      for (let j = 1; j <= n; j++) {
        if (i * j > maxTiles || seen.has(`${i}x${j}`)) continue;
        seen.add(`${i}x${j}`);
        grids.push({ cols: i, rows: j });
      }
    }
  }
  // Python sorts a set by i*j, so grids of equal area come in hash order. That order can only
  // matter when two equal-area grids are equally close to the image's aspect ratio, and then a
  // grid of another area is always closer still (up to 4 tiles: checked in test/anyres.test.ts).
  return grids.sort((a, b) => a.cols * a.rows - b.cols * b.rows);
}

/** The grid whose aspect ratio is closest to width/height; on a tie a larger grid wins if the image has the pixels for it. */
export function tileGrid(width: number, height: number, tileSize = 336, maxTiles = 4): TileGrid {
  if (!(width > 0 && height > 0)) throw new RangeError(`anyres: image size ${width}x${height} must be positive`);
  const aspect = width / height;
  let best: TileGrid = { cols: 1, rows: 1 };
  let bestDiff = Infinity;
  for (const g of candidateGrids(maxTiles)) {
    const diff = Math.abs(aspect - g.cols / g.rows);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = g;
    } else if (diff === bestDiff && width * height > 0.5 * tileSize * tileSize * g.cols * g.rows) {
      best = g;
    }
  }
  return best;
}

export function tilePlan(width: number, height: number, tileSize = 336, maxTiles = 4): TilePlan {
  const grid = tileGrid(width, height, tileSize, maxTiles);
  const tiles: TilePlan['tiles'] = [];
  for (let i = 0; i < grid.cols * grid.rows; i++) {
    tiles.push({ kind: 'crop', x: (i % grid.cols) * tileSize, y: Math.floor(i / grid.cols) * tileSize, size: tileSize });
  }
  if (tiles.length > 1) tiles.push({ kind: 'thumbnail', x: 0, y: 0, size: tileSize });
  return { grid, resized: { width: tileSize * grid.cols, height: tileSize * grid.rows }, tiles };
}
