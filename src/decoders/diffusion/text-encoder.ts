/**
 * CLIP's text encoder (Hugging Face CLIPTextModel) as Stable Diffusion and InstructPix2Pix carry it
 * (`sd.sd_text_encoder.` / `ip2p.sd_text_encoder.` + `text_model.encoder.layers.0.self_attn.q_proj.weight`, ...):
 * token and position embeddings, causal pre-LN encoder layers (shared with the vision tower), the
 * final LayerNorm. VisionLLM v2 replaces the prompt's encoding with the super link's condition, so
 * the one text this encoder sees is the empty prompt: the classifier-free guidance's null condition
 * (decoders.md §2.C.1 step 2, §2.D step 2).
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { ClipEncoderLayer, parseClipEncoderConfig, type ClipLayerConfig } from '../../nn/clip-layer.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { add } from '../../ops/elementwise.js';
import { embedding } from '../../ops/gather.js';

/** transformers' text_encoder/config.json, the keys CLIPTextModel reads. */
export interface ClipTextConfig extends ClipLayerConfig {
  vocabSize: number;
  layers: number;
  /** Positions, and the tokenizer's max_length (77). */
  maxPositions: number;
}

/**
 * CLIP's tokenizer: <|startoftext|>, and <|endoftext|>, which SD-1.5's tokenizer also pads with.
 * (The text encoder's config.json says bos_token_id 0 and eos_token_id 2, stale values the
 * tokenizer never used: the ids come from the tokenizer, the pipeline's `tokenizer_config`.)
 */
export const CLIP_BOS = 49406;
export const CLIP_EOS = 49407;

/** The tokenizer's ids the empty prompt is made of. */
export interface NullPromptIds {
  bos: number;
  eos: number;
}

/** CLIPTextConfig, with SD-1.5's values (openai/clip-vit-large-patch14's text tower) as defaults. */
export function parseClipTextConfig(r: ConfigReader): ClipTextConfig {
  const c: ClipTextConfig = {
    ...parseClipEncoderConfig(r, { hiddenSize: 768, intermediateSize: 3072, layers: 12, heads: 12 }),
    vocabSize: r.positive('vocab_size', 49408),
    maxPositions: r.positive('max_position_embeddings', 77),
  };
  return c;
}

export class ClipTextEncoder {
  private nullCache?: Promise<Tensor>;

  private constructor(
    readonly config: ClipTextConfig,
    private readonly tokens: Tensor,
    private readonly positions: Tensor,
    private readonly layers: ClipEncoderLayer[],
    private readonly finalNorm: LayerNorm,
  ) {}

  /** From CLIPTextModel's names in scope `p` (VisionLLM v2: `sd.sd_text_encoder`, `ip2p.sd_text_encoder`). */
  static load(p: Params, config: ClipTextConfig): ClipTextEncoder {
    const t = p.at('text_model');
    const e = t.at('embeddings');
    const d = config.hiddenSize;
    // Older transformers saved position_ids ([1, 77] arange) as a persistent buffer.
    e.releaseBuffer('position_ids', [1, config.maxPositions]);
    return new ClipTextEncoder(
      config,
      e.tensor('token_embedding.weight', [config.vocabSize, d]),
      e.tensor('position_embedding.weight', [config.maxPositions, d]),
      ClipEncoderLayer.stack(t.at('encoder'), config.layers, config),
      t.layerNorm('final_layer_norm', d, config.layerNormEps),
    );
  }

  /** last_hidden_state of token ids (at most maxPositions): [ids.length, hidden] f32, after final_layer_norm. */
  forward(ids: readonly number[]): Tensor {
    const n = ids.length;
    if (n < 1 || n > this.config.maxPositions) throw new RangeError(`ClipTextEncoder: ${n} ids; expected 1 to ${this.config.maxPositions}`);
    const engine = this.tokens.engine;
    return engine.scope(() => {
      let x = add(embedding(this.tokens, ids, 'f32'), this.positions.rows(0, n), { dtype: 'f32' });
      for (const layer of this.layers) x = layer.forward(x, { causal: true });
      return this.finalNorm.forward(x);
    });
  }

  /**
   * The null condition, CLIP of "" padded to max_length: ids [BOS, EOS x 76] -> [77, hidden] f32 (diffusers'
   * encode_prompt("") for the unconditional batch). Computed once, then owned by this encoder (freed by
   * dispose()): it is read back and uploaded again as a persistent tensor, which no caller's scope() frees.
   * `ids`: the tokenizer's (SD-1.5's CLIP ids by default); they are fixed by the first call.
   */
  nullCondition(ids: NullPromptIds = { bos: CLIP_BOS, eos: CLIP_EOS }): Promise<Tensor> {
    for (const [name, id] of [['bos', ids.bos], ['eos', ids.eos]] as const) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new RangeError(`ClipTextEncoder: the empty prompt's ${name} id ${id} is outside the vocabulary of ${this.config.vocabSize}`);
    }
    this.nullCache ??= (async () => {
      const prompt = [ids.bos, ...Array<number>(this.config.maxPositions - 1).fill(ids.eos)];
      const hidden = this.forward(prompt);
      // The read-back's copy is recorded before this function first yields, so a caller's scope
      // that frees `hidden` when it closes comes after it.
      const values = await hidden.toArray();
      hidden.dispose();
      return this.tokens.engine.tensor(values, hidden.shape, 'f32', { persistent: true });
    })().catch((err: unknown) => {
      this.nullCache = undefined; // a later call tries again
      throw err;
    });
    return this.nullCache;
  }

  /** Frees the cached null condition (the weights belong to the checkpoint). */
  async dispose(): Promise<void> {
    const cached = this.nullCache;
    this.nullCache = undefined;
    (await cached?.catch(() => undefined))?.dispose();
  }
}
