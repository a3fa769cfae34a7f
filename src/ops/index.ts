/** Typed op wrappers over the WGSL kernels. Every op checks shapes and dtypes and names both in its errors. */
export * from './activation.js';
export * from './copy.js';
export * from './elementwise.js';
export * from './gather.js';
export * from './matmul.js';
export * from './rows.js';
export * from './attention.js';
export * from './kv-cache.js';
export * from './rope.js';
