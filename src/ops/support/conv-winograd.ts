/**
 * The Winograd path of conv2d: 3x3 convolutions with stride 1 and no dilation or groups as F(2x2, 3x3)
 * (kernels/conv_winograd.wgsl says what each transform computes). Per call:
 *   1. the filters are transformed once: u [16, Cout, Cin] in the weight's dtype;
 *   2. for each block of tiles (2x2 output pixels each): the input patches are transformed into
 *      v [16, tiles, Cin] (f32), the 16 products v[ξ] · u[ξ]ᵀ run as one batched matmul (f32
 *      accumulation; the weight-side operand pairs f16 halves when u is f16), and the output
 *      transform adds bias and activation and writes the NCHW output.
 * 4 multiplications per output pixel and channel pair instead of 9, through the fastest kernel we
 * have (the matmul), for memory traffic that grows with pixels x channels, not with their product.
 * Dispatches are 64-invocation workgroups over a flat index (the engine folds a long grid into
 * two dimensions). Transformed filters in f16 add a rounding of about 3e-4 of the output's scale (f32 filters stay
 * within 1e-6).
 */
import { DTYPE_BYTES } from '../../engine/dtype.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Conv2dGeometry, Conv2dOptions } from '../conv.js';
import { matmul } from '../matmul.js';
import { activationCode } from './activation.js';
import { placeholder } from './placeholder.js';

/** Transformed inputs and products of one block of tiles stay under this size (and the binding limit). */
const BLOCK_BYTES = 64 * 1024 * 1024;

/** Bytes one tile takes in the larger of its transformed input and its products (f32). */
function tileBytes(g: Conv2dGeometry): number {
  return 16 * Math.max(g.cin, g.cout) * 4;
}

function blockBytes(engine: Engine): number {
  return Math.min(engine.maxBindingBytes, BLOCK_BYTES);
}

/**
 * Whether the Winograd path computes this convolution: 3x3, stride 1, no dilation, one group, and
 * every binding it makes fits (the whole input and output, the whole transformed filters, one tile).
 */
export function winogradApplies(engine: Engine, g: Conv2dGeometry, x: Tensor, weight: Tensor, yBytes: number): boolean {
  const limit = engine.maxBindingBytes;
  return g.kh === 3 && g.kw === 3 && g.groups === 1 &&
    g.stride[0] === 1 && g.stride[1] === 1 && g.dilation[0] === 1 && g.dilation[1] === 1 &&
    x.byteLength <= limit && yBytes <= limit && 16 * g.cout * g.cin * DTYPE_BYTES[weight.dtype] <= limit && tileBytes(g) <= blockBytes(engine);
}

export function convWinograd(engine: Engine, g: Conv2dGeometry, x: Tensor, weight: Tensor, y: Tensor, options: Conv2dOptions): void {
  const tilesY = Math.ceil(g.oh / 2);
  const tilesX = Math.ceil(g.ow / 2);
  const tiles = g.batch * tilesY * tilesX;
  const base = {
    cin: g.cin, cout: g.cout, h: g.h, w: g.w, oh: g.oh, ow: g.ow,
    tiles_y: tilesY, tiles_x: tilesX, pad_y: g.padding[0], pad_x: g.padding[1],
  };
  const file = 'conv_winograd.wgsl';
  const none = placeholder(engine);
  const perBlock = Math.floor(blockBytes(engine) / tileBytes(g));
  engine.scope(() => {
    const u = engine.empty([16, g.cout, g.cin], weight.dtype);
    engine.run(
      { file, entry: 'transform_weights', dtypes: { weight: weight.dtype, wt: u.dtype } },
      { weight, wt: u },
      { ...base, tile0: 0, tiles: 0 },
      Math.ceil((g.cout * g.cin) / 64),
    );
    for (let tile0 = 0; tile0 < tiles; tile0 += perBlock) {
      const count = Math.min(perBlock, tiles - tile0);
      const params = { ...base, tile0, tiles: count };
      const v = engine.empty([16, count, g.cin], 'f32');
      engine.run(
        { file, entry: 'transform_input', dtypes: { x: x.dtype }, overrides: { UP: g.upsample } },
        { x, xt: v },
        params,
        Math.ceil((count * g.cin) / 64),
      );
      const m = matmul(v, u, { transposeB: true, dtype: 'f32' });
      v.dispose();
      engine.run(
        {
          file,
          entry: 'transform_output',
          dtypes: { bias: options.bias?.dtype ?? 'f32', y: y.dtype },
          overrides: { ACT: activationCode('conv2d', options.act), HAS_BIAS: options.bias !== undefined },
        },
        { yt: m, bias: options.bias ?? none, y },
        params,
        Math.ceil((count * g.cout) / 64),
      );
      m.dispose();
    }
  });
}
