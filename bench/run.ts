/**
 * npm run bench [-- --filter REGEX] [--out FILE]
 * Runs every benchmark suite on one engine and writes bench/results.json.
 */
import { Engine } from '../src/engine/engine.js';
import { Harness } from './harness.js';
import { benchCheckpoint } from './checkpoint.js';
import { benchAttention } from './attention.js';
import { benchCeilings, benchGemv, benchMatmul, benchRows } from './kernels.js';
import { benchConv, benchNorm2d, benchResize } from './conv.js';
import { benchMsDeformAttn } from './ms-deform-attn.js';
import { benchGdino } from './gdino.js';
import { benchUnipose } from './unipose.js';
import { benchDiffusion } from './diffusion.js';
import { benchMllm } from './mllm.js';
import { benchSuperlink } from './superlink.js';
import { benchTokenizer } from './tokenizer.js';
import { benchServing } from './serving.js';

const SUITES: [string, (h: Harness) => Promise<void>][] = [
  ['kernels: matmul', benchMatmul],
  ['kernels: gemv', benchGemv],
  ['kernels: row ops', benchRows],
  ['attention', benchAttention],
  ['conv', benchConv],
  ['group norm', benchNorm2d],
  ['image resize', benchResize],
  ['multi-scale deformable attention', benchMsDeformAttn],
  ['tokenizer (CPU)', benchTokenizer],
  ['checkpoint loading', benchCheckpoint],
  ['MLLM end to end', benchMllm],
  ['super link', benchSuperlink],
  ['Grounding DINO', benchGdino],
  ['UniPose', benchUnipose],
  ['Stable Diffusion U-Net and VAE', benchDiffusion],
  ['serving over HTTP', benchServing],
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const filter = arg('--filter');
  const engine = await Engine.create();
  const s = engine.gpu.summary;
  console.log(`adapter: ${s.description} (${s.vendor}, ${s.architecture}); kernel profile ${engine.profile}; subgroups ${s.subgroupMinSize}-${s.subgroupMaxSize}`);
  const h = new Harness(engine, filter ? new RegExp(filter) : undefined);
  console.log('\n== substrate ceilings');
  await benchCeilings(h); // always runs: every ratio needs them
  for (const [title, suite] of SUITES) {
    console.log(`\n== ${title}`);
    await suite(h);
  }
  const out = arg('--out');
  h.write(out);
  engine.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
