/**
 * The module layer: a scoped parameter reader (Params) and the modules every model and decoder is
 * built from. `p.at('encoder.layers', 0).linear('q_proj', d, d)` reads and checks
 * `encoder.layers.0.q_proj.weight` / `.bias` and returns a Linear.
 */
export { Params, type LinearOptions, type Conv2dParamOptions } from './params.js';
export { Weights, type LoadWeightsOptions } from './weights.js';
export { Linear } from './linear.js';
export { LayerNorm, RMSNorm, GroupNorm } from './norm.js';
export { Conv2d, type Conv2dSettings } from './conv.js';
export { MultiheadAttention, type AttendOptions, type SplitNames } from './attention.js';
export { Mlp } from './mlp.js';
export { ClipEncoderLayer, parseClipEncoderConfig, type ClipLayerConfig } from './clip-layer.js';
export { MultiscaleDeformableAttention, type MsDeformAttnConfig, type MsDeformAttnInputs, type MsDeformAttnModuleOptions, type MsDeformAttnParams } from './ms-deform-attn.js';
export { ResNet, type ResNetConfig } from './resnet.js';
export { PatchMerging, SwinBlock, SwinStage, SwinTransformer, WindowAttention, WindowPlan, relativePositionIndex, tokensToNCHW, windowGeometry, type StageTokens, type SwinOptions, type WindowGeometry } from './swin.js';
