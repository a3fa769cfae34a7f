/**
 * What every checkpoint file format provides to the uniform Checkpoint interface: the tensors it
 * holds (name, stored dtype, shape) and their bytes, row-major and contiguous, read in bounded
 * pieces so that no tensor, however large, needs more than one piece of memory at a time.
 */
import type { StoredDType } from './elements.js';

export interface TensorInfo {
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** Bytes of the contiguous tensor: numel x element size. */
  byteLength: number;
  /** The file it is read from. */
  file: string;
}

export interface TensorSource {
  readonly path: string;
  readonly format: 'safetensors' | 'pytorch';
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  /**
   * The tensor's bytes in order, in pieces of at most `maxBytes` (rounded down to whole elements).
   * Each piece is a fresh buffer starting at offset 0 of its ArrayBuffer.
   */
  chunks(name: string, maxBytes: number): AsyncGenerator<Uint8Array>;
  close(): Promise<void>;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Piece size in whole elements, at least one element. */
export function pieceBytes(maxBytes: number, elementBytes: number): number {
  return Math.max(elementBytes, Math.floor(maxBytes / elementBytes) * elementBytes);
}
