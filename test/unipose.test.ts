/**
 * The whole UniPose (src/decoders/unipose/model.ts) against scripts/golden/unipose.py: the official
 * UniPose composed at a tiny config (Swin embed 8, d 32, 2 box + 2 pose layers, 30 queries, 5
 * groups of 1 + 68) with seeded random weights under the release's names, aliases included, in
 * float64. For 1 object and 17 keypoints, 2 objects and 14, 1 object and 68: the projections, the
 * backbone and encoder, the same top-30 and top-5 sets, the last layer's logits, boxes and keypoints,
 * and the post-processed instances in original pixels, on both kernel profiles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { parseUniposeConfig } from '../src/decoders/unipose/config.js';
import type { UniposeImage } from '../src/decoders/unipose/image.js';
import { UniPose } from '../src/decoders/unipose/model.js';
import { poseDetections } from '../src/decoders/unipose/postprocess.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('unipose');
const raw = JSON.parse(golden.metadata.config!) as Record<string, unknown>;
const config = parseUniposeConfig(new ConfigReader('unipose golden', raw));
const image = JSON.parse(golden.metadata.image!) as { pad: [number, number]; valid: [number, number]; ori: [number, number] };
const cases = JSON.parse(golden.metadata.cases!) as { tag: string; objects: number; keypoints: number }[];
const PREFIX = golden.metadata.prefix!;
const L_HIDDEN = raw.l_hidden_size as number;

/** Every golden tensor under the prefix: floats as `dtype`, the index buffers as i32. */
function checkpoint(engine: Engine, dtype: 'f32' | 'f16', drop?: string): Params {
  return Params.of(golden.weights(engine, dtype, PREFIX, drop), 'unipose golden');
}

/** The golden's preprocessed input as the model takes it (the resize is unipose-image.test.ts's). */
function input(engine: Engine): UniposeImage {
  const pixels = golden.upload(engine, 'pixel_values');
  return { pixels, mask: new Uint8Array(0), imgShape: image.valid, oriShape: image.ori, padShape: image.pad, toOriginal: undefined!, dispose: () => pixels.dispose() };
}

const names = (n: number) => Array.from({ length: n }, (_, j) => `kp${j}`);

describe.each(['cpu', 'gpu'] as const)('UniPose against the PyTorch reference, %s profile', (profile) => {
  let engine: Engine;
  let p: Params;
  let model: UniPose;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    p = checkpoint(engine, 'f32');
    model = await UniPose.load(p, config, L_HIDDEN);
  });
  afterAll(() => {
    model?.dispose();
    p?.weights.dispose();
  });

  it('reads every tensor of the checkpoint (the shared heads once, their aliases freed)', () => {
    expect(p.weights.unused(PREFIX)).toEqual([]);
    expect(p.weights.has(`${PREFIX}bbox_embed.1.layers.0.weight`)).toBe(false);
    expect(p.weights.has(`${PREFIX}transformer.decoder.pose_embed.0.layers.0.weight`)).toBe(false);
  });

  it('backbone and encoder (1 object)', async () => {
    const objects = model.objectText(golden.upload(engine, 'k17.obj_queries'));
    const stages = engine.scope(() => model.backbone.forward(golden.upload(engine, 'pixel_values')));
    for (let i = 0; i < stages.length; i++) expectClose(await stages[i]!.toArray(), golden.values(`backbone.${i}`), { rel: TOL.f32, label: `backbone map ${i}` });
    const encoded = model.encoder.forward({ stages, pixelMask: { height: image.pad[0], width: image.pad[1], valid: image.valid }, text: objects });
    expect(Array.from(encoded.paddingMask, (v) => 1 - v)).toEqual(Array.from(golden.values('mask_flatten')));
    expectClose(encoded.validRatios.flat(), golden.values('valid_ratios'), { rel: 1e-7, label: 'valid ratios' });
    expectClose(await encoded.memory.toArray(), golden.values('k17.memory'), { rel: TOL.f32, label: 'memory' });
    expectClose(await encoded.text.toArray(), golden.values('k17.text'), { rel: TOL.f32, label: 'text' });
    [...stages, objects].forEach((t) => t.dispose());
    encoded.dispose();
  });

  it.each(cases)('$tag: $objects object(s), $keypoints keypoints: selections, logits, boxes, keypoints, instances', async ({ tag, objects: Ko, keypoints: Kk }) => {
    const objects = model.objectText(golden.upload(engine, `${tag}.obj_queries`));
    const keypoints = model.keypointText(golden.upload(engine, `${tag}.kpt_queries`));
    expectClose(await objects.toArray(), golden.values(`${tag}.objects`), { rel: TOL.f32, label: 'objects (projection_llava)' });
    expectClose(await keypoints.toArray(), golden.values(`${tag}.keypoint_text`).subarray(0, Kk * config.detector.dModel), { rel: TOL.f32, label: 'keypoints (projection_kpt_llava)' });
    const x = input(engine);
    const found = await model.detect(x, objects, keypoints);
    expect(Array.from(found.selection.indices), 'the two-stage top-30').toEqual(Array.from(golden.values(`${tag}.topk`)));
    expectClose(found.selection.reference, golden.values(`${tag}.reference0`), { rel: TOL.f32, label: 'first references' });
    expect(Array.from(found.groups), 'the top-5 pose groups').toEqual(Array.from(golden.values(`${tag}.groups`)));
    expectClose(found.logits, golden.values(`${tag}.logits`), { rel: TOL.f32, label: 'logits' });
    expectClose(found.boxes, golden.values(`${tag}.boxes`), { rel: TOL.f32, label: 'boxes' });
    expectClose(found.keypoints, golden.values(`${tag}.keypoints`), { rel: TOL.f32, label: 'keypoints' });

    const instances = poseDetections(found, { oriShape: image.ori, keypointNames: names(Kk), numClasses: Ko, topk: 100 });
    expect(instances.map((d) => d.query)).toEqual(Array.from(golden.values(`${tag}.queries`)));
    expect(instances.map((d) => d.classIndex)).toEqual(Array.from(golden.values(`${tag}.labels`)));
    expectClose(instances.map((d) => d.score), golden.values(`${tag}.scores`), { rel: TOL.f32, label: 'scores' });
    expectClose(instances.flatMap((d) => d.box), golden.values(`${tag}.det_boxes`), { rel: TOL.f32, label: 'boxes in original pixels' });
    expectClose(instances.flatMap((d) => d.keypoints.flatMap((k) => [k.x, k.y, k.visible])), golden.values(`${tag}.det_keypoints`), { rel: TOL.f32, label: 'keypoints in original pixels' });
    expect(instances[0]!.keypoints.map((k) => k.name)).toEqual(names(Kk));
    [objects, keypoints].forEach((t) => t.dispose());
    x.dispose();
  });

  // The golden's weights are f16 values (scripts/golden/unipose.py), so the f16 upload holds the same
  // numbers as the f32 one and must make the same discrete choices; what differs is the f16 paths.
  it.each(cases)('f16 weights, $tag: the same selections, outputs within 1e-2', async ({ tag }) => {
    const half = checkpoint(engine, 'f16');
    const m16 = await UniPose.load(half, config, L_HIDDEN);
    try {
      const objects = m16.objectText(golden.upload(engine, `${tag}.obj_queries`));
      const keypoints = m16.keypointText(golden.upload(engine, `${tag}.kpt_queries`));
      const x = input(engine);
      const found = await m16.detect(x, objects, keypoints);
      expect(Array.from(found.selection.indices)).toEqual(Array.from(golden.values(`${tag}.topk`)));
      expect(Array.from(found.groups)).toEqual(Array.from(golden.values(`${tag}.groups`)));
      expectClose(found.logits, golden.values(`${tag}.logits`), { rel: TOL.f16, label: 'logits (f16)' });
      expectClose(found.boxes, golden.values(`${tag}.boxes`), { rel: TOL.f16, label: 'boxes (f16)' });
      expectClose(found.keypoints, golden.values(`${tag}.keypoints`), { rel: TOL.f16, label: 'keypoints (f16)' });
      [objects, keypoints].forEach((t) => t.dispose());
      x.dispose();
    } finally {
      m16.dispose();
      half.weights.dispose();
    }
  });

  it('frees what it made', async () => {
    const before = engine.memory().liveBuffers;
    const hidden = [golden.upload(engine, 'k17.obj_queries'), golden.upload(engine, 'k17.kpt_queries')];
    const objects = model.objectText(hidden[0]!);
    const keypoints = model.keypointText(hidden[1]!);
    const x = input(engine);
    await model.detect(x, objects, keypoints);
    [...hidden, objects, keypoints].forEach((t) => t.dispose());
    x.dispose();
    expect(engine.memory().liveBuffers).toBe(before);
  });

  it('errors name the tensor, the keypoint limit and the shapes', async () => {
    const missing = `${PREFIX}transformer.decoder.hw_append.weight`;
    const partial = checkpoint(engine, 'f32', missing);
    await expect(UniPose.load(partial, config, L_HIDDEN)).rejects.toThrow(`missing weight '${missing}'`);
    partial.weights.dispose();
    const full = checkpoint(engine, 'f32');
    await expect(UniPose.load(full, config, 64)).rejects.toThrow(/projection_llava\.layers\.0\.weight \[32, 48\] must be \[32, 64\]/);
    full.weights.dispose();
    const tooMany = engine.tensor(new Float32Array(69 * 4 * L_HIDDEN), [69, 4, L_HIDDEN]);
    expect(() => model.keypointText(tooMany)).toThrow('unipose: 69 keypoints ([POSE] blocks), at most 68 (num_body_points)');
    tooMany.dispose();
  });
});

describe('UniPose config', () => {
  it('reads the resize limits from image_scale ([max_size, size]), the release\'s by default', () => {
    expect(config.detector.imageScale).toEqual([1333, 800]);
    const small = parseUniposeConfig(new ConfigReader('unipose_config', { ...raw, image_scale: [512, 320] }));
    expect(small.detector.imageScale).toEqual([512, 320]);
    expect(() => parseUniposeConfig(new ConfigReader('unipose_config', { ...raw, image_scale: [512] }))).toThrow(/image_scale.*\[long, short\] edge limits, got 1 numbers/);
  });
});
