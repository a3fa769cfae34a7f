/**
 * Tokenizer speed on the CPU: encoding English text (the project's own documentation, repeated to
 * 1 MB) with the LLaMA-2 model, with the per-word cache (as a chat uses it), without it, and with
 * whole-text BPE (what models whose pieces span words get); decoding, at once and streamed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SentencePieceProcessor } from '../src/tokenizer/sentencepiece.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { projectRoot } from '../src/paths.js';
import { round, timeMedian, type Harness } from './harness.js';

const MODEL = path.join(projectRoot(), '..', 'shared', 'models', 'llama2-tokenizer.model');

function englishText(bytes: number): string {
  const root = projectRoot();
  const docs = ['README.md', 'docs/engine.md', '../shared/docs/visionllm-v2.md', '../shared/docs/engine-notes.md']
    .map((f) => path.join(root, f))
    .filter((f) => fs.existsSync(f))
    .map((f) => fs.readFileSync(f, 'utf8'))
    .join('\n\n');
  let text = '';
  while (Buffer.byteLength(text) < bytes) text += docs + '\n';
  return text;
}

export async function benchTokenizer(h: Harness): Promise<void> {
  if (!fs.existsSync(MODEL)) {
    console.log(`skipped: ${MODEL} is absent`);
    return;
  }
  const text = englishText(1 << 20);
  const mb = Buffer.byteLength(text) / 1e6;
  const sp = SentencePieceProcessor.fromFile(MODEL);
  const cases: [string, SentencePieceProcessor, string][] = [
    ['tokenizer_encode', sp, text],
    ['tokenizer_encode_uncached', new SentencePieceProcessor(sp.model, MODEL, { cache: false }), text],
    ['tokenizer_encode_whole_text', new SentencePieceProcessor(sp.model, MODEL, { wordwise: false }), text.slice(0, 1 << 17)],
  ];
  let baseline = 0;
  for (const [name, proc, input] of cases) {
    if (!h.wanted(name)) continue;
    const size = Buffer.byteLength(input) / 1e6;
    proc.encode(input); // warm the JIT (and the cache, where there is one)
    const ms = await timeMedian(name, async () => void proc.encode(input), 5, 1000);
    const rate = round(size / (ms / 1000), 2);
    if (name === 'tokenizer_encode_uncached') baseline = rate;
    h.record({ name, shape: `${size.toFixed(2)} MB English`, median_ms: round(ms, 3), mb_per_s: rate, tokens: proc.encode(input).length });
  }
  const last = h.results.find((m) => m.name === 'tokenizer_encode');
  if (last && baseline) h.annotate(last, { speedup_vs_uncached: round((last.mb_per_s as number) / baseline, 2) });

  const tok = new Tokenizer(sp);
  const ids = sp.encode(text);
  if (h.wanted('tokenizer_decode')) {
    const ms = await timeMedian('tokenizer_decode', async () => void tok.decode(ids), 5, 1000);
    h.record({ name: 'tokenizer_decode', shape: `${ids.length} tokens`, median_ms: round(ms, 3), mb_per_s: round(mb / (ms / 1000), 2) });
  }
  if (h.wanted('tokenizer_stream_decode')) {
    const ms = await timeMedian('tokenizer_stream_decode', async () => {
      const d = tok.decoder();
      for (const id of ids) d.push(id);
      d.flush();
    }, 5, 1000);
    h.record({ name: 'tokenizer_stream_decode', shape: `${ids.length} tokens`, median_ms: round(ms, 3), us_per_token: round((ms * 1000) / ids.length, 4) });
  }
}
