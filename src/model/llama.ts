/**
 * LLaMA (Hugging Face LlamaForCausalLM: RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention,
 * tied or untied head) as Vicuna / VisionLLM v2's language model. One forward() serves prefill and
 * decode: it runs T new positions against the KV cache and leaves their keys and values there.
 *
 * Per layer, with x the residual stream [T, d]:
 *   h = rmsnorm(x);  q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ;  cache ← (rope(k), v);  o = attention(rope(q), cache)
 *   x = x + o·Woᵀ;   h = rmsnorm(x);  x = x + (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ
 * q|k|v and gate|up are fused matrices. In decoding (T = 1) each norm rides in the following GEMV,
 * the SiLU gate in the gate|up GEMV, residual adds in the output projections, and rope and the
 * cache append in the attention kernel. A layer's attention and the GEMVs up to the next layer's
 * form one chain (ops/gemv-chain.ts), a single dispatch on lavapipe: a layer is one dispatch there
 * (five on GPUs), which is what a decode step's time on lavapipe depends on.
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { embedding } from '../ops/gather.js';
import { gemvChain, type GemvStage } from '../ops/gemv-chain.js';
import { KVCache } from '../ops/kv-cache.js';
import { linear, linearResidual, matmul } from '../ops/matmul.js';
import { RotaryEmbedding } from '../ops/rope.js';
import type { RMSNorm } from '../nn/norm.js';
import type { Params } from '../nn/params.js';
import type { LlamaConfig } from './config.js';

interface LlamaLayer {
  inputNorm: RMSNorm;
  /** [(heads + 2 kvHeads) * headDim, d]: q rows, then k rows, then v rows. */
  qkv: Tensor;
  o: Tensor;
  postNorm: RMSNorm;
  /** [2 * intermediate, d]: gate rows then up rows. */
  gateUp: Tensor;
  down: Tensor;
}

export interface LlamaCacheOptions {
  /** Positions the caches hold (default: the model's context length). */
  maxLength?: number;
  /** Storage dtype of keys and values (default f16 where the adapter can; arithmetic stays f32). */
  dtype?: DType;
}

/** One KV cache per layer: a conversation's state. */
export class LlamaCache {
  constructor(readonly layers: KVCache[]) {}

  get length(): number {
    return this.layers[0]?.length ?? 0;
  }

  get maxLength(): number {
    return this.layers[0]?.maxLength ?? 0;
  }

  truncate(length: number): void {
    for (const c of this.layers) c.truncate(length);
  }

  dispose(): void {
    for (const c of this.layers) c.dispose();
  }
}

export class Llama {
  readonly rotary: RotaryEmbedding;

  private constructor(
    readonly config: LlamaConfig,
    readonly embedTokens: Tensor,
    private readonly layers: LlamaLayer[],
    private readonly finalNorm: RMSNorm,
    private readonly head: Tensor,
  ) {
    this.rotary = new RotaryEmbedding(embedTokens.engine, config.headDim, { theta: config.ropeTheta });
  }

  /** From LlamaForCausalLM's names in scope `p` (`llm` inside VisionLLM v2, the root for a plain checkpoint). */
  static load(p: Params, config: LlamaConfig): Llama {
    const { hiddenSize: d, intermediateSize: ff, heads, kvHeads, headDim, vocabSize, rmsNormEps: eps } = config;
    const m = p.at('model');
    const layers = Array.from({ length: config.layers }, (_, i): LlamaLayer => {
      const l = m.at('layers', i);
      return {
        inputNorm: l.rmsNorm('input_layernorm', d, eps),
        qkv: l.at('self_attn').fuseRows(['q_proj.weight', 'k_proj.weight', 'v_proj.weight'], [[heads * headDim, d], [kvHeads * headDim, d], [kvHeads * headDim, d]]),
        o: l.tensor('self_attn.o_proj.weight', [d, heads * headDim]),
        postNorm: l.rmsNorm('post_attention_layernorm', d, eps),
        gateUp: l.at('mlp').fuseRows(['gate_proj.weight', 'up_proj.weight'], [[ff, d], [ff, d]]),
        down: l.tensor('mlp.down_proj.weight', [d, ff]),
      };
    });
    const embed = m.tensor('embed_tokens.weight', [vocabSize, d]);
    const head = config.tieWordEmbeddings || !p.has('lm_head.weight') ? embed : p.tensor('lm_head.weight', [vocabSize, d]);
    return new Llama(config, embed, layers, m.rmsNorm('norm', d, eps), head);
  }

  get engine(): Engine {
    return this.embedTokens.engine;
  }

  /** Frees what the model made itself (the rotary table); the weights are their Weights' to free. */
  dispose(): void {
    this.rotary.dispose();
  }

  newCache(options: LlamaCacheOptions = {}): LlamaCache {
    const { layers, kvHeads, headDim, maxPositions } = this.config;
    const dtype = options.dtype ?? (this.engine.has('shader-f16') ? 'f16' : 'f32');
    const caches: KVCache[] = [];
    try {
      for (let i = 0; i < layers; i++) {
        caches.push(new KVCache(this.engine, { heads: kvHeads, headDim, maxLength: options.maxLength ?? maxPositions, dtype, rotary: this.rotary }));
      }
    } catch (err) {
      caches.forEach((c) => c.dispose());
      throw err;
    }
    return new LlamaCache(caches);
  }

  /** Token embeddings [T, d] for ids: host numbers (checked against the vocabulary) or a GPU tensor. */
  embed(ids: readonly number[] | Tensor): Tensor {
    return embedding(this.embedTokens, ids, 'f32');
  }

  /**
   * Runs T positions (input embeddings [T, d]) after the cache's contents, appending their keys and
   * values. Returns the final hidden states after the last norm, [T, d].
   */
  forward(embeds: Tensor, cache: LlamaCache): Tensor {
    return this.engine.scope(() => this.finalNorm.forward(this.residualStream(embeds, cache)));
  }

  /**
   * Runs T positions like forward() and returns the logits of the last one, [1, vocab]: what
   * generation needs. The final norm rides in the head's GEMV.
   */
  nextTokenLogits(embeds: Tensor, cache: LlamaCache): Tensor {
    return this.engine.scope(() => {
      const headStage = (input: Tensor | number): GemvStage => ({ input, weight: this.head, preNorm: this.finalNorm });
      if (embeds.shape[0] === 1) {
        this.checkStep(embeds, cache);
        return this.decodeStream(embeds, cache, headStage);
      }
      const x = this.residualStream(embeds, cache);
      return gemvChain([headStage(x.rows(x.shape[0]! - 1, x.shape[0]!))])[0]!;
    });
  }

  /** forward() and the logits of the last position: a step whose hidden states are kept (super-link queries). */
  forwardWithLogits(embeds: Tensor, cache: LlamaCache): { hidden: Tensor; logits: Tensor } {
    return this.engine.scope(() => {
      const hidden = this.forward(embeds, cache);
      const T = hidden.shape[0]!;
      return { hidden, logits: this.logits(hidden.rows(T - 1, T)) };
    });
  }

  /** Vocabulary logits [T, vocab] from final hidden states. */
  logits(hidden: Tensor): Tensor {
    return linear(hidden, this.head, undefined, undefined, 'f32');
  }

  /** The residual stream after the last layer (before the final norm), [T, d]. */
  private residualStream(embeds: Tensor, cache: LlamaCache): Tensor {
    this.checkStep(embeds, cache);
    if (embeds.shape[0] === 1) return this.decodeStream(embeds, cache);
    let x = embeds;
    this.layers.forEach((layer, i) => (x = this.layer(layer, cache.layers[i]!, x)));
    return x;
  }

  /** Embeddings [T, d] for T new positions, and room for them in the cache. */
  private checkStep(embeds: Tensor, cache: LlamaCache): void {
    const T = embeds.shape[0]!;
    if (embeds.rank !== 2 || embeds.shape[1] !== this.config.hiddenSize) {
      throw new RangeError(`llama: input embeddings ${JSON.stringify(embeds.shape)} must be [T, ${this.config.hiddenSize}]`);
    }
    if (cache.length + T > cache.maxLength) {
      throw new RangeError(`llama: ${cache.length} cached + ${T} new positions exceed the context of ${cache.maxLength}`);
    }
  }

  /** A layer over T > 1 positions (prefill): the norm once, then the products and their neighbours. */
  private layer(l: LlamaLayer, cache: KVCache, x: Tensor): Tensor {
    const { heads, kvHeads, headDim } = this.config;
    const h = l.inputNorm.forward(x);
    const [qd, kd] = [heads * headDim, kvHeads * headDim];
    const part = (r0: number, r1: number) => linear(h, l.qkv.rows(r0, r1));
    x = linearResidual(this.attend(cache, part(0, qd), part(qd, qd + kd), part(qd + kd, qd + 2 * kd)), l.o, x);
    const mlp = matmul(x, l.gateUp, { transposeB: true, preNorm: l.postNorm, gated: 'silu' });
    return linearResidual(mlp, l.down, x);
  }

  /**
   * One position (decoding). A layer is one chain (ops/gemv-chain.ts): its attention, output
   * projection and MLP, then the next layer's q|k|v, or after the last layer the `after` stage
   * (the head) when given. On lavapipe a chain is one dispatch, so a layer is one. Returns the
   * last chain's output: the residual stream after the last layer, or what `after` makes of it.
   */
  private decodeStream(x: Tensor, cache: LlamaCache, after?: (input: number) => GemvStage): Tensor {
    const heads = this.config.heads;
    const qkvStage = (l: LlamaLayer, input: Tensor | number): GemvStage => ({ input, weight: l.qkv, preNorm: l.inputNorm });
    let qkv = gemvChain([qkvStage(this.layers[0]!, x)])[0]!;
    this.layers.forEach((l, i) => {
      const stages: GemvStage[] = [
        { input: 'attention', weight: l.o, residual: x },
        { input: 0, weight: l.gateUp, preNorm: l.postNorm, gated: 'silu' },
        { input: 1, weight: l.down, residual: 0 },
      ];
      const next = this.layers[i + 1];
      if (next) stages.push(qkvStage(next, 2));
      else if (after) stages.push(after(2));
      const outputs = gemvChain(stages, { attention: { cache: cache.layers[i]!, qkv, heads } });
      if (next) [x, qkv] = [outputs[2]!, outputs[3]!];
      else x = outputs[outputs.length - 1]!; // the residual stream, or what `after` made of it
    });
    return x;
  }

  /** Appends rope(k) and v to the cache and attends with rope(q): [T, heads * headDim]. */
  private attend(cache: KVCache, q: Tensor, k: Tensor, v: Tensor): Tensor {
    const { heads, kvHeads, headDim } = this.config;
    const T = q.shape[0]!;
    return cache
      .appendAndAttend(q.reshape([T, heads, headDim]), k.reshape([T, kvHeads, headDim]), v.reshape([T, kvHeads, headDim]), { causal: true, layout: 'blhd' })
      .reshape([T, heads * headDim]);
  }
}
