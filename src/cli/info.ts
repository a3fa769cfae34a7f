/** `visionllm info`: the WebGPU adapter, its limits and kernel profile, and a check of the core kernels. */
import { Engine } from '../engine/engine.js';
import { linear } from '../ops/matmul.js';
import { softmax } from '../ops/rows.js';

export async function info(): Promise<void> {
  const engine = await Engine.create();
  try {
    const s = engine.gpu.summary;
    const l = engine.gpu.limits;
    console.log(`adapter        ${s.description || s.device} (${s.vendor}, ${s.architecture})`);
    console.log(`kernel profile ${engine.profile}${s.isCpu ? ' (CPU adapter: barrier-free kernels)' : ''}`);
    console.log(`features       ${[...engine.gpu.features].filter((f) => ['shader-f16', 'subgroups', 'timestamp-query'].includes(f)).join(', ') || 'none of shader-f16, subgroups, timestamp-query'}`);
    console.log(`subgroup size  ${s.subgroupMinSize}-${s.subgroupMaxSize}`);
    console.log(`limits         binding ${mib(l.maxStorageBufferBindingSize)}, buffer ${mib(l.maxBufferSize)}, workgroup memory ${l.maxComputeWorkgroupStorageSize / 1024} KiB`);

    // A linear layer and a softmax against a float64 CPU reference.
    const [m, k, n] = [37, 129, 53];
    const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37));
    const w = Float32Array.from({ length: n * k }, (_, i) => Math.cos(i * 0.11) * 0.1);
    const y = softmax(linear(engine.tensor(x, [m, k]), engine.tensor(w, [n, k])));
    const got = await y.toArray();
    let worst = 0;
    for (let r = 0; r < m; r++) {
      const logits = Array.from({ length: n }, (_, j) => {
        let acc = 0;
        for (let i = 0; i < k; i++) acc += x[r * k + i]! * w[j * k + i]!;
        return acc;
      });
      const top = Math.max(...logits);
      const sum = logits.reduce((s, v) => s + Math.exp(v - top), 0);
      logits.forEach((v, j) => (worst = Math.max(worst, Math.abs(got[r * n + j]! - Math.exp(v - top) / sum))));
    }
    const ok = worst < 1e-5;
    console.log(`self-check     softmax(x·Wᵀ) ${m}x${k}x${n}: max error ${worst.toExponential(2)} ${ok ? 'OK' : 'FAILED'}`);
    if (!ok) process.exitCode = 1;
  } finally {
    engine.dispose();
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}
