/** Images: decoding, annotated pictures of results, GPU resizing (Pillow-exact), CLIP/anyres preprocessing and coordinate maps. */
export * from './affine.js';
export * from './annotate.js';
export * from './decode.js';
export * from './encode.js';
export * from './gpu-image.js';
export * from './preprocess.js';
// The resampling plans live with resize in ops (src/ops/support/resample-plan.ts), which applies them too.
export { fixedPointWeights, pilPlan, PIL_PRECISION_BITS, torchPlan, type ResampleFilter, type ResamplePlan } from '../ops/index.js';
