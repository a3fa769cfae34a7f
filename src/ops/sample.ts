/**
 * Token sampling on the GPU (kernels/sample.wgsl): temperature, top-k and top-p, then an
 * inverse-CDF draw. The caller supplies one uniform number per row from its own seeded generator,
 * so generation is reproducible; only the chosen ids need to be read back.
 */
import { DTYPE_BYTES } from '../engine/dtype.js';
import type { Tensor } from '../engine/tensor.js';
import { argmax } from './rows.js';
import { rowChunks } from './support/chunks.js';
import { expectDType, expectRank, FLOAT_DTYPES, rowsAndWidth } from './support/shape.js';
import { rowKernelConfig } from './support/variants.js';

const DRAWS_PER_DISPATCH = 64;

export interface SamplingOptions {
  /** Logits are divided by it; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (ties at the k-th kept). 0 or absent: no limit. */
  topK?: number;
  /** Keep the most likely tokens until their mass reaches p (of what top-k kept). 1 or absent: no limit. */
  topP?: number;
}

/**
 * One token id per row of `logits` [..., vocab], as u32 [...]. `draws` are uniform numbers in
 * [0, 1), one per row (a single number is used for every row), or a generator called once per row,
 * and again at each replay when the call is captured (Engine.capture).
 */
export function sampleTokens(logits: Tensor, draws: number | readonly number[] | (() => number), options: SamplingOptions = {}): Tensor {
  expectDType('sample', logits, FLOAT_DTYPES, 'logits');
  expectRank('sample', logits, 1, 'logits');
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`sample: temperature must be >= 0, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`sample: topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`sample: topP must be in (0, 1], got ${topP}`);
  if (temperature === 0) return argmax(logits);

  const { rows, width } = rowsAndWidth(logits);
  const u = typeof draws === 'number' ? new Array<number>(rows).fill(draws) : typeof draws === 'function' ? Array.from({ length: rows }, draws) : [...draws];
  if (u.length !== rows) throw new RangeError(`sample: ${u.length} draws for ${rows} rows of logits`);
  checkDraws(u);

  const engine = logits.engine;
  const config = rowKernelConfig(engine);
  const out = engine.empty(logits.shape.slice(0, -1), 'u32');
  const logits2 = logits.reshape([rows, width]);
  const flatOut = out.reshape([rows]);
  const probs = engine.empty([rows, width], 'f32');
  // Draws travel in the dispatch's uniforms (no upload, no extra submit): 64 rows per dispatch.
  for (const [c0, c1] of rowChunks(engine, 'sample', rows, [width * DTYPE_BYTES[logits.dtype], width * 4, 4])) {
    for (let r0 = c0; r0 < c1; r0 += DRAWS_PER_DISPATCH) {
      const r1 = Math.min(c1, r0 + DRAWS_PER_DISPATCH);
      const views = { logits: logits2.rows(r0, r1), probs: probs.rows(r0, r1), token: flatOut.rows(r0, r1) };
      engine.run(
        { file: 'sample.wgsl', entry: 'sample', dtypes: { logits: logits.dtype }, ...config },
        views,
        { rows: r1 - r0, width, top_k: topK >= width ? 0 : topK, top_p: topP, inv_temperature: 1 / temperature, draws: u.slice(r0, r1) },
        r1 - r0,
      );
      // Captured: a generator draws anew at each replay; fixed draws stay as they are.
      if (typeof draws === 'function') engine.onReplay(() => ({ params: { draws: checkDraws(Array.from({ length: r1 - r0 }, draws)) } }));
      Object.values(views).forEach((v) => v.dispose());
    }
  }
  [logits2, flatOut, probs].forEach((t) => t.dispose());
  return out;
}

function checkDraws(u: number[]): number[] {
  for (const v of u) if (!(v >= 0 && v < 1)) throw new RangeError(`sample: draws must be in [0, 1), got ${v}`);
  return u;
}
