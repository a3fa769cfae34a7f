/** Images: decoding, GPU resizing (Pillow-exact), CLIP/anyres preprocessing and coordinate maps. */
export * from './affine.js';
export * from './decode.js';
export * from './gpu-image.js';
export * from './preprocess.js';
export * from './resample-plan.js';
