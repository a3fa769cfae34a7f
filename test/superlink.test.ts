import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import type { VisionLLMConfig } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import type { VisionLLM } from '../src/model/vision-llm.js';
import { DEFAULT_DECODERS, type AnyDecoder } from '../src/decoders/index.js';
import { ip2p, sd, type DiffusionConfig } from '../src/decoders/diffusion/index.js';
import { gdino } from '../src/decoders/gdino/index.js';
import { unipose } from '../src/decoders/unipose/index.js';
import { linkTarget, toolTokens } from '../src/model/decoder-registry.js';
import { Params } from '../src/nn/params.js';
import { SuperLink } from '../src/superlink/superlink.js';
import { TEST_DIR, expectClose, loadGolden, referenceModel } from './helpers.js';

const golden = loadGolden('superlink');
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'square.png');
const TOL = 1e-4;

describe('the super link (tiny checkpoint) against the PyTorch reference', () => {
  let engine: Engine;
  let model: VisionLLM;
  let config: VisionLLMConfig;
  beforeAll(async () => {
    ({ engine, model } = await referenceModel());
    config = model.config as VisionLLMConfig;
  });

  it('registers every decoder of the checkpoint', () => {
    expect(model.decoderNames.sort()).toEqual(['gdino', 'ip2p', 'sd', 'unipose']);
    expect(model.superlink!.decoders.sort()).toEqual(['gdino', 'ip2p', 'sd', 'unipose']);
  });

  it('teacher-forced COCO answer: 80 [DET] blocks -> one Grounding DINO call with 80 class embeddings', async () => {
    const result = await model.chat({ image: IMAGE, prompt: golden.metadata.det_question!, answer: golden.metadata.coco_answer! });
    const spliced = Array.from(golden.values('coco.spliced_ids'));
    const promptLength = spliced.length - result.tokenIds.length;
    expect([...spliced.slice(0, promptLength), ...result.tokenIds]).toEqual(spliced);
    expect(result.outputs.map((o) => o.decoder)).toEqual(['gdino']);
    const [det] = result.outputsOf(gdino);
    expect(det!.task).toBe('detection');
    expect(det!.tokens).toEqual(new Array(80).fill('[DET]'));
    expect(det!.phrases).toEqual(golden.metadata.coco_answer!.split(', ').map((s) => s.replace('[DET]', '')));
    expect(det!.classEmbeddings.shape).toEqual([80, 256]);
    expectClose(await det!.classEmbeddings.toArray(), golden.values('coco.det'), { rel: TOL, label: 'class embeddings [80, 256]' });
    result.dispose();
  });

  it('teacher-forced mixed answer: det tokens, and a condition each for generation and editing', async () => {
    // The conditions are what this test checks; the pipelines run at their smallest (diffusion-chat.test.ts checks the images).
    const small = { sd: { steps: 1, width: 8, height: 8 }, ip2p: { steps: 1 } };
    const result = await model.chat({ image: IMAGE, prompt: golden.metadata.mixed_question!, answer: golden.metadata.mixed_answer!, decoders: small });
    expect(result.outputs.map((o) => [o.decoder, o.task, o.tokens, o.phrases])).toEqual([
      ['gdino', 'detection', ['[DET]', '[DET]'], ['A person', 'rides a bicycle']],
      ['sd', 'generation', ['[GEN]'], ['A red cat']],
      ['ip2p', 'editing', ['[EDIT]'], ['now make it blue']],
    ]);
    const [det] = result.outputsOf(gdino);
    const [gen] = result.outputsOf(sd);
    const [edit] = result.outputsOf(ip2p);
    expect(gen!.conditions.shape).toEqual([1, 77, 96]);
    expectClose(await det!.classEmbeddings.toArray(), golden.values('mixed.det'), { rel: TOL, label: 'det conditions' });
    expectClose(await gen!.conditions.toArray(), golden.values('mixed.gen'), { rel: TOL, label: 'gen condition' });
    expectClose(await edit!.conditions.toArray(), golden.values('mixed.edit'), { rel: TOL, label: 'edit condition' });
    result.dispose();
  });

  it('pose answer in the official format: UniPose takes the [DET] object class and the [POSE] keypoints (D1)', async () => {
    const result = await model.chat({ image: IMAGE, prompt: golden.metadata.pose_question!, answer: golden.metadata.pose_answer! });
    expect(result.outputs.map((o) => o.decoder)).toEqual(['unipose']);
    const [pose] = result.outputsOf(unipose);
    expect(pose!.objects).toEqual(['There is person']);
    expect(pose!.keypointNames).toEqual(['in the image. The image analysis reveals the location of nose', 'left eye', 'right eye']);
    expect(pose!.objectEmbeddings.shape).toEqual([1, 256]);
    expect(pose!.keypointEmbeddings.shape).toEqual([3, 256]);
    expectClose(await pose!.objectEmbeddings.toArray(), golden.values('pose.objects'), { rel: TOL, label: 'object class (projection_llava)' });
    expectClose(await pose!.keypointEmbeddings.toArray(), golden.values('pose.keypoints'), { rel: TOL, label: 'keypoints (projection_kpt_llava)' });
    result.dispose();
  });

  it('splicing during generation gives the teacher-forced hidden states and conditions', async () => {
    const ids = Array.from(golden.values('mixed.ids'));
    const question = golden.metadata.mixed_question!;
    const promptOnly = promptIds(model.tokenizer, vicunaPrompt(`<image>\n${question}`), 576);
    const answer = ids.slice(promptOnly.length); // the answer's tokens, </s> last
    const link = model.superlink!;
    const features = await model.encodeImage(IMAGE);
    const embeds = model.llm.embed(promptOnly);
    engine.copyBytes(features, 0, embeds, promptOnly.indexOf(model.tokenizer.tokenToId('<im_patch>')!) * 128 * 4, features.byteLength);
    const cache = model.llm.newCache({ maxLength: 1100, dtype: 'f32' });
    const spliced: Tensor[] = [];
    const result = await generate(model.llm, cache, embeds, {
      forcedIds: answer,
      maxNewTokens: answer.length,
      expand: (id) => link.queriesFor(id),
      onSpliced: (_, hidden) => spliced.push(hidden),
    });
    expect(result.tokenIds).toEqual(answer);
    expect(result.finishReason).toBe('stop');
    expect(spliced).toHaveLength(4);
    expect(cache.length).toBe(Array.from(golden.values('mixed.spliced_ids')).length - 1); // all but the final </s> were fed
    expectClose(await spliced[0]!.toArray(), golden.values('mixed.first_block_hidden'), { rel: TOL, label: 'first block, decoding path' });
    expectClose(await spliced[3]!.toArray(), golden.values('mixed.last_block_hidden'), { rel: TOL, label: 'last block, decoding path' });
    const groups = link.collect(result.tokenIds, spliced);
    expect(groups.map((g) => [g.decoder, g.blocks.map((b) => b.phrase)])).toEqual([
      ['gdino', ['A person', 'rides a bicycle']],
      ['sd', ['A red cat']],
      ['ip2p', ['now make it blue']],
    ]);
    const diffusion = await sd.load(new Params(model.weights), config.decoders.get('sd') as DiffusionConfig, { hiddenSize: 128 });
    const gen = await diffusion.run(groups[1]!, { engine, options: { steps: 1, width: 8, height: 8 } });
    expectClose(await gen.conditions.toArray(), golden.values('mixed.gen'), { rel: TOL, label: 'gen condition, decoding path' });
    gen.dispose();
    [features, embeds, ...spliced, ...groups.map((g) => g.hidden)].forEach((t) => t.dispose());
    cache.dispose();
  });

  it('a routing step runs 1 + N positions through the KV cache', async () => {
    const link = model.superlink!;
    const det = model.tokenizer.tokenToId('[DET]')!;
    const gen = model.tokenizer.tokenToId('[GEN]')!;
    const cache = model.llm.newCache({ maxLength: 128 });
    const prompt = model.llm.embed([1, 5]);
    const spliced: number[] = [];
    const result = await generate(model.llm, cache, prompt, {
      forcedIds: [det, gen, 7, 2],
      maxNewTokens: 4,
      expand: (id) => link.queriesFor(id),
      onSpliced: (_, hidden) => {
        spliced.push(hidden.shape[0]!);
        hidden.dispose();
      },
    });
    expect(result.tokenIds).toEqual([det, gen, 7, 2]);
    expect(spliced).toEqual([4, 64]);
    expect(cache.length).toBe(2 + (1 + 4) + (1 + 64) + 1); // the prompt, [DET] + 4 queries, [GEN] + 64, then 7 (</s> is not fed)
    prompt.dispose();
    cache.dispose();
  });

  it('leaves a routing token no decoder takes as text, saying why, and names a decoder without its tables and too many blocks', async () => {
    const p = new Params(model.weights);
    const create = (decoders: readonly AnyDecoder[], c = config) =>
      SuperLink.create(p, decoders.map((d) => linkTarget(d, c)), model.tokenizer, toolTokens(decoders), 128);
    const partial = create([gdino, unipose, sd]);
    const edit = model.tokenizer.tokenToId('[EDIT]')!;
    expect(partial.routeFor(edit)).toBeUndefined();
    expect(partial.queriesFor(edit)).toBeNull();
    const gen = model.tokenizer.tokenToId('[GEN]')!;
    expect(partial.unrouted([edit, 5, edit, gen, edit])).toEqual([{ token: '[EDIT]', reason: 'no decoder registered takes [EDIT]' }]);
    expect(partial.unrouted([edit, 5], 1)).toEqual([]);
    const decoders = new Map(config.decoders);
    decoders.delete('sd');
    const noGen = create(DEFAULT_DECODERS, { ...config, decoders });
    expect(noGen.routeFor(gen)).toBeUndefined();
    expect(noGen.unrouted([gen])).toEqual([{ token: '[GEN]', reason: expect.stringMatching(/^the checkpoint has no Stable Diffusion/) }]);
    const renamed: AnyDecoder = { ...sd, routes: [{ ...sd.routes[0]!, table: 'emb_embeddings_missing' }] };
    const noTable = create([gdino, unipose, renamed, ip2p]);
    expect(() => noTable.routeFor(model.tokenizer.tokenToId('[GEN]')!)).toThrow(/has no 'emb_embeddings_missing.weight'/);
    [partial, noGen, noTable].forEach((l) => l.dispose());

    const link = model.superlink!;
    const det = model.tokenizer.tokenToId('[DET]')!;
    const hidden = engine.tensor(new Float32Array(4 * 128), [4, 128]);
    expect(() => link.collect(new Array(257).fill(det), new Array(257).fill(hidden))).toThrow(/257 blocks route to 'gdino', which takes at most 256/);
    expect(() => link.collect([det, det], [hidden])).toThrow(/more routing blocks than the 1 hidden-state blocks given/);
    hidden.dispose();
  });
});
