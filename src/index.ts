/** visionllm-webgpu: the public API. */
export { Engine, type EngineOptions, type TensorOptions } from './engine/engine.js';
export { GpuError, type DeviceOptions, type KernelProfile, type AdapterSummary } from './engine/device.js';
export { Tensor } from './engine/tensor.js';
export type { DType, HostArray } from './engine/dtype.js';
export type { MemoryStats } from './engine/pool.js';
export * as ops from './ops/index.js';
export * as image from './image/index.js';
