/**
 * The task helpers' prompts: the official datasets' test-mode conversations (each dataset's
 * QUESTIONS[0] and YES[0], or the first of its prompt lists where it has no test mode), filled as
 * their __getitem__ fills them. The answer's routing tokens go without their [EMB] queries: the
 * super link appends those (num_embs or num_embs_gen of them) as the datasets do. `<image>\n` is
 * the chat template's (src/model/chat-template.ts), added when there is an image.
 */

export interface Conversation {
  question: string;
  answer: string;
}

/** datasets/coco_llava.py QUESTIONS[0], YES[0]: detection, and instance segmentation through [DET]'s masks. */
export function detectionConversation(classes: readonly string[]): Conversation {
  return {
    question: `Can you analyze the image and identify the ${classes.join(', ')} present?`,
    answer: `Yes, here are the results for ${routed(classes, '[DET]')} in the image.`,
  };
}

/** datasets/ade20k_llava.py QUESTIONS[0], YES[0]: semantic segmentation; the question's class list is lower-cased, the answer's is not. */
export function semanticConversation(classes: readonly string[]): Conversation {
  return {
    question: `Could you aid me in generating unique masks for every category present in ${classes.join(', ').toLowerCase()} in this image?`,
    answer: `Yes, here are the results for ${routed(classes, '[SEG]')} in the image.`,
  };
}

/**
 * datasets/coco_interactive.py QUESTIONS[0], YES[0]: interactive segmentation. Each `<region>` takes
 * its region's embedding (chat's `regions`); each [DET] block is a class for the detector, so the
 * detector finds every object like each marked one (eval_visual_prompt.py).
 */
export function regionsConversation(count: number): Conversation {
  const names = regionNames(count);
  return {
    question: `Can you examine the image and segment the corresponding objects denoted as ${names.map((n) => `<reg>${n}<region></reg>`).join(', ')}?`,
    answer: `Sure, these objects are ${routed(names, '[DET]')}.`,
  };
}

/** region1, region2, ...: the classes of interactive segmentation, one per region. */
export function regionNames(count: number): string[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`segment: regions must hold at least one region, got ${count}`);
  return Array.from({ length: count }, (_, i) => `region${i + 1}`);
}

/** datasets/refcoco_llava.py QUESTIONS[0], YES[0]: grounding one referring expression. */
export function groundingConversation(expression: string): Conversation {
  return {
    question: `Where can we locate the ${expression} in the image?`,
    answer: 'Yes, it is [GRD].',
  };
}

/**
 * datasets/coco_pose_llava.py (test mode): the detection turn of coco_llava's templates for the
 * object classes, then, after a space, POSE_QUESTIONS[0] and POSE_ANS[0] for the keypoints.
 */
export function poseConversation(classes: readonly string[], keypoints: readonly string[]): Conversation {
  const detection = detectionConversation(classes);
  return {
    question: `${detection.question} Can you examine the image and pinpoint the keypoint locations of the ${keypoints.join(', ')}?`,
    answer: `${detection.answer} Utilizing keypoints detection, the image analysis reveals the location of ${routed(keypoints, '[POSE]')}.`,
  };
}

/** datasets/text2img.py PREFIX_PROMPTS[0] and ANSWER_PROMPTS[0] (it has no test mode), the caption preprocessed as there. */
export function generationConversation(caption: string): Conversation {
  return { question: `Generate image with caption: ${preprocessCaption(caption)}.`, answer: 'Here it is [GEN].' };
}

/** datasets/ip2p.py PREFIX_PROMPTS[0] and ANSWER_PROMPTS[0], the instruction lower-cased and stripped of end dots as there. */
export function editingConversation(instruction: string): Conversation {
  return {
    question: `Edit the image according to the caption: ${stripChars(instruction.toLowerCase().trim(), '.')}.`,
    answer: 'Here it is [EDIT].',
  };
}

/** "a[T], b[T]": the datasets' `"[T][EMB]..., ".join(names)` plus the last one's token. */
function routed(names: readonly string[], token: string): string {
  return names.map((n) => `${n}${token}`).join(', ');
}

/** text2img.py preprocess_caption: lower-case, punctuation to spaces, runs of spaces to one, trimmed. */
export function preprocessCaption(caption: string): string {
  return caption
    .toLowerCase()
    .replace(/[.!"()*#:;~]/g, ' ')
    .replace(/\s{2,}/g, ' ')
    .replace(/\n+$/, '')
    .replace(/^ +| +$/g, '');
}

/** Python's str.strip(chars) for one character. */
function stripChars(text: string, char: string): string {
  let [a, b] = [0, text.length];
  while (a < b && text[a] === char) a++;
  while (b > a && text[b - 1] === char) b--;
  return text.slice(a, b);
}
