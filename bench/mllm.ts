/**
 * The MLLM end to end: prefill and decode tokens/s at the tiny checkpoint and at a small config
 * (LLaMA d=512, 8 layers, 8 heads; ViT d=256, 6 layers) with random f16 weights; dispatches and
 * submits per decode step, host recording time per token, peak GPU memory; and the decode step's
 * weight traffic against the GEMV bandwidth measured in the same run.
 */
import path from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { ClipVisionTower } from '../src/model/clip-vision.js';
import type { ClipVisionConfig, LlamaConfig } from '../src/model/config.js';
import { generate, type GenerationTimings } from '../src/model/generate.js';
import { Llama } from '../src/model/llama.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { Params } from '../src/nn/params.js';
import { Weights } from '../src/nn/weights.js';
import { projectRoot } from '../src/paths.js';
import { round, type Harness, type Measurement } from './harness.js';
import { referenceGemv } from './kernels.js';
import { randomTensor } from './random.js';

const SMALL_LLM: LlamaConfig = {
  vocabSize: 32000, hiddenSize: 512, intermediateSize: 1376, layers: 8, heads: 8, kvHeads: 8, headDim: 64,
  rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 4096, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
};
/** A medium LLaMA (d=1536, 4 layers, 324 MB of f16 weights): where weight traffic, not per-dispatch cost, dominates. */
const MEDIUM_LLM: LlamaConfig = { ...SMALL_LLM, hiddenSize: 1536, intermediateSize: 4096, layers: 4, heads: 12, kvHeads: 12, headDim: 128 };
const SMALL_VIT: ClipVisionConfig = {
  hiddenSize: 256, intermediateSize: 1024, layers: 6, heads: 4, imageSize: 336, patchSize: 14, layerNormEps: 1e-5, act: 'quick_gelu',
};

/** Random weights under the Hugging Face names for a LLaMA of `c` (matrices f16, norms f32). */
function randomLlamaWeights(engine: Engine, c: LlamaConfig): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  let seed = 1;
  const mat = (name: string, rows: number, cols: number) => m.set(name, randomTensor(engine, [rows, cols], seed++, { scale: 1 / Math.sqrt(cols), dtype: 'f16', persistent: true }));
  const vec = (name: string, n: number) => m.set(name, randomTensor(engine, [n], seed++, { scale: 0.1, persistent: true }));
  mat('model.embed_tokens.weight', c.vocabSize, c.hiddenSize);
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}.`;
    vec(p + 'input_layernorm.weight', c.hiddenSize);
    vec(p + 'post_attention_layernorm.weight', c.hiddenSize);
    mat(p + 'self_attn.q_proj.weight', c.heads * c.headDim, c.hiddenSize);
    mat(p + 'self_attn.k_proj.weight', c.kvHeads * c.headDim, c.hiddenSize);
    mat(p + 'self_attn.v_proj.weight', c.kvHeads * c.headDim, c.hiddenSize);
    mat(p + 'self_attn.o_proj.weight', c.hiddenSize, c.heads * c.headDim);
    mat(p + 'mlp.gate_proj.weight', c.intermediateSize, c.hiddenSize);
    mat(p + 'mlp.up_proj.weight', c.intermediateSize, c.hiddenSize);
    mat(p + 'mlp.down_proj.weight', c.hiddenSize, c.intermediateSize);
  }
  vec('model.norm.weight', c.hiddenSize);
  mat('lm_head.weight', c.vocabSize, c.hiddenSize);
  return m;
}

function randomClipWeights(engine: Engine, c: ClipVisionConfig): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  const p = 'vis_encoder.vision_model.';
  let seed = 1000;
  const d = c.hiddenSize;
  const add = (name: string, shape: number[], scale: number, dtype: 'f32' | 'f16' = 'f32') => m.set(p + name, randomTensor(engine, shape, seed++, { scale, dtype, persistent: true }));
  add('embeddings.patch_embedding.weight', [d, 3, c.patchSize, c.patchSize], 0.05);
  add('embeddings.class_embedding', [d], 0.5);
  add('embeddings.position_embedding.weight', [(c.imageSize / c.patchSize) ** 2 + 1, d], 0.5);
  add('pre_layrnorm.weight', [d], 0.1);
  add('pre_layrnorm.bias', [d], 0.1);
  for (let i = 0; i < c.layers; i++) {
    const l = `encoder.layers.${i}.`;
    for (const n of ['layer_norm1', 'layer_norm2']) {
      add(`${l}${n}.weight`, [d], 0.1);
      add(`${l}${n}.bias`, [d], 0.1);
    }
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`${l}self_attn.${proj}.weight`, [d, d], 1 / Math.sqrt(d), 'f16');
      add(`${l}self_attn.${proj}.bias`, [d], 0.1);
    }
    add(`${l}mlp.fc1.weight`, [c.intermediateSize, d], 1 / Math.sqrt(d), 'f16');
    add(`${l}mlp.fc1.bias`, [c.intermediateSize], 0.1);
    add(`${l}mlp.fc2.weight`, [d, c.intermediateSize], 1 / Math.sqrt(c.intermediateSize), 'f16');
    add(`${l}mlp.fc2.bias`, [d], 0.1);
  }
  return m;
}

/** Bytes of weights one decode step reads: every layer's matrices and norms, and the head. */
function decodeWeightBytes(c: LlamaConfig, matrixBytes: number): number {
  const perLayer = (c.heads * c.headDim + 2 * c.kvHeads * c.headDim) * c.hiddenSize + c.hiddenSize * c.heads * c.headDim + 3 * c.intermediateSize * c.hiddenSize;
  return (c.layers * perLayer + c.vocabSize * c.hiddenSize) * matrixBytes;
}

/** Generations timed per measurement; the median one (by time per token) is reported, as the machine's speed wanders. */
const GENERATION_RUNS = 3;

async function benchGeneration(h: Harness, name: string, llm: Llama, promptTokens: number, decodeTokens: number, weightBytes?: number): Promise<void> {
  const engine = llm.engine;
  const cache = llm.newCache({ maxLength: promptTokens + decodeTokens + 8 });
  const ids = Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919) % (llm.config.vocabSize - 3)));
  const embeds = llm.embed(ids);
  // Warm-up: one untimed generation as long as the timed ones. It compiles every pipeline the run
  // uses, and lets V8 optimise the recording code: after only a few steps, recording took ~5 ms
  // per token at the small config instead of the steady ~2.5, and on lavapipe the recording thread's
  // time competes with the GPU's worker threads.
  engine.pool.resetPeak();
  await generate(llm, cache, embeds, { maxNewTokens: decodeTokens + 1, stopIds: [] });
  cache.truncate(0);
  const peakBytes = engine.memory().peakBytes;
  // The foundation bench's GEMV (gemv_f16) runs minutes before this, and this VM's speed drifts over
  // a full run (it slows under sustained load): with weight bytes to compare, the same GEMV is
  // timed again right before each generation, and each run is compared with its neighbour.
  const reference = weightBytes ? referenceGemv(engine, 'f16') : null;
  const runs: { timings: GenerationTimings; gemvGbps: number }[] = [];
  for (let r = 0; r < GENERATION_RUNS; r++) {
    const gemvGbps = reference ? reference.bytes! / (await h.time({ ...reference, time: 0 })) / 1e6 : 0;
    runs.push({ timings: (await generate(llm, cache, embeds, { maxNewTokens: decodeTokens + 1, stopIds: [] })).timings, gemvGbps });
    cache.truncate(0);
  }
  reference?.dispose();
  const perToken = (t: GenerationTimings) => t.decodeMs / t.decodeTokens;
  runs.sort((a, b) => perToken(a.timings) - perToken(b.timings));
  const t = runs[Math.floor(runs.length / 2)]!.timings;
  const msPerToken = perToken(t);
  const m: Measurement = {
    name: `${name}_decode`,
    shape: `prompt ${promptTokens}, ${t.decodeTokens} tokens, median of ${GENERATION_RUNS}`,
    median_ms: round(msPerToken, 3),
    tokens_per_s: round(1000 / msPerToken, 2),
    prefill_tokens_per_s: round((promptTokens / t.prefillMs) * 1000, 1),
    dispatches_per_token: round(t.dispatchesPerToken, 1),
    submits_per_token: round(t.submitsPerToken, 2),
    bind_groups_per_token: round(t.bindGroupsPerToken, 2),
    replayed_steps: t.replayedSteps,
    record_ms_per_token: round(t.recordMsPerToken, 3),
    peak_gpu_mb: round(peakBytes / 1e6, 1),
  };
  if (weightBytes) {
    m.gbps = round(weightBytes / msPerToken / 1e6, 3);
    const gemv = h.results.find((r) => r.name === 'gemv_f16');
    if (gemv?.gbps) m.ratio_to_gemv_bandwidth = round(m.gbps / gemv.gbps, 3);
    const adjacent = runs.map((r) => weightBytes / perToken(r.timings) / 1e6 / r.gemvGbps).sort((a, b) => a - b);
    m.ratio_to_adjacent_gemv = round(adjacent[Math.floor(adjacent.length / 2)]!, 3);
    m.adjacent_gemv_gbps = round(runs.map((r) => r.gemvGbps).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!, 3);
  }
  h.record(m);
  embeds.dispose();
  cache.dispose();
}

export async function benchMllm(h: Harness): Promise<void> {
  const engine = h.engine;
  if (h.wanted('mllm_tiny')) {
    const model = await VisionLLM.load(path.join(projectRoot(), 'weights', 'tiny'), { engine });
    const image = path.join(projectRoot(), 'test', 'fixtures', 'images', 'wide.png');
    await model.chat({ image, prompt: 'warm up', maxNewTokens: 2 });
    const r = await model.chat({ image, prompt: 'What is in the picture? Describe the colours.', maxNewTokens: 32, temperature: 0 });
    const t = r.timings;
    h.record({
      name: 'mllm_tiny_chat',
      shape: `${t.imageTiles} tiles, prompt ${t.promptTokens}, ${t.decodeTokens} tokens`,
      median_ms: round(t.totalMs, 1),
      vision_ms: round(t.visionMs, 1),
      prefill_tokens_per_s: round((t.promptTokens / t.prefillMs) * 1000, 1),
      tokens_per_s: t.decodeTokens ? round((t.decodeTokens / t.decodeMs) * 1000, 2) : 0,
      dispatches_per_token: round(t.dispatchesPerToken, 1),
      submits_per_token: round(t.submitsPerToken, 2),
    });
    await benchGeneration(h, 'mllm_tiny_llm', model.llm, 256, 32);
    model.dispose();
  }
  if (h.wanted('mllm_small')) {
    const llmWeights = Weights.fromTensors(engine, 'random small LLaMA', randomLlamaWeights(engine, SMALL_LLM));
    const llm = Llama.load(new Params(llmWeights), SMALL_LLM);
    await benchGeneration(h, 'mllm_small_llm', llm, 512, 24, decodeWeightBytes(SMALL_LLM, 2));
    llmWeights.dispose();

    const mediumWeights = Weights.fromTensors(engine, 'random medium LLaMA', randomLlamaWeights(engine, MEDIUM_LLM));
    const medium = Llama.load(new Params(mediumWeights), MEDIUM_LLM);
    await benchGeneration(h, 'mllm_medium_llm', medium, 128, 12, decodeWeightBytes(MEDIUM_LLM, 2));
    mediumWeights.dispose();

    const vitWeights = Weights.fromTensors(engine, 'random small ViT', randomClipWeights(engine, SMALL_VIT));
    const tower = ClipVisionTower.load(new Params(vitWeights).at('vis_encoder.vision_model'), SMALL_VIT);
    const pixels = randomTensor(engine, [1, 3, 336, 336], 99);
    await h.gpu({
      name: 'mllm_small_vit',
      shape: '1 tile, 577 tokens, d 256, 6 layers',
      run: () => tower.features(pixels, -2),
      iterations: 3,
      time: 0,
    });
    pixels.dispose();
    vitWeights.dispose();
  }
}
