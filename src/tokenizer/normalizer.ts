/**
 * SentencePiece's normaliser, reproduced rule for rule (normalizer.cc): the precompiled character
 * map (a Darts double-array trie over UTF-8 bytes with NUL-terminated replacements), user-defined
 * symbols passed through untouched, leading/trailing/repeated whitespace removal, the dummy
 * prefix, and spaces escaped as U+2581 (▁).
 *
 * Text here is a "byte string": UTF-8 bytes held one per UTF-16 unit (latin1), so that matching,
 * slicing and hashing behave exactly like SentencePiece's std::string and absl::string_view.
 */
import type { NormalizerSpec } from './sentencepiece-model.js';

/** ▁ (U+2581) as a byte string. */
export const SPACE = '\xe2\x96\x81';

export function toByteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** Bytes in the UTF-8 character starting with `lead` (1 for an invalid lead byte, as SentencePiece does). */
export function utf8Length(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc0 && lead < 0xe0) return 2;
  if (lead >= 0xe0 && lead < 0xf0) return 3;
  if (lead >= 0xf0 && lead < 0xf8) return 4;
  return 1;
}

/** Longest match among a set of byte strings (SentencePiece's PrefixMatcher for user-defined symbols). */
export class PrefixMatcher {
  private readonly byFirst = new Map<string, string[]>();

  constructor(symbols: Iterable<string>) {
    for (const s of symbols) {
      const list = this.byFirst.get(s[0]!) ?? [];
      list.push(s);
      this.byFirst.set(s[0]!, list);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.length - a.length);
  }

  get size(): number {
    return this.byFirst.size;
  }

  /** Length of the longest symbol starting at `pos`, or 0. */
  match(text: string, pos: number): number {
    const list = this.byFirst.get(text[pos]!);
    if (list) for (const s of list) if (text.startsWith(s, pos)) return s.length;
    return 0;
  }
}

/** The precompiled charsmap: `<uint32 trie bytes><double array><NUL-terminated replacements>`. */
class CharsMap {
  private readonly units: Uint32Array;
  private readonly replacements: Uint8Array;

  constructor(blob: Uint8Array, file: string) {
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieBytes = blob.byteLength > 4 ? view.getUint32(0, true) : Infinity;
    if (trieBytes + 4 > blob.byteLength || trieBytes % 4) throw new Error(`${file}: the normaliser's precompiled_charsmap is corrupt (trie of ${trieBytes} bytes in a ${blob.byteLength}-byte blob)`);
    // Copies (new Uint8Array(view)), not views: the blob may sit at any offset of a Node Buffer.
    this.units = new Uint32Array(new Uint8Array(blob.subarray(4, 4 + trieBytes)).buffer);
    this.replacements = new Uint8Array(blob.subarray(4 + trieBytes));
  }

  /** The longest rule matching at `pos`: [replacement byte string, bytes consumed], or null. */
  match(text: string, pos: number): [string, number] | null {
    const units = this.units;
    let node = 0;
    let unit = units[0]!;
    node ^= offset(unit);
    let best = -1;
    let bestLength = 0;
    for (let i = pos; i < text.length; i++) {
      const c = text.charCodeAt(i);
      node ^= c;
      unit = units[node]!;
      if (unit === undefined || (unit & 0x800000ff) !== c) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        best = units[node]! & 0x7fffffff;
        bestLength = i + 1 - pos;
      }
    }
    if (best < 0) return null;
    let end = best;
    while (end < this.replacements.byteLength && this.replacements[end] !== 0) end++;
    return [Buffer.from(this.replacements.subarray(best, end)).toString('latin1'), bestLength];
  }
}

function offset(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}

export class Normalizer {
  private readonly charsMap: CharsMap | null;
  private readonly space: string;

  constructor(
    private readonly spec: NormalizerSpec,
    private readonly userDefined: PrefixMatcher,
    private readonly treatWhitespaceAsSuffix: boolean,
    file: string,
  ) {
    this.charsMap = spec.precompiledCharsmap.byteLength ? new CharsMap(spec.precompiledCharsmap, file) : null;
    this.space = spec.escapeWhitespaces ? SPACE : ' ';
  }

  /**
   * The normalised byte string. `addDummyPrefix` overrides the model's setting (Hugging Face's
   * non-legacy Llama tokenizer encodes text after a special token without it).
   */
  normalize(text: string, addDummyPrefix = this.spec.addDummyPrefix): string {
    if (!text) return '';
    const { removeExtraWhitespaces, escapeWhitespaces } = this.spec;
    const prefix = !this.treatWhitespaceAsSuffix && addDummyPrefix;
    const suffix = this.treatWhitespaceAsSuffix && addDummyPrefix;
    if (!this.charsMap && !removeExtraWhitespaces) {
      // The identity normaliser (LLaMA's): only the dummy prefix and escaped spaces.
      const body = escapeWhitespaces ? text.replaceAll(' ', SPACE) : text;
      return (prefix ? this.space : '') + body + (suffix ? this.space : '');
    }
    let pos = 0;
    if (removeExtraWhitespaces) {
      while (pos < text.length) {
        const [piece, length] = this.prefix(text, pos);
        if (piece !== ' ') break;
        pos += length;
      }
      if (pos === text.length) return '';
    }
    let out = prefix ? this.space : '';
    let prevSpace = removeExtraWhitespaces;
    while (pos < text.length) {
      let [piece, length] = this.prefix(text, pos);
      if (prevSpace) while (piece.startsWith(' ')) piece = piece.slice(1);
      if (piece) {
        out += escapeWhitespaces ? piece.replaceAll(' ', SPACE) : piece;
        prevSpace = piece.endsWith(' ');
      }
      pos += length;
      if (!removeExtraWhitespaces) prevSpace = false;
    }
    if (removeExtraWhitespaces) while (out.endsWith(this.space)) out = out.slice(0, -this.space.length);
    return suffix ? out + this.space : out;
  }

  /** One normalised unit at `pos`: a user-defined symbol as is, a charsmap rule, or one character. */
  private prefix(text: string, pos: number): [string, number] {
    const user = this.userDefined.match(text, pos);
    if (user) return [text.substr(pos, user), user];
    const rule = this.charsMap?.match(text, pos);
    if (rule) return rule;
    const length = Math.min(utf8Length(text.charCodeAt(pos)), text.length - pos);
    return [text.substr(pos, length), length];
  }
}
