/**
 * A SentencePiece model file (`tokenizer.model`): the ModelProto protobuf of
 * sentencepiece_model.proto, read field by field. Defaults are proto2's declared ones, which is
 * how SentencePiece itself sees a field that is absent.
 */
import { proto, protoFields } from './protobuf.js';

export enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export interface ModelPiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface NormalizerSpec {
  name: string;
  /** Darts double-array trie + replacement strings; empty for the identity normaliser. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface TrainerSpec {
  /** 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkSurface: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
}

export interface SentencePieceModel {
  pieces: ModelPiece[];
  trainer: TrainerSpec;
  normalizer: NormalizerSpec;
  denormalizer: NormalizerSpec | null;
}

export const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'unigram', 2: 'BPE', 3: 'word', 4: 'char' };

function normalizerSpec(buf: Uint8Array, what: string): NormalizerSpec {
  const spec: NormalizerSpec = { name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
  for (const f of protoFields(buf, what)) {
    switch (f.field) {
      case 1: spec.name = proto.string(f, what); break;
      case 2: spec.precompiledCharsmap = proto.bytes(f, what); break;
      case 3: spec.addDummyPrefix = proto.bool(f, what); break;
      case 4: spec.removeExtraWhitespaces = proto.bool(f, what); break;
      case 5: spec.escapeWhitespaces = proto.bool(f, what); break;
    }
  }
  return spec;
}

function trainerSpec(buf: Uint8Array, what: string): TrainerSpec {
  const spec: TrainerSpec = { modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false, unkSurface: ' \u2047 ', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>' };
  for (const f of protoFields(buf, what)) {
    switch (f.field) {
      case 3: spec.modelType = proto.int(f, what); break;
      case 24: spec.treatWhitespaceAsSuffix = proto.bool(f, what); break;
      case 35: spec.byteFallback = proto.bool(f, what); break;
      case 44: spec.unkSurface = proto.string(f, what); break;
      case 46: spec.bosPiece = proto.string(f, what); break;
      case 47: spec.eosPiece = proto.string(f, what); break;
      case 48: spec.padPiece = proto.string(f, what); break;
    }
  }
  return spec;
}

function piece(buf: Uint8Array, what: string): ModelPiece {
  const p: ModelPiece = { piece: '', score: 0, type: PieceType.Normal };
  for (const f of protoFields(buf, what)) {
    switch (f.field) {
      case 1: p.piece = proto.string(f, what); break;
      case 2: p.score = proto.float(f, what); break;
      case 3: p.type = proto.int(f, what); break;
    }
  }
  if (!p.piece) throw new Error(`${what}: empty piece`);
  if (!(p.type in PieceType)) throw new Error(`${what}: piece '${p.piece}' has unknown type ${p.type}`);
  return p;
}

/**
 * Parses a ModelProto; `file` names the source in errors. spm_train always writes trainer_spec and
 * normalizer_spec after the pieces, so a file that ends without them was cut short: taking proto2's
 * defaults instead would read it as a unigram model, or normalise text differently.
 */
export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  try {
    return parseModel(buf);
  } catch (err) {
    throw new Error(`${file}: truncated or corrupt sentencepiece model (${(err as Error).message})`);
  }
}

function parseModel(buf: Uint8Array): SentencePieceModel {
  const pieces: ModelPiece[] = [];
  let trainer: TrainerSpec | null = null;
  let normalizer: NormalizerSpec | null = null;
  let denormalizer: NormalizerSpec | null = null;
  const what = 'ModelProto';
  for (const f of protoFields(buf, what)) {
    switch (f.field) {
      case 1: pieces.push(piece(proto.bytes(f, what), `piece ${pieces.length}`)); break;
      case 2: trainer = trainerSpec(proto.bytes(f, what), 'trainer_spec'); break;
      case 3: normalizer = normalizerSpec(proto.bytes(f, what), 'normalizer_spec'); break;
      case 5: denormalizer = normalizerSpec(proto.bytes(f, what), 'denormalizer_spec'); break;
    }
  }
  if (!pieces.length) throw new Error('no pieces: not a SentencePiece model?');
  if (!trainer || !normalizer) throw new Error(`no ${trainer ? 'normalizer_spec' : 'trainer_spec'} after ${pieces.length} pieces`);
  return { pieces, trainer, normalizer, denormalizer };
}
