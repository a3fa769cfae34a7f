/**
 * SentencePiece BPE against ids SentencePiece itself produced (scripts/golden/tokenizer.py): the
 * real LLaMA-2 tokenizer on 600 varied strings, with and without VisionLLM v2's added tokens, and
 * two small models trained here that exercise the rest of SentencePiece (normalisation rules,
 * user-defined symbols, no byte fallback, pieces spanning words, unused pieces).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMAGE_PATCH_TOKEN, promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import { parseSentencePieceModel } from '../src/tokenizer/sentencepiece-model.js';
import { SentencePieceProcessor } from '../src/tokenizer/sentencepiece.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { SHARED_DIR, TEST_DIR, TINY_WEIGHTS, thrownMessage } from './helpers.js';

const GOLDEN = path.join(TEST_DIR, 'golden', 'tokenizer');
const LLAMA_MODEL = path.join(SHARED_DIR, 'models', 'llama2-tokenizer.model');
const HAVE_LLAMA = fs.existsSync(LLAMA_MODEL);

interface Case { text: string; ids: number[]; decoded: string; legacy?: number[]; nonlegacy?: number[] }
interface DecodeCase { ids: number[]; text: string }
interface Reference { cases: Case[]; decodes: DecodeCase[]; added_tokens?: string[]; added_ids?: Record<string, number>; unused?: number }

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(path.join(GOLDEN, file), 'utf8')) as T;

/** Mismatches as readable lines, so a failure shows the strings and both id lists. */
function mismatches(cases: readonly Case[], encode: (s: string) => number[], pick: (c: Case) => number[]): string[] {
  const bad: string[] = [];
  for (const c of cases) {
    const got = encode(c.text);
    const want = pick(c);
    if (got.length !== want.length || got.some((id, i) => id !== want[i])) bad.push(`${JSON.stringify(c.text)}: got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
  }
  return bad;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Streams ids one by one: the pieces must add up to the full decode and never show a broken character. */
function expectStreamsCleanly(decodeAll: (ids: number[]) => string, stream: () => { push(id: number): string; flush(): string }, ids: number[]): void {
  const whole = decodeAll(ids);
  const d = stream();
  const parts = ids.map((id) => d.push(id));
  parts.push(d.flush());
  expect(parts.join(''), JSON.stringify(ids)).toBe(whole);
  for (const p of parts) expect(LONE_SURROGATE.test(p), `lone surrogate in ${JSON.stringify(p)}`).toBe(false);
  // A U+FFFD may only come out where the whole decode has one: never for a character still arriving.
  expect(parts.join('').split('\ufffd').length).toBe(whole.split('\ufffd').length);
}

describe.skipIf(!HAVE_LLAMA)('LLaMA-2 tokenizer (../shared/models/llama2-tokenizer.model)', () => {
  const ref = readJson<Reference>('llama2.json');
  const sp = HAVE_LLAMA ? SentencePieceProcessor.fromFile(LLAMA_MODEL) : (null as never);

  it('reads the model: 32000 pieces, byte fallback, <unk> <s> </s>', () => {
    expect(sp.vocabSize).toBe(32000);
    expect([sp.unkId, sp.bosId, sp.eosId, sp.padId]).toEqual([0, 1, 2, -1]);
    expect(sp.byteFallback).toBe(true);
    expect(sp.wordwise).toBe(true);
    expect(sp.idToPiece(13)).toBe('<0x0A>');
    expect(sp.pieceToId('▁Hello')).toBe(15043);
  });

  it(`encodes ${ref.cases.length} varied strings exactly as SentencePiece does`, () => {
    expect(ref.cases.length).toBeGreaterThanOrEqual(500);
    expect(mismatches(ref.cases, (s) => sp.encode(s), (c) => c.ids)).toEqual([]);
  });

  it('gets the same ids without the per-word cache (whole-text BPE)', () => {
    const whole = new SentencePieceProcessor(sp.model, 'whole-text', { wordwise: false });
    expect(whole.wordwise).toBe(false);
    expect(mismatches(ref.cases, (s) => whole.encode(s), (c) => c.ids)).toEqual([]);
  });

  it('decodes as SentencePiece does, and decode(encode(s)) === s', () => {
    const bad = ref.cases.filter((c) => sp.decode(c.ids) !== c.decoded);
    expect(bad.map((c) => c.text)).toEqual([]);
    // SentencePiece itself only fails to round-trip text that contains its own ▁.
    const roundTrip = ref.cases.filter((c) => !c.text.includes('\u2581'));
    expect(roundTrip.length).toBeGreaterThan(550);
    expect(roundTrip.filter((c) => sp.decode(sp.encode(c.text)) !== c.text).map((c) => c.text)).toEqual([]);
  });

  it('decodes random id sequences (cut and invalid UTF-8 byte runs, control tokens, <unk>) exactly, also streamed', () => {
    for (const c of ref.decodes) {
      expect(sp.decode(c.ids), JSON.stringify(c.ids)).toBe(c.text);
      expectStreamsCleanly((ids) => sp.decode(ids), () => {
        const d = sp.decoder();
        return { push: (id: number) => d.push(id), flush: () => d.flush() };
      }, c.ids);
    }
    expect(ref.decodes.filter((c) => c.text.includes('\ufffd')).length).toBeGreaterThan(10);
  });

  describe.each([true, false])('with VisionLLM v2 added tokens, legacy=%s', (legacy) => {
    const tok = HAVE_LLAMA ? Tokenizer.fromFile(LLAMA_MODEL, { addedTokens: ref.added_tokens!, legacy, addBos: false }) : (null as never);

    it('numbers the added tokens 32000.. in add_tokens order, keeping <s> </s> <unk>', () => {
      for (const [content, id] of Object.entries(ref.added_ids!)) expect(tok.tokenToId(content), content).toBe(id);
      expect(tok.vocabSize).toBe(32026);
      expect(tok.idToToken(32025)).toBe('[EMB8]');
    });

    it('matches the reference ids on every string (special tokens never split)', () => {
      expect(mismatches(ref.cases, (s) => tok.encode(s), (c) => (legacy ? c.legacy! : c.nonlegacy!))).toEqual([]);
      expect(tok.encode('[EMB2][EMB]<image>')).toEqual([32019, 32018, 32001]);
    });

    it('round-trips every string, also when decoded token by token', () => {
      const texts = ref.cases.map((c) => c.text).filter((t) => !t.includes('\u2581'));
      const bad = texts.filter((t) => tok.decode(tok.encode(t)) !== t);
      expect(bad).toEqual([]);
      for (const t of texts.slice(0, 150)) expectStreamsCleanly((ids) => tok.decode(ids), () => tok.decoder(), tok.encode(t));
    });

    it('leaves special tokens out on request, and adds <s> / </s>', () => {
      const ids = tok.encode('USER: <image>\nHi ASSISTANT: Hello', { addBos: true, addEos: true });
      expect(ids[0]).toBe(1);
      expect(ids.at(-1)).toBe(2);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('USER: \nHi ASSISTANT: Hello');
      expect(tok.decode(ids)).toBe(legacy ? '<s>USER: <image>\nHi ASSISTANT: Hello</s>' : '<s> USER: <image>\nHi ASSISTANT: Hello</s>');
      expect(tok.encode('<image>', { parseSpecial: false })).toEqual(sp.encode('<image>'));
    });
  });

  it('reads a Hugging Face directory: tokenizer_config.json and added_tokens.json', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-'));
    try {
      fs.copyFileSync(LLAMA_MODEL, path.join(dir, 'tokenizer.model'));
      fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify(Object.fromEntries(Object.entries(ref.added_ids!).filter(([, id]) => id >= 32000))));
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ legacy: false, add_bos_token: true, add_eos_token: false }));
      const tok = Tokenizer.fromDirectory(dir);
      expect(tok.legacy).toBe(false);
      const c = ref.cases.find((x) => x.text.includes('<image>') && x.text.includes('<s>'))!;
      expect(tok.encode(c.text)).toEqual([1, ...c.nonlegacy!]);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe.each(['tiny-a', 'tiny-b'])('%s (trained here)', (name) => {
  const ref = readJson<Record<string, Reference>>('tiny.json')[name]!;
  const sp = SentencePieceProcessor.fromFile(path.join(GOLDEN, `${name}.model`));

  it('encodes as SentencePiece does', () => {
    if (name === 'tiny-a') {
      expect(sp.byteFallback).toBe(false);
      expect(sp.model.normalizer.precompiledCharsmap.byteLength).toBeGreaterThan(0); // the custom rules
      expect(sp.model.pieces.filter((p) => p.type === 4).map((p) => p.piece)).toEqual(['<sep>', 'AI']);
      expect(sp.wordwise).toBe(true);
    } else {
      expect(sp.byteFallback).toBe(true);
      expect(sp.wordwise).toBe(false); // pieces span words: whole-text BPE
      expect(sp.model.pieces.filter((p) => p.type === 5).length).toBe(ref.unused);
    }
    expect(mismatches(ref.cases, (s) => sp.encode(s), (c) => c.ids)).toEqual([]);
  });

  it('decodes as SentencePiece does, also streamed', () => {
    expect(ref.cases.filter((c) => sp.decode(c.ids) !== c.decoded).map((c) => c.text)).toEqual([]);
    for (const c of ref.decodes) {
      expect(sp.decode(c.ids), JSON.stringify(c.ids)).toBe(c.text);
      expectStreamsCleanly((ids) => sp.decode(ids), () => sp.decoder(), c.ids);
    }
  });
});

describe('long texts (2 MB, about 1.8 million ids)', () => {
  const tok = Tokenizer.fromDirectory(TINY_WEIGHTS);
  const unit = 'hello world ';
  const repeats = Math.floor((2 << 20) / unit.length);
  const text = unit.repeat(repeats);

  it('encodes them, also by whole-text BPE, in as many ids as the repeats make', () => {
    // Every repeat adds the same pieces: ids(n) = ids(1) + (n - 1) * (ids(2) - ids(1)).
    const [one, two] = [1, 2].map((n) => tok.encode(unit.repeat(n)).length) as [number, number];
    const ids = tok.encode(text);
    expect(ids.length).toBe(one + (repeats - 1) * (two - one));
    const whole = new SentencePieceProcessor(tok.sp.model, 'tiny', { wordwise: false }).encode(text);
    expect(Buffer.from(Int32Array.from(whole).buffer).equals(Buffer.from(Int32Array.from(ids.slice(1)).buffer))).toBe(true);
  });

  it('builds the prompt ids of a question that long', () => {
    const prompt = vicunaPrompt(`<image>\n${text}`);
    const ids = promptIds(tok, prompt, 576);
    const [before, after] = prompt.split('<image>').map((piece) => tok.encode(piece, { addBos: false }).length) as [number, number];
    expect(ids.length).toBe(1 + before + 576 + after);
    expect(ids.filter((id) => id === tok.tokenToId(IMAGE_PATCH_TOKEN)).length).toBe(576);
  });
});

describe('tokenizer errors', () => {
  const tiny = path.join(GOLDEN, 'tiny-a.model');

  it('names the file when the model is missing, truncated or not a model', () => {
    expect(() => SentencePieceProcessor.fromFile(path.join(GOLDEN, 'nope.model'))).toThrow(/nope\.model: cannot read the tokenizer model/);
    const bytes = fs.readFileSync(tiny);
    const cut = path.join(os.tmpdir(), `cut-${process.pid}.model`);
    fs.writeFileSync(cut, bytes.subarray(0, 1000));
    try {
      expect(() => SentencePieceProcessor.fromFile(cut)).toThrow(/cut-\d+\.model: truncated or corrupt sentencepiece model \(ModelProto: field at byte \d+ runs past the end/);
    } finally {
      fs.rmSync(cut);
    }
    expect(() => SentencePieceProcessor.fromFile(path.join(TEST_DIR, 'golden', 'checkpoints', 'official', 'config.json'))).toThrow(/config\.json: /);
  });

  it('refuses added tokens that collide, and out-of-range ids', () => {
    const sp = SentencePieceProcessor.fromFile(tiny);
    expect(() => new Tokenizer(sp, { addedTokens: [{ content: '<x>', id: 5 }] })).toThrow(/added token "<x>": id 5 is already the piece/);
    expect(() => new Tokenizer(sp, { addedTokens: [{ content: '<x>', id: 400 }, { content: '<y>', id: 400 }] })).toThrow(/added token "<y>": id 400 is already "<x>"/);
    const tok = new Tokenizer(sp, { addedTokens: ['<x>', '<y>'] });
    expect([tok.tokenToId('<x>'), tok.tokenToId('<y>')]).toEqual([320, 321]);
    expect(() => tok.decode([322])).toThrow(/token id 322 is out of range/);
    expect(() => sp.decode([-1])).toThrow(/token id -1 is out of range/);
  });

  it('reports a tokenizer.model cut short anywhere as truncated or corrupt, never as another kind of model', () => {
    const bytes = fs.readFileSync(path.join(TINY_WEIGHTS, 'tokenizer.model'));
    const reasons = new Set<string>();
    for (let n = 0; n < bytes.byteLength; n++) {
      const m = thrownMessage(() => parseSentencePieceModel(bytes.subarray(0, n), 'cut.model'));
      expect(m).toMatch(/^cut\.model: truncated or corrupt sentencepiece model \(.+\)$/);
      reasons.add(m.replace(/\d+/g, 'N'));
    }
    // A cut between pieces once read as a unigram model (trainer_spec's default), one after trainer_spec as the default normaliser.
    expect(reasons).toContain('cut.model: truncated or corrupt sentencepiece model (no trainer_spec after N pieces)');
    expect(reasons).toContain('cut.model: truncated or corrupt sentencepiece model (no normalizer_spec after N pieces)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-cut-'));
    try {
      for (const n of [100, 2000, bytes.byteLength - 1]) {
        fs.writeFileSync(path.join(dir, 'tokenizer.model'), bytes.subarray(0, n));
        expect(() => Tokenizer.fromDirectory(dir)).toThrow(`${path.join(dir, 'tokenizer.model')}: truncated or corrupt sentencepiece model (`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('refuses an added_tokens.json or tokenizer_config.json that is not what Hugging Face writes, naming the file and key', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-json-'));
    const added = path.join(dir, 'added_tokens.json');
    const config = path.join(dir, 'tokenizer_config.json');
    try {
      fs.copyFileSync(path.join(TINY_WEIGHTS, 'tokenizer.model'), path.join(dir, 'tokenizer.model'));
      const refused = (file: string, json: string) => {
        fs.writeFileSync(file, json);
        try {
          return thrownMessage(() => Tokenizer.fromDirectory(dir));
        } finally {
          fs.rmSync(file);
        }
      };
      // An array's indices would become tokens: "0" -> 320, "1" -> 321.
      expect(refused(added, '[320, 321]')).toBe(`${added}: must map token strings to ids, got an array`);
      expect(refused(added, 'null')).toBe(`${added}: must map token strings to ids, got null`);
      expect(refused(added, '{"<x>": -1}')).toBe(`${added}: <x> must be a non-negative integer, got -1`);
      expect(refused(added, '{"<x>": "320"}')).toBe(`${added}: <x> must be a non-negative integer, got "320"`);
      expect(refused(added, '{"": 320}')).toBe(`${added}: an added token cannot be the empty string`);
      expect(refused(added, '{"<x>": 5}')).toBe(`${dir}: added token "<x>": id 5 is already the piece "<0x02>"`);
      expect(refused(config, '[]')).toBe(`${config}: must hold a JSON object, got an array`);
      expect(refused(config, '{"legacy": "no"}')).toBe(`${config}: legacy must be true or false, got "no"`);
      expect(refused(config, '{"added_tokens_decoder": {"x": {"content": "<x>"}}}')).toBe(`${config}: added_tokens_decoder.x: the key must be a token id`);
      expect(refused(config, '{"added_tokens_decoder": {"320": {"content": ""}}}')).toBe(`${config}: added_tokens_decoder.320.content must be a non-empty string, got ""`);
      fs.writeFileSync(added, '{"<x>": 320}');
      expect(Tokenizer.fromDirectory(dir).tokenToId('<x>')).toBe(320);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});
