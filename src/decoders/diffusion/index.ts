/**
 * Stable Diffusion 1.5 (`sd.*`, behind [GEN]) and InstructPix2Pix (`ip2p.*`, behind [EDIT]). The
 * super link's side, the same for both: each block's 64 query states go through emb_proj (Linear,
 * GELU, Linear to the U-Net's cross-attention width) and llm2sd_mapper, a torch nn.Transformer
 * whose target is the 77 learned llm2sd_mapper_queries: one [77, d] condition per block, in place
 * of the CLIP text encoder's output. Specification: decoders.md parts 2.C and 2.D.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { Mlp } from '../../nn/mlp.js';
import { concat } from '../../ops/copy.js';
import { disposer, noOptions, type Decoder, type DecoderOutput } from '../decoder.js';
import { TransformerMapper, type MapperConfig } from './mapper.js';

export interface DiffusionConfig {
  mapper: MapperConfig;
  /** Rows of llm2sd_mapper_queries: the condition's length. */
  queries: number;
}

export interface DiffusionOutput extends DecoderOutput {
  decoder: 'sd' | 'ip2p';
  task: 'generation' | 'editing';
  /** One condition per block, [blocks, queries, d]: the U-Net's encoder_hidden_states. */
  conditions: Tensor;
}

function diffusionDecoder(name: 'sd' | 'ip2p', token: string, task: DiffusionOutput['task'], title: string): Decoder<DiffusionConfig, undefined, DiffusionOutput> {
  return {
    name,
    routes: [{ token, table: `emb_embeddings_${name === 'sd' ? 'gen' : 'edit'}`, queries: 'num_embs_gen' }],
    maxBlocks: 16,
    prefixes: [`${name}.`],
    absent: `the checkpoint has no ${title} (use_${name} is false)`,

    parseConfig(root: ConfigReader): DiffusionConfig | undefined {
      if (!root.bool(`use_${name}`, false)) return undefined;
      const c = root.sub(`${name}_config`);
      const dModel = c.positive('sd_hidden_size', 768);
      // The official mapper keeps nn.Transformer's default of 8 heads and a 4x feed-forward (modeling_sd.py).
      const heads = 8;
      if (dModel % heads) throw new Error(`${c.where('sd_hidden_size')} ${dModel} is not divisible by the mapper's ${heads} heads`);
      return {
        mapper: { dModel, heads, feedForward: 4 * dModel, encoderLayers: c.positive('num_encoder_layers', 1), decoderLayers: c.positive('num_decoder_layers', 1) },
        queries: c.positive('num_queries', 77),
      };
    },

    parseOptions: noOptions(name),

    load(p, config, llm) {
      const d = config.mapper.dModel;
      const embProj = Mlp.sequential(p.at(name, 'emb_proj'), [llm.hiddenSize, d, d], 'gelu');
      const mapper = TransformerMapper.load(p.at(name, 'llm2sd_mapper'), config.mapper);
      const targets = p.at(name).tensor('llm2sd_mapper_queries', [1, config.queries, d]);
      return {
        run(group, { engine }) {
          const conditions = engine.scope(() => {
            const tgt = targets.reshape(targets.shape.slice(1));
            const perBlock = group.blocks.map((_, b) => {
              const block = group.hidden.rows(b, b + 1).reshape(group.hidden.shape.slice(1));
              return mapper.forward(embProj.forward(block), tgt).reshape([1, ...tgt.shape]);
            });
            return perBlock.length === 1 ? perBlock[0]! : concat(perBlock, 0);
          });
          return { decoder: name, task, tokens: group.blocks.map((b) => b.token), phrases: group.blocks.map((b) => b.phrase), conditions, dispose: disposer([conditions]) };
        },
        dispose() {},
      };
    },
  };
}

export const sd = diffusionDecoder('sd', '[GEN]', 'generation', 'Stable Diffusion');
export const ip2p = diffusionDecoder('ip2p', '[EDIT]', 'editing', 'InstructPix2Pix');
