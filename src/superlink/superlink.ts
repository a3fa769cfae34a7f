/**
 * The super link (VisionLLM v2, section 2 of ../shared/docs/visionllm-v2.md): routing tokens in the
 * LLM's output select a decoder; right after each one the route's learnable query embeddings are
 * spliced into the sequence; the last-layer hidden states (after the final norm) at those positions
 * are gathered per block and projected into the decoder's conditions. Everything stays on the GPU.
 *
 *   person[DET][EMB][EMB2][EMB3][EMB4], dog[DET]...   -> links: { route: 'det', phrase: 'person', condition [256] }, ...
 *
 * Splicing happens in both modes: during generation (generate()'s expand hook runs the routing
 * token's step with 1 + N positions) and teacher-forced (plan() inserts the query positions into a
 * given answer, or recognises [EMB] tokens already there).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { VisionLLMConfig } from '../model/config.js';
import type { Weights } from '../model/weights.js';
import { cast, concat } from '../ops/copy.js';
import { embedding } from '../ops/gather.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { LinkProjection, ProjectOptions } from './projections.js';
import { RouteRegistry, type RouteDefinition } from './routes.js';

/** VisionLLM v2's tool tokens: a generated one must have a registered route. */
export const TOOL_TOKENS = ['[DET]', '[GRD]', '[SEG]', '[POSE]', '[GEN]', '[EDIT]'] as const;

export interface Link {
  /** The decoder: 'det', 'pose', 'gen', 'edit'. */
  route: string;
  /** The routing token, e.g. '[SEG]'. */
  token: string;
  /** The answer's text before the routing token (since the previous block), e.g. 'person'. */
  phrase: string;
  /** The decoder's input for this block (det/pose: [width]; gen/edit: [queries, d_sd]); the caller disposes it. */
  condition: Tensor;
}

export interface ActiveRoute {
  definition: RouteDefinition;
  /** Query embeddings [N, llm width], f32. */
  table: Tensor;
  /** Token ids at the query positions. */
  queryIds: number[];
  projection: LinkProjection;
}

/** A routing block of a sequence: its token's index, and where its N queries are. */
export interface RoutedBlock {
  route: ActiveRoute;
  token: string;
  tokenIndex: number;
  firstQuery: number;
}

export class SuperLink {
  private constructor(
    readonly engine: Engine,
    private readonly tokenizer: Tokenizer,
    /** Routing token id -> its route, or why that route is unavailable. */
    private readonly byId: Map<number, ActiveRoute | string>,
    /** Query tables converted to f32 here (the others belong to the weights). */
    private readonly owned: Tensor[],
  ) {}

  static fromWeights(w: Weights, config: VisionLLMConfig, tokenizer: Tokenizer, registry = new RouteRegistry()): SuperLink {
    const byId = new Map<number, ActiveRoute | string>();
    const owned: Tensor[] = [];
    const routed = new Set<string>();
    for (const def of registry.all()) {
      let route: ActiveRoute | string;
      const tableName = `${def.table}.weight`;
      const queryTokens = def.queryTokens(def.queries(config));
      const queryIds = queryTokens.map((t) => tokenizer.tokenToId(t));
      if (!w.has(tableName)) {
        route = `the checkpoint has no '${tableName}'`;
      } else if (queryIds.some((id) => id === undefined)) {
        route = `the tokenizer lacks ${queryTokens.find((_, i) => queryIds[i] === undefined)}`;
      } else {
        try {
          const projection = def.projection(w, config);
          if (typeof projection === 'string') route = projection;
          else {
            const stored = w.get(tableName, [queryIds.length, config.llm.hiddenSize]);
            const table = stored.dtype === 'f32' ? stored : cast(stored, 'f32');
            if (table !== stored) owned.push(table);
            route = { definition: def, table, queryIds: queryIds as number[], projection };
          }
        } catch (err) {
          route = (err as Error).message;
        }
      }
      for (const token of def.tokens) {
        const id = tokenizer.tokenToId(token);
        if (id !== undefined) byId.set(id, route);
        routed.add(token);
      }
    }
    for (const token of TOOL_TOKENS) {
      const id = tokenizer.tokenToId(token);
      if (id !== undefined && !routed.has(token)) byId.set(id, `no route is registered for ${token}`);
    }
    return new SuperLink(w.engine, tokenizer, byId, owned);
  }

  dispose(): void {
    this.owned.forEach((t) => t.dispose());
  }

  /** The route a token id starts, undefined for ordinary tokens; a routing token whose route is unavailable throws. */
  routeFor(id: number): ActiveRoute | undefined {
    const route = this.byId.get(id);
    if (typeof route === 'string') throw new Error(`super link: ${this.tokenizer.idToToken(id)} cannot be routed: ${route}`);
    return route;
  }

  /** A view of the query embeddings to splice after token `id` (generate()'s expand hook), or null for an ordinary token. */
  queriesFor(id: number): Tensor | null {
    const route = this.routeFor(id);
    return route ? route.table.view(route.table.shape) : null;
  }

  /** The routing blocks of generated ids (their queries were spliced during generation, not placed in the ids). */
  generatedBlocks(ids: readonly number[]): RoutedBlock[] {
    return ids.flatMap((id, tokenIndex) => {
      const route = this.routeFor(id);
      return route ? [{ route, token: this.tokenizer.idToToken(id), tokenIndex, firstQuery: -1 }] : [];
    });
  }

  /** Routes available, by decoder name. */
  get routes(): string[] {
    return [...new Set([...this.byId.values()].filter((r): r is ActiveRoute => typeof r !== 'string').map((r) => r.definition.name))];
  }

  /**
   * Teacher forcing: inserts each routing token's query positions after it (or takes the query
   * tokens already there, as training data has them). Returns the ids to run and the blocks.
   */
  plan(ids: readonly number[], from = 0): { ids: number[]; blocks: RoutedBlock[] } {
    const out: number[] = [];
    const blocks: RoutedBlock[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      out.push(id);
      const route = i >= from ? this.routeFor(id) : undefined;
      if (!route) continue;
      const n = route.queryIds.length;
      const present = route.queryIds.every((q, k) => ids[i + 1 + k] === q);
      blocks.push({ route, token: this.tokenizer.idToToken(id), tokenIndex: out.length - 1, firstQuery: out.length });
      out.push(...route.queryIds);
      if (present) i += n;
    }
    return { ids: out, blocks };
  }

  /** Writes each block's query embeddings into its positions of the input embeddings [L, d] (f32). */
  fill(embeds: Tensor, blocks: readonly RoutedBlock[]): void {
    const rowBytes = embeds.byteLength / embeds.shape[0]!;
    for (const b of blocks) this.engine.copyBytes(b.route.table, 0, embeds, b.firstQuery * rowBytes, b.route.table.byteLength);
  }

  /**
   * The hidden states [L, d] at the blocks' query positions, gathered on the GPU into one
   * [blocks, N, d] tensor per route (blocks in answer order).
   */
  gather(hidden: Tensor, blocks: readonly RoutedBlock[]): Map<ActiveRoute, Tensor> {
    const out = new Map<ActiveRoute, Tensor>();
    for (const [route, mine] of groupByRoute(blocks)) {
      const n = route.queryIds.length;
      const positions = mine.flatMap((b) => route.queryIds.map((_, k) => b.firstQuery + k));
      const rows = embedding(hidden, positions);
      out.set(route, rows.reshape([mine.length, n, hidden.shape[1]!]));
      rows.dispose();
    }
    return out;
  }

  /** Per-block hidden states [N, d] (from splices during generation) stacked per route like gather(). */
  stack(blocks: readonly RoutedBlock[], perBlock: readonly Tensor[]): Map<ActiveRoute, Tensor> {
    const out = new Map<ActiveRoute, Tensor>();
    for (const [route, mine] of groupByRoute(blocks)) {
      const parts = mine.map((b) => perBlock[blocks.indexOf(b)]!);
      out.set(route, this.engine.scope(() => concat(parts.map((t) => t.reshape([1, ...t.shape])), 0)));
    }
    return out;
  }

  /**
   * Projects each route's gathered queries into its decoder's conditions, one link per block in
   * answer order. `phrases` come from the answer text. Checks each decoder's block capacity.
   */
  links(blocks: readonly RoutedBlock[], gathered: ReadonlyMap<ActiveRoute, Tensor>, phrases: readonly string[], options: ProjectOptions = {}): Link[] {
    const groups = groupByRoute(blocks);
    for (const [route, mine] of groups) {
      const max = route.definition.maxBlocks;
      if (mine.length > max) throw new RangeError(`super link: ${mine.length} blocks route to '${route.definition.name}', which takes at most ${max}`);
    }
    const links = new Array<Link>(blocks.length);
    this.engine.scope(() => {
      for (const [route, mine] of groups) {
        const queries = gathered.get(route);
        if (!queries || queries.shape[0] !== mine.length) throw new Error(`super link: no gathered queries for the ${mine.length} '${route.definition.name}' block(s)`);
        const conditions = route.projection.project(queries, options);
        mine.forEach((b, k) => {
          const i = blocks.indexOf(b);
          const condition = this.engine.keep(conditions.rows(k, k + 1).reshape(conditions.shape.slice(1)));
          links[i] = { route: route.definition.name, token: b.token, phrase: phrases[i] ?? '', condition };
        });
      }
    });
    return links;
  }

  /** The text before each routing token since the previous block (or `from`), trimmed of separators. */
  phrases(ids: readonly number[], tokenIndices: readonly number[], from = 0): string[] {
    let start = from;
    return tokenIndices.map((at) => {
      const text = this.tokenizer.decode(ids.slice(start, at), { skipSpecialTokens: true });
      const route = this.byId.get(ids[at]!);
      start = at + 1 + (typeof route === 'string' || !route ? 0 : countRun(ids, at + 1, route.queryIds));
      return text.trim().replace(/^[\s,.;:]+/, '').trim();
    });
  }
}

function groupByRoute(blocks: readonly RoutedBlock[]): Map<ActiveRoute, RoutedBlock[]> {
  const groups = new Map<ActiveRoute, RoutedBlock[]>();
  for (const b of blocks) groups.set(b.route, [...(groups.get(b.route) ?? []), b]);
  return groups;
}

/** How many of `run` follow at `at` in `ids` (0 or all of them). */
function countRun(ids: readonly number[], at: number, run: readonly number[]): number {
  return run.every((q, k) => ids[at + k] === q) ? run.length : 0;
}
