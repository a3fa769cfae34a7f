/**
 * llama2.c's legacy checkpoint format (run.c / export.py "version 0"): seven int32 header fields
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means
 * an unshared classifier follows), then fp32 weights grouped by kind across layers.
 *
 * Read into Hugging Face LLaMA names and layout so the same model code runs it. llama2.c rotates
 * interleaved pairs; Hugging Face rotates halves, so wq and wk rows are permuted per head the way
 * transformers' convert_llama_weights_to_hf does (checked against llama2.c's own formulation in
 * scripts/golden/stories260k.py).
 */
import fs from 'node:fs';

/** A llama2.c header, in llama2.c's names (run.c's Config); model/config.ts maps it to a LlamaConfig. */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** A positive vocab_size in the file: the classifier is the token embedding table. */
  sharedClassifier: boolean;
}

export interface Llama2cCheckpoint {
  header: Llama2cHeader;
  /** Hugging Face LlamaForCausalLM names (model.layers.N.self_attn.q_proj.weight, ...) to row-major f32. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

export function readLlama2c(file: string): Llama2cCheckpoint {
  const buf = fs.readFileSync(file);
  if (buf.byteLength < 28) throw new Error(`${file}: too short for a llama2.c checkpoint (${buf.byteLength} bytes)`);
  const fields = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 28));
  const [dim, hidden, layers, heads, kvHeads, signedVocab, seqLen] = Array.from(fields) as number[] as [number, number, number, number, number, number, number];
  const vocab = Math.abs(signedVocab);
  if (!(dim > 0 && hidden > 0 && layers > 0 && heads > 0 && kvHeads > 0 && vocab > 0 && seqLen > 0) || dim % heads || heads % kvHeads) {
    throw new Error(`${file}: implausible llama2.c header ${JSON.stringify({ dim, hidden, layers, heads, kvHeads, vocab, seqLen })}`);
  }
  const headDim = dim / heads;
  const kvDim = kvHeads * headDim;
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.byteLength - ((buf.byteLength - 28) % 4)));
  let at = 0;
  const take = (n: number, what: string): Float32Array => {
    if (at + n > data.length) throw new Error(`${file}: truncated while reading ${what} (needs ${n * 4} more bytes)`);
    const out = data.subarray(at, at + n);
    at += n;
    return out;
  };
  const perLayer = (n: number, what: string) => {
    const all = take(layers * n, what);
    return Array.from({ length: layers }, (_, l) => all.subarray(l * n, (l + 1) * n));
  };
  const tok = take(vocab * dim, 'token_embedding_table');
  const rmsAtt = perLayer(dim, 'rms_att_weight');
  const wq = perLayer(dim * dim, 'wq');
  const wk = perLayer(kvDim * dim, 'wk');
  const wv = perLayer(kvDim * dim, 'wv');
  const wo = perLayer(dim * dim, 'wo');
  const rmsFfn = perLayer(dim, 'rms_ffn_weight');
  const w1 = perLayer(hidden * dim, 'w1');
  const w2 = perLayer(dim * hidden, 'w2');
  const w3 = perLayer(hidden * dim, 'w3');
  const rmsFinal = take(dim, 'rms_final_weight');
  take(seqLen * (headDim / 2) * 2, 'freq_cis'); // precomputed RoPE tables: recomputed instead
  const cls = signedVocab > 0 ? tok : take(vocab * dim, 'wcls');

  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (name: string, shape: number[], values: Float32Array) => tensors.set(name, { shape, data: values });
  put('model.embed_tokens.weight', [vocab, dim], tok);
  put('model.norm.weight', [dim], rmsFinal);
  put('lm_head.weight', [vocab, dim], cls);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    put(p + 'input_layernorm.weight', [dim], rmsAtt[l]!);
    put(p + 'post_attention_layernorm.weight', [dim], rmsFfn[l]!);
    put(p + 'self_attn.q_proj.weight', [dim, dim], interleavedToHalves(wq[l]!, heads, dim));
    put(p + 'self_attn.k_proj.weight', [kvDim, dim], interleavedToHalves(wk[l]!, kvHeads, dim));
    put(p + 'self_attn.v_proj.weight', [kvDim, dim], wv[l]!);
    put(p + 'self_attn.o_proj.weight', [dim, dim], wo[l]!);
    put(p + 'mlp.gate_proj.weight', [hidden, dim], w1[l]!);
    put(p + 'mlp.down_proj.weight', [dim, hidden], w2[l]!);
    put(p + 'mlp.up_proj.weight', [hidden, dim], w3[l]!);
  }
  const header: Llama2cHeader = { dim, hiddenDim: hidden, layers, heads, kvHeads, vocabSize: vocab, seqLen, sharedClassifier: signedVocab > 0 };
  return { header, tensors };
}

/**
 * Per head, rows (2i, 2i+1) -> (i, i + half): the pair llama2.c rotates together becomes the pair
 * rotate-half rotates together. [heads * headDim, cols] row-major.
 */
function interleavedToHalves(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (const [src, dst] of [[2 * i, i], [2 * i + 1, i + half]] as const) {
        const from = (h * headDim + src) * cols;
        out.set(w.subarray(from, from + cols), (h * headDim + dst) * cols);
      }
    }
  }
  return out;
}
