/**
 * Loads WGSL kernel families from kernels/*.wgsl and specialises them for one call's dtypes.
 *
 * WGSL has no generics, so a kernel names the element type of each tensor binding `<name>_t`
 * (`var<storage, read> x: array<x_t>;`) and reads and writes through `x_ld(i) -> f32`,
 * `x_ld2(i) -> vec2<f32>` (i even), `x_ld4(i) -> vec4<f32>` (elements 4i..4i+3, as a vec4 binding
 * below reads them) and `y_st(i, v: f32)`. This module prepends, per binding, the
 * alias and accessors for the dtype the caller binds: f32 directly; f16 read-only as packed u32
 * pairs (half the loads, and no shader-f16 needed to read weights); f16 read-write as array<f16>;
 * i32/u32 converted. Arithmetic therefore always happens in f32.
 *
 * A binding declared `array<name_t4>` holds four elements per array entry (vec4<f32> for f32, two
 * packed u32 words for f16, read-write too: one load brings four values, which on lavapipe, where
 * every storage load is a bounds-checked per-lane access, pays off for streaming kernels) and
 * also gets `name_ld4(i) -> vec4<f32>` / `name_st4(i, v)` for entry i = elements 4i..4i+3; the
 * element accessors keep element indices (`ld`, `ld2`, and `st2` for an even i: stores come in pairs).
 *
 * `#include "lib/file.wgsl"` pastes a shared snippet; `{key}` in the path is replaced from the
 * call's `includes` map, which is how a kernel picks e.g. the subgroup or shared-memory reduction.
 * A source map remembers where each line came from, so compile errors name file and line.
 */
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../paths.js';
import type { DType } from './dtype.js';

export interface SourceLine {
  file: string;
  line: number;
}

export interface SpecialisedSource {
  code: string;
  /** For each line of `code` (0-based), the kernel file and 1-based line it came from. */
  lines: SourceLine[];
  /** Tensor bindings whose element type the caller chose (`name` -> dtype). */
  templated: Map<string, TemplatedBinding>;
}

export interface TemplatedBinding {
  dtype: DType;
  access: 'read' | 'read_write';
  /** Declared `array<name_t4>`: four elements per entry. */
  vec4: boolean;
}

export interface SourceFeatures {
  f16: boolean;
  subgroups: boolean;
}

/** The project's kernels/ folder. */
export function kernelDirectory(): string {
  return path.join(projectRoot(), 'kernels');
}

const fileCache = new Map<string, string>();

/** Reads a kernel file: a path relative to kernels/, or an absolute path (kernels kept elsewhere, test fixtures). */
function readKernelFile(relative: string): string {
  let text = fileCache.get(relative);
  if (text === undefined) {
    const full = path.isAbsolute(relative) ? relative : path.join(kernelDirectory(), relative);
    if (!fs.existsSync(full)) throw new Error(`kernel file not found: ${displayName(relative)}`);
    text = fs.readFileSync(full, 'utf8');
    fileCache.set(relative, text);
  }
  return text;
}

const INCLUDE = /^\s*#include\s+"([^"]+)"\s*$/;
const DIRECTIVE = /^\s*(enable|requires|diagnostic)\b/;
const TEMPLATED_BINDING = /var<storage,\s*(read|read_write)>\s+(\w+)\s*:\s*array<\s*(\w+?)_t(4)?\s*>/g;

/** Expands includes recursively, keeping track of each line's origin. */
function expand(relative: string, includes: Record<string, string>, out: { text: string; at: SourceLine }[], depth = 0): void {
  if (depth > 8) throw new Error(`${displayName(relative)}: #include nested too deeply`);
  readKernelFile(relative)
    .split('\n')
    .forEach((text, i) => {
      const m = INCLUDE.exec(text);
      if (!m) return void out.push({ text, at: { file: relative, line: i + 1 } });
      const target = m[1]!.replace(/\{(\w+)\}/g, (_, key: string) => {
        const value = includes[key];
        if (value === undefined) throw new Error(`${displayName(relative)}:${i + 1}: include placeholder {${key}} has no value`);
        return value;
      });
      expand(target, includes, out, depth + 1);
    });
}

/** The specialised source for `file` with tensor bindings of the given dtypes. */
export function specialise(
  file: string,
  dtypes: Record<string, DType>,
  includes: Record<string, string>,
  features: SourceFeatures,
): SpecialisedSource {
  const body: { text: string; at: SourceLine }[] = [];
  expand(file, includes, body);

  const templated = new Map<string, TemplatedBinding>();
  for (const { text, at } of body) {
    for (const m of text.matchAll(TEMPLATED_BINDING)) {
      const [, access, name, typeName, four] = m as unknown as [string, 'read' | 'read_write', string, string, string | undefined];
      if (typeName !== name) throw new Error(`${displayName(at.file)}:${at.line}: binding '${name}' must use element type '${name}_t' (or '${name}_t4')`);
      // Bindings of other entry points in the same file need no dtype; the pipeline checks that
      // every binding its entry point uses was given one.
      const dtype = dtypes[name] ?? 'f32';
      if (dtype === 'f16' && access === 'read_write' && !features.f16) {
        throw new Error(`${displayName(file)}: writing f16 tensor '${name}' needs the shader-f16 feature, which this adapter lacks`);
      }
      templated.set(name, { dtype, access, vec4: four === '4' });
    }
  }

  const generated = 'generated';
  const out: { text: string; at: SourceLine }[] = [];
  const push = (text: string, at: SourceLine = { file: generated, line: 0 }) => out.push({ text, at });
  if (features.f16) push('enable f16;');
  if (features.subgroups) push('enable subgroups;');
  const firstCode = body.findIndex((l) => l.text.trim() !== '' && !l.text.trim().startsWith('//') && !DIRECTIVE.test(l.text));
  const split = firstCode < 0 ? body.length : firstCode;
  out.push(...body.slice(0, split));
  for (const [name, b] of templated) (b.vec4 ? vec4Accessors : accessors)(name, b.dtype, b.access).forEach((t) => push(t));
  out.push(...body.slice(split));

  return { code: out.map((l) => l.text).join('\n'), lines: out.map((l) => l.at), templated };
}

function accessors(name: string, dtype: DType, access: 'read' | 'read_write'): string[] {
  const fns: string[] = [];
  const ld = (expr: string) => fns.push(`fn ${name}_ld(i: u32) -> f32 { return ${expr}; }`);
  const ld2 = (expr: string) => fns.push(`fn ${name}_ld2(i: u32) -> vec2<f32> { return ${expr}; }`);
  const st = (expr: string) => access === 'read_write' && fns.push(`fn ${name}_st(i: u32, v: f32) { ${name}[i] = ${expr}; }`);
  switch (dtype) {
    case 'f32':
      fns.unshift(`alias ${name}_t = f32;`);
      ld(`${name}[i]`);
      ld2(`vec2<f32>(${name}[i], ${name}[i + 1u])`);
      st('v');
      break;
    case 'f16':
      if (access === 'read') {
        fns.unshift(`alias ${name}_t = u32;`);
        ld(`unpack2x16float(${name}[i >> 1u])[i & 1u]`);
        ld2(`unpack2x16float(${name}[i >> 1u])`);
      } else {
        fns.unshift(`alias ${name}_t = f16;`);
        ld(`f32(${name}[i])`);
        ld2(`vec2<f32>(f32(${name}[i]), f32(${name}[i + 1u]))`);
        // WGSL leaves converting an out-of-range f32 to f16 undefined: saturate instead.
        st('f16(clamp(v, -65504.0, 65504.0))');
      }
      break;
    case 'i32':
    case 'u32':
      fns.unshift(`alias ${name}_t = ${dtype};`);
      ld(`f32(${name}[i])`);
      ld2(`vec2<f32>(f32(${name}[i]), f32(${name}[i + 1u]))`);
      st(`${dtype}(v)`);
      break;
  }
  // Elements 4i..4i+3: what x_ld4 reads from a vec4 binding, so one kernel source compiles for both.
  fns.push(`fn ${name}_ld4(i: u32) -> vec4<f32> { return vec4<f32>(${name}_ld(4u * i), ${name}_ld(4u * i + 1u), ${name}_ld(4u * i + 2u), ${name}_ld(4u * i + 3u)); }`);
  return fns;
}

/**
 * Accessors of an `array<name_t4>` binding: ld4/st4 by entry (4 elements), ld/ld2/st2 by element.
 * f16 entries are two packed u32 words, read-only or not, so a load or store moves a word (two
 * halves) at a time. Stores therefore come in pairs (st2, i even) or fours: a single-half store
 * would race whoever writes the other half of its word. The rule holds for every dtype, so a
 * kernel written against one dtype compiles for all.
 */
function vec4Accessors(name: string, dtype: DType, access: 'read' | 'read_write'): string[] {
  const rw = access === 'read_write';
  const fns: string[] = [];
  const add = (...lines: string[]) => fns.push(...lines);
  if (dtype === 'f16') {
    // Four halves in two u32 words: one 8-byte load. Stores saturate at ±65504 (WGSL leaves
    // converting an out-of-range f32 to f16 undefined).
    const sat = (x: string) => `clamp(${x}, vec2<f32>(-65504.0), vec2<f32>(65504.0))`;
    add(`alias ${name}_t4 = vec2<u32>;`);
    add(`fn ${name}_ld4(i: u32) -> vec4<f32> { let packed_ = ${name}[i]; return vec4<f32>(unpack2x16float(packed_.x), unpack2x16float(packed_.y)); }`);
    add(`fn ${name}_ld2(i: u32) -> vec2<f32> { return unpack2x16float(${name}[i >> 2u][(i >> 1u) & 1u]); }`);
    add(`fn ${name}_ld(i: u32) -> f32 { return ${name}_ld2(i & ~1u)[i & 1u]; }`);
    if (rw) {
      add(`fn ${name}_st4(i: u32, v: vec4<f32>) { ${name}[i] = vec2<u32>(pack2x16float(${sat('v.xy')}), pack2x16float(${sat('v.zw')})); }`);
      add(`fn ${name}_st2(i: u32, v: vec2<f32>) { ${name}[i >> 2u][(i >> 1u) & 1u] = pack2x16float(${sat('v')}); }`);
    }
    return fns;
  }
  const el = (i: string) => `${name}[(${i}) >> 2u][(${i}) & 3u]`;
  add(`alias ${name}_t4 = vec4<${dtype}>;`);
  add(`fn ${name}_ld4(i: u32) -> vec4<f32> { return vec4<f32>(${name}[i]); }`);
  add(`fn ${name}_ld(i: u32) -> f32 { return f32(${el('i')}); }`);
  add(`fn ${name}_ld2(i: u32) -> vec2<f32> { return vec2<f32>(${name}_ld(i), ${name}_ld(i + 1u)); }`);
  if (rw) {
    add(`fn ${name}_st4(i: u32, v: vec4<f32>) { ${name}[i] = vec4<${dtype}>(v); }`);
    add(`fn ${name}_st2(i: u32, v: vec2<f32>) { ${el('i')} = ${dtype}(v.x); ${el('i + 1u')} = ${dtype}(v.y); }`);
  }
  return fns;
}

/** Rewrites "line N" references in a compiler message to the kernel file and line. */
export function describeLine(lines: SourceLine[], lineNum: number): string {
  const at = lines[lineNum - 1];
  if (!at) return `line ${lineNum} of the specialised source`;
  return at.line === 0 ? `generated prelude line ${lineNum}` : `${displayName(at.file)}:${at.line}`;
}

/** How a kernel file is named in messages: kernels/<file>, or the path as given when absolute. */
export function displayName(file: string): string {
  return path.isAbsolute(file) ? path.relative(process.cwd(), file) || file : `kernels/${file}`;
}
