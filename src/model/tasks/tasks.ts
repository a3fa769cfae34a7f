/**
 * One call per task (VisionLLM.detect, segment, ground, pose, generate, edit): each asks the
 * official evaluation's question for its task (templates.ts), hands the decoder the official
 * answer's routing blocks by teacher forcing (as the evaluation does, so every class asked for is
 * one block; `answer: 'generate'` lets the model write the answer instead), and returns the
 * decoder's results as plain data (results.ts). The GPU tensors of the chat are freed before it
 * returns.
 */
import type { DecoderOutput } from '../../decoders/decoder.js';
import { gdino, type GdinoTask } from '../../decoders/gdino/index.js';
import { unipose } from '../../decoders/unipose/index.js';
import { sd, ip2p, type DiffusionOptions } from '../../decoders/diffusion/index.js';
import type { RgbImage } from '../../image/gpu-image.js';
import type { Region } from '../regions.js';
import type { ChatResult, ImageInput, VisionLLM } from '../vision-llm.js';
import { Picture, type DetectResult, type Detection, type SemanticMap, type GroundResult, type ImageResult, type PoseResult, type SegmentResult } from './results.js';
import { regionNames, regionsConversation, detectionConversation, editingConversation, generationConversation, groundingConversation, poseConversation, semanticConversation, type Conversation } from './templates.js';
import { ADE20K_CLASSES, COCO_CLASSES, COCO_KEYPOINTS, skeletonOf } from './vocabularies.js';

/** Options every helper takes. */
export interface TaskOptions {
  /** 'template' (default): the official answer is given; 'generate': the model writes it (greedy). */
  answer?: 'template' | 'generate';
  signal?: AbortSignal;
}

export interface DetectOptions extends TaskOptions {
  /** The classes to look for (default: the checkpoint's class_names, else COCO's 80). */
  classes?: readonly string[];
  /** Most detections kept, best first (default 100, as the COCO evaluation). */
  topK?: number;
  /** Lowest score kept (default 0.3). */
  threshold?: number;
}

export interface SegmentOptions extends DetectOptions {
  /** instance (default): COCO-style instances with masks; semantic: a class per pixel (default classes: the checkpoint's class_names, else ADE20K's 150). */
  mode?: 'instance' | 'semantic';
  /** Interactive segmentation: the objects these regions mark (docs/regions.md); classes and mode do not apply. */
  regions?: Region[];
}

export interface PoseOptions extends TaskOptions {
  /** The keypoints to find (default COCO's 17, in its order). */
  keypoints?: readonly string[];
  /** The object classes whose instances get keypoints (default ['person']). */
  classes?: readonly string[];
  topK?: number;
  threshold?: number;
}

export type GenerateOptions = TaskOptions & Omit<DiffusionOptions, 'imageGuidance' | 'latents' | 'noise'>;
export type EditOptions = TaskOptions & Omit<DiffusionOptions, 'width' | 'height' | 'latents' | 'noise'>;

/** The score a detection needs by default (options.threshold). */
export const DEFAULT_THRESHOLD = 0.3;

/** The checkpoint's own classes (config class_names) where it names them, else the dataset's. */
function defaultClasses(model: VisionLLM, dataset: readonly string[]): readonly string[] {
  return (model.config.kind === 'visionllmv2' && model.config.classNames) || dataset;
}

export async function detect(model: VisionLLM, image: ImageInput, options: DetectOptions = {}): Promise<DetectResult> {
  const o = checkOptions('detect', options, ['classes', 'topK', 'threshold']);
  const classes = classList('detect', o.classes, defaultClasses(model, COCO_CLASSES));
  const limits = { topK: checkTopK('detect', o.topK), threshold: checkThreshold('detect', o.threshold) };
  const found = await runGdino(model, 'detect', image, detectionConversation(classes), classes, { task: 'detection', topK: limits.topK }, o);
  return { task: 'detect', ...found.base, classes: found.classes, detections: above(found.detections, limits.threshold) };
}

export async function segment(model: VisionLLM, image: ImageInput, options: SegmentOptions = {}): Promise<SegmentResult> {
  const o = checkOptions('segment', options, ['classes', 'topK', 'threshold', 'mode', 'regions']);
  if (o.regions !== undefined) {
    if (o.classes !== undefined || o.mode !== undefined) throw new TypeError('segment: regions mark the objects themselves; classes and mode do not apply with them');
    if (!Array.isArray(o.regions) || !o.regions.length) throw new TypeError('segment: options.regions must be a non-empty array of { box } | { mask } | { points }');
    const names = regionNames(o.regions.length);
    // The interactive evaluation keeps 300 instances, whatever their score (eval_visual_prompt.py).
    const limits = { topK: o.topK === undefined ? 300 : checkTopK('segment', o.topK), threshold: o.threshold === undefined ? 0 : checkThreshold('segment', o.threshold) };
    const found = await runGdino(model, 'segment', image, regionsConversation(names.length), names, { task: 'segmentation', topK: limits.topK }, o, o.regions);
    return { task: 'segment', mode: 'regions', ...found.base, classes: found.classes, detections: above(found.detections, limits.threshold) };
  }
  const mode = o.mode ?? 'instance';
  if (mode !== 'instance' && mode !== 'semantic') throw new TypeError(`segment: options.mode must be 'instance' or 'semantic', got ${JSON.stringify(mode)}`);
  if (mode === 'semantic') {
    if (o.topK !== undefined || o.threshold !== undefined) throw new TypeError('segment: topK and threshold apply to instances, not to semantic maps');
    const classes = classList('segment', o.classes, defaultClasses(model, ADE20K_CLASSES));
    const found = await runGdino(model, 'segment', image, semanticConversation(classes), classes, { task: 'semantic' }, o);
    return { task: 'segment', mode, ...found.base, classes: found.classes, detections: [], semantic: found.semantic };
  }
  const classes = classList('segment', o.classes, defaultClasses(model, COCO_CLASSES));
  const limits = { topK: checkTopK('segment', o.topK), threshold: checkThreshold('segment', o.threshold) };
  const found = await runGdino(model, 'segment', image, detectionConversation(classes), classes, { task: 'segmentation', topK: limits.topK }, o);
  return { task: 'segment', mode, ...found.base, classes: found.classes, detections: above(found.detections, limits.threshold) };
}

export async function ground(model: VisionLLM, image: ImageInput, phrase: string, options: TaskOptions = {}): Promise<GroundResult> {
  const o = checkOptions('ground', options, []);
  if (typeof phrase !== 'string' || !phrase.trim()) throw new TypeError(`ground: the phrase must be a non-empty string, got ${JSON.stringify(phrase)}`);
  const expression = phrase.trim();
  checkName('ground', 'the phrase', expression);
  const found = await runGdino(model, 'ground', image, groundingConversation(expression), [expression], { task: 'grounding' }, o);
  // Grounding names no class in its answer ("Yes, it is [GRD]."): the phrase labels the box.
  return { task: 'ground', ...found.base, phrase: expression, detections: found.detections.map((d) => ({ ...d, label: expression })) };
}

export async function pose(model: VisionLLM, image: ImageInput, options: PoseOptions = {}): Promise<PoseResult> {
  const o = checkOptions('pose', options, ['keypoints', 'classes', 'topK', 'threshold']);
  const classes = classList('pose', o.classes, ['person']);
  const keypoints = classList('pose', o.keypoints, COCO_KEYPOINTS, 'keypoints');
  const limits = { topK: checkTopK('pose', o.topK), threshold: checkThreshold('pose', o.threshold) };
  model.requireDecoder(unipose.name, 'pose');
  const rgb = await model.readImage(image);
  const { result, base } = await runChat(model, rgb, poseConversation(classes, keypoints), o, { unipose: { topK: limits.topK } });
  try {
    const out = only('pose', result, result.outputsOf(unipose));
    // Teacher-forced, object k is the k-th class asked for; generated, the block's phrase.
    const [names, keypointNames] = o.answer === 'generate' ? [out.objects, out.keypointNames] : [classes, keypoints];
    const instances = out.instances
      .filter((d) => d.score >= limits.threshold)
      .map((d) => ({ ...d, label: names[d.classIndex] ?? d.label, box: clipBox(d.box, rgb), keypoints: d.keypoints.map((k, j) => ({ ...k, name: keypointNames[j] ?? k.name })) }));
    return { task: 'pose', ...base, classes: names, keypointNames, instances, skeleton: skeletonOf(keypointNames) };
  } finally {
    result.dispose();
  }
}

export async function generate(model: VisionLLM, prompt: string, options: GenerateOptions = {}): Promise<ImageResult> {
  const { answer, signal, ...diffusion } = options ?? {};
  checkOptions('generate', { answer, signal }, []);
  if (typeof prompt !== 'string' || !prompt.trim()) throw new TypeError(`generate: the prompt must be a non-empty string, got ${JSON.stringify(prompt)}`);
  return runDiffusion(model, 'generate', sd, undefined, generationConversation(prompt), { answer, signal }, diffusion);
}

export async function edit(model: VisionLLM, image: ImageInput, instruction: string, options: EditOptions = {}): Promise<ImageResult> {
  const { answer, signal, ...diffusion } = options ?? {};
  checkOptions('edit', { answer, signal }, []);
  if (typeof instruction !== 'string' || !instruction.trim()) throw new TypeError(`edit: the instruction must be a non-empty string, got ${JSON.stringify(instruction)}`);
  return runDiffusion(model, 'edit', ip2p, image, editingConversation(instruction), { answer, signal }, diffusion);
}

/** A Grounding DINO task: the chat, then its one gdino output's host results with the classes' names. */
async function runGdino(
  model: VisionLLM,
  op: string,
  image: ImageInput,
  conversation: Conversation,
  names: string[],
  options: { task: GdinoTask; topK?: number },
  o: TaskOptions,
  regions?: Region[],
): Promise<{ base: Base; detections: Detection[]; semantic?: SemanticMap; classes: string[] }> {
  model.requireDecoder(gdino.name, op);
  const rgb = await model.readImage(image);
  const { result, base } = await runChat(model, rgb, conversation, o, { gdino: options }, regions);
  try {
    const out = only(op, result, result.outputsOf(gdino));
    // Teacher-forced, class k is the k-th name asked for; generated, the block's phrase.
    const classes = o.answer === 'generate' ? out.classes : names;
    const detections = out.detections.map((d) => ({ ...d, label: classes[d.classIndex] ?? d.label, box: clipBox(d.box, rgb) }));
    return { base, detections, semantic: out.semantic, classes };
  } finally {
    result.dispose();
  }
}

async function runDiffusion(
  model: VisionLLM,
  op: 'generate' | 'edit',
  decoder: typeof sd,
  image: ImageInput | undefined,
  conversation: Conversation,
  o: TaskOptions,
  diffusion: DiffusionOptions,
): Promise<ImageResult> {
  model.requireDecoder(decoder.name, op);
  const rgb = image === undefined ? undefined : await model.readImage(image);
  const { result, base } = await runChat(model, rgb, conversation, o, { [decoder.name]: diffusion });
  try {
    const made = only(op, result, result.outputsOf(decoder)).images[0];
    if (!made) throw new Error(`${op}: the decoder made no image`);
    return { task: op, ...base, width: made.width, height: made.height, image: Picture.from(made) };
  } finally {
    result.dispose();
  }
}

type Base = Omit<DetectResult, 'task' | 'classes' | 'detections'>;

/**
 * Boxes clipped to the image, as detectron2 and mmdet's demos draw them: the official evaluation
 * scores unclipped boxes (the decoders' outputs keep them), a user of the helpers wants pixels.
 */
function clipBox([x0, y0, x1, y1]: readonly number[], { width, height }: RgbImage): [number, number, number, number] {
  const clip = (v: number, max: number) => Math.min(Math.max(v!, 0), max);
  return [clip(x0!, width), clip(y0!, height), clip(x1!, width), clip(y1!, height)];
}

function above<T extends { score: number }>(found: readonly T[], threshold: number): T[] {
  return found.filter((d) => d.score >= threshold);
}

/** What a result found, best first: a pose result's instances, any other's detections. */
export function scoredItems(result: { detections: readonly Detection[] } | PoseResult): readonly (Detection | PoseResult['instances'][number])[] {
  return 'instances' in result ? result.instances : result.detections;
}

/** A result asked with threshold 0 as if asked with `threshold`: for callers that also want the best score below it. */
export function keptAbove<R extends { detections: readonly Detection[] } | PoseResult>(result: R, threshold = DEFAULT_THRESHOLD): R {
  return 'instances' in result ? { ...result, instances: above(result.instances, threshold) } : { ...result, detections: above(result.detections, threshold) };
}

async function runChat(
  model: VisionLLM,
  image: RgbImage | undefined,
  { question, answer }: Conversation,
  o: TaskOptions,
  decoders: Record<string, unknown>,
  regions?: Region[],
): Promise<{ result: ChatResult; base: Base }> {
  const generated = o.answer === 'generate';
  const result = await model.chat({
    prompt: question,
    ...(image ? { image } : {}),
    ...(regions ? { regions } : {}),
    ...(generated ? {} : { answer }),
    ...(o.signal ? { signal: o.signal } : {}),
    decoders,
  });
  return { result, base: { prompt: question, text: result.text, width: image?.width ?? 0, height: image?.height ?? 0, timings: result.timings } };
}

/** The one output a task's answer gives its decoder; an answer that routed nothing (generated) is an error saying so. */
function only<O extends DecoderOutput>(op: string, result: ChatResult, outputs: O[]): O {
  if (outputs.length === 1) return outputs[0]!;
  throw new Error(`${op}: the answer routed no block to the decoder (the model answered ${JSON.stringify(result.text)})`);
}

function checkOptions<T extends TaskOptions>(op: string, raw: T, keys: readonly string[]): T {
  if (raw === undefined || raw === null) return {} as T;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError(`${op}: options must be an object, got ${JSON.stringify(raw)}`);
  const known = [...keys, 'answer', 'signal'];
  const unknown = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknown.length) throw new TypeError(`${op}: unknown option(s) ${unknown.join(', ')} (known: ${known.join(', ')})`);
  if (raw.answer !== undefined && raw.answer !== 'template' && raw.answer !== 'generate') throw new TypeError(`${op}: options.answer must be 'template' or 'generate', got ${JSON.stringify(raw.answer)}`);
  if (raw.signal !== undefined && !(raw.signal instanceof AbortSignal)) throw new TypeError(`${op}: options.signal must be an AbortSignal`);
  return raw;
}

function classList(op: string, given: readonly string[] | undefined, fallback: readonly string[], option = 'classes'): string[] {
  if (given === undefined) return [...fallback];
  if (!Array.isArray(given) || !given.length) throw new TypeError(`${op}: options.${option} must be a non-empty array of names, got ${JSON.stringify(given)}`);
  return given.map((name, i) => {
    if (typeof name !== 'string' || !name.trim()) throw new TypeError(`${op}: options.${option}[${i}] must be a non-empty string, got ${JSON.stringify(name)}`);
    checkName(op, `options.${option}[${i}]`, name);
    return name.trim();
  });
}

/** A name with a comma or a routing token would split or add a block of the official answer. */
function checkName(op: string, what: string, name: string): void {
  if (/[,\[\]<>]/.test(name)) throw new TypeError(`${op}: ${what} ${JSON.stringify(name)} may not hold ',', '[', ']', '<' or '>' (they delimit the answer's blocks)`);
}

function checkTopK(op: string, topK: number | undefined): number {
  if (topK === undefined) return 100;
  if (!(Number.isInteger(topK) && topK >= 1)) throw new RangeError(`${op}: options.topK must be a positive integer, got ${JSON.stringify(topK)}`);
  return topK;
}

function checkThreshold(op: string, value: number | undefined): number {
  if (value === undefined) return DEFAULT_THRESHOLD;
  if (!(typeof value === 'number' && value >= 0 && value <= 1)) throw new RangeError(`${op}: options.threshold must be a number in [0, 1], got ${JSON.stringify(value)}`);
  return value;
}
