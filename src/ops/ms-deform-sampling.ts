/**
 * Where multi-scale deformable attention samples: reference points plus predicted offsets, in the
 * convention of Hugging Face's GroundingDino / Deformable-DETR (kernels/ms_deform_sampling.wgsl):
 *   reference points [B, Lq, L, 2] (x, y):       loc = ref + offset / (W_l, H_l)
 *   reference boxes  [B, Lq, L, 4] (cx, cy, w, h): loc = ref.xy + offset / P · ref.wh · 0.5
 * Offsets [B, Lq, H, L, P, 2]; locations [B, Lq, H, L, P, 2] in f32 (sub-pixel positions need it).
 */
import { DTYPE_BYTES } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './chunks.js';
import { parseLevels, type SpatialShapes } from './ms-deform-levels.js';
import { expectDType, FLOAT_DTYPES } from './shape.js';

const OP = 'msDeformSamplingLocations';

export function msDeformSamplingLocations(referencePoints: Tensor, offsets: Tensor, spatialShapes: SpatialShapes): Tensor {
  expectDType(OP, referencePoints, FLOAT_DTYPES, 'reference points');
  expectDType(OP, offsets, FLOAT_DTYPES, 'sampling offsets');
  const levels = parseLevels(OP, spatialShapes);
  const L = levels.shapes.length;
  const ref = referencePoints.shape;
  const R = ref[3];
  if (ref.length !== 4 || ref[2] !== L || (R !== 2 && R !== 4)) {
    throw new RangeError(`${OP}: reference points ${formatShape(ref)} must be [batch, queries, ${L}, 2] (points) or [batch, queries, ${L}, 4] (boxes) for ${L} levels`);
  }
  const off = offsets.shape;
  if (off.length !== 6 || off[0] !== ref[0] || off[1] !== ref[1] || off[3] !== L || off[5] !== 2) {
    throw new RangeError(`${OP}: sampling offsets ${formatShape(off)} must be [${ref[0]}, ${ref[1]}, heads, ${L}, points, 2] to match reference points ${formatShape(ref)}`);
  }
  const [B, Lq, H, , P] = off as [number, number, number, number, number];
  const engine = offsets.engine;
  const locations = engine.empty(off, 'f32');
  const rows = B * Lq;
  const perRow = H * L * P;
  if (rows * perRow === 0) return locations;
  const refRows = referencePoints.reshape([rows, L * R]);
  const offRows = offsets.reshape([rows, perRow * 2]);
  const outRows = locations.reshape([rows, perRow * 2]);
  const bytes = [L * R * DTYPE_BYTES[referencePoints.dtype], perRow * 2 * DTYPE_BYTES[offsets.dtype], perRow * 2 * 4];
  for (const [r0, r1] of rowChunks(engine, OP, rows, bytes)) {
    const views = { reference: refRows.rows(r0, r1), offsets: offRows.rows(r0, r1), locations: outRows.rows(r0, r1) };
    const n = (r1 - r0) * perRow;
    engine.run(
      {
        file: 'ms_deform_sampling.wgsl',
        entry: 'sampling_locations',
        dtypes: { reference: referencePoints.dtype, offsets: offsets.dtype, locations: 'f32' },
        overrides: { BOXES: R === 4 },
      },
      views,
      { n, heads: H, levels: L, points: P, level_info: levels.info },
      Math.ceil(n / 64),
    );
    Object.values(views).forEach((t) => t.dispose());
  }
  [refRows, offRows, outRows].forEach((t) => t.dispose());
  return locations;
}
