/**
 * The super link (VisionLLM v2, section 2 of ../shared/docs/visionllm-v2.md): routing tokens in the
 * LLM's output select a decoder; right after each one its learnable query embeddings are spliced
 * into the sequence; the last-layer hidden states (after the final norm) at those positions are
 * collected, and handed to the decoders: all blocks of one answer that go to one decoder in one
 * group, in answer order (block k is the decoder's class k), as the official model does.
 *
 *   person[DET][EMB][EMB2][EMB3][EMB4], dog[DET]...   -> { decoder: 'gdino', blocks: [person, dog], hidden [2, 4, d] }
 *
 * Splicing happens in both modes: during generation (generate()'s expand hook runs the routing
 * token's step with 1 + N positions) and teacher-forced (plan() inserts the query positions into a
 * given answer, or recognises [EMB] tokens already there). collect() serves both.
 *
 * Routing tokens already in the prompt or the history are not expanded: the official forward
 * expands them at prefill, but inserts a second block at a stale offset (decoders.md D5), and an
 * earlier turn's blocks have no decoder to go to. They are ordinary tokens there.
 *
 * A routing token no decoder takes (the checkpoint has none for it, or none was registered) is an
 * ordinary token too: the answer still reads, and unrouted() says which blocks got no output and
 * why. A token whose decoder is there but whose queries are not (a missing table or [EMB] token)
 * is a broken checkpoint: generating it is an error.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { Params } from '../nn/params.js';
import { cast } from '../ops/copy.js';
import { embedding } from '../ops/gather.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { embTokens, type LinkTarget } from './routes.js';

/** A routing block of an answer, as its decoder receives it. */
export interface LinkBlock {
  /** The routing token, e.g. '[SEG]'. */
  token: string;
  /** The answer's text before the routing token (since the previous block), e.g. 'person'. */
  phrase: string;
}

/** The blocks of one answer that go to one decoder. */
export interface LinkGroup {
  decoder: string;
  /** In answer order. */
  blocks: LinkBlock[];
  /** Last-layer hidden states at each block's query positions, [blocks, queries, llm width] (f32). */
  hidden: Tensor;
}

/** A routing token that no decoder takes: plain text when generated, for this reason. */
interface Unrouted {
  unrouted: string;
}

interface ActiveRoute {
  token: string;
  /** Query embeddings [N, llm width], f32. */
  table: Tensor;
  /** Token ids at the query positions. */
  queryIds: number[];
}

/** A routing block of a sequence: its token's index, and where its N queries are (teacher forcing). */
export interface RoutedBlock {
  route: ActiveRoute;
  tokenIndex: number;
  firstQuery: number;
}

export class SuperLink {
  private constructor(
    readonly engine: Engine,
    private readonly tokenizer: Tokenizer,
    /** Routing token id -> its route, why no decoder takes it, or why it cannot be routed (an error). */
    private readonly byId: Map<number, ActiveRoute | Unrouted | string>,
    private readonly targets: readonly LinkTarget[],
    /** Query tables converted to f32 here (the others belong to the weights). */
    private readonly owned: Tensor[],
  ) {}

  /**
   * Routes for `targets` (the registered decoders) reading their query tables from `p`.
   * `toolTokens`: every routing token the model may generate; one no target takes is text,
   * reported by unrouted().
   */
  static create(p: Params, targets: readonly LinkTarget[], tokenizer: Tokenizer, toolTokens: readonly string[], width: number): SuperLink {
    const byId = new Map<number, ActiveRoute | Unrouted | string>();
    const owned: Tensor[] = [];
    try {
      for (const t of targets) {
        if (new Set(t.routes.map((r) => r.queries)).size > 1) throw new Error(`super link: the routes of '${t.decoder}' splice different numbers of queries`);
      }
      const tokens = [...new Set([...toolTokens, ...targets.flatMap((t) => t.routes.map((r) => r.token))])];
      for (const token of tokens) {
        const id = tokenizer.tokenToId(token);
        if (id !== undefined) byId.set(id, activate(p, targets, token, tokenizer, width, owned));
      }
    } catch (err) {
      owned.forEach((t) => t.dispose());
      throw err;
    }
    return new SuperLink(p.engine, tokenizer, byId, targets, owned);
  }

  dispose(): void {
    this.owned.forEach((t) => t.dispose());
    this.owned.length = 0;
  }

  /** Decoders that can take blocks. */
  get decoders(): string[] {
    return this.targets.filter((t) => !t.unavailable).map((t) => t.decoder);
  }

  /** The route a token id starts, undefined for ordinary tokens and unrouted ones; a routing token that cannot be routed throws. */
  routeFor(id: number): ActiveRoute | undefined {
    const route = this.byId.get(id);
    if (typeof route === 'string') throw new Error(`super link: ${this.tokenizer.idToToken(id)} cannot be routed: ${route}`);
    return route && 'unrouted' in route ? undefined : route;
  }

  /** The routing tokens in `ids` from index `from` that no decoder takes, each once, in order, with why. */
  unrouted(ids: readonly number[], from = 0): { token: string; reason: string }[] {
    const seen = new Map<string, string>();
    for (let i = from; i < ids.length; i++) {
      const route = this.byId.get(ids[i]!);
      if (route && typeof route === 'object' && 'unrouted' in route) seen.set(this.tokenizer.idToToken(ids[i]!)!, route.unrouted);
    }
    return [...seen].map(([token, reason]) => ({ token, reason }));
  }

  /** A view of the query embeddings to splice after token `id` (generate()'s expand hook), or null for an ordinary token. */
  queriesFor(id: number): Tensor | null {
    const route = this.routeFor(id);
    return route ? route.table.view(route.table.shape) : null;
  }

  /**
   * Teacher forcing: inserts each routing token's query positions after it (or takes the query
   * tokens already there, as training data has them), from index `from` on. Returns the ids to
   * run and the blocks.
   */
  plan(ids: readonly number[], from = 0): { ids: number[]; blocks: RoutedBlock[] } {
    const out: number[] = [];
    const blocks: RoutedBlock[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      out.push(id);
      const route = i >= from ? this.routeFor(id) : undefined;
      if (!route) continue;
      blocks.push({ route, tokenIndex: out.length - 1, firstQuery: out.length });
      out.push(...route.queryIds);
      if (countRun(ids, i + 1, route.queryIds)) i += route.queryIds.length;
    }
    return { ids: out, blocks };
  }

  /** Writes each block's query embeddings into its positions of the input embeddings [L, d] (f32). */
  fill(embeds: Tensor, blocks: readonly RoutedBlock[]): void {
    const rowBytes = embeds.byteLength / embeds.shape[0]!;
    for (const b of blocks) this.engine.copyBytes(b.route.table, 0, embeds, b.firstQuery * rowBytes, b.route.table.byteLength);
  }

  /**
   * The decoders' inputs from an answer: `ids` hold the answer from index `from` (with or without
   * the query ids after each routing token), `blockHidden[k]` the last-layer hidden states [N, d]
   * of the k-th routing block's queries. Blocks are grouped by decoder, each group in answer order;
   * groups are ordered by their first block. The caller disposes the groups' tensors.
   */
  collect(ids: readonly number[], blockHidden: readonly Tensor[], from = 0): LinkGroup[] {
    const found: { token: string; phrase: string; hidden: Tensor }[] = [];
    let start = from;
    for (let i = from; i < ids.length; i++) {
      const route = this.routeFor(ids[i]!);
      if (!route) continue;
      const hidden = blockHidden[found.length];
      if (!hidden) throw new Error(`super link: the answer has more routing blocks than the ${blockHidden.length} hidden-state blocks given`);
      if (hidden.rank !== 2 || hidden.shape[0] !== route.queryIds.length || hidden.dtype !== 'f32') {
        throw new RangeError(`super link: block ${found.length} (${route.token}) has hidden states ${hidden}, expected [${route.queryIds.length}, width] f32`);
      }
      found.push({ token: route.token, phrase: phrase(this.tokenizer.decode(ids.slice(start, i), { skipSpecialTokens: true })), hidden });
      start = i + 1 + countRun(ids, i + 1, route.queryIds);
    }
    if (found.length !== blockHidden.length) throw new Error(`super link: ${blockHidden.length} hidden-state blocks for ${found.length} routing blocks`);
    const owners = this.assign(found.map((b) => b.token));
    const order = [...new Set(owners)];
    return this.engine.scope(() =>
      order.map((decoder) => {
        const mine = found.filter((_, k) => owners[k] === decoder);
        const max = this.targets.find((t) => t.decoder === decoder)!.maxBlocks;
        if (mine.length > max) throw new RangeError(`super link: ${mine.length} blocks route to '${decoder}', which takes at most ${max}`);
        // Stacked by buffer copies, as fill() writes the queries: no dispatch per block.
        const [n, width] = mine[0]!.hidden.shape as [number, number];
        const hidden = this.engine.empty([mine.length, n, width], 'f32');
        mine.forEach((b, k) => this.engine.copyBytes(b.hidden, 0, hidden, k * b.hidden.byteLength, b.hidden.byteLength));
        return { decoder, blocks: mine.map(({ token, phrase }) => ({ token, phrase })), hidden };
      }),
    );
  }

  /**
   * The decoder of each block. A decoder is selected by its selecting tokens in the answer; a
   * block goes to a selected decoder that takes its token, preferring one selected by another
   * token (UniPose's [DET] objects in a pose answer).
   */
  private assign(tokens: readonly string[]): string[] {
    const available = this.targets.filter((t) => !t.unavailable);
    const selected = available.filter((t) => t.routes.some((r) => r.selects && tokens.includes(r.token)));
    return tokens.map((token, k) => {
      const takers = selected.filter((t) => t.routes.some((r) => r.token === token));
      const bySelection = takers.filter((t) => t.routes.some((r) => r.token === token && !r.selects));
      const chosen = bySelection.length ? bySelection : takers;
      if (chosen.length === 1) return chosen[0]!.decoder;
      if (chosen.length > 1) throw new Error(`super link: block ${k} (${token}) could go to ${chosen.map((t) => `'${t.decoder}'`).join(' or ')}`);
      const why = this.targets.filter((t) => t.routes.some((r) => r.token === token)).map((t) => `'${t.decoder}': ${t.unavailable ?? `selected by ${selecting(t)}, none in this answer`}`);
      throw new Error(`super link: no decoder takes block ${k} (${token}) of this answer (${why.join('; ')})`);
    });
  }
}

/** The f32 query table and query ids of `token`, why no decoder takes it, or why it cannot be routed. */
function activate(p: Params, targets: readonly LinkTarget[], token: string, tokenizer: Tokenizer, width: number, owned: Tensor[]): ActiveRoute | Unrouted | string {
  const takers = targets.filter((t) => t.routes.some((r) => r.token === token));
  if (!takers.length) return { unrouted: `no decoder registered takes ${token}` };
  const routes = takers.map((t) => t.routes.find((r) => r.token === token)!);
  const { table, queries } = routes[0]!;
  const clash = routes.find((r) => r.table !== table || r.queries !== queries);
  if (clash) throw new Error(`super link: decoders disagree on ${token}'s queries ('${table}' x ${queries} vs '${clash.table}' x ${clash.queries})`);
  const usable = takers.find((t) => !t.unavailable);
  if (!usable) return { unrouted: takers[0]!.unavailable! };
  const queryTokens = embTokens(queries);
  const queryIds = queryTokens.map((t) => tokenizer.tokenToId(t));
  const missing = queryTokens.find((_, i) => queryIds[i] === undefined);
  if (missing) return `the tokenizer lacks ${missing}`;
  if (!p.has(`${table}.weight`)) return `the checkpoint has no '${table}.weight'`;
  const stored = p.tensor(`${table}.weight`, [queries, width]);
  const f32 = stored.dtype === 'f32' ? stored : cast(stored, 'f32');
  if (f32 !== stored) owned.push(f32);
  return { token, table: f32, queryIds: queryIds as number[] };
}

function selecting(t: LinkTarget): string {
  return t.routes.filter((r) => r.selects).map((r) => r.token).join('/');
}

/** The phrase of a block: its text trimmed of separators ("... , dog" -> "dog"). */
function phrase(text: string): string {
  return text.trim().replace(/^[\s,.;:]+/, '').trim();
}

/** How many of `run` follow at `at` in `ids` (0 or all of them). */
function countRun(ids: readonly number[], at: number, run: readonly number[]): number {
  return run.every((q, k) => ids[at + k] === q) ? run.length : 0;
}

/** The rows of a group whose token is one of `tokens`: their blocks and hidden states [k, N, d] (a tensor the caller disposes). */
export function selectBlocks(group: LinkGroup, tokens: readonly string[]): { blocks: LinkBlock[]; hidden: Tensor } {
  const rows = group.blocks.flatMap((b, k) => (tokens.includes(b.token) ? [k] : []));
  const [n, q, d] = group.hidden.shape as [number, number, number];
  const engine = group.hidden.engine;
  const hidden = engine.scope(() => {
    if (rows.length === n) return group.hidden.view(group.hidden.shape);
    const flat = embedding(group.hidden.reshape([n, q * d]), rows, 'f32');
    return flat.reshape([rows.length, q, d]);
  });
  return { blocks: rows.map((k) => group.blocks[k]!), hidden };
}
