"""Reference token ids from SentencePiece itself (Debian's python3-sentencepiece).

files() writes test/golden/tokenizer/:
  llama2.json     when ../shared/models/llama2-tokenizer.model exists: a corpus of 600 varied strings
                  with their ids under three configurations: plain SentencePiece; VisionLLM v2's added
                  tokens in Hugging Face's legacy mode; the same in non-legacy mode. Plus reference
                  decodes of random id sequences (byte pieces forming valid and broken UTF-8, control
                  tokens, <unk>, lone ▁).
  tiny-a.model    a small BPE model trained here: custom normalisation rules (a precompiled charsmap),
                  user-defined and control symbols, no byte fallback, extra whitespace removed
  tiny-b.model    a small BPE model trained here with byte fallback, no dummy prefix, whitespace kept,
                  user-defined pieces spanning words (so no per-word shortcut applies), a few pieces marked unused
  tiny.json       ids and decodes for both tiny models
The Hugging Face modes are reproduced from transformers 4.34's LlamaTokenizer (the version VisionLLM v2
pins), using SentencePiece for every stretch of text: transformers itself is not installed here.
"""
import io
import json
import os
import random

import sentencepiece as spm

LLAMA = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'models', 'llama2-tokenizer.model')
SPIECE_UNDERLINE = '\u2581'

# VisionLLM v2's DEFAULT_TOKENS, in the order train.py passes them to tokenizer.add_tokens(special_tokens=True):
# <s>, </s>, <unk> already exist; the rest get ids 32000.. in this order.
VISIONLLM_TOKENS = ['[PAD]', '<s>', '</s>', '<unk>', '<image>', '<im_patch>', '<region>', '<img>', '</img>', '<reg>', '</reg>',
                    '<det>', '</det>', '<grd>', '</grd>', '[DET]', '[GRD]', '[SEG]', '[POSE]', '[GEN]', '[EDIT]',
                    '[EMB]', '[EMB2]', '[EMB3]', '[EMB4]', '[EMB5]', '[EMB6]', '[EMB7]', '[EMB8]']

WORDS = ('the of and to in is that for it as was with be by on not he this are or his from at which but have an they you '
         'were her she there been one all we their has would when if so no will can more other its into time only new some '
         'could these two may first then do any like my now over such our man me even most made after also did many before '
         'must through back years where much your way well down should because each just those people how too little state '
         'good very make world still own see men work long get here between both life being under never day same another '
         'know while last might us great old year off come since against go came right used take three image detection '
         'segmentation keypoints bicycle person umbrella giraffe describe region answer question assistant user').split()

FRAGMENTS = [
    'Hello, world!', 'The quick brown fox jumps over the lazy dog.', "It's 3:45 p.m. — isn't it?", 'naïve café résumé',
    'Ångström', 'Straße', 'fiancée', 'Crème brûlée', 'e\u0301', 'ñandú', 'Zürich', 'Ελληνικά', 'Привет, мир', 'שלום',
    'مرحبا بالعالم', 'नमस्ते', 'สวัสดี', '你好，世界', '日本語のテキスト', '한국어 문장', '漢字かなカナ', '中文标点：“引号”。',
    '😀', '👍🏽', '👨‍👩‍👧‍👦', '🇯🇵', '🧑‍💻', '❤️', '∑∫√∞', '≤ ≥ ≠', '→ ← ↔', '°C', '€100', '£5.99', '¥', '©®™',
    '0', '7', '42', '1234567890', '3.14159', '1,000,000', '-273.15', '0x1F', '1e-9', '2024-06-12', '12:30:45', '+1 (555) 010-9999',
    'def f(x):\n    return x * 2\n', 'for (int i = 0; i < n; ++i) { sum += a[i]; }', 'const y = await fetch(url);',
    '{"key": [1, 2, {"nested": null}]}', '<div class="a">text</div>', 'SELECT * FROM t WHERE id = 7;', '#include <stdio.h>',
    'x_{i+1} = x_i - \\eta \\nabla f', 'if a==b and not c: pass', 'https://example.com/path?q=1&r=2#frag', 'user@example.org',
    '    indented', 'trailing   ', '\ttab\tseparated\t', 'line1\nline2\r\nline3', '\n\n\n', '   ', ' ', '\u00a0non-breaking',
    '\u200bzero\u200bwidth', '\ufeffBOM', 'a\x00b', '\x1b[31mred\x1b[0m', 'ALL CAPS SHOUTING', 'MiXeD cAsE', "don't won't can't",
    '<s>', '</s>', '<unk>', '<0x0A>', '<image>', '<im_patch><im_patch><im_patch>', '[DET]', '[EMB][EMB2][EMB3][EMB4]',
    '<reg>region1<region></reg>', '[PAD]', '<imag', '[EMB9]', '<image', 'image>', '[[DET]]', '<<image>>', '</img><img>',
    'USER: <image>\nWhat is in the image? ASSISTANT:', 'person[DET][EMB][EMB2][EMB3][EMB4], bicycle[DET][EMB][EMB2][EMB3][EMB4]',
    'Please detect <det>person</det> in the image.', '[GEN][EMB][EMB][EMB]', ' <image> ', '<s> hello </s>', 'a<s>b',
]

SEPARATORS = [' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', ' \n ', '', ', ', '. ', '\r\n', '\t ']

HANDWRITTEN = [
    '', 'a', ' a', 'a ', '  leading and trailing  ', 'Hello world', 'Hello  world', 'Hello\tworld', 'Hello\nworld',
    'The VisionLLM v2 model detects objects, segments them, and estimates poses.',
    'What is the color of the umbrella held by the person on the left?',
    'A chat between a curious user and an artificial intelligence assistant.',
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    'USER: <image>\nPlease describe the image in detail. ASSISTANT: The image shows a giraffe standing next to a tree.</s>',
    '<s>USER: hi ASSISTANT: hello</s>', '<image><image>', '<image>\n', '\n<image>', '<image> <image>', '<s></s><unk>',
    '1+1=2', '3.0', '10000000000000000000000', '-1', 'π≈3.14159265358979', '½ ¼ ¾', 'Ⅻ', '①②③',
    'Ǆ ǅ ǆ', 'ﬁ ﬂ', 'Ｆｕｌｌｗｉｄｔｈ', 'ｶﾀｶﾅ', '\U0001F600\U0001F601', '\U00010348', '\U0010FFFF', '\u0301',
    'a' * 200, ' ' * 17, '\n' * 9, 'ab' * 50, '🙂' * 12, '你' * 30,
]


def varied_corpus(n):
    rng = random.Random(20240612)
    out = list(HANDWRITTEN)
    seen = set(out)
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.5:
                parts.append(rng.choice(WORDS) if rng.random() < 0.8 else rng.choice(WORDS).capitalize())
            elif r < 0.85:
                parts.append(rng.choice(FRAGMENTS))
            else:
                # A random code point from a mix of scripts and symbol blocks (never a surrogate).
                block = rng.choice([(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x4ff), (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0x1f300, 0x1faff), (0x2000, 0x2bff)])
                parts.append(''.join(chr(rng.randint(*block)) for _ in range(rng.randint(1, 4))))
            parts.append(rng.choice(SEPARATORS))
        s = ''.join(parts)
        if rng.random() < 0.15:
            s = rng.choice([' ', '  ', '\n', '\t']) + s
        if rng.random() < 0.3:
            s = s.rstrip()
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def split_added(text, tokens):
    """Hugging Face's Trie.split: leftmost match, longest at that position."""
    ordered = sorted(tokens, key=len, reverse=True)
    out, i, last = [], 0, 0
    while i < len(text):
        hit = next((t for t in ordered if text.startswith(t, i)), None)
        if hit is None:
            i += 1
            continue
        out.append(text[last:i])
        out.append(hit)
        i += len(hit)
        last = i
    out.append(text[last:])
    return out


def proto_fields(buf):
    """(field, wire type, raw bytes of the whole field, payload) for a protobuf message."""
    i = 0
    while i < len(buf):
        start = i
        tag, i = varint(buf, i)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            value, i = varint(buf, i)
            payload = value
        elif wt == 2:
            length, i = varint(buf, i)
            payload = buf[i:i + length]
            i += length
        elif wt == 5:
            payload = buf[i:i + 4]
            i += 4
        elif wt == 1:
            payload = buf[i:i + 8]
            i += 8
        else:
            raise ValueError(wt)
        yield field, wt, buf[start:i], payload


def varint(buf, i):
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def encode_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def length_field(field, payload):
    return encode_varint(field << 3 | 2) + encode_varint(len(payload)) + payload


def without_dummy_prefix(model):
    """The model with normalizer_spec.add_dummy_prefix = false (what transformers' non-legacy Llama does)."""
    out = bytearray()
    for field, wt, raw, payload in proto_fields(model):
        if field == 3:
            spec = b''.join(r for f, _, r, _ in proto_fields(payload) if f != 3) + bytes([3 << 3, 0])
            out += length_field(3, spec)
        else:
            out += raw
    return bytes(out)


def mark_unused(model, pieces):
    """The model with the given pieces' type set to UNUSED (5)."""
    out = bytearray()
    for field, wt, raw, payload in proto_fields(model):
        if field == 1:
            fields = list(proto_fields(payload))
            text = next(p for f, _, _, p in fields if f == 1).decode()
            if text in pieces:
                payload = b''.join(r for f, _, r, _ in fields if f != 3) + bytes([3 << 3, 5])
            out += length_field(1, payload)
        else:
            out += raw
    return bytes(out)


class HuggingFaceLlama:
    """transformers 4.34 LlamaTokenizer.tokenize + convert_tokens_to_ids for added special tokens."""

    def __init__(self, model, added, legacy):
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.sp_plain = spm.SentencePieceProcessor(model_proto=without_dummy_prefix(model))
        self.legacy = legacy
        # add_tokens: a token that is already a piece keeps the piece's id; new ones are numbered from the vocabulary size.
        self.added = {}
        next_id = self.sp.get_piece_size()
        unk = self.sp.id_to_piece(self.sp.unk_id())
        for t in added:
            pid = self.sp.piece_to_id(t)
            if pid != self.sp.unk_id() or t == unk:
                self.added[t] = pid
            else:
                self.added[t] = next_id
                next_id += 1
        self.unk_length = len(self.sp_plain.encode('<unk>', out_type=str))

    def _tokenize(self, text):
        if self.legacy:
            return self.sp.encode(text, out_type=str)
        tokens = self.sp_plain.encode(text, out_type=str)
        if not text.startswith((SPIECE_UNDERLINE, ' ')):
            return tokens
        tokens = self.sp_plain.encode('<unk>' + text, out_type=str)
        return tokens[self.unk_length:] if len(tokens) >= self.unk_length else tokens

    def tokenize(self, text):
        if not self.legacy and text:
            text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, ' ')
        pieces = []
        for seg in split_added(text, list(self.added)):
            if seg in self.added:
                pieces.append(seg)
            elif seg:
                pieces.extend(self._tokenize(seg))
        if not self.legacy and len(pieces) > 1 and pieces[0] == SPIECE_UNDERLINE and pieces[1] in self.added:
            pieces = pieces[1:]
        return pieces

    def encode(self, text):
        return [self.added[p] if p in self.added else self.sp.piece_to_id(p) for p in self.tokenize(text)]


def random_id_sequences(sp, rng, count):
    """Id sequences that stress decoding: byte runs (whole, cut, invalid), control, unk, ▁ pieces."""
    n = sp.get_piece_size()
    bytes_of = {sp.piece_to_id('<0x%02X>' % b): b for b in range(256)} if sp.piece_to_id('<0x41>') != sp.unk_id() else {}
    byte_id = {b: i for i, b in bytes_of.items()}
    out = []
    for k in range(count):
        ids = []
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.3 and byte_id:
                ch = chr(rng.choice([rng.randint(0x80, 0x7ff), rng.randint(0x800, 0xffff), rng.randint(0x10000, 0x10ffff)]))
                if 0xd800 <= ord(ch) < 0xe000:
                    ch = 'é'
                raw = ch.encode('utf-8')
                if rng.random() < 0.3:
                    raw = raw[:rng.randint(1, len(raw))]  # a cut character
                if rng.random() < 0.1:
                    raw = bytes([rng.choice([0x80, 0xbf, 0xc0, 0xf8, 0xff, 0xed])]) + raw  # an invalid byte
                ids.extend(byte_id[b] for b in raw)
            elif r < 0.4:
                ids.append(rng.choice([sp.bos_id(), sp.eos_id(), sp.unk_id()]))
            elif r < 0.5:
                ids.append(sp.piece_to_id(SPIECE_UNDERLINE))
            else:
                ids.append(rng.randrange(n))
        out.append([i for i in ids if i >= 0])
    return out


def llama_reference():
    with open(LLAMA, 'rb') as f:
        model = f.read()
    sp = spm.SentencePieceProcessor(model_proto=model)
    corpus = varied_corpus(600)
    legacy = HuggingFaceLlama(model, VISIONLLM_TOKENS, legacy=True)
    modern = HuggingFaceLlama(model, VISIONLLM_TOKENS, legacy=False)
    assert legacy.added['[PAD]'] == 32000 and legacy.added['[EMB8]'] == 32025 and legacy.added['<s>'] == 1
    cases = [{'text': s, 'ids': sp.encode(s), 'legacy': legacy.encode(s), 'nonlegacy': modern.encode(s), 'decoded': sp.decode(sp.encode(s))} for s in corpus]
    rng = random.Random(7)
    decodes = [{'ids': ids, 'text': sp.decode(ids)} for ids in random_id_sequences(sp, rng, 300)]
    return {'model': 'llama2-tokenizer.model', 'added_tokens': VISIONLLM_TOKENS, 'added_ids': legacy.added, 'cases': cases, 'decodes': decodes}


TINY_CORPUS_LINES = 4000


def train(**kwargs):
    rng = random.Random(99)
    lines = []
    for _ in range(TINY_CORPUS_LINES):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.2:
            words.append(rng.choice(['café', 'naïve', 'Straße', 'ﬁle', 'Ｆｕｌｌ', '12.5', '2024']))
        lines.append(' '.join(words))
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=writer, model_type='bpe', num_threads=1,
                                   character_coverage=1.0, minloglevel=2, **kwargs)
    return writer.getvalue()


def tiny_models():
    rules = '\n'.join(['%s\t%s' % (' '.join('%X' % ord(c) for c in src), ' '.join('%X' % ord(c) for c in dst)) for src, dst in [
        ('ﬁ', 'fi'), ('ﬂ', 'fl'), ('Ｆ', 'F'), ('ｕ', 'u'), ('ｌ', 'l'), ('…', '...'), ('\t', ' '), ('\u3000', ' '), ('Å', 'Å'), ('™', 'TM'),
    ]]) + '\n'
    with open('/tmp/visionllm-tiny-rules.tsv', 'w') as f:
        f.write(rules)
    a = train(vocab_size=320, normalization_rule_tsv='/tmp/visionllm-tiny-rules.tsv', user_defined_symbols=['<sep>', 'AI'],
              control_symbols=['<ctl>'], byte_fallback=False, remove_extra_whitespaces=True)
    b = train(vocab_size=400, normalization_rule_name='identity', byte_fallback=True, add_dummy_prefix=False,
              remove_extra_whitespaces=False, user_defined_symbols=['of▁the', 's▁a'])
    sp_b = spm.SentencePieceProcessor(model_proto=b)
    merged = [sp_b.id_to_piece(i) for i in range(sp_b.get_piece_size()) if not (sp_b.is_byte(i) or sp_b.is_control(i) or sp_b.is_unknown(i)) and len(sp_b.id_to_piece(i)) >= 3]
    b = mark_unused(b, set(merged[5:40:3]))
    return a, b


def tiny_reference(a, b):
    corpus = varied_corpus(200) + ['ﬁle ﬂow Ｆｕｌｌ…', '  many   spaces\t\ttabs  ', 'AI<sep>AI', 'the▁world', 'most of the time', 'was a', '<ctl> text']
    out = {}
    for name, model in (('tiny-a', a), ('tiny-b', b)):
        sp = spm.SentencePieceProcessor(model_proto=model)
        rng = random.Random(11)
        out[name] = {
            'cases': [{'text': s, 'ids': sp.encode(s), 'decoded': sp.decode(sp.encode(s))} for s in corpus],
            'decodes': [{'ids': ids, 'text': sp.decode(ids)} for ids in random_id_sequences(sp, rng, 100)],
            'unused': sum(1 for i in range(sp.get_piece_size()) if sp.is_unused(i)),
        }
    return out


def dump(obj):
    return (json.dumps(obj, ensure_ascii=False, separators=(',', ':')) + '\n').encode()


def files():
    out = {}
    a, b = tiny_models()
    out['tokenizer/tiny-a.model'] = a
    out['tokenizer/tiny-b.model'] = b
    out['tokenizer/tiny.json'] = dump(tiny_reference(a, b))
    if os.path.exists(LLAMA):
        out['tokenizer/llama2.json'] = dump(llama_reference())
    else:
        print(f'tokenizer: {LLAMA} is absent; keeping the committed llama2.json')
    return out
