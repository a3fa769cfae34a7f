/**
 * The whole UniPose of VisionLLM v2 (UniPose.forward at inference, decoders.md B.3), one stage
 * after another:
 *
 *   text       projection_llava(object queries).mean -> [Ko, d]; projection_kpt_llava(keypoint
 *              queries).mean -> the first Kk of m keypoint rows, zeros after
 *   backbone   Microsoft's Swin, the stages of return_interm_indices (swin.ts)
 *   encoder    Grounding DINO's encoder under UniPose's names (gdino/encoder.ts, names.ts)
 *   decoder    two-stage selection, box layers, pose groups, pose layers, heads (decoder.ts)
 *
 * Weights are read under the release's names (`unipose.*`, B.5), aliases included.
 */
import type { Tensor } from '../../engine/tensor.js';
import { stageClock } from '../stage-clock.js';
import { Mlp } from '../../nn/mlp.js';
import type { Params } from '../../nn/params.js';
import { concat } from '../../ops/copy.js';
import { GdinoEncoder } from '../gdino/encoder.js';
import type { UniposeConfig } from './config.js';
import { UniposeDecoder, type UniposeDetections } from './decoder.js';
import type { UniposeImage } from './image.js';
import { UNIPOSE_NAMES } from './names.js';
import { MicrosoftSwin } from './swin.js';

/** Milliseconds per stage of one detect() (each stage synced, so the split is the GPU's). */
export interface UniposeTimings {
  backboneMs: number;
  encoderMs: number;
  /** Two-stage selection, the box layers and the group selection. */
  boxPhaseMs: number;
  /** The pose layers over G·(1 + m) queries and the heads. */
  posePhaseMs: number;
}

export interface UniposeResult extends Omit<UniposeDetections, 'timings'> {
  timings: UniposeTimings;
}

export class UniPose {
  private constructor(
    readonly config: UniposeConfig,
    readonly objectProjection: Mlp,
    readonly keypointProjection: Mlp,
    readonly backbone: MicrosoftSwin,
    readonly encoder: GdinoEncoder,
    readonly decoder: UniposeDecoder,
  ) {}

  /** `p`: the checkpoint's root (UniPose's tensors are under `unipose.`); `lHiddenSize`: the LLM's width. */
  static async load(p: Params, config: UniposeConfig, lHiddenSize: number): Promise<UniPose> {
    const d = config.detector.dModel;
    const u = p.at('unipose');
    const dims = [lHiddenSize, d, d, d];
    const objectProjection = Mlp.gdino(u.at('projection_llava'), dims);
    const keypointProjection = Mlp.gdino(u.at('projection_kpt_llava'), dims);
    const backbone = MicrosoftSwin.load(u.at('backbone.0'), config.swin);
    try {
      const encoder = GdinoEncoder.load(u, config.detector, backbone.channels, { names: UNIPOSE_NAMES });
      const decoder = await UniposeDecoder.load(u, config);
      return new UniPose(config, objectProjection, keypointProjection, backbone, encoder, decoder);
    } catch (err) {
      backbone.dispose(); // what it made beyond the checkpoint's tensors (which the caller's Weights own)
      throw err;
    }
  }

  /** The object classes: projection_llava of each [DET] block's queries [Ko, n, llm], averaged -> [Ko, d]. */
  objectText(blockHidden: Tensor): Tensor {
    return this.objectProjection.forwardMean(blockHidden);
  }

  /** The keypoints: projection_kpt_llava of each [POSE] block [Kk, n, llm], averaged -> [Kk, d]. */
  keypointText(blockHidden: Tensor): Tensor {
    const m = this.config.pose.maxKeypoints;
    if (blockHidden.shape[0]! > m) throw new RangeError(`unipose: ${blockHidden.shape[0]} keypoints ([POSE] blocks), at most ${m} (num_body_points)`);
    return this.keypointProjection.forwardMean(blockHidden);
  }

  /**
   * The pose decoder on one image for Ko object classes [Ko, d] and Kk keypoints [Kk, d]: the last
   * layer's logits [G, Ko], boxes [G, 4] (cx, cy, w, h) and keypoints [G, 3m] in [0, 1] of the
   * resized image.
   */
  async detect(image: UniposeImage, objects: Tensor, keypoints: Tensor): Promise<UniposeResult> {
    const engine = objects.engine;
    const { maxKeypoints: m } = this.config.pose;
    const d = this.config.detector.dModel;
    const Kk = keypoints.shape[0]!;
    if (keypoints.rank !== 2 || keypoints.shape[1] !== d || Kk < 1 || Kk > m) {
      throw new RangeError(`unipose: keypoint text ${JSON.stringify(keypoints.shape)} must be [1..${m}, ${d}]`);
    }
    const clock = stageClock(engine);
    const stages = engine.scope(() => this.backbone.forward(image.pixels));
    let encoded: ReturnType<GdinoEncoder['forward']> | undefined;
    const keypointText = engine.scope(() => (Kk === m ? keypoints.reshape([m, d]) : concat([keypoints, engine.tensor(new Float32Array((m - Kk) * d), [m - Kk, d], keypoints.dtype)], 0)));
    try {
      const backboneMs = await clock();
      const [hp, wp] = image.padShape;
      encoded = this.encoder.forward({ stages, pixelMask: { height: hp, width: wp, valid: image.imgShape }, text: objects });
      const encoderMs = await clock();
      const found = await this.decoder.forward({ ...encoded, memory: encoded.memory, text: encoded.text, keypointText, keypoints: Kk });
      return { ...found, timings: { backboneMs, encoderMs, ...found.timings } };
    } finally {
      encoded?.dispose();
      keypointText.dispose();
      stages.forEach((t) => t.dispose());
    }
  }

  dispose(): void {
    this.backbone.dispose();
    this.decoder.dispose();
  }
}
