/**
 * Compiled kernels: one per (file, entry point, dtypes, includes, override constants), cached.
 *
 * Everything about a kernel's interface comes from reflecting its WGSL with wgsl_reflect: the bind
 * group layout (which bindings the entry point uses, uniform or read-only or read-write storage)
 * and the uniform struct's member offsets. Parameters are therefore packed by name; no offsets are
 * written by hand anywhere, and a missing or unknown parameter is an error that names it.
 */
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import type { TypeInfo } from 'wgsl_reflect/wgsl_reflect.module.js';
import type { DType } from './dtype.js';
import { GpuDevice, GpuError } from './device.js';
import { describeLine, displayName, specialise, type SourceLine } from './kernel-source.js';

export interface KernelSpec {
  /** File under kernels/, e.g. 'rows_softmax.wgsl'. */
  file: string;
  entry: string;
  /** dtype of each templated tensor binding (`array<name_t>`). */
  dtypes?: Record<string, DType>;
  /** Values for `{key}` placeholders in #include paths. */
  includes?: Record<string, string>;
  /** Pipeline-overridable constants (`override NAME: u32 = ...;`). */
  overrides?: Record<string, number | boolean>;
}

export type ParamValue = number | boolean | ArrayLike<number>;
export type Params = Record<string, ParamValue>;

type ScalarKind = 'f32' | 'u32' | 'i32';

interface UniformField {
  name: string;
  offset: number;
  kind: ScalarKind;
  /** Scalars per element (1 for scalars, N for vecN), elements, and byte stride between elements. */
  width: number;
  count: number;
  stride: number;
}

export interface KernelBinding {
  name: string;
  binding: number;
  access: 'uniform' | 'read' | 'read_write';
}

let nextKernelId = 1;

export class CompiledKernel {
  /** A small unique number (bind-group cache keys). */
  readonly id = nextKernelId++;

  constructor(
    readonly label: string,
    readonly pipeline: GPUComputePipeline,
    readonly layout: GPUBindGroupLayout,
    readonly bindings: KernelBinding[],
    readonly uniformBinding: number | null,
    readonly uniformSize: number,
    private readonly fields: UniformField[],
  ) {}

  /** Writes `params` into `view` at `base` following the reflected struct layout. */
  packParams(params: Params, view: DataView, base: number): void {
    for (const f of this.fields) {
      const value = params[f.name];
      if (value === undefined) throw new Error(`${this.label}: missing parameter '${f.name}'`);
      this.packField(f, value, view, base);
    }
    // Every field was found, so any extra key is unknown (counted here; named only when thrown).
    if (Object.keys(params).length !== this.fields.length) this.throwUnknown(params);
  }

  /** Overwrites some parameters of an already packed slot (a replayed dispatch's changing fields). */
  repackParams(params: Params, view: DataView, base: number): void {
    let found = 0;
    for (const f of this.fields) {
      const value = params[f.name];
      if (value === undefined) continue;
      this.packField(f, value, view, base);
      found += 1;
    }
    if (Object.keys(params).length !== found) this.throwUnknown(params);
  }

  private packField(f: UniformField, value: ParamValue, view: DataView, base: number): void {
    const values = typeof value === 'object' ? Array.from(value) : [Number(value)];
    const capacity = f.width * f.count;
    if (values.length > capacity || (typeof value !== 'object' && capacity !== 1)) {
      throw new Error(`${this.label}: parameter '${f.name}' takes ${capacity} value(s), got ${values.length}`);
    }
    for (let i = 0; i < capacity; i++) {
      const v = values[i] ?? 0;
      const at = base + f.offset + Math.floor(i / f.width) * f.stride + (i % f.width) * 4;
      if (f.kind === 'f32') view.setFloat32(at, v, true);
      else if (f.kind === 'u32') {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${this.label}: parameter '${f.name}' must be a u32, got ${v}`);
        view.setUint32(at, v, true);
      } else {
        if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new Error(`${this.label}: parameter '${f.name}' must be an i32, got ${v}`);
        view.setInt32(at, v, true);
      }
    }
  }

  private throwUnknown(params: Params): never {
    const unknown = Object.keys(params).filter((k) => !this.fields.some((f) => f.name === k));
    throw new Error(`${this.label}: unknown parameter(s) ${unknown.join(', ')}`);
  }
}

export class KernelCache {
  private readonly kernels = new Map<string, CompiledKernel>();
  private readonly pendingChecks = new Set<Promise<void>>();
  /** Kernels whose compilation failed: later uses throw the compiler's message at once. */
  private readonly failures = new Map<string, string>();

  constructor(private readonly gpu: GpuDevice) {}

  get size(): number {
    return this.kernels.size;
  }

  get(spec: KernelSpec): CompiledKernel {
    const key = JSON.stringify([spec.file, spec.entry, spec.dtypes ?? {}, spec.includes ?? {}, spec.overrides ?? {}]);
    const failure = this.failures.get(key);
    if (failure) throw new GpuError(failure);
    let kernel = this.kernels.get(key);
    if (!kernel) {
      kernel = this.compile(spec, key);
      this.kernels.set(key, kernel);
    }
    return kernel;
  }

  /** Resolves once every compile started so far has been checked (errors go to GpuDevice.check). */
  async settled(): Promise<void> {
    while (this.pendingChecks.size) await Promise.all([...this.pendingChecks]);
  }

  private compile(spec: KernelSpec, key: string): CompiledKernel {
    const features = { f16: this.gpu.features.has('shader-f16'), subgroups: this.gpu.features.has('subgroups') };
    const src = specialise(spec.file, spec.dtypes ?? {}, spec.includes ?? {}, features);
    const dtypeTag = Object.entries(spec.dtypes ?? {}).map(([k, v]) => `${k}:${v}`).join(',');
    const label = `${displayName(spec.file)}#${spec.entry}${dtypeTag ? `[${dtypeTag}]` : ''}`;

    let reflect: WgslReflect;
    try {
      reflect = new WgslReflect(src.code);
    } catch (err) {
      const msg = (err as Error).message.replace(/Line: (\d+)/, (_, n: string) => describeLine(src.lines, Number(n)));
      throw new Error(`${label}: WGSL parse error: ${msg}`);
    }
    const entry = reflect.entry.compute.find((f) => f.name === spec.entry);
    if (!entry) {
      throw new Error(`${label}: no compute entry point '${spec.entry}' (has: ${reflect.entry.compute.map((f) => f.name).join(', ')})`);
    }

    for (const res of entry.resources) {
      if (src.templated.has(res.name) && !spec.dtypes?.[res.name]) {
        throw new Error(`${label}: binding '${res.name}' needs a dtype (given: ${Object.keys(spec.dtypes ?? {}).join(', ') || 'none'})`);
      }
    }
    const bindings: KernelBinding[] = [];
    const layoutEntries: GPUBindGroupLayoutEntry[] = [];
    let uniformBinding: number | null = null;
    let uniformSize = 0;
    let fields: UniformField[] = [];
    for (const res of entry.resources) {
      if (res.group !== 0) throw new Error(`${label}: binding '${res.name}' is in group ${res.group}; kernels use group 0 only`);
      if (res.resourceType === ResourceType.Uniform) {
        if (uniformBinding !== null) throw new Error(`${label}: more than one uniform binding`);
        uniformBinding = res.binding;
        uniformSize = res.size;
        fields = flattenStruct(label, res.members ?? []);
        bindings.push({ name: res.name, binding: res.binding, access: 'uniform' });
        // A dynamic offset: each dispatch's parameters are a slot of the recorder's uniform arena.
        layoutEntries.push({ binding: res.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
      } else if (res.resourceType === ResourceType.Storage) {
        const access = res.access === 'read' ? 'read' : 'read_write';
        bindings.push({ name: res.name, binding: res.binding, access });
        layoutEntries.push({
          binding: res.binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: access === 'read' ? 'read-only-storage' : 'storage' },
        });
      } else {
        throw new Error(`${label}: binding '${res.name}' is not a buffer; kernels bind buffers only`);
      }
    }
    bindings.sort((a, b) => a.binding - b.binding);

    const device = this.gpu.device;
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: src.code, label });
    const layout = device.createBindGroupLayout({ entries: layoutEntries, label });
    const constants: Record<string, number> = {};
    for (const [k, v] of Object.entries(spec.overrides ?? {})) constants[k] = Number(v);
    const pipeline = device.createComputePipeline({
      label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry, constants },
    });
    this.watchCompile(key, label, module, src.lines);
    return new CompiledKernel(label, pipeline, layout, bindings, uniformBinding, uniformSize, fields);
  }

  /** Shader errors arrive asynchronously; translate their line numbers and hand them to the device. */
  private watchCompile(key: string, label: string, module: GPUShaderModule, lines: SourceLine[]): void {
    const check = this.gpu.device
      .popErrorScope()
      .then(async (err) => {
        if (!err) return;
        const info = await module.getCompilationInfo();
        const errors = info.messages
          .filter((m) => m.type === 'error')
          .map((m) => `  ${describeLine(lines, m.lineNum)}:${m.linePos}: ${m.message}`);
        const message = `${label} failed to compile:\n${errors.join('\n') || err.message}`;
        this.failures.set(key, message);
        this.kernels.delete(key);
        this.gpu.reportError(message);
      })
      .finally(() => this.pendingChecks.delete(check));
    this.pendingChecks.add(check);
  }
}

function flattenStruct(label: string, members: { name: string; offset: number; type: TypeInfo }[]): UniformField[] {
  return members.map((m) => {
    let type = m.type as TypeInfo & { format?: TypeInfo; count?: number; stride?: number };
    let count = 1;
    let stride = 0;
    if (type.isArray) {
      count = type.count ?? 0;
      stride = type.stride ?? 0;
      type = type.format as typeof type;
    }
    let width = 1;
    let scalar = type.name;
    const vec = /^vec([234])([fiu]?)$/.exec(type.name);
    if (vec) {
      width = Number(vec[1]);
      scalar = vec[2] ? { f: 'f32', i: 'i32', u: 'u32' }[vec[2]]! : (type.format?.name ?? '');
    }
    if (scalar !== 'f32' && scalar !== 'u32' && scalar !== 'i32') {
      throw new Error(`${label}: uniform member '${m.name}' has type ${m.type.name}; use f32, u32, i32, vectors or arrays of them`);
    }
    return { name: m.name, offset: m.offset, kind: scalar, width, count, stride: stride || width * 4 };
  });
}
