import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import type { VisionLLMConfig } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { DEFAULT_ROUTES, RouteRegistry } from '../src/superlink/routes.js';
import { SuperLink, type Link } from '../src/superlink/superlink.js';
import { TEST_DIR, concatArrays, expectClose, loadGolden, referenceModel } from './helpers.js';

const golden = loadGolden('superlink');
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'square.png');
const TOL = 1e-4;

async function stack(links: Link[], route: string): Promise<Float32Array> {
  return concatArrays(await Promise.all(links.filter((l) => l.route === route).map((l) => l.condition.toArray())));
}

describe('the super link (tiny checkpoint) against the PyTorch reference', () => {
  let engine: Engine;
  let model: VisionLLM;
  beforeAll(async () => {
    ({ engine, model } = await referenceModel());
  });

  it('registers every route of the checkpoint', () => {
    expect(model.superlink!.routes.sort()).toEqual(['det', 'edit', 'gen', 'pose']);
  });

  it('teacher-forced COCO answer: 80 [DET] blocks -> 80 class embeddings', async () => {
    const result = await model.chat({ image: IMAGE, prompt: golden.metadata.det_question!, answer: golden.metadata.coco_answer! });
    const spliced = Array.from(golden.values('coco.spliced_ids'));
    const promptLength = spliced.length - result.tokenIds.length;
    expect([...spliced.slice(0, promptLength), ...result.tokenIds]).toEqual(spliced);
    expect(result.links).toHaveLength(80);
    expect(result.links.every((l) => l.route === 'det' && l.token === '[DET]')).toBe(true);
    expect(result.links.map((l) => l.phrase)).toEqual(golden.metadata.coco_answer!.split(', ').map((s) => s.replace('[DET]', '')));
    expect(result.links[0]!.condition.shape).toEqual([256]);
    expectClose(await stack(result.links, 'det'), golden.values('coco.det'), { rel: TOL, label: 'class embeddings [80, 256]' });
    result.links.forEach((l) => l.condition.dispose());
  });

  it('teacher-forced mixed answer: det, pose (1 object class + keypoints), gen and edit conditions', async () => {
    const result = await model.chat({ image: IMAGE, prompt: golden.metadata.mixed_question!, answer: golden.metadata.mixed_answer!, poseObjectClasses: 1 });
    expect(result.links.map((l) => [l.route, l.token, l.phrase])).toEqual([
      ['det', '[DET]', 'A person'],
      ['det', '[DET]', 'rides a bicycle'],
      ['pose', '[POSE]', 'Pose: person'],
      ['pose', '[POSE]', 'nose'],
      ['pose', '[POSE]', 'left eye'],
      ['gen', '[GEN]', 'A red cat'],
      ['edit', '[EDIT]', 'now make it blue'],
    ]);
    expect(result.links[5]!.condition.shape).toEqual([77, 96]);
    for (const route of ['det', 'pose', 'gen', 'edit']) {
      expectClose(await stack(result.links, route), golden.values(`mixed.${route}`), { rel: TOL, label: `${route} conditions` });
    }
    result.links.forEach((l) => l.condition.dispose());
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
    expect(spliced).toHaveLength(7);
    expect(cache.length).toBe(Array.from(golden.values('mixed.spliced_ids')).length - 1); // all but the final </s> were fed
    expectClose(await spliced[0]!.toArray(), golden.values('mixed.first_block_hidden'), { rel: TOL, label: 'first block, decoding path' });
    expectClose(await spliced[6]!.toArray(), golden.values('mixed.last_block_hidden'), { rel: TOL, label: 'last block, decoding path' });
    const blocks = link.generatedBlocks(result.tokenIds);
    const stacked = link.stack(blocks, spliced);
    const links = link.links(blocks, stacked, link.phrases(result.tokenIds, blocks.map((b) => b.tokenIndex)), { poseObjectClasses: 1 });
    stacked.forEach((t) => t.dispose());
    expectClose(await stack(links, 'gen'), golden.values('mixed.gen'), { rel: TOL, label: 'gen condition, decoding path' });
    expect(links.map((l) => l.phrase)).toEqual(['A person', 'rides a bicycle', 'Pose: person', 'nose', 'left eye', 'A red cat', 'now make it blue']);
    [features, embeds, ...spliced, ...links.map((l) => l.condition)].forEach((t) => t.dispose());
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

  it('names a routing token with no registered route, a route without its tables, and too many blocks', async () => {
    const config = model.config as VisionLLMConfig;
    const noEdit = new RouteRegistry(DEFAULT_ROUTES.filter((r) => r.name !== 'edit'));
    const partial = SuperLink.fromWeights(model.weights, config, model.tokenizer, noEdit);
    const edit = model.tokenizer.tokenToId('[EDIT]')!;
    expect(() => partial.routeFor(edit)).toThrow(/\[EDIT\] cannot be routed: no route is registered for \[EDIT\]/);
    const noGenConfig = { ...config, decoders: { ...config.decoders, sd: undefined } };
    const noGen = SuperLink.fromWeights(model.weights, noGenConfig, model.tokenizer);
    expect(() => noGen.routeFor(model.tokenizer.tokenToId('[GEN]')!)).toThrow(/\[GEN\] cannot be routed: the checkpoint has no Stable Diffusion/);
    const renamed = new RouteRegistry(DEFAULT_ROUTES.map((r) => (r.name === 'gen' ? { ...r, table: 'emb_embeddings_missing' } : r)));
    const noTable = SuperLink.fromWeights(model.weights, config, model.tokenizer, renamed);
    expect(() => noTable.routeFor(model.tokenizer.tokenToId('[GEN]')!)).toThrow(/has no 'emb_embeddings_missing.weight'/);
    [partial, noGen, noTable].forEach((l) => l.dispose());

    const link = model.superlink!;
    const route = link.routeFor(model.tokenizer.tokenToId('[DET]')!)!;
    const blocks = Array.from({ length: 257 }, (_, i) => ({ route, token: '[DET]', tokenIndex: i, firstQuery: -1 }));
    const hidden = engine.tensor(new Float32Array(257 * 4 * 128), [257, 4, 128]);
    expect(() => link.links(blocks, new Map([[route, hidden]]), [])).toThrow(/257 blocks route to 'det', which takes at most 256/);
    hidden.dispose();
  });
});
