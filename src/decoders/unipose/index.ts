/**
 * UniPose (`unipose.*`): keypoints behind [POSE]. A pose answer names the object classes with
 * [DET] blocks and the keypoints with [POSE] blocks, as the official data does:
 *
 *   ... for person[DET][EMB]..[EMB4] in the image ... the location of nose[POSE][EMB].., left eye[POSE]...
 *
 * so UniPose takes the answer's [DET] blocks too (they keep the det query table): the objects are
 * projected by `projection_llava`, the keypoints by `projection_kpt_llava`, and the detector finds
 * each object's instances and their keypoints (keypoint j = the j-th [POSE] block) on its own copy
 * of the image, returned in original pixels. Specification: decoders.md part 2.B, D1; what it
 * computes and its options: docs/unipose.md.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { selectBlocks } from '../../superlink/superlink.js';
import { disposer, optionsObject, type Decoder, type DecoderOutput } from '../decoder.js';
import { parseUniposeConfig, type UniposeConfig } from './config.js';
import { uniposeImage } from './image.js';
import { UniPose, type UniposeTimings } from './model.js';
import { poseDetections, type PoseDetection } from './postprocess.js';

export type { UniposeConfig } from './config.js';
export type { PoseDetection, PoseKeypoint } from './postprocess.js';

export interface UniposeOptions {
  /** Instances kept, best first (default 100, as the COCO evaluation; at most groups × objects exist). */
  topK?: number;
}

export interface UniposeOutput extends DecoderOutput {
  decoder: 'unipose';
  task: 'pose';
  /** The object classes: the [DET] blocks' phrases, class k = block k. */
  objects: string[];
  /** The keypoints: the [POSE] blocks' phrases, in answer order = keypoint order. */
  keypointNames: string[];
  /** Best first, in original pixels; empty when the chat had no image, no object or no keypoint. */
  instances: PoseDetection[];
  /** projection_llava of the objects [Ko, hidden_dim] and projection_kpt_llava of the keypoints [Kk, hidden_dim]. */
  objectEmbeddings: Tensor;
  keypointEmbeddings: Tensor;
  /** The detector's stages (zero when it did not run). */
  timings: UniposeTimings & { postprocessMs: number };
}

/** UniPose's capacity of object classes per answer (its text side holds at most max_text_len). */
const MAX_OBJECTS = 100;
const NO_TIMINGS = { backboneMs: 0, encoderMs: 0, boxPhaseMs: 0, posePhaseMs: 0, postprocessMs: 0 };

export const unipose: Decoder<UniposeConfig, UniposeOptions, UniposeOutput> = {
  name: 'unipose',
  routes: [
    { token: '[POSE]', table: 'emb_embeddings_pose', queries: 'num_embs' },
    { token: '[DET]', table: 'emb_embeddings_det', queries: 'num_embs', selects: false },
  ],
  maxBlocks: MAX_OBJECTS + 68,
  prefixes: ['unipose.'],
  absent: 'the checkpoint has no UniPose (use_unipose is false)',

  parseConfig(root: ConfigReader): UniposeConfig | undefined {
    if (!root.bool('use_unipose', false)) return undefined;
    return parseUniposeConfig(root.sub('unipose_config'));
  },

  parseOptions(raw: unknown): UniposeOptions {
    const o = optionsObject<UniposeOptions>('unipose', raw, ['topK']);
    if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new RangeError(`chat: decoders.unipose.topK must be a positive integer, got ${JSON.stringify(o.topK)}`);
    return o;
  },

  async load(p, config, llm) {
    const model = await UniPose.load(p, config, llm.hiddenSize);
    const m = config.pose.maxKeypoints;
    return {
      async run(group, { engine, image, options }) {
        const [o, k] = engine.scope(() => {
          const objects = selectBlocks(group, ['[DET]']);
          const keypoints = selectBlocks(group, ['[POSE]']);
          if (objects.blocks.length > MAX_OBJECTS) throw new RangeError(`unipose: ${objects.blocks.length} object classes ([DET] blocks), at most ${MAX_OBJECTS}`);
          if (keypoints.blocks.length > m) throw new RangeError(`unipose: ${keypoints.blocks.length} keypoints ([POSE] blocks), at most ${m} (num_body_points)`);
          const d = config.detector.dModel;
          const project = (s: typeof objects, f: (h: Tensor) => Tensor) => ({ phrases: s.blocks.map((b) => b.phrase), embeddings: s.blocks.length ? f(s.hidden) : engine.empty([0, d], 'f32') });
          return [project(objects, (h) => model.objectText(h)), project(keypoints, (h) => model.keypointText(h))];
        });
        const [objectEmbeddings, keypointEmbeddings] = [o!.embeddings, k!.embeddings];
        const output = {
          decoder: 'unipose' as const,
          task: 'pose' as const,
          tokens: group.blocks.map((b) => b.token),
          phrases: group.blocks.map((b) => b.phrase),
          objects: o!.phrases,
          keypointNames: k!.phrases,
          objectEmbeddings,
          keypointEmbeddings,
          dispose: disposer([objectEmbeddings, keypointEmbeddings]),
        };
        if (!image || !o!.phrases.length || !k!.phrases.length) return { ...output, instances: [], timings: NO_TIMINGS };
        try {
          const [maxSize, size] = config.detector.imageScale;
          const input = uniposeImage(engine, image, { size, maxSize });
          try {
            const result = await model.detect(input, objectEmbeddings, keypointEmbeddings);
            const start = performance.now();
            const instances = poseDetections(result, { oriShape: input.oriShape, keypointNames: output.keypointNames, numClasses: output.objects.length, topk: options.topK ?? 100, labels: output.objects });
            return { ...output, instances, timings: { ...result.timings, postprocessMs: performance.now() - start } };
          } finally {
            input.dispose();
          }
        } catch (err) {
          output.dispose();
          throw err;
        }
      },
      dispose: () => model.dispose(),
    };
  },
};
