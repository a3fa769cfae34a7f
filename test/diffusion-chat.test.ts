/**
 * Generation and editing end to end through chat() on the embedded tiny checkpoint (weights/tiny,
 * whose U-Nets, VAEs and text encoders scripts/golden/tiny_diffusion.py adds) against
 * scripts/golden/tiny_diffusion.py (reference_sd_pipeline.py: diffusers 0.28.2's pipelines over the
 * tiny MLLM's teacher-forced conditions, float64), with the reference's latents and Euler noise
 * injected: 4 PNDM steps to a 32 × 32 image, and 3 Euler-ancestral steps editing an 83 × 61 photo
 * (floored to 80 × 60: odd latents). Images within 40 dB PSNR of the reference.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodePng, ip2p, sd } from '../src/index.js';
import { decodeImage } from '../src/image/decode.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('diffusion_tiny');
const meta = (key: string) => golden.metadata[key]!;
const file = (key: string) => (JSON.parse(meta(key)) as { file: string }).file;
const GEN_SIZE = JSON.parse(meta('gen_size')) as [number, number];
const image = (name: string) => path.join(TEST_DIR, 'fixtures', 'images', name);
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

/** PSNR in dB of RGB bytes against the reference's image before rounding (0..255). */
function psnr(ours: Uint8Array, reference: ArrayLike<number>): number {
  let se = 0;
  for (let i = 0; i < ours.length; i++) se += (ours[i]! - reference[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (se / ours.length));
}

describe.each(['cpu', 'gpu'] as const)('diffusion through chat() on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  it('[GEN]: the condition, then 4 PNDM steps from the reference latents to its 32 x 32 image', async () => {
    const steps: number[] = [];
    const r = await model.chat({
      image: image(file('gen_image')),
      prompt: meta('gen_question'),
      answer: meta('gen_answer'),
      decoders: { sd: { steps: Number(meta('gen_steps')), width: GEN_SIZE[1], height: GEN_SIZE[0], latents: golden.values('gen.latents') as Float32Array, onStep: (_: number, done: number) => steps.push(done) } },
    });
    try {
      const [out] = r.outputsOf(sd);
      expectClose(await out!.conditions.toArray(), golden.values('gen.condition'), { rel: TOL.f32, label: 'condition' });
      expect(out!.images).toHaveLength(1);
      const img = out!.images[0]!;
      expect([img.height, img.width]).toEqual(golden.shape('gen.image').slice(0, 2));
      expect(psnr(img.data, golden.values('gen.image_float'))).toBeGreaterThan(40);
      expect(steps).toEqual([1, 2, 3, 4, 5]); // PNDM's 4 steps are 5 U-Net calls
      const png = await encodePng(img);
      const back = await decodeImage(png);
      expect([back.width, back.height]).toEqual([img.width, img.height]);
      expect(Buffer.from(back.data).equals(Buffer.from(img.data))).toBe(true);
    } finally {
      r.dispose();
    }
  });

  it('[EDIT]: the photo floored to the VAE factor, 3 Euler-ancestral steps with the reference noise', async () => {
    const noise = golden.values('edit.noise') as Float32Array;
    const latents = golden.values('edit.latents') as Float32Array;
    const per = latents.length;
    const r = await model.chat({
      image: image(file('edit_image')),
      prompt: meta('edit_question'),
      answer: meta('edit_answer'),
      decoders: { ip2p: { steps: Number(meta('edit_steps')), latents, noise: (i: number) => noise.subarray(i * per, (i + 1) * per) } },
    });
    try {
      const [out] = r.outputsOf(ip2p);
      expectClose(await out!.conditions.toArray(), golden.values('edit.condition'), { rel: TOL.f32, label: 'condition' });
      const img = out!.images[0]!;
      expect([img.height, img.width]).toEqual(golden.shape('edit.image').slice(0, 2));
      expect(psnr(img.data, golden.values('edit.image_float'))).toBeGreaterThan(40);
    } finally {
      r.dispose();
    }
    // draw: false gives the same condition and answer, and no image.
    const bare = await model.chat({ image: image(file('edit_image')), prompt: meta('edit_question'), answer: meta('edit_answer'), decoders: { ip2p: { draw: false } } });
    try {
      const [out] = bare.outputsOf(ip2p);
      expect(out!.images).toHaveLength(0);
      expectClose(await out!.conditions.toArray(), golden.values('edit.condition'), { rel: TOL.f32, label: 'condition without drawing' });
    } finally {
      bare.dispose();
    }
  });

  it('bad options are refused by name; an abort stops between steps', async () => {
    const ask = (decoders: Record<string, unknown>) => model.chat({ prompt: meta('gen_question'), answer: meta('gen_answer'), decoders });
    await expect(ask({ sd: { steps: 0 } })).rejects.toThrow('chat: decoders.sd.steps must be a positive integer, got 0');
    await expect(ask({ sd: { imageGuidance: 2 } })).rejects.toThrow('chat: decoders.sd has unknown option(s) imageGuidance');
    await expect(ask({ sd: { width: 34 } })).rejects.toThrow("generate: width 34 must be a positive multiple of 4 (the VAE's factor)");
    await expect(ask({ sd: { draw: 'no' } })).rejects.toThrow('chat: decoders.sd.draw must be a boolean, got "no"');
    await expect(ask({ sd: { scheduler: 'lms' } })).rejects.toThrow('chat: decoders.sd.scheduler must be one of pndm, euler_ancestral, ddim');
    const controller = new AbortController();
    const aborted = model.chat({ prompt: meta('gen_question'), answer: meta('gen_answer'), signal: controller.signal, decoders: { sd: { steps: 20, onStep: (_: number, done: number) => done === 2 && controller.abort() } } });
    await expect(aborted).rejects.toThrow(/abort/i);
  });
});
