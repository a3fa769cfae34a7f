/**
 * Grounding DINO (`gdino.*`) behind [DET], [SEG] and [GRD]: detection, instance and semantic
 * segmentation, and grounding. The super link's side is patch2query: one d_model "text token" per
 * routing block (class k = block k), which replaces Grounding DINO's BERT features. The detector
 * then sees its own copy of the original image (mmdet's pipeline, not the CLIP tiles) and its
 * results come back in original pixels. Specification: ../shared/docs/decoders.md part 2.A;
 * what it computes and its options: docs/gdino.md.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { disposer, optionsObject, type Decoder, type DecoderOutput } from '../decoder.js';
import { parseGdinoConfig, type GdinoConfig } from './config.js';
import { gdinoImage } from './image.js';
import { GroundingDino, type GdinoTimings } from './model.js';
import { detections, grounding, semanticMap, type Detection, type SemanticMap } from './postprocess.js';

export type { GdinoConfig } from './config.js';
export type { Detection, SemanticMap } from './postprocess.js';
export { expandMask, maskArea, Mask, type Rle } from '../../image/mask.js';

/**
 * detection: boxes (top-k over queries x classes); segmentation: the same with instance masks;
 * semantic: a class per pixel (ADE20K's 2048x512 input scale); grounding: each phrase's best box and mask.
 */
export type GdinoTask = 'detection' | 'segmentation' | 'semantic' | 'grounding';

export interface GdinoOptions {
  /** By default from the tokens: [GRD] grounding, [SEG] segmentation, else detection. */
  task?: GdinoTask;
  /** Detections kept for detection and segmentation (default 100, as the COCO evaluation). */
  topK?: number;
}

export interface GdinoOutput extends DecoderOutput {
  decoder: 'gdino';
  task: GdinoTask;
  /** The classes: the blocks' phrases, class k = block k. */
  classes: string[];
  /** Best first, in original pixels; empty for semantic segmentation, and when the chat had no image. */
  detections: Detection[];
  /** For task 'semantic': the class index of every original pixel. */
  semantic?: SemanticMap;
  /** One text token per block, [blocks, d_model]: column k of the class logits is block k. */
  classEmbeddings: Tensor;
  /** The detector's stages (zero when the chat had no image). */
  timings: GdinoTimings & { postprocessMs: number };
}

const TASKS: readonly GdinoTask[] = ['detection', 'segmentation', 'semantic', 'grounding'];
const NO_TIMINGS = { backboneMs: 0, encoderMs: 0, decoderMs: 0, maskFeaturesMs: 0, postprocessMs: 0 };

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
    return parseGdinoConfig(root.sub('gdino_config'));
  },

  parseOptions(raw: unknown): GdinoOptions {
    const o = optionsObject<GdinoOptions>('gdino', raw, ['task', 'topK']);
    if (o.task !== undefined && !TASKS.includes(o.task)) throw new TypeError(`chat: decoders.gdino.task must be one of ${TASKS.join(', ')}, got ${JSON.stringify(o.task)}`);
    if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new RangeError(`chat: decoders.gdino.topK must be a positive integer, got ${JSON.stringify(o.topK)}`);
    return o;
  },

  load(p, config, llm) {
    const model = GroundingDino.load(p, config, llm.hiddenSize);
    return {
      async run(group, { engine, image, options }) {
        const tokens = group.blocks.map((b) => b.token);
        const classes = group.blocks.map((b) => b.phrase);
        const task = options.task ?? (tokens.includes('[GRD]') ? 'grounding' : tokens.includes('[SEG]') ? 'segmentation' : 'detection');
        const classEmbeddings = model.classEmbeddings(group.hidden);
        const output = { decoder: 'gdino' as const, task, tokens, phrases: classes, classes, classEmbeddings, dispose: disposer([classEmbeddings]) };
        if (!image) return { ...output, detections: [], timings: NO_TIMINGS };
        try {
          const input = gdinoImage(engine, image, { scale: task === 'semantic' ? config.semanticImageScale : config.imageScale });
          try {
            const result = await model.detect(input, classEmbeddings, { masks: task !== 'detection' });
            try {
              const start = performance.now();
              const K = classes.length;
              const labelled = { numClasses: K, labels: classes };
              let found: Detection[] = [];
              let semantic: SemanticMap | undefined;
              if (task === 'semantic') {
                semantic = await semanticMap(engine, result.logits, result.maskLogits!, input, K);
              } else if (task === 'grounding') {
                found = await grounding(result, input, labelled);
              } else {
                found = await detections(result, input, { ...labelled, topk: options.topK ?? 100, masks: task === 'segmentation' });
              }
              return { ...output, detections: found, semantic, timings: { ...result.timings, postprocessMs: performance.now() - start } };
            } finally {
              result.dispose();
            }
          } finally {
            input.dispose();
          }
        } catch (err) {
          classEmbeddings.dispose();
          throw err;
        }
      },
      dispose: () => model.dispose(),
    };
  },
};
