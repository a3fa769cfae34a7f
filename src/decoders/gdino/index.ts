/**
 * Grounding DINO (`gdino.*`): detection, instance/semantic/referring segmentation and grounding,
 * behind [DET], [SEG] and [GRD]. The super link's side is patch2query: an MLP (LLM width -> d_model
 * -> d_model -> d_model, ReLU) of each of a block's queries, then their mean: one d_model "text
 * token" per block, which replaces Grounding DINO's BERT features (class k = block k).
 * Specification: ../shared/docs/decoders.md part 2.A.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { Mlp } from '../../nn/mlp.js';
import { disposer, optionsObject, type Decoder, type DecoderOutput } from '../decoder.js';

export interface GdinoConfig {
  /** The transformer's width: the text tokens' width. */
  dModel: number;
}

export type GdinoTask = 'detection' | 'segmentation' | 'grounding';

export interface GdinoOptions {
  /** What to do with the blocks; by default from the tokens: [GRD] grounding, [SEG] segmentation, else detection. */
  task?: GdinoTask;
}

export interface GdinoOutput extends DecoderOutput {
  decoder: 'gdino';
  task: GdinoTask;
  /** One text token per block, [blocks, d_model]: column k of the class logits is block k. */
  classEmbeddings: Tensor;
}

const TASKS: readonly GdinoTask[] = ['detection', 'segmentation', 'grounding'];

export const gdino: Decoder<GdinoConfig, GdinoOptions, GdinoOutput> = {
  name: 'gdino',
  routes: [
    { token: '[DET]', table: 'emb_embeddings_det', queries: 'num_embs' },
    { token: '[SEG]', table: 'emb_embeddings_det', queries: 'num_embs' },
    { token: '[GRD]', table: 'emb_embeddings_det', queries: 'num_embs' },
  ],
  maxBlocks: 256, // max_text_len: Grounding DINO's text-token capacity
  prefixes: ['gdino.'],
  absent: 'the checkpoint has no Grounding DINO (use_gdino is false)',

  parseConfig(root: ConfigReader): GdinoConfig | undefined {
    if (!root.bool('use_gdino', false)) return undefined;
    return { dModel: root.sub('gdino_config').positive('d_model', 256) };
  },

  parseOptions(raw: unknown): GdinoOptions {
    const o = optionsObject<GdinoOptions>('gdino', raw, ['task']);
    if (o.task !== undefined && !TASKS.includes(o.task)) throw new TypeError(`chat: decoders.gdino.task must be one of ${TASKS.join(', ')}, got ${JSON.stringify(o.task)}`);
    return o;
  },

  load(p, config, llm) {
    const d = config.dModel;
    const patch2query = Mlp.gdino(p.at('gdino.patch2query'), [llm.hiddenSize, d, d, d]);
    return {
      run(group, { options }) {
        const classEmbeddings = patch2query.forwardMean(group.hidden);
        const tokens = group.blocks.map((b) => b.token);
        const task = options.task ?? (tokens.includes('[GRD]') ? 'grounding' : tokens.includes('[SEG]') ? 'segmentation' : 'detection');
        return { decoder: 'gdino', task, tokens, phrases: group.blocks.map((b) => b.phrase), classEmbeddings, dispose: disposer([classEmbeddings]) };
      },
      dispose() {},
    };
  },
};
