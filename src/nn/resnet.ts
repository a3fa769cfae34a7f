/**
 * Hugging Face's ResNetBackbone (transformers 4.34 modeling_resnet.py) as Grounding DINO runs it:
 * every batch norm frozen (GroundingDinoFrozenBatchNorm2d: running statistics, eps 1e-5), so each
 * folds into the convolution before it once, at load: weight · γ/√(var + eps), bias β − mean · γ/√(var + eps),
 * both kept in f32.
 *
 *   embedder   conv 7x7 stride 2 + norm + ReLU, max-pool 3x3 stride 2 (stride 4)
 *   stages     each halves the map in its first layer (the first stage too when downsample_in_first_stage);
 *              a basic layer is conv 3x3 + norm + ReLU, conv 3x3 + norm; a bottleneck layer 1x1 to a
 *              quarter of the width, 3x3 with the stride, 1x1 back; plus the shortcut (1x1 conv with the
 *              stride + norm where the width or the stride changes), then ReLU
 *
 * Names (under the backbone's scope): embedder.embedder.{convolution,normalization},
 * encoder.stages.{i}.layers.{j}.{layer.{k},shortcut}.{convolution,normalization}.
 */
import { formatShape, type Tensor } from '../engine/tensor.js';
import { binary, rsqrt } from '../ops/elementwise.js';
import { maxPool2d } from '../ops/spatial.js';
import type { Activation } from '../ops/index.js';
import { Conv2d } from './conv.js';
import type { Params } from './params.js';

/** Hugging Face ResNetConfig: what ResNetBackbone reads. */
export interface ResNetConfig {
  modelType: 'resnet';
  embeddingSize: number;
  /** Each stage's output width, and its layers. */
  hiddenSizes: number[];
  depths: number[];
  layerType: 'basic' | 'bottleneck';
  numChannels: number;
  downsampleInFirstStage: boolean;
  /** Indices (1-based, 'stageN') of the stages the backbone returns, in order. */
  outStages: number[];
}

/** GroundingDinoFrozenBatchNorm2d's epsilon. */
const FROZEN_EPS = 1e-5;

/** A convolution without bias followed by a frozen batch norm, folded into one convolution with a bias. */
function convWithNorm(p: Params, cin: number, cout: number, kernel: number, stride: number, act: Activation): Conv2d {
  const weight = p.tensor('convolution.weight', [cout, cin, kernel, kernel]);
  const n = p.at('normalization');
  const [gamma, beta, mean, variance] = ['weight', 'bias', 'running_mean', 'running_var'].map((leaf) => n.tensor(leaf, [cout]));
  const engine = p.engine;
  const [folded, shift] = engine.scope(() => {
    const scale = binary('mul', gamma!, rsqrt(variance!, FROZEN_EPS), { dtype: 'f32' });
    return [
      // f32 whatever the checkpoint's dtype: rounding the product to f16 would add an error the checkpoint's weights do not have.
      binary('mul', weight, scale.reshape([cout, 1, 1, 1]), { dtype: 'f32' }),
      binary('sub', beta!, binary('mul', mean!, scale), { dtype: 'f32' }),
    ];
  });
  // The folded copies replace the checkpoint's tensors, which nothing else reads.
  [p.name('convolution.weight'), ...['weight', 'bias', 'running_mean', 'running_var'].map((leaf) => n.name(leaf))].forEach((name) => p.weights.release(name));
  return new Conv2d(engine.persist(folded), engine.persist(shift), { stride, padding: Math.floor(kernel / 2), act });
}

class ResNetLayer {
  constructor(
    private readonly convs: readonly Conv2d[],
    private readonly shortcut: Conv2d | undefined,
  ) {}

  static load(p: Params, cin: number, cout: number, stride: number, bottleneck: boolean): ResNetLayer {
    const shortcut = cin !== cout || stride !== 1 ? convWithNorm(p.at('shortcut'), cin, cout, 1, stride, 'none') : undefined;
    const l = (k: number) => p.at('layer', k);
    const reduced = cout / 4;
    const convs = bottleneck
      ? [convWithNorm(l(0), cin, reduced, 1, 1, 'relu'), convWithNorm(l(1), reduced, reduced, 3, stride, 'relu'), convWithNorm(l(2), reduced, cout, 1, 1, 'none')]
      : [convWithNorm(l(0), cin, cout, 3, stride, 'relu'), convWithNorm(l(1), cout, cout, 3, 1, 'none')];
    return new ResNetLayer(convs, shortcut);
  }

  forward(x: Tensor): Tensor {
    const residual = this.shortcut ? this.shortcut.forward(x) : x;
    const y = this.convs.reduce((h, conv) => conv.forward(h), x);
    return binary('add', y, residual, { act: 'relu' });
  }

  get weights(): Tensor[] {
    return [...this.convs, ...(this.shortcut ? [this.shortcut] : [])].flatMap((c) => [c.weight, c.bias!]);
  }
}

export class ResNet {
  private constructor(
    readonly config: ResNetConfig,
    private readonly stem: Conv2d,
    private readonly stages: readonly (readonly ResNetLayer[])[],
  ) {}

  /** `p` is the backbone's scope, e.g. p.at('gdino.model.backbone.conv_encoder.model'). */
  static load(p: Params, config: ResNetConfig): ResNet {
    const { embeddingSize, hiddenSizes, depths, numChannels } = config;
    const bottleneck = config.layerType === 'bottleneck';
    if (bottleneck) {
      const odd = hiddenSizes.find((w) => w % 4);
      if (odd !== undefined) throw new RangeError(`${p.prefix}: bottleneck width ${odd} is not divisible by 4`);
    }
    const made: ResNetLayer[] = [];
    let stem: Conv2d | undefined;
    try {
      stem = convWithNorm(p.at('embedder.embedder'), numChannels, embeddingSize, 7, 2, 'relu');
      const widths = [embeddingSize, ...hiddenSizes];
      const stages = depths.map((depth, i) =>
        Array.from({ length: depth }, (_, j) => {
          const stride = j > 0 ? 1 : i > 0 || config.downsampleInFirstStage ? 2 : 1;
          const layer = ResNetLayer.load(p.at('encoder.stages', i, 'layers', j), j > 0 ? widths[i + 1]! : widths[i]!, widths[i + 1]!, stride, bottleneck);
          made.push(layer);
          return layer;
        }),
      );
      return new ResNet(config, stem, stages);
    } catch (err) {
      [...(stem ? [stem.weight, stem.bias!] : []), ...made.flatMap((l) => l.weights)].forEach((t) => t.dispose());
      throw err;
    }
  }

  /** Channels of each returned map. */
  get channels(): number[] {
    return this.config.outStages.map((s) => this.config.hiddenSizes[s - 1]!);
  }

  /** pixels [1, channels, H, W] -> the configured stages' maps [1, C, h, w] (stride 4 · 2^(stage−1) without downsample_in_first_stage). */
  forward(pixels: Tensor): Tensor[] {
    const [, channels, h, w] = pixels.shape;
    if (pixels.rank !== 4 || channels !== this.config.numChannels || !(h! >= 1 && w! >= 1)) {
      throw new RangeError(`ResNet: pixels ${formatShape(pixels.shape)} must be [B, ${this.config.numChannels}, H, W] with H, W >= 1`);
    }
    const engine = pixels.engine;
    return engine.scope(() => {
      let x = maxPool2d(this.stem.forward(pixels), { kernel: 3, stride: 2, padding: 1 });
      const maps: Tensor[] = [];
      for (const stage of this.stages) {
        x = stage.reduce((h, layer) => layer.forward(h), x);
        maps.push(x);
      }
      return this.config.outStages.map((s) => maps[s - 1]!);
    });
  }

  /** Frees the folded weights (made here; the checkpoint's own tensors belong to its Weights). */
  dispose(): void {
    [this.stem.weight, this.stem.bias!, ...this.stages.flat().flatMap((l) => l.weights)].forEach((t) => t.dispose());
  }
}
