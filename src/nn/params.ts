/**
 * A scoped reader of a model's parameters (candle's VarBuilder): `p.at('encoder.layers', 0)` names
 * a sub-module, and `p.linear('q_proj', inDim, outDim)` reads `<scope>.q_proj.weight` / `.bias`,
 * checks their shapes and dtypes against what the config implies, and returns the module. Errors
 * name the full tensor name and where the weights came from, so a wrong config or a misnamed
 * checkpoint explains itself.
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { FLOAT_DTYPES, type Activation } from '../ops/index.js';
import type { Pair } from '../ops/conv.js';
import { Conv2d } from './conv.js';
import { Linear } from './linear.js';
import { GroupNorm, LayerNorm, LayerNorm2d, RMSNorm } from './norm.js';
import { Weights } from './weights.js';

export interface LinearOptions {
  /** true (default): a bias is required; false: none is read; 'optional': read when present. */
  bias?: boolean | 'optional';
  /** Fused after the bias. */
  act?: Activation;
}

export interface Conv2dParamOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean | 'optional';
  act?: Activation;
}

export class Params {
  constructor(
    readonly weights: Weights,
    /** The scope, without a trailing dot ('' at the root). */
    readonly prefix = '',
  ) {}

  /** Tensors already on the GPU (tests, benchmarks), by full name. */
  static of(tensors: ReadonlyMap<string, Tensor>, source = 'tensors'): Params {
    const first = tensors.values().next().value as Tensor | undefined;
    if (!first) throw new Error(`${source}: no tensors`);
    return new Params(Weights.fromTensors(first.engine, source, new Map(tensors)));
  }

  get engine(): Engine {
    return this.weights.engine;
  }

  /** The sub-scope `<prefix>.a.b...`; numbers index a ModuleList ('layers', 3 -> 'layers.3'). */
  at(...path: (string | number)[]): Params {
    return new Params(this.weights, this.name(path.map(String).join('.')));
  }

  /** The full tensor name of `local` in this scope. */
  name(local: string): string {
    const tail = local.replace(/^\.+|\.+$/g, '');
    if (!this.prefix) return tail;
    return tail ? `${this.prefix}.${tail}` : this.prefix;
  }

  has(local: string): boolean {
    return this.weights.has(this.name(local));
  }

  /** The tensor `local`, checked against `shape` (and, by default, a float dtype). */
  tensor(local: string, shape: readonly number[], dtypes: readonly DType[] = FLOAT_DTYPES): Tensor {
    const full = this.name(local);
    if (!this.weights.has(full)) throw new Error(`${this.weights.source}: missing weight '${full}'`);
    const t = this.weights.get(full);
    if (!dtypes.includes(t.dtype)) throw new TypeError(`${this.weights.source}: ${full} has dtype ${t.dtype}; expected ${dtypes.join(' or ')}`);
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(`${this.weights.source}: ${full} ${formatShape(t.shape)} must be ${formatShape(shape)}`);
    }
    return t;
  }

  /** Like tensor(), or undefined when the checkpoint has no such tensor. */
  optional(local: string, shape: readonly number[]): Tensor | undefined {
    return this.has(local) ? this.tensor(local, shape) : undefined;
  }

  /** Rows of several tensors of this scope stacked into one matrix (q|k|v, gate|up); the parts are freed. */
  fuseRows(locals: readonly string[], shapes: readonly (readonly number[])[], dtype?: DType): Tensor {
    locals.forEach((l, i) => this.tensor(l, shapes[i]!));
    return this.weights.fuseRows(locals.map((l) => this.name(l)), shapes, dtype);
  }

  /** torch.nn.Linear: `<name>.weight` [out, in], `<name>.bias` [out]. */
  linear(local: string, inDim: number, outDim: number, options: LinearOptions = {}): Linear {
    const p = this.at(local);
    return new Linear(p.tensor('weight', [outDim, inDim]), p.bias(options.bias, outDim), options.act);
  }

  /** torch.nn.LayerNorm over the last dimension. */
  layerNorm(local: string, dim: number, eps = 1e-5): LayerNorm {
    const p = this.at(local);
    return new LayerNorm(p.tensor('weight', [dim]), p.tensor('bias', [dim]), eps);
  }

  /** LLaMA's RMSNorm (a scale, no bias). */
  rmsNorm(local: string, dim: number, eps = 1e-6): RMSNorm {
    return new RMSNorm(this.at(local).tensor('weight', [dim]), eps);
  }

  /** torch.nn.GroupNorm on [B, C, H, W] (optionally with a fused activation, as diffusers' blocks follow it with SiLU). */
  groupNorm(local: string, groups: number, channels: number, options: { eps?: number; act?: Activation } = {}): GroupNorm {
    if (!Number.isInteger(groups) || groups <= 0 || channels % groups) {
      throw new RangeError(`${this.name(local)}: ${channels} channels do not split into ${groups} groups`);
    }
    const p = this.at(local);
    return new GroupNorm(groups, p.tensor('weight', [channels]), p.tensor('bias', [channels]), options.eps ?? 1e-5, options.act);
  }

  /** LayerNorm2d on [B, C, H, W]: `weight`, `bias` [channels] (optionally with a fused activation). */
  layerNorm2d(local: string, channels: number, options: { eps?: number; act?: Activation } = {}): LayerNorm2d {
    const p = this.at(local);
    return new LayerNorm2d(p.tensor('weight', [channels]), p.tensor('bias', [channels]), options.eps ?? 1e-6, options.act);
  }

  /** torch.nn.Conv2d: `<name>.weight` [out, in / groups, kh, kw], `<name>.bias` [out]. */
  conv2d(local: string, inChannels: number, outChannels: number, kernel: Pair, options: Conv2dParamOptions = {}): Conv2d {
    const p = this.at(local);
    const [kh, kw] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
    const groups = options.groups ?? 1;
    if (inChannels % groups || outChannels % groups) throw new RangeError(`${p.prefix}: ${inChannels} -> ${outChannels} channels do not split into ${groups} groups`);
    return new Conv2d(p.tensor('weight', [outChannels, inChannels / groups, kh, kw]), p.bias(options.bias, outChannels), {
      stride: options.stride,
      padding: options.padding,
      dilation: options.dilation,
      groups,
      act: options.act,
    });
  }

  /**
   * A buffer the module computes itself (Swin's relative_position_index): when the checkpoint has
   * it, it must have `shape` and an integer dtype, and is freed unread.
   */
  releaseBuffer(local: string, shape: readonly number[]): void {
    if (!this.has(local)) return;
    this.tensor(local, shape, ['i32', 'u32']);
    this.weights.release(this.name(local));
  }

  /**
   * A module shared by several ModuleList slots appears once per slot in a torch state_dict
   * (Grounding DINO's `bbox_embed.0` .. `bbox_embed.5`, also reachable as `model.decoder.bbox_embed.N`),
   * and a torch save keeps every name. Modules read the `canonical` scope; each tensor under an
   * `aliases` scope must have its canonical counterpart with the same shape and dtype, and is freed
   * (its values are not compared: that would need a read-back). Absent aliases are fine. Returns the
   * number of tensors freed.
   */
  releaseAliases(canonical: string, aliases: readonly string[]): number {
    let freed = 0;
    const base = this.name(canonical);
    for (const alias of aliases) {
      const scope = this.name(alias);
      for (const name of this.weights.names(`${scope}.`)) {
        const target = base + name.slice(scope.length);
        if (!this.weights.has(target)) throw new Error(`${this.weights.source}: '${name}' is an alias of '${target}', which is missing`);
        const [a, b] = [this.weights.get(name), this.weights.get(target)];
        if (a.dtype !== b.dtype || a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
          throw new RangeError(`${this.weights.source}: '${name}' ${formatShape(a.shape)} ${a.dtype} should alias '${target}' ${formatShape(b.shape)} ${b.dtype}`);
        }
        this.weights.release(name);
        freed++;
      }
    }
    return freed;
  }

  /** This scope's `bias` [size]: required (true, the default), read when present ('optional'), or none (false). */
  private bias(option: boolean | 'optional' = true, size: number): Tensor | undefined {
    if (option === 'optional') return this.optional('bias', [size]);
    return option ? this.tensor('bias', [size]) : undefined;
  }
}
