/**
 * The super link's own cost: on the tiny checkpoint, a teacher-forced COCO answer (80 [DET]
 * blocks, one image tile) runs through the LLM; collecting the 320 query hidden states and the
 * patch2query projection (Grounding DINO's side of the link) are timed alone and as a share of the forward pass they follow.
 */
import path from 'node:path';
import { gdino, type GdinoConfig, type GdinoOutput } from '../src/decoders/gdino/index.js';
import { promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import type { VisionLLMConfig } from '../src/model/config.js';
import { Params } from '../src/nn/params.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';
import type { Harness } from './harness.js';

const COCO = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
  'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
  'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
  'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv',
  'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
  'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

export async function benchSuperlink(h: Harness): Promise<void> {
  if (!h.wanted('superlink')) return;
  const engine = h.engine;
  const model = await VisionLLM.load(path.join(projectRoot(), 'weights', 'tiny'), { engine });
  const link = model.superlink!;
  const features = await model.encodeImage(path.join(projectRoot(), 'test', 'fixtures', 'images', 'square.png'));
  const prompt = vicunaPrompt('<image>\nPlease detect the objects in the image.');
  const answer = COCO.map((c) => `${c}[DET]`).join(', ');
  const ids = promptIds(model.tokenizer, `${prompt} ${answer}</s>`, features.shape[0]!);
  const plan = link.plan(ids, promptIds(model.tokenizer, prompt, features.shape[0]!).length);
  const cache = model.llm.newCache({ maxLength: plan.ids.length });
  const patch = plan.ids.indexOf(model.tokenizer.tokenToId('<im_patch>')!);
  const hiddenOf = () =>
    engine.scope(() => {
      cache.truncate(0);
      const embeds = model.llm.embed(plan.ids);
      engine.copyBytes(features, 0, embeds, patch * embeds.shape[1]! * 4, features.byteLength);
      link.fill(embeds, plan.blocks);
      return model.llm.forward(embeds, cache);
    });
  const forward = await h.gpu({ name: 'superlink_forward', shape: `${plan.ids.length} positions, 80 blocks`, run: hiddenOf, iterations: 3, time: 0 });
  const hidden = hiddenOf();
  const config = model.config as VisionLLMConfig;
  const patch2query = await gdino.load(new Params(model.weights), config.decoders.get('gdino') as GdinoConfig, { hiddenSize: config.llm.hiddenSize });
  const from = promptIds(model.tokenizer, prompt, features.shape[0]!).length;
  const linkOnly = await h.gpu({
    name: 'superlink_gather_project',
    shape: '80 blocks x 4 queries -> [80, 256]',
    run: () => {
      const blockHidden = plan.blocks.map((b) => hidden.rows(b.firstQuery, b.firstQuery + b.route.queryIds.length));
      const [group] = link.collect(plan.ids, blockHidden, from);
      const out = patch2query.run(group!, { engine, options: {} }) as GdinoOutput;
      [...blockHidden, group!.hidden].forEach((t) => t.dispose());
      return out.classEmbeddings;
    },
    iterations: 10,
  });
  if (forward && linkOnly) h.annotate(linkOnly, { share_of_forward: Math.round((linkOnly.median_ms / forward.median_ms) * 1e4) / 1e4 });
  [hidden, features].forEach((t) => t.dispose());
  cache.dispose();
  model.dispose();
}
