/**
 * The whole Grounding DINO of VisionLLM v2 (OVGroundingDinoForObjectDetection.forward_test,
 * decoders.md A.3), one stage after another:
 *
 *   text        patch2query(block queries).mean -> one d_model token per block (class k = block k)
 *   backbone    Swin (the release's) or ResNet (backbone_config.model_type), four stage maps at strides 4..32
 *   encoder     input projections, position embeddings, fusion + text enhancer + deformable layers
 *   decoder     two-stage selection of the queries, the decoder layers with box refinement, the heads
 *   masks       mask features at stride 4, mask logits only for the queries post-processing keeps
 *
 * Weights are read under the release's names (`gdino.*`, A.5), aliases included.
 */
import type { Tensor } from '../../engine/tensor.js';
import { stageClock } from '../stage-clock.js';
import { Mlp } from '../../nn/mlp.js';
import type { Params } from '../../nn/params.js';
import type { GdinoConfig } from './config.js';
import { GdinoDecoder } from './decoder.js';
import { GdinoEncoder } from './encoder.js';
import type { GdinoImage } from './image.js';
import { GdinoMaskHead } from './mask-head.js';
import type { DetectorOutputs, HostMatrix } from './postprocess.js';
import type { Selection } from './selection.js';
import { ResNet } from '../../nn/resnet.js';
import { SwinBackbone } from './swin.js';

/** What the detector needs of its backbone. */
export interface GdinoBackbone {
  readonly channels: number[];
  forward(pixels: Tensor): Tensor[];
  dispose(): void;
}

/** Milliseconds per stage of one detect() (each stage synced, so the split is the GPU's). */
export interface GdinoTimings {
  backboneMs: number;
  encoderMs: number;
  decoderMs: number;
  maskFeaturesMs: number;
}

/** The last layer's outputs, ready for post-processing; dispose() frees them. */
export interface GdinoResult extends DetectorOutputs {
  logits: Tensor;
  boxes: HostMatrix;
  /** Set only when masks were asked for. */
  maskLogits?: (queries: readonly number[]) => Tensor;
  /** The two-stage selection: which encoder tokens became the queries, and their first boxes. */
  selection: Selection;
  timings: GdinoTimings;
  dispose(): void;
}

export class GroundingDino {
  private constructor(
    readonly config: GdinoConfig,
    readonly patch2query: Mlp,
    readonly backbone: GdinoBackbone,
    readonly encoder: GdinoEncoder,
    readonly decoder: GdinoDecoder,
    readonly maskHead: GdinoMaskHead,
  ) {}

  /** `p`: the checkpoint's root (the detector's tensors are under `gdino.`); `lHiddenSize`: the LLM's width. */
  static load(p: Params, config: GdinoConfig, lHiddenSize: number): GroundingDino {
    const d = config.dModel;
    const g = p.at('gdino');
    const patch2query = Mlp.gdino(g.at('patch2query'), [lHiddenSize, d, d, d]);
    const scope = g.at('model.backbone.conv_encoder.model');
    const backbone: GdinoBackbone = config.backbone.modelType === 'resnet' ? ResNet.load(scope, config.backbone) : SwinBackbone.load(scope, config.backbone);
    let decoder: GdinoDecoder | null = null;
    try {
      const encoder = GdinoEncoder.load(g.at('model'), config, backbone.channels);
      decoder = GdinoDecoder.load(g, config);
      return new GroundingDino(config, patch2query, backbone, encoder, decoder, GdinoMaskHead.load(g, config));
    } catch (err) {
      // What the modules made beyond the checkpoint's tensors (which the caller's Weights own).
      decoder?.dispose();
      backbone.dispose();
      throw err;
    }
  }

  /** One text token per routing block: the mean over its queries of patch2query, [blocks, d_model]. */
  classEmbeddings(blockHidden: Tensor): Tensor {
    return this.patch2query.forwardMean(blockHidden);
  }

  /**
   * The detector on one image for K text tokens [K, d_model]: last-layer logits [Q, K], boxes
   * (cx, cy, w, h) in [0, 1] of the resized image, and (when `masks`) a function giving the mask
   * logits of chosen queries.
   */
  async detect(image: GdinoImage, text: Tensor, options: { masks?: boolean } = {}): Promise<GdinoResult> {
    const engine = text.engine;
    const clock = stageClock(engine);
    const stages = engine.scope(() => this.backbone.forward(image.pixels));
    const owned: Tensor[] = [];
    try {
      const backboneMs = await clock();
      const encoded = this.encoder.forward({ stages, pixelMask: { height: image.padShape[0], width: image.padShape[1], data: image.pixelMask }, text });
      owned.push(encoded.memory, encoded.text, encoded.lvlPos);
      if (encoded.paddingTensor) owned.push(encoded.paddingTensor);
      if (encoded.textPadBias) owned.push(encoded.textPadBias);
      const encoderMs = await clock();
      const detections = await this.decoder.forward({
        memory: encoded.memory,
        text: encoded.text,
        spatialShapes: encoded.spatialShapes,
        levelStartIndex: encoded.levelStartIndex,
        validRatios: encoded.validRatios,
        paddingMask: encoded.paddingMask,
      });
      const last = detections.layers[detections.layers.length - 1]!;
      owned.push(...detections.layers.map((l) => l.hidden));
      const decoderMs = await clock();
      let features: Tensor | null = null;
      if (options.masks) {
        features = engine.scope(() => this.maskHead.features(stages[0]!, encoded.memory, encoded.spatialShapes[0]!));
        owned.push(features);
      }
      const maskFeaturesMs = options.masks ? await clock() : 0;
      const hs = last.hidden;
      const Q = this.config.numQueries;
      return {
        logits: detections.logits,
        boxes: { data: detections.boxes, shape: [Q, 4] },
        maskLogits: features ? (queries) => engine.scope(() => this.maskHead.masksFor(hs, queries, features!)) : undefined,
        selection: detections.selection,
        timings: { backboneMs, encoderMs, decoderMs, maskFeaturesMs },
        dispose: () => [detections.logits, ...owned].forEach((t) => t.dispose()),
      };
    } catch (err) {
      owned.forEach((t) => t.dispose());
      throw err;
    } finally {
      stages.forEach((t) => t.dispose());
    }
  }

  dispose(): void {
    this.backbone.dispose();
    this.decoder.dispose();
  }
}
