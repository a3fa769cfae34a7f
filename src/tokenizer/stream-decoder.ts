/**
 * Ids -> text, incrementally, with SentencePiece's decoding rules (sentencepiece_processor.cc):
 * control pieces are invisible, <unk> shows as its surface (" ⁇ "), ▁ becomes a space, the first
 * visible piece loses one leading ▁ (the dummy prefix), and runs of byte pieces (<0xE4><0xBD><0xA0>)
 * are joined into UTF-8 characters, each invalid byte becoming U+FFFD.
 *
 * Text is released as soon as it is final: a character whose bytes are still arriving is held
 * back, so a chat that prints each token's text never prints half a character. The concatenation
 * of everything returned equals decoding all the ids at once.
 */

/** What the decoder needs to know about ids. */
export interface PieceTable {
  /** Piece text (▁ kept), for normal and user-defined pieces. */
  pieceText(id: number): string;
  kind(id: number): 'normal' | 'control' | 'unknown' | 'byte';
  /** The byte of a <0xXX> piece. */
  byteValue(id: number): number;
  readonly unkSurface: string;
  /** Whether a leading ▁ of the first piece is removed (add_dummy_prefix or remove_extra_whitespaces). */
  readonly stripsLeadingSpace: boolean;
  /** remove_extra_whitespaces: every leading ▁-piece is stripped while the text is still empty. */
  readonly removesExtraWhitespaces: boolean;
}

const REPLACEMENT = '\ufffd';

function isTrail(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

/**
 * One character from the front of `bytes`, as SentencePiece's DecodeUTF8 reads it: [text, bytes
 * used], or null when the bytes so far are a valid start of a longer character (wait for more).
 */
function frontCharacter(bytes: readonly number[], final: boolean): [string, number] | null {
  const b0 = bytes[0]!;
  if (b0 < 0x80) return [String.fromCharCode(b0), 1];
  const need = b0 >= 0xc0 && b0 < 0xe0 ? 2 : b0 >= 0xe0 && b0 < 0xf0 ? 3 : b0 >= 0xf0 && b0 < 0xf8 ? 4 : 0;
  if (!need) return [REPLACEMENT, 1];
  const have = Math.min(need, bytes.length);
  for (let i = 1; i < have; i++) if (!isTrail(bytes[i]!)) return [REPLACEMENT, 1];
  if (have < need) return final ? [REPLACEMENT, 1] : null;
  let cp: number;
  if (need === 2) cp = ((b0 & 0x1f) << 6) | (bytes[1]! & 0x3f);
  else if (need === 3) cp = ((b0 & 0x0f) << 12) | ((bytes[1]! & 0x3f) << 6) | (bytes[2]! & 0x3f);
  else cp = ((b0 & 0x07) << 18) | ((bytes[1]! & 0x3f) << 12) | ((bytes[2]! & 0x3f) << 6) | (bytes[3]! & 0x3f);
  const min = need === 2 ? 0x80 : need === 3 ? 0x800 : 0x10000;
  if (cp < min || (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff) return [REPLACEMENT, 1];
  return [String.fromCodePoint(cp), need];
}

export class PieceDecoder {
  private bytes: number[] = [];
  /** SentencePiece's is_bos_ws: a leading ▁ may still be consumed. */
  private expectBosSpace = true;
  /** Whether the previous visible piece consumed it (bos_ws_seen). */
  private bosSpaceSeen = false;
  /** Whether any text has been produced in the current segment. */
  private produced = false;

  constructor(private readonly table: PieceTable) {}

  /** Text that became final with this piece ('' while a character's bytes are incomplete). */
  push(id: number): string {
    const t = this.table;
    const kind = t.kind(id);
    if (kind === 'byte') {
      this.bytes.push(t.byteValue(id));
      return this.takeBytes(false);
    }
    let out = this.takeBytes(true);
    if (this.bosSpaceSeen || this.produced) this.expectBosSpace = false;
    let text = '';
    this.bosSpaceSeen = false;
    if (kind === 'unknown') text = t.unkSurface;
    else if (kind === 'normal') {
      let piece = t.pieceText(id);
      if (this.expectBosSpace && t.stripsLeadingSpace && piece.startsWith('\u2581')) {
        piece = piece.slice(1);
        this.bosSpaceSeen = !t.removesExtraWhitespaces;
      }
      text = piece.replaceAll('\u2581', ' ');
    }
    out += text;
    if (text) this.produced = true;
    return out;
  }

  /** Text that is not a piece (an added token's content), ending any byte run. */
  pushText(text: string): string {
    const out = this.takeBytes(true) + text;
    if (text) this.produced = true;
    return out;
  }

  /** Starts a new segment: the next piece may lose its leading ▁ again (text after a special token, legacy mode). */
  resetSegment(): string {
    const out = this.takeBytes(true);
    this.expectBosSpace = true;
    this.bosSpaceSeen = false;
    this.produced = false;
    return out;
  }

  /** The end of the ids: any incomplete character's bytes become U+FFFD each. */
  flush(): string {
    return this.takeBytes(true);
  }

  private takeBytes(final: boolean): string {
    let out = '';
    while (this.bytes.length) {
      const ch = frontCharacter(this.bytes, final);
      if (!ch) break;
      out += ch[0];
      this.bytes.splice(0, ch[1]);
    }
    if (out) this.produced = true;
    return out;
  }
}
