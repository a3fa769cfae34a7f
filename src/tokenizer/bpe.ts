/**
 * SentencePiece's BPE segmentation (bpe_model.cc), step for step: the normalised text is split
 * into characters (user-defined symbols whole and frozen), then the adjacent pair whose merged
 * piece has the highest score is merged, ties going to the leftmost, until no pair is a piece.
 * Pieces marked unused are merged like the others and then split back the way they were formed.
 *
 * Works on byte strings (see normalizer.ts). Returns [piece, id] pairs; characters that are not
 * pieces come back as the unknown id, for the caller's byte fallback.
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
}

/** A max-heap of candidate merges ordered by score, then by leftmost position. */
class PairHeap {
  left = new Int32Array(64);
  right = new Int32Array(64);
  size = new Int32Array(64);
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

  push(left: number, right: number, score: number, size: number): void {
    if (this.slots === this.left.length) this.grow();
    const slot = this.slots++;
    this.left[slot] = left;
    this.right[slot] = right;
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

  /** The best pair's slot (valid until the next push). */
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
    this.score = grown(this.score);
    this.order = grown(this.order);
  }
}

export class BpeSegmenter {
  private readonly heap = new PairHeap();
  private start = new Int32Array(64);
  private end = new Int32Array(64);
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  private frozen = new Uint8Array(64);

  constructor(private readonly vocab: BpeVocab) {}

  private text = '';
  /** How unused pieces were formed, to split them back (made only for models that have unused pieces). */
  private revMerge: Map<string, [string, string]> | null = null;

  /** Segments a normalised byte string into [piece, id] pairs. */
  segment(text: string): [string, number][] {
    const v = this.vocab;
    const n = this.split(text);
    if (n === 0) return [];
    this.text = text;
    this.revMerge = null;
    const { start, end, prev, next, heap } = this;
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
      next[l] = next[r]!;
      if (next[r]! >= 0) prev[next[r]!] = l;
      start[r] = end[r]!; // r is now empty
      this.maybeAdd(prev[l]!, l);
      this.maybeAdd(l, next[l]!);
    }
    const out: [string, number][] = [];
    const resegment = (w: string) => {
      const id = v.reserved.get(w) ?? v.mergeable.get(w) ?? v.unkId;
      const parts = v.unused[id] ? this.revMerge?.get(w) : undefined;
      if (!parts) {
        out.push([w, id]);
        return;
      }
      resegment(parts[0]);
      resegment(parts[1]);
    };
    for (let i = 0; i !== -1; i = next[i]!) resegment(text.slice(start[i]!, end[i]!));
    return out;
  }

  /** Queues the merge of symbols l and r if their concatenation is a piece. */
  private maybeAdd(l: number, r: number): void {
    if (l < 0 || r < 0 || this.frozen[l] || this.frozen[r]) return;
    const { start, end, text } = this;
    const piece = text.slice(start[l]!, end[r]!);
    const id = this.vocab.mergeable.get(piece);
    if (id === undefined) return;
    this.heap.push(l, r, this.vocab.scores[id]!, piece.length);
    if (this.vocab.unused[id]) (this.revMerge ??= new Map()).set(piece, [text.slice(start[l]!, end[l]!), text.slice(start[r]!, end[r]!)]);
  }

  /** Initial symbols: user-defined symbols (frozen), else single UTF-8 characters. */
  private split(text: string): number {
    if (text.length > this.start.length) this.grow(text.length);
    let n = 0;
    for (let pos = 0; pos < text.length; n++) {
      const user = this.vocab.userDefined.size ? this.vocab.userDefined.match(text, pos) : 0;
      const length = user || Math.min(utf8Length(text.charCodeAt(pos)), text.length - pos);
      this.start[n] = pos;
      this.end[n] = pos + length;
      this.prev[n] = n - 1;
      this.frozen[n] = user ? 1 : 0;
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
    this.frozen = new Uint8Array(n);
  }
}
