/**
 * Exits 0 and prints the adapter if Dawn finds a WebGPU adapter, 1 otherwise (used by setup.sh).
 * Pass --quiet to print nothing when one is found.
 */
import { GpuDevice } from '../src/engine/device.js';

async function main(): Promise<number> {
  const quiet = process.argv.includes('--quiet');
  try {
    const gpu = await GpuDevice.acquire();
    const s = gpu.summary;
    if (!quiet) console.log(`WebGPU adapter: ${s.description || s.device} (${s.vendor}, ${s.architecture}); kernel profile ${gpu.profile}`);
    gpu.destroy();
    return 0;
  } catch (err) {
    if (!quiet) console.error((err as Error).message);
    return 1;
  }
}

main().then((code) => process.exit(code));
