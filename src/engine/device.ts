/**
 * WebGPU device acquisition through Dawn's Node bindings.
 *
 * We ask for the adapter's maximum limits (WebGPU's defaults are far lower: 128 MiB buffers,
 * 16 KiB workgroup memory) and the features our kernels use when present. GPU errors never pass
 * silently: uncaptured errors and device loss are recorded here and thrown by the next operation
 * that waits on the GPU (see `GpuDevice.check`).
 */
import os from 'node:os';
import { createGpu } from './webgpu.js';

export interface DeviceOptions {
  /** Dawn backend: 'vulkan', 'metal', 'd3d12', 'opengl', ... Default: env VISIONLLM_BACKEND, else Dawn's choice. */
  backend?: string;
  /** Adapter name as Dawn lists it (e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)'). Default: env VISIONLLM_ADAPTER. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /** Kernel variants: 'cpu' (subgroup-broadcast, barrier-free) or 'gpu' (shared-memory tiles). Default: by adapter, or env VISIONLLM_PROFILE. */
  profile?: KernelProfile;
  /** Extra Dawn toggles, e.g. ['disable_robustness'] (opt-in: robustness stays on by default). */
  enableToggles?: string[];
  /** Poll with setTimeout while waiting for the GPU (see GpuDevice.wait). Default: on CPU adapters. */
  gentleWait?: boolean;
}

/** Which family of kernel variants suits the adapter: software rasterisers hate barriers, GPUs love shared memory. */
export type KernelProfile = 'cpu' | 'gpu';

/** Features we use when the adapter has them. f16 storage and subgroup ops both change which kernels we pick. */
const WANTED_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

export class GpuError extends Error {
  override name = 'GpuError';
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isCpu: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /**
   * lavapipe's worker threads (LP_NUM_THREADS as the driver read it; 0: it runs workgroups on its
   * queue thread, one after another). lavapipe gives each of a dispatch's first that-many
   * workgroups a thread of its own, so they run at the same time. 0 on other adapters.
   */
  workerThreads: number;
}

export class GpuDevice {
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  private readonly errors: string[] = [];
  private lostMessage: string | null = null;
  private destroyed = false;

  private constructor(
    readonly gpu: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    readonly summary: AdapterSummary,
    readonly profile: KernelProfile,
    /** Whether wait() polls gently; settable, e.g. to measure the difference. */
    public gentleWait: boolean,
  ) {
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.limits = device.limits;
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.errors.push(`${ev.error.constructor.name}: ${ev.error.message}`);
    };
    void device.lost.then((info) => {
      if (!this.destroyed) this.lostMessage = `GPU device lost (${info.reason}): ${info.message}`;
    });
  }

  static async acquire(options: DeviceOptions = {}): Promise<GpuDevice> {
    // Dawn's Vulkan loader (and Mesa) complain without it; headless machines and CI often lack it.
    process.env.XDG_RUNTIME_DIR ??= os.tmpdir();
    // lavapipe (Mesa's CPU Vulkan driver) runs workgroups on a pool of one thread per core, and
    // our own thread shares those cores: a dispatch of a few workgroups then waits for a worker the
    // OS has descheduled. With twice the threads the pool rebalances: LLM decoding gets faster and
    // GEMV bandwidth stays (docs/performance.md). Read when the driver loads, so before the first
    // adapter; a value the user set wins.
    process.env.LP_NUM_THREADS ??= String(2 * os.availableParallelism());
    const lavapipeThreads = Number(process.env.LP_NUM_THREADS);

    const backend = options.backend ?? process.env.VISIONLLM_BACKEND;
    const adapterName = options.adapter ?? process.env.VISIONLLM_ADAPTER;
    const dawnOptions: string[] = [];
    if (backend) dawnOptions.push(`backend=${backend}`);
    if (adapterName) dawnOptions.push(`adapter=${adapterName}`);
    if (options.enableToggles?.length) dawnOptions.push(`enable-dawn-features=${options.enableToggles.join(',')}`);

    let gpu: GPU;
    let adapter: GPUAdapter | null;
    try {
      gpu = createGpu(dawnOptions);
      adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : {});
    } catch (err) {
      throw new GpuError(`${noAdapterHelp(backend, adapterName)}\nDawn said: ${(err as Error).message}`);
    }
    if (!adapter) throw new GpuError(noAdapterHelp(backend, adapterName));

    const requiredFeatures = WANTED_FEATURES.filter((f) => adapter!.features.has(f));
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits: maximumLimits(adapter) });
    const summary = summarise(adapter, lavapipeThreads);
    const envProfile = process.env.VISIONLLM_PROFILE;
    if (envProfile && envProfile !== 'cpu' && envProfile !== 'gpu') {
      throw new GpuError(`VISIONLLM_PROFILE must be 'cpu' or 'gpu', got '${envProfile}'`);
    }
    const profile = options.profile ?? (envProfile as KernelProfile | undefined) ?? (summary.isCpu ? 'cpu' : 'gpu');
    return new GpuDevice(gpu, adapter, device, summary, profile, options.gentleWait ?? summary.isCpu);
  }

  get queue(): GPUQueue {
    return this.device.queue;
  }

  get isCpu(): boolean {
    return this.summary.isCpu;
  }

  /** Throws the first GPU error or device loss seen since the last check. */
  check(context: string): void {
    if (this.lostMessage) throw new GpuError(`${context}: ${this.lostMessage}`);
    if (this.errors.length) {
      const all = this.errors.splice(0);
      const more = all.length > 1 ? `\n(and ${all.length - 1} more GPU error(s))` : '';
      throw new GpuError(`${context}: ${all[0]}${more}`);
    }
  }

  /**
   * Records an error found asynchronously (a shader compile error) so the next check throws it.
   * It goes first: later "invalid due to a previous error" messages are its consequences.
   */
  reportError(message: string): void {
    this.errors.unshift(message);
  }

  /**
   * Awaits a GPU promise. Dawn resolves its promises by re-arming setImmediate in a tight loop; on a
   * CPU adapter that loop steals a core from lavapipe's workers (which ARE the GPU), so while we wait
   * we make it poll with setTimeout instead (the difference: docs/performance.md).
   */
  async wait<T>(promise: Promise<T>): Promise<T> {
    if (!this.gentleWait) return promise;
    const saved = globalThis.setImmediate;
    const gentle = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => setTimeout(fn, 0, ...args)) as unknown as typeof setImmediate;
    globalThis.setImmediate = gentle;
    try {
      return await promise;
    } finally {
      if (globalThis.setImmediate === gentle) globalThis.setImmediate = saved;
    }
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.destroy();
  }
}

function maximumLimits(adapter: GPUAdapter): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const key in adapter.limits) {
    // Dawn clamps these two to 16 anyway, and warns on stderr when asked for more.
    if (key.startsWith('maxDynamic')) continue;
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') limits[key] = value;
  }
  return limits;
}

function summarise(adapter: GPUAdapter, lavapipeThreads: number): AdapterSummary {
  const info = adapter.info;
  const isCpu =
    info.architecture === 'software' ||
    /llvmpipe|lavapipe|swiftshader|software/i.test(`${info.device} ${info.description}`) ||
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  const sg = info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number };
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isCpu,
    subgroupMinSize: sg.subgroupMinSize ?? 0,
    subgroupMaxSize: sg.subgroupMaxSize ?? 0,
    workerThreads: /^llvmpipe/.test(info.description) && Number.isInteger(lavapipeThreads) && lavapipeThreads > 0 ? lavapipeThreads : 0,
  };
}

function noAdapterHelp(backend?: string, adapterName?: string): string {
  const asked = [backend && `backend '${backend}'`, adapterName && `adapter '${adapterName}'`].filter(Boolean).join(', ');
  return (
    `No WebGPU adapter found${asked ? ` for ${asked}` : ''}. ` +
    'Dawn needs a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver. Without a GPU on Linux, install ' +
    "Mesa's CPU Vulkan driver (lavapipe, Mesa >= 23): on Debian/Ubuntu run `bash scripts/setup.sh` as root, " +
    'which installs mesa-vulkan-drivers and libvulkan1 (from bookworm-backports on Debian 12). ' +
    'Set VISIONLLM_BACKEND / VISIONLLM_ADAPTER to choose another backend or adapter.'
  );
}
