/**
 * The routing registry of the super link: which generated tokens route to which decoder, the
 * learnable query table spliced in after them, and the projection that turns the queries' hidden
 * states into the decoder's conditions. A decoder added later registers a RouteDefinition here;
 * nothing else changes.
 */
import type { VisionLLMConfig } from '../model/config.js';
import type { Weights } from '../model/weights.js';
import { DiffusionProjection, MlpMeanProjection, PoseProjection, type LinkProjection } from './projections.js';

export interface RouteDefinition {
  /** The decoder: 'det' (Grounding DINO: detection, segmentation, grounding), 'pose', 'gen', 'edit'. */
  name: string;
  /** Tokens that route here. */
  tokens: readonly string[];
  /** The query table: `<table>.weight`, [N, llm width]. */
  table: string;
  /** How many query rows follow a routing token (the table's rows: num_embs or num_embs_gen). */
  queries: (config: VisionLLMConfig) => number;
  /** The tokens standing at the query positions: [EMB]..[EMBn] (N <= 8), else [EMB] N times. */
  queryTokens: (n: number) => string[];
  /** Most blocks one answer may route here (the decoder's class capacity). */
  maxBlocks: number;
  /** Builds the projection (throws naming a missing tensor), or says why the decoder is absent. */
  projection: (w: Weights, config: VisionLLMConfig) => LinkProjection | string;
}

export function embTokens(n: number): string[] {
  return n <= 8 ? Array.from({ length: n }, (_, i) => (i === 0 ? '[EMB]' : `[EMB${i + 1}]`)) : new Array<string>(n).fill('[EMB]');
}

export const DEFAULT_ROUTES: readonly RouteDefinition[] = [
  {
    name: 'det',
    queries: (c) => c.numEmbs,
    tokens: ['[DET]', '[SEG]', '[GRD]'],
    table: 'emb_embeddings_det',
    queryTokens: embTokens,
    maxBlocks: 256, // Grounding DINO's text-token capacity
    projection: (w, c) =>
      c.decoders.gdino
        ? MlpMeanProjection.fromWeights(w, 'gdino.patch2query', c.llm.hiddenSize, c.decoders.gdino.dModel, c.numEmbs)
        : 'the checkpoint has no Grounding DINO (use_gdino is false)',
  },
  {
    name: 'pose',
    queries: (c) => c.numEmbs,
    tokens: ['[POSE]'],
    table: 'emb_embeddings_pose',
    queryTokens: embTokens,
    maxBlocks: 100 + 68, // object classes + keypoints (UniPose: up to 68 per instance)
    projection: (w, c) =>
      c.decoders.unipose
        ? new PoseProjection(
            MlpMeanProjection.fromWeights(w, 'unipose.projection_llava', c.llm.hiddenSize, c.decoders.unipose.hiddenDim, c.numEmbs),
            MlpMeanProjection.fromWeights(w, 'unipose.projection_kpt_llava', c.llm.hiddenSize, c.decoders.unipose.hiddenDim, c.numEmbs),
          )
        : 'the checkpoint has no UniPose (use_unipose is false)',
  },
  {
    name: 'gen',
    queries: (c) => c.numEmbsGen,
    tokens: ['[GEN]'],
    table: 'emb_embeddings_gen',
    queryTokens: embTokens,
    maxBlocks: 16,
    projection: (w, c) =>
      c.decoders.sd
        ? DiffusionProjection.fromWeights(w, 'sd', c.llm.hiddenSize, c.decoders.sd.dModel, c.decoders.sd.queries)
        : 'the checkpoint has no Stable Diffusion (use_sd is false)',
  },
  {
    name: 'edit',
    queries: (c) => c.numEmbsGen,
    tokens: ['[EDIT]'],
    table: 'emb_embeddings_edit',
    queryTokens: embTokens,
    maxBlocks: 16,
    projection: (w, c) =>
      c.decoders.ip2p
        ? DiffusionProjection.fromWeights(w, 'ip2p', c.llm.hiddenSize, c.decoders.ip2p.dModel, c.decoders.ip2p.queries)
        : 'the checkpoint has no InstructPix2Pix (use_ip2p is false)',
  },
];

/** The checkpoint tensors the default routes read, by name prefix (for loading only what is needed). */
export const ROUTE_WEIGHT_PREFIXES = [
  'emb_embeddings_',
  'gdino.patch2query.',
  'unipose.projection_llava.',
  'unipose.projection_kpt_llava.',
  'sd.emb_proj.',
  'sd.llm2sd_mapper',
  'ip2p.emb_proj.',
  'ip2p.llm2sd_mapper',
];

export class RouteRegistry {
  private readonly routes = new Map<string, RouteDefinition>();

  constructor(definitions: readonly RouteDefinition[] = DEFAULT_ROUTES) {
    definitions.forEach((d) => this.register(d));
  }

  register(route: RouteDefinition): void {
    for (const existing of this.routes.values()) {
      const clash = route.tokens.find((t) => existing.tokens.includes(t) && existing.name !== route.name);
      if (clash) throw new Error(`super link: ${clash} already routes to '${existing.name}'`);
    }
    this.routes.set(route.name, route);
  }

  all(): RouteDefinition[] {
    return [...this.routes.values()];
  }

  forToken(token: string): RouteDefinition | undefined {
    return this.all().find((r) => r.tokens.includes(token));
  }
}
