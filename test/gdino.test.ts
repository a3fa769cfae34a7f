/**
 * The whole Grounding DINO against the composed PyTorch reference (scripts/golden/gdino.py,
 * reference_gdino.py) at a tiny config: a fixture image through our preprocessing, the LLM block
 * states through patch2query, then every stage to the post-processed results of detection
 * (top-10 with masks), referring (top-1 with its mask) and semantic segmentation. Twice: with the
 * release's Swin backbone (gdino) and with a ResNet one (gdino_resnet_detector, the miniature's kind).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseGdinoConfig } from '../src/decoders/gdino/config.js';
import { gdinoImage, type GdinoImage } from '../src/decoders/gdino/image.js';
import { GroundingDino, type GdinoResult } from '../src/decoders/gdino/model.js';
import { detections, grounding, semanticMap, type Detection } from '../src/decoders/gdino/postprocess.js';
import { f32ArrayToF16 } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { decodeImageFile } from '../src/image/decode.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { TEST_DIR, TOL, expectClose, loadGolden, testEngine } from './helpers.js';
import { expandMask } from '../src/image/mask.js';

describe.each(['gdino', 'gdino_resnet_detector'])('%s', (stem) => {
  const golden = loadGolden(stem);
  const config = parseGdinoConfig(new ConfigReader(`${stem} golden`, JSON.parse(golden.metadata.config!), 'gdino_config'));
  const IMAGE = JSON.parse(golden.metadata.image!) as { file: string; scale: [number, number]; ori: [number, number]; img: [number, number]; pad: [number, number] };
  const L_HIDDEN = golden.shape('det.text_query')[2]!;

  /** The golden's `gdino.*` tensors under their checkpoint names; matrices in `matrix` storage, as the default policy stores them. */
  function checkpoint(engine: Engine, matrix: 'f32' | 'f16'): Params {
    const map = new Map<string, Tensor>();
    for (const name of golden.tensors.keys()) {
      if (!name.startsWith('gdino.')) continue;
      const shape = golden.shape(name);
      const values = golden.values(name);
      const dtype = golden.entry(name).dtype;
      if (dtype === 'I64' || dtype === 'I32') map.set(name, engine.tensor(values, shape, 'i32'));
      else map.set(name, matrix === 'f16' && shape.length >= 2 ? engine.tensor(f32ArrayToF16(values), shape, 'f16') : engine.tensor(values, shape));
    }
    return Params.of(map, `${stem} golden`);
  }

  /** Bit i of numpy's packbits (most significant bit first). */
  const packedBit = (b: Uint8Array, i: number) => (b[i >> 3]! >> (7 - (i & 7))) & 1;

  /** Pixels where our masks and the reference's differ (for the queries both kept), outside the reference's near-threshold pixels. */
  function maskMismatches(found: Detection[], name: string): number {
    const bits = golden.entry(`${name}.masks`).bytes;
    const near = new Set(golden.values(`${name}.near`));
    const queries = Array.from(golden.values(`${name}.queries`));
    const [h, w] = IMAGE.ori;
    let wrong = 0;
    for (const d of found) {
      expect(d.mask, `${name}: query ${d.query} has a mask`).toBeDefined();
      const i = queries.indexOf(d.query);
      if (i < 0) continue;
      const ours = expandMask(d.mask!); // row-major
      for (let p = 0; p < h * w; p++) if (!near.has(i * h * w + p) && ours[p] !== packedBit(bits, i * h * w + p)) wrong += 1;
    }
    return wrong;
  }

  describe.each(['cpu', 'gpu'] as const)('Grounding DINO against the composed reference, %s kernels', (profile) => {
    let engine: Engine;
    let model: GroundingDino;
    let image: GdinoImage;
    beforeAll(async () => {
      engine = await testEngine({ profile });
      model = GroundingDino.load(checkpoint(engine, 'f32'), config, L_HIDDEN);
      image = gdinoImage(engine, await decodeImageFile(path.join(TEST_DIR, 'fixtures', 'images', IMAGE.file)), { scale: IMAGE.scale });
      return () => {
        image.dispose();
        model.dispose();
      };
    });

    it('preprocesses the fixture to the reference input', async () => {
      expect([image.imgShape, image.oriShape, image.padShape]).toEqual([IMAGE.img, IMAGE.ori, IMAGE.pad]);
      expectClose(await image.pixels.toArray(), golden.values('pixel_values'), { rel: TOL.f32, label: 'pixel values' });
      const packed = golden.entry('pixel_mask').bytes;
      expect(Array.from(image.pixelMask, (_, i) => packedBit(packed, i))).toEqual(Array.from(image.pixelMask));
    });

    /** patch2query of the block states, then the detector; checks the class embeddings, selection, logits and boxes. */
    async function run(name: string, masks: boolean): Promise<{ result: GdinoResult; K: number }> {
      const states = golden.upload(engine, `${name}.text_query`);
      const text = model.classEmbeddings(states);
      states.dispose();
      expectClose(await text.toArray(), golden.values(`${name}.class_embeddings`), { rel: TOL.f32, label: `${name} class embeddings` });
      const result = await model.detect(image, text, { masks });
      text.dispose();
      expect(Array.from(result.selection.indices), `${name}: the same top-${config.numQueries} encoder tokens, in order`).toEqual(Array.from(golden.values(`${name}.topk`)));
      expectClose(result.selection.reference, golden.values(`${name}.reference`), { rel: TOL.f32, label: `${name} first references` });
      expectClose(await result.logits.toArray(), golden.values(`${name}.logits`), { rel: TOL.f32, label: `${name} logits` });
      expectClose(result.boxes.data, golden.values(`${name}.boxes`), { rel: TOL.f32, label: `${name} boxes` });
      return { result, K: golden.shape(`${name}.text_query`)[0]! };
    }

    /**
     * The post-processed detections against post_process_det_gdino / post_process_instseg_gdino. The
     * tiny detector's logits saturate, so many f32 scores are exactly 1 and their order is a tie
     * (torch.topk leaves it to the implementation; one ulp of difference in a logit reorders them).
     * So each detection must be a valid i-th best: its score is the reference's score for its
     * (query, class) and the reference's i-th best score; boxes and masks are then the reference's
     * for that query.
     */
    function expectDetections(found: Detection[], name: string): void {
      const K = golden.shape(`${name}.logits`)[1]!;
      const logits = golden.values(`${name}.logits`);
      const boxes = golden.values(`${name}.boxes`);
      const best = golden.values(`${name}.scores`);
      const [oh, ow] = IMAGE.ori;
      expect(found).toHaveLength(best.length);
      found.forEach((d, i) => {
        const own = Math.fround(1 / (1 + Math.exp(-logits[d.query * K + d.classIndex]!)));
        expect(Math.abs(d.score - own), `${name} #${i}: score of (query ${d.query}, class ${d.classIndex})`).toBeLessThan(1e-6);
        expect(Math.abs(d.score - best[i]!), `${name} #${i}: the ${i + 1}-th best score`).toBeLessThan(1e-6);
      });
      const want = found.flatMap((d) => {
        const [cx, cy, bw, bh] = [0, 1, 2, 3].map((j) => boxes[d.query * 4 + j]!) as [number, number, number, number];
        return [(cx - bw / 2) * ow, (cy - bh / 2) * oh, (cx + bw / 2) * ow, (cy + bh / 2) * oh];
      });
      expectClose(found.flatMap((d) => d.box), want, { rel: TOL.f32, label: `${name} boxes in pixels` });
      // Not vacuous: most of the reference's choices are ours too.
      const theirs = new Set(Array.from(golden.values(`${name}.queries`)));
      expect(found.filter((d) => theirs.has(d.query)).length).toBeGreaterThanOrEqual(Math.ceil(found.length / 2));
      expect(maskMismatches(found, name)).toBe(0);
    }

    it('detection (K=3): selection, logits, boxes, the top-10 and their masks', async () => {
      const { result, K } = await run('det', true);
      try {
        const masks = result.maskLogits!(Array.from(golden.values('det.queries')));
        expectClose(await masks.toArray(), golden.values('det.mask_logits'), { rel: TOL.f32, label: 'mask logits' });
        masks.dispose();
        expectDetections(await detections(result, image, { numClasses: K, topk: 10, masks: true }), 'det');
      } finally {
        result.dispose();
      }
    });

    it('referring (K=1): the best box and its mask', async () => {
      const { result } = await run('grd', true);
      try {
        expectDetections(await grounding(result, image, { numClasses: 1 }), 'grd');
      } finally {
        result.dispose();
      }
    });

    it('semantic (K=4): the class of every original pixel', async () => {
      const { result, K } = await run('sem', true);
      try {
        const map = await semanticMap(engine, result.logits, result.maskLogits!, image, K);
        const want = golden.entry('sem.classes').bytes;
        const near = new Set(golden.values('sem.near'));
        let wrong = 0;
        for (let i = 0; i < want.length; i++) if (!near.has(i) && map.classes[i] !== want[i]) wrong += 1;
        expect(new Set(want).size, 'the reference map uses several classes').toBeGreaterThan(1);
        expect(wrong).toBe(0);
      } finally {
        result.dispose();
      }
    });

    it('f16 weights stay within 1e-2 and keep the top-10', async () => {
      const half = GroundingDino.load(checkpoint(engine, 'f16'), config, L_HIDDEN);
      try {
        const states = golden.upload(engine, 'det.text_query');
        const text = half.classEmbeddings(states);
        states.dispose();
        const result = await half.detect(image, text, { masks: false });
        text.dispose();
        try {
          expectClose(await result.logits.toArray(), golden.values('det.logits'), { rel: TOL.f16, label: 'f16 logits' });
          expectClose(result.boxes.data, golden.values('det.boxes'), { rel: TOL.f16, label: 'f16 boxes' });
        } finally {
          result.dispose();
        }
      } finally {
        half.dispose();
      }
    });

    it('frees what it made', async () => {
      const before = engine.memory().liveBuffers;
      const states = golden.upload(engine, 'det.text_query');
      const text = model.classEmbeddings(states);
      const result = await model.detect(image, text, { masks: true });
      result.maskLogits!([0, 1]).dispose();
      [states, text].forEach((t) => t.dispose());
      result.dispose();
      expect(engine.memory().liveBuffers).toBe(before);
    });
  });
});
