/**
 * A SentencePiece BPE model, read straight from `tokenizer.model`, that encodes and decodes exactly
 * as SentencePiece does (`spm.SentencePieceProcessor(model_file=...).encode(text)` / `.decode(ids)`):
 * same normalisation, same merges, byte fallback for characters outside the vocabulary, runs of
 * unknown characters merged into one <unk> when there is no byte fallback.
 *
 * Speed: when the vocabulary has no piece with ▁ inside it (LLaMA's has none), no merge can cross
 * the start of a ▁-led word, so words are segmented independently and cached.
 */
import fs from 'node:fs';
import { BpeSegmenter, type BpeVocab } from './bpe.js';
import { Normalizer, PrefixMatcher, SPACE, toByteString } from './normalizer.js';
import { MODEL_TYPE_NAMES, PieceType, parseSentencePieceModel, type SentencePieceModel } from './sentencepiece-model.js';
import { PieceDecoder, type PieceTable } from './stream-decoder.js';

export interface EncodeOptions {
  /** Override the model's add_dummy_prefix (Hugging Face's non-legacy Llama tokenizer turns it off after special tokens). */
  addDummyPrefix?: boolean;
}

const CACHE_LIMIT = 1 << 16;

export class SentencePieceProcessor implements PieceTable {
  /** Piece text by id (UTF-16 strings, ▁ kept). */
  readonly pieces: readonly string[];
  readonly types: Uint8Array;
  readonly scores: Float64Array;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkSurface: string;
  readonly stripsLeadingSpace: boolean;
  readonly removesExtraWhitespaces: boolean;
  readonly byteFallback: boolean;
  /** Whether words are segmented independently (and cached): true when no piece has ▁ inside it. */
  readonly wordwise: boolean;

  private readonly vocab: BpeVocab;
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOfId = new Map<number, number>();
  private readonly normalizer: Normalizer;
  private readonly segmenter: BpeSegmenter;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly cacheLimit: number;
  private readonly textToId = new Map<string, number>();

  /**
   * `wordwise: false` forces whole-text BPE even where words could be segmented apart, `cache: false`
   * segments every word afresh (both for tests and benchmarks; the results are the same).
   */
  constructor(readonly model: SentencePieceModel, readonly source = 'tokenizer.model', options: { wordwise?: boolean; cache?: boolean } = {}) {
    const { trainer, normalizer } = model;
    if (trainer.modelType !== 2) {
      throw new Error(`${source}: a ${MODEL_TYPE_NAMES[trainer.modelType] ?? `type-${trainer.modelType}`} model; only BPE models (LLaMA's kind) are supported`);
    }
    if (model.denormalizer?.precompiledCharsmap.byteLength) throw new Error(`${source}: models with a denormaliser are not supported`);
    const n = model.pieces.length;
    this.pieces = model.pieces.map((p) => p.piece);
    this.types = Uint8Array.from(model.pieces, (p) => p.type);
    this.scores = Float64Array.from(model.pieces, (p) => p.score);
    const mergeable = new Map<string, number>();
    const reserved = new Map<string, number>();
    const unused = new Uint8Array(n);
    const userDefined: string[] = [];
    let unkId = -1;
    model.pieces.forEach((p, id) => {
      const bytes = toByteString(p.piece);
      const normal = p.type === PieceType.Normal || p.type === PieceType.UserDefined || p.type === PieceType.Unused;
      const map = normal ? mergeable : reserved;
      if (mergeable.has(bytes) || reserved.has(bytes)) throw new Error(`${source}: piece '${p.piece}' is defined twice (ids ${mergeable.get(bytes) ?? reserved.get(bytes)} and ${id})`);
      map.set(bytes, id);
      this.textToId.set(p.piece, id);
      if (p.type === PieceType.Unused) unused[id] = 1;
      if (p.type === PieceType.UserDefined) userDefined.push(bytes);
      if (p.type === PieceType.Unknown) {
        if (unkId >= 0) throw new Error(`${source}: more than one <unk> piece (${unkId} and ${id})`);
        unkId = id;
      }
      if (p.type === PieceType.Byte) {
        const m = /^<0x([0-9A-F]{2})>$/.exec(p.piece);
        if (!m) throw new Error(`${source}: byte piece ${id} '${p.piece}' is not of the form <0xXX>`);
        this.byteIds[parseInt(m[1]!, 16)] = id;
        this.byteOfId.set(id, parseInt(m[1]!, 16));
      }
    });
    if (unkId < 0) throw new Error(`${source}: no <unk> piece`);
    this.byteFallback = trainer.byteFallback;
    if (this.byteFallback && this.byteIds.includes(-1)) throw new Error(`${source}: byte_fallback is on but byte piece <0x${this.byteIds.indexOf(-1).toString(16).toUpperCase().padStart(2, '0')}> is missing`);
    const matcher = new PrefixMatcher(userDefined);
    this.vocab = { mergeable, reserved, scores: this.scores, unused, unkId, userDefined: matcher, byteIds: this.byteFallback ? this.byteIds : null };
    this.unkId = unkId;
    const controlId = (piece: string) => {
      const id = this.textToId.get(piece);
      return id !== undefined && this.types[id] === PieceType.Control ? id : -1;
    };
    this.bosId = controlId(trainer.bosPiece);
    this.eosId = controlId(trainer.eosPiece);
    this.padId = controlId(trainer.padPiece);
    this.unkSurface = trainer.unkSurface;
    this.stripsLeadingSpace = normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces;
    this.removesExtraWhitespaces = normalizer.removeExtraWhitespaces;
    this.normalizer = new Normalizer(normalizer, matcher, trainer.treatWhitespaceAsSuffix, source);
    this.segmenter = new BpeSegmenter(this.vocab);
    this.cacheLimit = options.cache === false ? 0 : CACHE_LIMIT;
    // A ▁ after a non-▁ byte starts a new word unless some piece could span that boundary.
    this.wordwise = options.wordwise !== false && ![...mergeable.keys()].some((p) => p.replace(/^(\xe2\x96\x81)+/, '').includes(SPACE));
  }

  static fromFile(file: string): SentencePieceProcessor {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(fs.readFileSync(file));
    } catch (err) {
      throw new Error(`${file}: cannot read the tokenizer model (${(err as Error).message})`);
    }
    return new SentencePieceProcessor(parseSentencePieceModel(bytes, file), file);
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** The id of a piece (its text as in the vocabulary, ▁ included), or undefined. */
  pieceToId(piece: string): number | undefined {
    return this.textToId.get(piece);
  }

  idToPiece(id: number): string {
    this.check(id);
    return this.pieces[id]!;
  }

  pieceText(id: number): string {
    return this.pieces[id]!;
  }

  kind(id: number): 'normal' | 'control' | 'unknown' | 'byte' {
    this.check(id);
    const t = this.types[id]!;
    return t === PieceType.Control ? 'control' : t === PieceType.Unknown ? 'unknown' : t === PieceType.Byte ? 'byte' : 'normal';
  }

  byteValue(id: number): number {
    return this.byteOfId.get(id)!;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const normalized = this.normalizer.normalize(toByteString(text), options.addDummyPrefix);
    if (!normalized) return [];
    const ids = this.wordwise ? this.segmentWords(normalized) : this.segmenter.segment(normalized);
    return this.byteFallback ? ids : mergeUnknownRuns(ids, this.unkId);
  }

  /** Pieces of the encoding (their vocabulary text), for inspection. */
  encodeToPieces(text: string, options: EncodeOptions = {}): string[] {
    return this.encode(text, options).map((id) => this.pieces[id]!);
  }

  decode(ids: readonly number[]): string {
    const d = new PieceDecoder(this);
    let out = '';
    for (const id of ids) out += d.push(id);
    return out + d.flush();
  }

  /** A decoder that returns text as ids arrive (see stream-decoder.ts). */
  decoder(): PieceDecoder {
    return new PieceDecoder(this);
  }

  /** Each word segmented on its own, through the cache. */
  private segmentWords(normalized: string): number[] {
    const ids: number[] = [];
    for (const word of words(normalized)) {
      let cached = this.cache.get(word);
      if (!cached) {
        cached = this.segmenter.segment(word);
        if (this.cache.size >= this.cacheLimit) this.cache.clear();
        if (this.cacheLimit) this.cache.set(word, cached);
      }
      for (const id of cached) ids.push(id);
    }
    return ids;
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.pieces.length) throw new RangeError(`${this.source}: token id ${id} is out of range (vocabulary of ${this.pieces.length})`);
  }
}

/** Splits a normalised byte string before every ▁ that follows something other than ▁. */
function* words(text: string): Generator<string> {
  let begin = 0;
  let at = text.indexOf(SPACE, 1);
  while (at >= 0) {
    if (at < SPACE.length || !text.startsWith(SPACE, at - SPACE.length)) {
      if (at > begin) yield text.slice(begin, at);
      begin = at;
    }
    at = text.indexOf(SPACE, at + SPACE.length);
  }
  yield text.slice(begin);
}

/** Without byte fallback, SentencePiece reports a run of unknown characters as one <unk>. */
function mergeUnknownRuns(ids: number[], unk: number): number[] {
  return ids.filter((id, i) => id !== unk || ids[i - 1] !== unk);
}
