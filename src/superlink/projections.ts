/**
 * Per-task projections of the super link: from the gathered last-layer hidden states of a route's
 * query positions, [blocks, N, width], to the conditions its decoder consumes. All on the GPU.
 *
 *   MlpMeanProjection    Grounding DINO's patch2query (and UniPose's projections): MLP with ReLU
 *                        between layers, then the mean over the N queries -> [blocks, out]
 *   PoseProjection       UniPose: the first blocks are object classes (projection_llava), the rest
 *                        keypoints (projection_kpt_llava)
 *   DiffusionProjection  Stable Diffusion / InstructPix2Pix: emb_proj (Linear, GELU, Linear) then
 *                        llm2sd_mapper with the learned queries as target -> [blocks, queries, d_sd]
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { concat } from '../ops/copy.js';
import { linear, matmul } from '../ops/matmul.js';
import type { Weights } from '../model/weights.js';
import { TransformerMapper } from './mapper.js';

export interface ProjectOptions {
  /** Pose: how many leading blocks are object classes (the rest are keypoints). Default 1. */
  poseObjectClasses?: number;
}

export interface LinkProjection {
  /** [blocks, N, width] -> the route's conditions, blocks first. */
  project(queries: Tensor, options?: ProjectOptions): Tensor;
}

type Affine = [Tensor, Tensor];

export class MlpMeanProjection implements LinkProjection {
  private readonly average: Tensor;

  private constructor(
    private readonly layers: Affine[],
    queries: number,
    engine: Engine,
  ) {
    // The mean over the queries as a product: [1, N] of 1/N times each block's [N, out].
    this.average = engine.tensor(new Float32Array(queries).fill(1 / queries), [1, queries], 'f32', { persistent: true });
  }

  /** An MLP named <prefix>.layers.0 ... layers.(n-1) (Grounding DINO's MLP class): width -> out -> ... -> out. */
  static fromWeights(w: Weights, prefix: string, width: number, out: number, queries: number, layers = 3): MlpMeanProjection {
    const affine: Affine[] = [];
    for (let i = 0; i < layers; i++) {
      affine.push([w.get(`${prefix}.layers.${i}.weight`, [out, i === 0 ? width : out]), w.get(`${prefix}.layers.${i}.bias`, [out])]);
    }
    return new MlpMeanProjection(affine, queries, w.engine);
  }

  project(queries: Tensor): Tensor {
    const [blocks, n, width] = queries.shape as [number, number, number];
    return queries.engine.scope(() => {
      // The mean over queries commutes with the last (affine) layer: average first, then project
      // blocks rather than blocks x N rows.
      let x = queries.reshape([blocks * n, width]);
      const hidden = this.layers.slice(0, -1);
      hidden.forEach(([weight, bias]) => (x = linear(x, weight, bias, 'relu')));
      const mean = matmul(this.average, x.reshape([blocks, n, x.shape[1]!])).reshape([blocks, x.shape[1]!]);
      const [weight, bias] = this.layers[this.layers.length - 1]!;
      return linear(mean, weight, bias);
    });
  }
}

export class PoseProjection implements LinkProjection {
  constructor(
    private readonly objects: MlpMeanProjection,
    private readonly keypoints: MlpMeanProjection,
  ) {}

  project(queries: Tensor, options: ProjectOptions = {}): Tensor {
    const blocks = queries.shape[0]!;
    const objects = options.poseObjectClasses ?? 1;
    if (!Number.isInteger(objects) || objects < 0 || objects > blocks) {
      throw new RangeError(`pose: ${objects} object classes among ${blocks} [POSE] blocks`);
    }
    return queries.engine.scope(() => {
      const parts: Tensor[] = [];
      if (objects > 0) parts.push(this.objects.project(queries.rows(0, objects)));
      if (objects < blocks) parts.push(this.keypoints.project(queries.rows(objects, blocks)));
      return parts.length === 1 ? parts[0]! : concat(parts, 0);
    });
  }
}

export class DiffusionProjection implements LinkProjection {
  private constructor(
    private readonly embProj: [Affine, Affine],
    private readonly mapper: TransformerMapper,
    /** [queries, d_sd]: the decoder's target. */
    private readonly targets: Tensor,
  ) {}

  /** emb_proj.{0,2} and llm2sd_mapper(_queries) under `prefix` ('sd' or 'ip2p'). */
  static fromWeights(w: Weights, prefix: string, width: number, dModel: number, queries: number): DiffusionProjection {
    const pair = (name: string, rows: number, cols: number): Affine => [w.get(`${name}.weight`, [rows, cols]), w.get(`${name}.bias`, [rows])];
    return new DiffusionProjection(
      [pair(`${prefix}.emb_proj.0`, dModel, width), pair(`${prefix}.emb_proj.2`, dModel, dModel)],
      TransformerMapper.fromWeights(w, `${prefix}.llm2sd_mapper`, { dModel }),
      w.get(`${prefix}.llm2sd_mapper_queries`, [1, queries, dModel]),
    );
  }

  project(queries: Tensor): Tensor {
    const blocks = queries.shape[0]!;
    return queries.engine.scope(() => {
      const [[w0, b0], [w2, b2]] = this.embProj;
      const targets = this.targets.reshape(this.targets.shape.slice(1));
      const conditions: Tensor[] = [];
      for (let b = 0; b < blocks; b++) {
        const block = queries.rows(b, b + 1).reshape(queries.shape.slice(1));
        const src = linear(linear(block, w0, b0, 'gelu'), w2, b2);
        conditions.push(this.mapper.forward(src, targets).reshape([1, ...targets.shape]));
      }
      return conditions.length === 1 ? conditions[0]! : concat(conditions, 0);
    });
  }
}
