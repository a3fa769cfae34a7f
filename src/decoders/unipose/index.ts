/**
 * UniPose (`unipose.*`): keypoints behind [POSE]. A pose answer names the object classes with
 * [DET] blocks and the keypoints with [POSE] blocks, as the official data does:
 *
 *   ... for person[DET][EMB]..[EMB4] in the image ... the location of nose[POSE][EMB].., left eye[POSE]...
 *
 * so UniPose takes the answer's [DET] blocks too (they keep the det query table) and projects them
 * by `projection_llava`, the [POSE] blocks by `projection_kpt_llava`: each an MLP (LLM width ->
 * hidden_dim x3, ReLU) of the queries, then their mean. Specification: decoders.md part 2.B, D1.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import { Mlp } from '../../nn/mlp.js';
import { selectBlocks } from '../../superlink/superlink.js';
import { disposer, noOptions, type Decoder, type DecoderOutput } from '../decoder.js';

export interface UniposeConfig {
  hiddenDim: number;
}

export interface UniposeOutput extends DecoderOutput {
  decoder: 'unipose';
  task: 'pose';
  /** Object classes ([DET] blocks), [objects, hidden_dim], and their phrases. */
  objects: Tensor;
  objectPhrases: string[];
  /** Keypoints ([POSE] blocks, in answer order = keypoint order), [keypoints, hidden_dim]. */
  keypoints: Tensor;
  keypointPhrases: string[];
}

/** UniPose's capacity: up to 100 object classes and 68 keypoints per instance. */
const MAX_OBJECTS = 100;
const MAX_KEYPOINTS = 68;

export const unipose: Decoder<UniposeConfig, undefined, UniposeOutput> = {
  name: 'unipose',
  routes: [
    { token: '[POSE]', table: 'emb_embeddings_pose', queries: 'num_embs' },
    { token: '[DET]', table: 'emb_embeddings_det', queries: 'num_embs', selects: false },
  ],
  maxBlocks: MAX_OBJECTS + MAX_KEYPOINTS,
  prefixes: ['unipose.'],
  absent: 'the checkpoint has no UniPose (use_unipose is false)',

  parseConfig(root: ConfigReader): UniposeConfig | undefined {
    if (!root.bool('use_unipose', false)) return undefined;
    return { hiddenDim: root.sub('unipose_config').positive('hidden_dim', 256) };
  },

  parseOptions: noOptions('unipose'),

  load(p, config, llm) {
    const dims = [llm.hiddenSize, config.hiddenDim, config.hiddenDim, config.hiddenDim];
    const objectMlp = Mlp.gdino(p.at('unipose.projection_llava'), dims);
    const keypointMlp = Mlp.gdino(p.at('unipose.projection_kpt_llava'), dims);
    return {
      run(group, { engine }) {
        const [o, k] = engine.scope(() => {
          const project = (token: string, what: string, mlp: Mlp, max: number) => {
            const { blocks, hidden } = selectBlocks(group, [token]);
            if (blocks.length > max) throw new RangeError(`unipose: ${blocks.length} ${what} (${token} blocks), at most ${max}`);
            return { phrases: blocks.map((b) => b.phrase), embeddings: blocks.length ? mlp.forwardMean(hidden) : engine.empty([0, config.hiddenDim], 'f32') };
          };
          return [project('[DET]', 'object classes', objectMlp, MAX_OBJECTS), project('[POSE]', 'keypoints', keypointMlp, MAX_KEYPOINTS)];
        });
        const [objects, keypoints] = [o!.embeddings, k!.embeddings];
        return {
          decoder: 'unipose',
          task: 'pose',
          tokens: group.blocks.map((b) => b.token),
          phrases: group.blocks.map((b) => b.phrase),
          objects,
          objectPhrases: o!.phrases,
          keypoints,
          keypointPhrases: k!.phrases,
          dispose: disposer([objects, keypoints]),
        };
      },
      dispose() {},
    };
  },
};
