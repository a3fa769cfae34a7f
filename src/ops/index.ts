/** Typed op wrappers over the WGSL kernels. Every op checks shapes and dtypes and names both in its errors. */
export * from './activation.js';
export * from './attention.js';
export * from './conv.js';
export * from './copy.js';
export * from './elementwise.js';
export * from './gather.js';
export * from './kv-cache.js';
export * from './matmul.js';
export { msDeformAttn, type MsDeformAttnKernel, type MsDeformAttnOptions } from './ms-deform-attn.js';
export type { SpatialShapes } from './ms-deform-levels.js';
export { msDeformSamplingLocations } from './ms-deform-sampling.js';
export * from './norm2d.js';
export * from './resize.js';
export * from './rope.js';
export * from './rows.js';
export * from './sample.js';
export * from './spatial.js';
export * from './timestep.js';
