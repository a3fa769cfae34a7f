/**
 * UniPose's pose-phase self-attention mask `attn_mask2` (decoders.md 2.B, B.3.6; official
 * UniPose.prepare_for_mask), bit-exact, with the official misalignment kept:
 *
 *   L = groups · (1 + maxKeypoints); blocked(r, c), starting all open:
 *   1. rows r < groups · maxKeypoints: blocked outside [m·⌊r/m⌋, m·⌊r/m⌋ + m), m = maxKeypoints
 *      (stride 68 where the groups have 69 rows: rows groups·m .. L-1 stay fully open), except that
 *      the last band (rows (groups−1)·m .. groups·m − 1) is not blocked right of it either: the
 *      official code blocks [end, L) only when end < groups·m;
 *   2. each group's own (1 + m)² block is overwritten: open where kpt_mask[a] == kpt_mask[b],
 *      kpt_mask = [1 (box), 1 × keypoints, 0 × (m − keypoints)].
 *
 * The released model ran with the leak across neighbouring groups this gives, so it is kept.
 */
import type { DType } from '../../engine/dtype.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';

/** [L · L] row-major, 1 = blocked (torch's True). */
export function poseAttentionMask(groups: number, maxKeypoints: number, keypoints: number): Uint8Array {
  if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`poseAttentionMask: groups ${groups} must be a positive integer`);
  if (!Number.isInteger(maxKeypoints) || maxKeypoints < 1) throw new RangeError(`poseAttentionMask: maxKeypoints ${maxKeypoints} must be a positive integer`);
  if (!Number.isInteger(keypoints) || keypoints < 0 || keypoints > maxKeypoints) throw new RangeError(`poseAttentionMask: keypoints ${keypoints} must be an integer in [0, ${maxKeypoints}]`);
  const m = maxKeypoints;
  const group = 1 + m;
  const L = groups * group;
  const mask = new Uint8Array(L * L);
  // Step 1: the stride-m band.
  for (let r = 0; r < groups * m; r++) {
    const start = Math.floor(r / m) * m;
    const row = mask.subarray(r * L, (r + 1) * L);
    row.fill(1, 0, start);
    // Official `if ej < num_group * group_bbox_kpt`: the last band leaves columns groups·m .. L-1 open.
    if (start + m < groups * m) row.fill(1, start + m);
  }
  // Step 2: each group's own block from kpt_mask equality.
  const valid = (a: number) => a <= keypoints; // slot 0 (box) and the first `keypoints` keypoint slots
  for (let g = 0; g < groups; g++) {
    const o = g * group;
    for (let a = 0; a < group; a++) {
      const row = (o + a) * L + o;
      for (let b = 0; b < group; b++) mask[row + b] = valid(a) === valid(b) ? 0 : 1;
    }
  }
  return mask;
}

/**
 * The mask as an additive term for the fused attention: [1, 1, L, L] with −∞ where blocked and 0
 * elsewhere (one copy broadcast over the heads, as PyTorch's MHA does with a bool mask). f16 holds
 * −∞ exactly and halves the 3450² term to 24 MB.
 */
export function poseAttentionBias(engine: Engine, groups: number, maxKeypoints: number, keypoints: number, dtype: DType = 'f32'): Tensor {
  const mask = poseAttentionMask(groups, maxKeypoints, keypoints);
  const L = groups * (1 + maxKeypoints);
  const values = new Float32Array(mask.length);
  for (let i = 0; i < mask.length; i++) values[i] = mask[i] ? -Infinity : 0;
  return engine.tensor(values, [1, 1, L, L], dtype);
}
