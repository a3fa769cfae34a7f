/**
 * Typed op wrappers over the WGSL kernels. Every op checks shapes and dtypes and names both in its errors.
 *
 * One family, one name: src/ops/<family>.ts runs kernels/<family>*.wgsl and is tested by
 * test/<family>.test.ts against test/golden/<family>.safetensors from scripts/golden/<family>.py
 * (dashes become underscores outside TypeScript: gemv-chain.ts runs gemv_chain.wgsl). Two families
 * have no kernel of their own: kv-cache stores through rope.wgsl's kv_append and attends with the
 * attention kernels, and timestep is computed on the host (see there why).
 *
 * support/ is the plumbing the families share: binding-sized chunks and windows, kernel variants
 * per adapter, shape checks, placeholders, work counters, activation codes, attention and pyramid
 * geometry, resampling plans; and conv2d's Winograd path. Code outside ops takes the few pieces it
 * needs from here, never from support/ directly.
 */
export * from './attention.js';
export * from './conv.js';
export * from './copy.js';
export * from './elementwise.js';
export * from './gather.js';
export * from './gemv-chain.js';
export * from './kv-cache.js';
export * from './matmul.js';
export { msDeformAttn, msDeformSamplingLocations, type MsDeformAttnKernel, type MsDeformAttnOptions } from './ms-deform-attn.js';
export * from './norm2d.js';
export * from './resize.js';
export * from './rope.js';
export * from './rows.js';
export * from './sample.js';
export * from './spatial.js';
export * from './timestep.js';

// Activations the elementwise, matmul, conv and norm2d kernels fuse (kernels/lib/activation.wgsl).
export * from './support/activation.js';
export { FLOAT_DTYPES } from './support/shape.js';
export { parseLevels, type SpatialShapes } from './support/ms-deform-levels.js';
// What src/image's own kernels (kernels/image.wgsl) share with resize: the resampling plans and
// the splitting of rows into binding-sized chunks.
export { rowChunks } from './support/chunks.js';
export { fixedPointWeights, pilPlan, PIL_PRECISION_BITS, nearestPlan, torchPlan, type PilFilter, type ResampleFilter, type ResamplePlan } from './support/resample-plan.js';
