/**
 * What the super link needs to know about the decoders, as plain data: which routing tokens each
 * one takes, the learnable query table spliced in after each token, and how many blocks it
 * accepts per answer. The decoders declare it (src/decoders/); the super link never imports them.
 */

export interface LinkRoute {
  /** The routing token, e.g. '[DET]'. */
  token: string;
  /** The query table's tensor name without '.weight', e.g. 'emb_embeddings_det': [queries, llm width]. */
  table: string;
  /** Rows of the table: the query positions spliced in after the token. */
  queries: number;
  /**
   * true: a block with this token selects the decoder for its answer. false: the decoder takes such
   * blocks only in an answer that selected it by another token; UniPose takes the [DET] object
   * classes of a pose answer (person[DET] ... nose[POSE]), which otherwise go to Grounding DINO.
   */
  selects: boolean;
}

/** A decoder as the super link sees it. */
export interface LinkTarget {
  decoder: string;
  routes: readonly LinkRoute[];
  /** Most blocks one answer may hand it (its class capacity). */
  maxBlocks: number;
  /** Why it cannot take blocks (absent from the checkpoint), or undefined when it can. */
  unavailable?: string;
}

/** The tokens standing at the query positions: [EMB]..[EMBn] for n <= 8, else [EMB] n times (as the official code numbers them). */
export function embTokens(n: number): string[] {
  return n <= 8 ? Array.from({ length: n }, (_, i) => (i === 0 ? '[EMB]' : `[EMB${i + 1}]`)) : new Array<string>(n).fill('[EMB]');
}
