/** visionllm-webgpu: the public API. */
export { Engine, type EngineOptions, type TensorOptions } from './engine/engine.js';
export { GpuError, type DeviceOptions, type KernelProfile, type AdapterSummary } from './engine/device.js';
export { Tensor } from './engine/tensor.js';
export type { DType, HostArray } from './engine/dtype.js';
export type { MemoryStats } from './engine/pool.js';
export * as ops from './ops/index.js';
export * as image from './image/index.js';
export { Checkpoint, defaultStoragePolicy, storageDType, type StoragePolicy, type TensorInfo, type UploadOptions, type Progress } from './io/checkpoint.js';
export { convertCheckpoint, type ConvertOptions, type ConvertReport } from './io/convert.js';
export { Tokenizer, type AddedToken, type TokenizerOptions, type StreamDecoder } from './tokenizer/tokenizer.js';
export { SentencePieceProcessor } from './tokenizer/sentencepiece.js';
export { VisionLLM, type LoadOptions, type ChatOptions, type ChatResult, type ChatTimings, type ImageInput } from './model/vision-llm.js';
export type { ChatTurn } from './model/chat-template.js';
export type { FinishReason, SamplingSettings } from './model/generate.js';
export { readConfigFile, type ModelConfig, type VisionLLMConfig, type LlamaConfig, type ClipVisionConfig } from './model/config.js';
