/**
 * SentencePiece's BPE segmentation (bpe_model.cc), step for step: the normalised text is split
 * into characters (user-defined symbols whole and frozen), then the adjacent pair whose merged
 * piece has the highest score is merged, ties going to the leftmost, until no pair is a piece.
 * Pieces marked unused are merged like the others and then split back the way they were formed.
 * Characters that are no piece become <unk>, or their UTF-8 bytes' pieces with byte fallback.
 *
 * Works on byte strings (see normalizer.ts). "Is left+right a piece?" is asked for every
 * neighbouring pair, so it is answered from a table keyed by the two pieces' ids (every way of
 * cutting every piece in two) instead of building and hashing the joined string.
 */
import { PrefixMatcher, utf8Length } from './normalizer.js';

export interface BpeVocab {
  /** Normal, user-defined and unused pieces: the ones merges may produce. */
  readonly mergeable: ReadonlyMap<string, number>;
  /** Control, unknown and byte pieces. */
  readonly reserved: ReadonlyMap<string, number>;
  readonly scores: Float64Array;
  readonly unused: Uint8Array;
  readonly unkId: number;
  readonly userDefined: PrefixMatcher;
  /** Piece id of each byte's <0xXX> piece, when the model falls back to bytes. */
  readonly byteIds: Int32Array | null;
}

/** A max-heap of candidate merges ordered by score, then by leftmost position. */
class PairHeap {
  left = new Int32Array(64);
  right = new Int32Array(64);
  size = new Int32Array(64);
  merged = new Int32Array(64);
  score = new Float64Array(64);
  private order = new Int32Array(64);
  private count = 0;
  private slots = 0;

  clear(): void {
    this.count = 0;
    this.slots = 0;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  push(left: number, right: number, merged: number, score: number, size: number): void {
    if (this.slots === this.left.length) this.grow();
    const slot = this.slots++;
    this.left[slot] = left;
    this.right[slot] = right;
    this.merged[slot] = merged;
    this.score[slot] = score;
    this.size[slot] = size;
    let i = this.count++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(slot, this.order[parent]!)) break;
      this.order[i] = this.order[parent]!;
      i = parent;
    }
    this.order[i] = slot;
  }

  /** The best pair's slot (valid until the next clear). */
  pop(): number {
    const top = this.order[0]!;
    const last = this.order[--this.count]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.count) break;
      if (child + 1 < this.count && this.before(this.order[child + 1]!, this.order[child]!)) child += 1;
      if (!this.before(this.order[child]!, last)) break;
      this.order[i] = this.order[child]!;
      i = child;
    }
    this.order[i] = last;
    return top;
  }

  private before(a: number, b: number): boolean {
    return this.score[a]! > this.score[b]! || (this.score[a] === this.score[b] && this.left[a]! < this.left[b]!);
  }

  private grow(): void {
    const n = this.left.length * 2;
    const grown = <T extends Int32Array | Float64Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      b.set(a);
      return b;
    };
    this.left = grown(this.left);
    this.right = grown(this.right);
    this.size = grown(this.size);
    this.merged = grown(this.merged);
    this.score = grown(this.score);
    this.order = grown(this.order);
  }
}

export class BpeSegmenter {
  private readonly heap = new PairHeap();
  /** (left id * vocabulary size + right id) -> id of the piece they join into. */
  private readonly pairs = new Map<number, number>();
  private readonly stride: number;
  private readonly asciiIds = new Int32Array(128).fill(-1);
  private start = new Int32Array(64);
  private end = new Int32Array(64);
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  /** Mergeable piece id of each symbol's current text, or -1 (an unknown character, a reserved piece). */
  private ids = new Int32Array(64);
  private frozen = new Uint8Array(64);
  private text = '';
  /** How unused pieces were formed, to split them back (made only when one is merged). */
  private revMerge: Map<string, [string, string]> | null = null;

  constructor(private readonly vocab: BpeVocab) {
    this.stride = vocab.scores.length;
    for (const [piece, id] of vocab.mergeable) {
      for (let cut = 1; cut < piece.length; cut++) {
        const a = vocab.mergeable.get(piece.slice(0, cut));
        const b = vocab.mergeable.get(piece.slice(cut));
        if (a !== undefined && b !== undefined) this.pairs.set(a * this.stride + b, id);
      }
    }
    for (let c = 0; c < 128; c++) this.asciiIds[c] = vocab.mergeable.get(String.fromCharCode(c)) ?? -1;
  }

  /** Piece ids for a normalised byte string. */
  segment(text: string): number[] {
    const n = this.split(text);
    if (n === 0) return [];
    this.text = text;
    this.revMerge = null;
    const { start, end, prev, next, ids, heap } = this;
    heap.clear();
    for (let i = 1; i < n; i++) this.maybeAdd(i - 1, i);
    while (!heap.empty) {
      const slot = heap.pop();
      const l = heap.left[slot]!;
      const r = heap.right[slot]!;
      const lSize = end[l]! - start[l]!;
      const rSize = end[r]! - start[r]!;
      if (!lSize || !rSize || lSize + rSize !== heap.size[slot]) continue; // stale: a neighbour changed
      end[l] = end[r]!;
      ids[l] = heap.merged[slot]!;
      next[l] = next[r]!;
      if (next[r]! >= 0) prev[next[r]!] = l;
      start[r] = end[r]!; // r is now empty
      this.maybeAdd(prev[l]!, l);
      this.maybeAdd(l, next[l]!);
    }
    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) {
      if (ids[i]! >= 0 && !this.vocab.unused[ids[i]!]) out.push(ids[i]!);
      else this.emit(text.slice(start[i]!, end[i]!), out);
    }
    return out;
  }

  /** A symbol that is not a plain piece: a reserved piece, an unknown character, or an unused piece to split back. */
  private emit(w: string, out: number[]): void {
    const v = this.vocab;
    const id = v.reserved.get(w) ?? v.mergeable.get(w) ?? v.unkId;
    const parts = v.unused[id] ? this.revMerge?.get(w) : undefined;
    if (parts) {
      this.emit(parts[0], out);
      this.emit(parts[1], out);
    } else if (id === v.unkId && v.byteIds) {
      for (let i = 0; i < w.length; i++) out.push(v.byteIds[w.charCodeAt(i)]!);
    } else out.push(id);
  }

  /** Queues the merge of symbols l and r if their concatenation is a piece. */
  private maybeAdd(l: number, r: number): void {
    if (l < 0 || r < 0 || this.frozen[l] || this.frozen[r]) return;
    const { start, end, text, ids, vocab } = this;
    const a = ids[l]!;
    const b = ids[r]!;
    // Only symbols that are pieces can form a piece... unless the vocabulary has a piece whose halves are not pieces: ask by text then.
    const id = a >= 0 && b >= 0 ? this.pairs.get(a * this.stride + b) : vocab.mergeable.get(text.slice(start[l]!, end[r]!));
    if (id === undefined) return;
    this.heap.push(l, r, id, vocab.scores[id]!, end[r]! - start[l]!);
    if (vocab.unused[id]) (this.revMerge ??= new Map()).set(text.slice(start[l]!, end[r]!), [text.slice(start[l]!, end[l]!), text.slice(start[r]!, end[r]!)]);
  }

  /** Initial symbols: user-defined symbols (frozen), else single UTF-8 characters. */
  private split(text: string): number {
    if (text.length > this.start.length) this.grow(text.length);
    const user = this.vocab.userDefined;
    let n = 0;
    for (let pos = 0; pos < text.length; n++) {
      const matched = user.size ? user.match(text, pos) : 0;
      const code = text.charCodeAt(pos);
      const length = matched || Math.min(utf8Length(code), text.length - pos);
      this.start[n] = pos;
      this.end[n] = pos + length;
      this.prev[n] = n - 1;
      this.frozen[n] = matched ? 1 : 0;
      this.ids[n] = length === 1 && code < 128 ? this.asciiIds[code]! : (this.vocab.mergeable.get(text.substr(pos, length)) ?? -1);
      pos += length;
      this.next[n] = pos < text.length ? n + 1 : -1;
    }
    return n;
  }

  private grow(n: number): void {
    this.start = new Int32Array(n);
    this.end = new Int32Array(n);
    this.prev = new Int32Array(n);
    this.next = new Int32Array(n);
    this.ids = new Int32Array(n);
    this.frozen = new Uint8Array(n);
  }
}
