/**
 * UniPose's two-phase decoder (decoders.md 2.B, B.3.4-B.3.7; official DeformableTransformer's
 * two-stage branch :2556-2650 and TransformerDecoder.forward :2949-3130), batch 1, no denoising:
 *
 *   selection   Grounding DINO's two-stage selection under UniPose's names: Q queries, first boxes
 *   h = tgt_embed.weight                                         learned content queries [Q, d]
 *   box layers (l < num_box_decoder_layers), Grounding DINO's decoder layer, no self-attention mask:
 *     h   = layer_l(h, query_pos(ref))
 *     ref ← sigmoid(bbox_embed[l](h) + inverse_sigmoid(ref))
 *   after the last box layer: the top G queries by class score become G groups of 1 box + m
 *     keypoint queries (pose-queries.ts select), and the self-attention mask becomes attn_mask2
 *     (pose-mask.ts)
 *   pose layers: h = layer_l(h, query_pos(ref), attn_mask2); ref ← refine (pose-queries.ts), and
 *     the last layer's heads read decoder.norm(h) with the reference the layer received
 *
 * query_pos = ref_point_head(sine4(ref · valid ratios)), as Grounding DINO's. UniPose's
 * inverse_sigmoid clamps at 1e-3. The pose phase's self-attention runs over G·(1+m) queries (3450 in
 * the release) through the fused attention with one additive [1, 1, L, L] mask shared by the heads.
 */
import type { DType } from '../../engine/dtype.js';
import type { Tensor } from '../../engine/tensor.js';
import { Mlp } from '../../nn/mlp.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { GdinoDecoderLayer, persistentF32, queryPosition, scaledReference } from '../gdino/decoder.js';
import { layerScope } from '../gdino/names.js';
import { boxesFrom, checkDecoderInputs, TwoStageSelection, type GdinoDecoderInputs, type Selection } from '../gdino/selection.js';
import type { UniposeConfig } from './config.js';
import { UNIPOSE_NAMES } from './names.js';
import { poseAttentionBias } from './pose-mask.js';
import { inverseSigmoid, PoseQueries, type PoseOutputs } from './pose-queries.js';

export interface UniposeDecoderOptions {
  /** Storage dtype of the deformable attention's projected memory (default f32). */
  valueDtype?: DType;
  /** Storage dtype of the pose phase's additive mask (default f16: −∞ and 0 are exact, half the bytes). */
  maskDtype?: DType;
}

export interface UniposeDecoderInputs extends GdinoDecoderInputs {
  /** [m, d] the keypoint text (projection_kpt_llava of the [POSE] blocks), zeros beyond `keypoints`. */
  keypointText: Tensor;
  /** The prompt's keypoints (Kk): the first `keypoints` of the m slots are valid. */
  keypoints: number;
}

export interface UniposeDecoderTimings {
  /** Selection and the box layers, then the group selection, pose layers and heads (each synced). */
  boxPhaseMs: number;
  posePhaseMs: number;
}

export interface UniposeDetections extends PoseOutputs {
  /** The two-stage selection (Q queries). */
  selection: Selection;
  /** [G] the box-phase queries that became the pose groups, best first. */
  groups: Int32Array;
  timings: UniposeDecoderTimings;
}

export class UniposeDecoder {
  private constructor(
    readonly config: UniposeConfig,
    readonly selection: TwoStageSelection,
    /** tgt_embed.weight [Q, d] in f32 (a copy of contentSource when that is f16). */
    private readonly content: Tensor,
    private readonly contentSource: Tensor,
    readonly layers: readonly GdinoDecoderLayer[],
    readonly norm: LayerNorm,
    readonly refPointHead: Mlp,
    readonly pose: PoseQueries,
    readonly options: UniposeDecoderOptions,
  ) {}

  /** `p`: the `unipose` scope. */
  static async load(p: Params, config: UniposeConfig, options: UniposeDecoderOptions = {}): Promise<UniposeDecoder> {
    const c = config.detector;
    const d = c.dModel;
    const names = UNIPOSE_NAMES;
    const layers = Array.from({ length: c.decoderLayers }, (_, i) =>
      GdinoDecoderLayer.load(layerScope(p, names.decoder.layer, i), c, names.decoderLayer, { valueDtype: options.valueDtype }),
    );
    const selection = TwoStageSelection.load(p, c, names);
    const norm = p.layerNorm(names.decoder.norm, d, c.layerNormEps);
    const refPointHead = Mlp.gdino(p.at(names.decoder.refPointHead), [2 * d, d, d]);
    const pose = await PoseQueries.load(p, config.pose, { shared: config.sharedHeads });
    const table = p.tensor(names.decoder.content, [c.numQueries, d]);
    const content = table.dtype === 'f32' ? table : persistentF32(table);
    return new UniposeDecoder(config, selection, content, table, layers, norm, refPointHead, pose, options);
  }

  async forward(inputs: UniposeDecoderInputs): Promise<UniposeDetections> {
    const n = checkDecoderInputs(inputs, this.config.detector);
    const { dModel: d, numFeatureLevels: L } = this.config.detector;
    const { boxLayers, groups: G, maxKeypoints: m } = this.config.pose;
    if (!Number.isInteger(inputs.keypoints) || inputs.keypoints < 1 || inputs.keypoints > m) {
      throw new RangeError(`UniposeDecoder: ${inputs.keypoints} keypoints; expected 1..${m} (num_body_points)`);
    }
    const engine = inputs.memory.engine;
    const start = performance.now();
    const memory = inputs.memory.reshape([1, n, d]);
    const padding = engine.tensor(Float32Array.from(inputs.paddingMask, Number), [1, n]);
    let mask: Tensor | undefined;
    let h = this.content;
    const replace = (next: Tensor) => {
      if (h !== this.content) h.dispose();
      h = next;
    };
    try {
      const selection = await this.selection.select(inputs);
      let ref = selection.reference;
      // One decoder layer from h and its input reference; returns the un-normed output.
      const layer = (l: number, reference: Float32Array, selfAttnMask?: Tensor) =>
        engine.scope(() => {
          const refIn = scaledReference(reference, inputs.validRatios);
          return this.layers[l]!.forward(h, {
            queryPos: queryPosition(this.refPointHead, refIn, L),
            referencePoints: engine.tensor(refIn, [1, reference.length / 4, L, 4]),
            memory,
            paddingMask: padding,
            spatialShapes: inputs.spatialShapes,
            levelStartIndex: inputs.levelStartIndex,
            text: inputs.text,
            selfAttnMask,
          });
        });
      for (let l = 0; l < boxLayers; l++) {
        replace(layer(l, ref));
        const prev = ref;
        const delta = engine.scope(() => this.pose.bboxEmbed[l]!.forward(h));
        ref = await boxesFrom(delta, (q, c) => inverseSigmoid(prev[q * 4 + c]!));
      }
      const groups = await this.pose.select(h, ref, inputs.text, inputs.keypointText);
      replace(groups.hidden);
      ref = groups.reference;
      await engine.sync();
      const boxPhaseMs = performance.now() - start;
      mask = poseAttentionBias(engine, G, m, inputs.keypoints, this.options.maskDtype ?? 'f16');
      const last = this.layers.length - 1;
      for (let l = boxLayers; l < last; l++) {
        replace(layer(l, ref, mask));
        ref = await this.pose.refine(l, h, ref);
      }
      replace(layer(last, ref, mask));
      const hs = engine.scope(() => this.norm.forward(h));
      let outputs: PoseOutputs;
      try {
        outputs = await this.pose.outputs(hs, ref, inputs.text, last);
      } finally {
        hs.dispose();
      }
      return { ...outputs, selection, groups: groups.indices, timings: { boxPhaseMs, posePhaseMs: performance.now() - start - boxPhaseMs } };
    } finally {
      if (h !== this.content) h.dispose();
      mask?.dispose();
      padding.dispose();
      memory.dispose();
    }
  }

  /** Frees the f32 copy of an f16 query table (the weights belong to the caller's Weights). */
  dispose(): void {
    if (this.content.storage !== this.contentSource.storage) this.content.dispose();
  }
}
