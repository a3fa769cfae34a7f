/**
 * The tokenizer a model uses: SentencePiece BPE plus added tokens (VisionLLM v2's `<image>`,
 * `[DET]`, `[EMB]`, ...), which are found in the text before BPE runs and never split, and the
 * begin/end-of-sequence ids.
 *
 * How text around an added token is encoded follows Hugging Face's slow LlamaTokenizer
 * (transformers 4.34, which VisionLLM v2 was trained with; read from its source):
 *  - legacy (HF's default): every stretch of text is encoded on its own, as SentencePiece would
 *    encode it alone, so each gets a dummy-prefix ▁ ("<image>\nHi" -> <image>, ▁, <0x0A>, Hi).
 *  - non-legacy (`"legacy": false` in tokenizer_config.json): only the start of the text gets the
 *    dummy prefix; text after an added token is encoded without it ("<image>\nHi" -> <image>, <0x0A>, Hi),
 *    and a ▁ left alone before a leading special token is dropped.
 * Decoding inverts encoding in both modes, so decode(encode(s)) === s.
 */
import path from 'node:path';
import { ConfigReader, readJsonObject } from '../io/config-reader.js';
import { SentencePieceProcessor } from './sentencepiece.js';
import { PieceDecoder } from './stream-decoder.js';

export interface AddedToken {
  content: string;
  id: number;
  /** Left out by decode({ skipSpecialTokens: true }) (default true). */
  special?: boolean;
  /** Whitespace before the token is dropped from the text (HF AddedToken.lstrip). */
  lstrip?: boolean;
  /** Whitespace after the token is dropped from the text (HF AddedToken.rstrip). */
  rstrip?: boolean;
}

export interface TokenizerOptions {
  /** Added tokens; plain strings get the id of an identical piece, else the next free id (like HF add_tokens). */
  addedTokens?: readonly (AddedToken | string)[];
  /** Hugging Face's legacy segment handling (default true, as in transformers when unset). */
  legacy?: boolean;
  /** Prepend <s> by default (default true). */
  addBos?: boolean;
  /** Append </s> by default (default false). */
  addEos?: boolean;
}

export interface TokenizerEncodeOptions {
  addBos?: boolean;
  addEos?: boolean;
  /** Match added tokens in the text (default true); false encodes their text like any other. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Show special added tokens as nothing (the text around them decodes as it would with them). */
  skipSpecialTokens?: boolean;
}

/** Text in, text out as tokens arrive: see TokenStreamDecoder. */
export interface StreamDecoder {
  /** The text that became final with this token (possibly ''). */
  push(id: number): string;
  /** The rest, at the end of the sequence. */
  flush(): string;
}

type Segment = { token: AddedToken } | { text: string };

export class Tokenizer {
  readonly legacy: boolean;
  readonly addBos: boolean;
  readonly addEos: boolean;
  private readonly added = new Map<number, AddedToken>();
  private readonly addedByContent = new Map<string, AddedToken>();
  private readonly pattern: RegExp | null;

  constructor(readonly sp: SentencePieceProcessor, options: TokenizerOptions = {}) {
    this.legacy = options.legacy ?? true;
    this.addBos = options.addBos ?? true;
    this.addEos = options.addEos ?? false;
    let next = sp.vocabSize;
    for (const entry of options.addedTokens ?? []) {
      if (typeof entry === 'string' && this.addedByContent.has(entry)) continue; // add_tokens skips repeats too
      const token: AddedToken = typeof entry === 'string' ? { content: entry, id: sp.pieceToId(entry) ?? next } : { ...entry };
      this.addToken(token);
      next = Math.max(next, token.id + 1);
    }
    const contents = [...this.addedByContent.keys()].sort((a, b) => b.length - a.length);
    this.pattern = contents.length ? new RegExp(contents.map(escapeRegExp).join('|'), 'gu') : null;
  }

  static fromFile(modelFile: string, options: TokenizerOptions = {}): Tokenizer {
    return new Tokenizer(SentencePieceProcessor.fromFile(modelFile), options);
  }

  /**
   * A Hugging Face tokenizer directory: tokenizer.model, and when present tokenizer_config.json
   * (legacy, add_bos_token, add_eos_token, added_tokens_decoder) and added_tokens.json. Like
   * transformers, <unk>, <s> and </s> are matched as special tokens in the text.
   */
  static fromDirectory(dir: string, overrides: TokenizerOptions = {}): Tokenizer {
    const sp = SentencePieceProcessor.fromFile(path.join(dir, 'tokenizer.model'));
    const configFile = path.join(dir, 'tokenizer_config.json');
    const config = readJsonObject(configFile) ?? new ConfigReader(configFile, {});
    const tokens: AddedToken[] = [
      ...[sp.unkId, sp.bosId, sp.eosId].filter((id) => id >= 0).map((id) => ({ content: sp.idToPiece(id), id, special: true })),
      ...(config.has('added_tokens_decoder') ? decoderTokens(config.sub('added_tokens_decoder')) : []),
      ...addedTokensFile(path.join(dir, 'added_tokens.json')),
    ];
    // The same token may be listed in several files: keep the first of identical entries.
    const unique = new Map<string, AddedToken>();
    for (const t of tokens) if (!unique.has(`${t.id} ${t.content}`)) unique.set(`${t.id} ${t.content}`, t);
    const options: TokenizerOptions = {
      addedTokens: [...unique.values()],
      legacy: config.bool('legacy', true),
      addBos: config.bool('add_bos_token', true),
      addEos: config.bool('add_eos_token', false),
      ...overrides,
    };
    try {
      return new Tokenizer(sp, options);
    } catch (err) {
      throw new Error(`${dir}: ${(err as Error).message}`); // tokens that collide, from whichever file
    }
  }

  /** SentencePiece pieces plus added tokens (the model's embedding rows). */
  get vocabSize(): number {
    let size = this.sp.vocabSize;
    for (const id of this.added.keys()) size = Math.max(size, id + 1);
    return size;
  }

  get bosId(): number {
    return this.sp.bosId;
  }

  get eosId(): number {
    return this.sp.eosId;
  }

  get unkId(): number {
    return this.sp.unkId;
  }

  get addedTokens(): AddedToken[] {
    return [...this.added.values()];
  }

  /** The id of an added token or piece. */
  tokenToId(token: string): number | undefined {
    return this.addedByContent.get(token)?.id ?? this.sp.pieceToId(token);
  }

  idToToken(id: number): string {
    return this.added.get(id)?.content ?? this.sp.idToPiece(id);
  }

  isSpecial(id: number): boolean {
    const t = this.added.get(id);
    if (t) return t.special !== false;
    return id < this.sp.vocabSize && this.sp.kind(id) === 'control';
  }

  encode(text: string, options: TokenizerEncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (options.addBos ?? this.addBos) {
      if (this.bosId < 0) throw new Error(`${this.sp.source}: the model has no <s> piece to add`);
      ids.push(this.bosId);
    }
    const segments = options.parseSpecial === false || !this.pattern ? [{ text }] : this.split(this.legacy ? text : text.replaceAll('\u2581', ' '));
    // Ids are appended one by one: push(...ids) passes them as arguments, which overflows the call stack for a long text.
    segments.forEach((seg, i) => {
      if ('token' in seg) {
        // Non-legacy: the text began with this token; HF's lone ▁ before it is dropped when the token is special.
        if (!this.legacy && i === 0 && seg.token.special === false) for (const id of this.sp.encode(' ', { addDummyPrefix: false })) ids.push(id);
        ids.push(seg.token.id);
      } else if (seg.text) {
        for (const id of this.sp.encode(seg.text, this.legacy || i === 0 ? {} : { addDummyPrefix: false })) ids.push(id);
      }
    });
    if (options.addEos ?? this.addEos) {
      if (this.eosId < 0) throw new Error(`${this.sp.source}: the model has no </s> piece to add`);
      ids.push(this.eosId);
    }
    return ids;
  }

  /** Tokens as text (pieces with ▁, added tokens as written), for inspection. */
  tokenize(text: string, options: TokenizerEncodeOptions = {}): string[] {
    return this.encode(text, { addBos: false, addEos: false, ...options }).map((id) => this.idToToken(id));
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const d = this.decoder(options);
    let out = '';
    for (const id of ids) out += d.push(id);
    return out + d.flush();
  }

  /**
   * A streaming decoder for generation: push each new id, print what it returns. Text is only
   * returned once final, so a character split over byte tokens is never printed in halves.
   */
  decoder(options: DecodeOptions = {}): StreamDecoder {
    return new TokenStreamDecoder(this, new PieceDecoder(this.sp), options.skipSpecialTokens ?? false);
  }

  /** @internal the added token with this id, if any. */
  addedToken(id: number): AddedToken | undefined {
    return this.added.get(id);
  }

  private addToken(t: AddedToken): void {
    const where = `added token ${JSON.stringify(t.content)}`;
    if (!t.content) throw new Error('an added token cannot be empty');
    if (!Number.isInteger(t.id) || t.id < 0) throw new Error(`${where}: id ${t.id} is not a non-negative integer`);
    if (t.id < this.sp.vocabSize && this.sp.idToPiece(t.id) !== t.content) {
      throw new Error(`${where}: id ${t.id} is already the piece ${JSON.stringify(this.sp.idToPiece(t.id))}`);
    }
    const sameId = this.added.get(t.id);
    if (sameId) throw new Error(`${where}: id ${t.id} is already ${JSON.stringify(sameId.content)}`);
    const sameContent = this.addedByContent.get(t.content);
    if (sameContent) throw new Error(`${where}: listed twice (ids ${sameContent.id} and ${t.id})`);
    this.added.set(t.id, t);
    this.addedByContent.set(t.content, t);
  }

  /** Text and added tokens, leftmost-longest match first; lstrip/rstrip applied to the neighbours. */
  private split(text: string): Segment[] {
    const out: Segment[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern!)) {
      out.push({ text: text.slice(last, m.index) }, { token: this.addedByContent.get(m[0])! });
      last = m.index! + m[0].length;
    }
    out.push({ text: text.slice(last) });
    out.forEach((seg, i) => {
      if (!('token' in seg)) return;
      const before = out[i - 1] as { text: string } | undefined;
      const after = out[i + 1] as { text: string } | undefined;
      if (seg.token.lstrip && before) before.text = before.text.trimEnd();
      if (seg.token.rstrip && after) after.text = after.text.trimStart();
    });
    return out.filter((seg) => 'token' in seg || seg.text);
  }
}

/** Decodes a token stream: pieces through SentencePiece's rules, added tokens as their text. */
export class TokenStreamDecoder implements StreamDecoder {
  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly pieces: PieceDecoder,
    private readonly skipSpecial: boolean,
  ) {}

  push(id: number): string {
    const token = this.tokenizer.addedToken(id);
    if (!token) {
      if (!Number.isInteger(id) || id < 0 || id >= this.tokenizer.sp.vocabSize) {
        throw new RangeError(`token id ${id} is out of range (vocabulary of ${this.tokenizer.vocabSize})`);
      }
      return this.pieces.push(id); // control pieces (<s>, </s>) not listed as added tokens show as nothing
    }
    // A skipped token still ends the stretch of text before it, as it did when the text was encoded.
    const out = this.pieces.pushText(this.skipSpecial && token.special !== false ? '' : token.content);
    // Legacy encoding started a fresh SentencePiece segment (with its own dummy prefix) after the token.
    return this.tokenizer.legacy ? out + this.pieces.resetSegment() : out;
  }

  flush(): string {
    return this.pieces.flush();
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** tokenizer_config.json's added_tokens_decoder: { "32000": { "content": "<image>", "special": true, "lstrip": false, ... }, ... }. */
function decoderTokens(r: ConfigReader): AddedToken[] {
  return r.keys().map((id) => {
    if (!/^\d+$/.test(id)) throw new Error(`${r.where(id)}: the key must be a token id`);
    const t = r.sub(id);
    return { content: t.string('content'), id: Number(id), special: t.bool('special', true), lstrip: t.bool('lstrip', false), rstrip: t.bool('rstrip', false) };
  });
}

/** added_tokens.json, when present: { "<image>": 32001, ... }. */
function addedTokensFile(file: string): AddedToken[] {
  const r = readJsonObject(file, 'map token strings to ids');
  if (!r) return [];
  return r.keys().map((content) => {
    if (!content) throw new Error(`${file}: an added token cannot be the empty string`);
    return { content, id: r.int(content), special: true };
  });
}
