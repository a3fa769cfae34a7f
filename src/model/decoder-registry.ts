/**
 * What the model derives from the list of registered decoders: the routing tokens, the super
 * link's view of each decoder (tables, query counts, capacity, availability), and the checkpoint
 * prefixes to load. Nothing here names a particular decoder.
 */
import type { AnyDecoder } from '../decoders/decoder.js';
import { DEFAULT_DECODERS } from '../decoders/index.js';
import type { LinkTarget } from '../superlink/routes.js';
import type { VisionLLMConfig } from './config.js';

/** Every routing token: those of the default decoders (VisionLLM v2's vocabulary) and of the registered ones. */
export function toolTokens(decoders: readonly AnyDecoder[]): string[] {
  return [...new Set([...DEFAULT_DECODERS, ...decoders].flatMap((d) => d.routes.map((r) => r.token)))];
}

/** A decoder as the super link sees it, with its query counts from the config. */
export function linkTarget(d: AnyDecoder, config: VisionLLMConfig): LinkTarget {
  return {
    decoder: d.name,
    routes: d.routes.map((r) => ({ token: r.token, table: r.table, queries: r.queries === 'num_embs' ? config.numEmbs : config.numEmbsGen, selects: r.selects ?? true })),
    maxBlocks: d.maxBlocks,
    unavailable: config.decoders.has(d.name) ? undefined : d.absent,
  };
}

/** Checkpoint tensors the present decoders need: their query tables and their own prefixes. */
export function decoderPrefixes(present: readonly AnyDecoder[]): string[] {
  return [...new Set(present.flatMap((d) => [...d.routes.map((r) => `${r.table}.weight`), ...d.prefixes]))];
}

/** The registered decoders, checked: unique names. */
export function checkRegistry(decoders: readonly AnyDecoder[]): readonly AnyDecoder[] {
  const names = decoders.map((d) => d.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`load: two decoders are named '${twice}'`);
  return decoders;
}
