/**
 * Dawn's Node bindings. Importing this module installs the WebGPU globals (GPUBufferUsage,
 * GPUMapMode, ...) that the rest of the engine and @webgpu/types expect to exist.
 */
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

export { create as createGpu };
