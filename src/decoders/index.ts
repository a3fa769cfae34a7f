/** The decoders a VisionLLM v2 checkpoint may hold, in the official model's order. A new decoder is a folder here and one entry in this list. */
import type { AnyDecoder } from './decoder.js';
import { ip2p, sd } from './diffusion/index.js';
import { gdino } from './gdino/index.js';
import { unipose } from './unipose/index.js';

export const DEFAULT_DECODERS: readonly AnyDecoder[] = [gdino, unipose, sd, ip2p];

export * from './decoder.js';
export type { GdinoOutput, GdinoOptions, GdinoTask } from './gdino/index.js';
export type { UniposeOutput } from './unipose/index.js';
export type { DiffusionOutput } from './diffusion/index.js';
