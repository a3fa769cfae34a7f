/** The help texts: `visionllm --help` lists the commands, `visionllm <command> --help` shows one with examples. */

const COMMON = `  --weights DIR        a VisionLLM v2 checkpoint directory (default: weights/miniature)
  --out FILE           write the picture: .png, .jpg/.jpeg or .webp, by the extension
  --json               print the results as JSON on stdout (and nothing else there)
  --f32                keep weights in f32 (default: f16 matrices where the adapter can)
  --quiet              no progress and no notes on stderr (errors only)`;

const IMAGE = `  --image FILE         a PNG, JPEG or WebP (default: the checkpoint's example.png, if any)`;
const LIMITS = `  --threshold T        lowest score kept, in [0, 1] (default 0.3)
  --top-k K            most kept, best first (default 100)`;
const DIFFUSION = `  --steps N            denoising steps (default the checkpoint's: 50 for generate, 100 for edit)
  --seed S             0 to 4294967295 (default 0)
  --guidance G         classifier-free guidance scale (default 7.5)`;

export const USAGE = `usage: visionllm <command> [options]

commands:
  chat       answer a prompt about an image, streaming the answer (the default command)
  look       say what is in the picture, then detect, find keypoints and draw (what npm start runs)
  detect     boxes of the classes asked for
  segment    instance masks, or a semantic map with --mode semantic
  ground     the box and mask of what a phrase names
  pose       keypoints of each person (or of --classes)
  generate   an image from a prompt
  edit       an image changed as the prompt says
  serve      an OpenAI-compatible HTTP server (POST /v1/chat/completions)
  info       the WebGPU adapter, its limits and kernel profile, and a check of the core kernels

\`visionllm <command> --help\` shows a command's options and examples.
Without --out and --json, the task commands print a summary (a line per result).
Exit status: 0 done, 1 failed, 2 a usage error (reported before anything loads).`;

export const CHAT_USAGE = `usage: visionllm [chat] [--weights DIR] [--image FILE] [--prompt TEXT] [options]

chat options:
${IMAGE}
  --prompt TEXT        the question (default: "What is in the picture?")
  --max-new-tokens N   at least 1 (default 64)
  --temperature T      0 (default) decodes greedily
  --top-p P            in (0, 1] (default 1: off)
  --top-k K            0 (default) is off
  --seed S             0 to 4294967295 (default 0)
  --stats              print timings and memory after the answer
${COMMON}

--weights may also name a Hugging Face LLaMA checkpoint (text only). With --out, the picture
of the answer's decoder results (its detections, masks or poses drawn over the image, or the
image it generated); an answer that routed nothing to a decoder writes nothing, says so on
stderr, and still exits 0: the answer itself was given. With --json, the answer streams to stderr and
stdout holds { text, finishReason, outputs }.

examples:
  visionllm chat --image street.jpg --prompt "Please detect the cars in the image." --out cars.png
  visionllm chat --prompt "Describe the picture." --json > answer.json`;

export const LOOK_USAGE = `usage: visionllm look [--weights DIR] [--image FILE] [--prompt TEXT] [options]

What \`npm start\` runs: the model answers the prompt about the picture, then detects its classes
in it and finds people's keypoints (where the checkpoint has UniPose), prints a line per detection
and per person and writes the picture with them drawn.

look options:
${IMAGE}
  --prompt TEXT        the question (default: "What is in the picture?")
  --classes a,b        the classes to detect (default: the checkpoint's class_names, else COCO's 80)
  --threshold T        lowest score kept, detections and people, in [0, 1] (default 0.3)
  --out FILE           where the picture goes (default: visionllm-look-<image>.png in the system's temporary folder)
  --weights DIR        a VisionLLM v2 checkpoint directory (default: weights/miniature)
  --f32                keep weights in f32 (default: f16 matrices where the adapter can)
  --quiet              no progress and no notes on stderr (errors only)

A checkpoint without a detector only answers.

examples:
  visionllm look
  visionllm look --image shapes.png --classes star,circle --out stars.png`;

export const SERVE_USAGE = `usage: visionllm serve --weights DIR [options]

serve options:
  --weights DIR        the checkpoint to serve (not needed by --role api)
  --host H             the address to listen on (default 127.0.0.1: this machine only)
  --port P             0 to 65535 (default 8080; 0: any free port)
  --queue-size N       requests that may wait while one runs; more are refused with 429 (default 64)
  --timeout S          seconds before an unanswered request is cancelled with 504 (default 120)
  --max-body SIZE      largest request body, e.g. 32mb (the default), 512kb (larger: 413)
  --api-key KEY        require "Authorization: Bearer KEY" on /v1/* (default: $VISIONLLM_API_KEY, else none)
  --redis URL          queue jobs on Redis (redis://HOST:PORT) for workers on any machine
  --role R             with --redis: all (the default: API and worker), api, or worker
  --quiet              no progress and no request log (the "listening on" line and errors still)

Routes: POST /v1/chat/completions (OpenAI's format; stream: true for server-sent events; the
decoders' results in message.visionllm.results), GET /v1/models, GET /health, GET /metrics
(Prometheus), and GET / (a page to try it). Images come as data: URLs; the server fetches nothing.
When listening, it prints "listening on http://HOST:PORT" to stderr. SIGINT or SIGTERM: it stops
taking requests, gives running ones 10 s, then exits 0.

examples:
  visionllm serve --weights weights/tiny --port 8080
  VISIONLLM_API_KEY=secret visionllm serve --weights ckpt --host 0.0.0.0 --queue-size 8
  visionllm serve --weights ckpt --redis redis://127.0.0.1:6379 --role worker`;

const TASK_USAGE = {
  detect: `usage: visionllm detect --image FILE [--classes a,b] [options]

${IMAGE}
  --classes a,b        the classes to look for (default COCO's 80)
${LIMITS}
${COMMON}

examples:
  visionllm detect --image street.jpg --classes person,car --out boxes.png
  visionllm detect --image street.jpg --threshold 0.5 --json`,
  segment: `usage: visionllm segment --image FILE [--mode instance|semantic] [--classes a,b] [options]

${IMAGE}
  --mode M             instance (default): a mask per object; semantic: a class per pixel
  --classes a,b        default COCO's 80 (instance) or ADE20K's 150 (semantic)
${LIMITS}
                       (--threshold and --top-k: instance mode only)
${COMMON}

examples:
  visionllm segment --image street.jpg --classes person,car --out masks.png
  visionllm segment --image park.jpg --mode semantic --classes sky,tree,grass --out map.jpg`,
  ground: `usage: visionllm ground --image FILE --phrase TEXT [options]

${IMAGE}
  --phrase TEXT        what to find, e.g. "the red car on the left" (no commas)
${COMMON}

examples:
  visionllm ground --image street.jpg --phrase "red car" --out car.png
  visionllm ground --image street.jpg --phrase "the man in a hat" --json`,
  pose: `usage: visionllm pose --image FILE [--keypoints a,b] [--classes a,b] [options]

${IMAGE}
  --keypoints a,b      the keypoints to find (default COCO's 17, e.g. "left eye,right wrist")
  --classes a,b        the objects whose keypoints are found (default person)
${LIMITS}
${COMMON}

examples:
  visionllm pose --image people.jpg --out skeletons.png
  visionllm pose --image people.jpg --keypoints "nose,left eye,right eye" --json`,
  generate: `usage: visionllm generate --prompt TEXT [options]

  --prompt TEXT        what to draw
${DIFFUSION}
  --width W            pixels, a multiple of the VAE's factor (default the checkpoint's: 512)
  --height H
  --scheduler S        pndm (the default), euler_ancestral or ddim
${COMMON}

examples:
  visionllm generate --prompt "a lighthouse at dusk" --steps 30 --out lighthouse.png
  visionllm generate --prompt "a red square" --width 256 --height 256 --seed 7 --out square.webp`,
  edit: `usage: visionllm edit --image FILE --prompt TEXT [options]

${IMAGE}
  --prompt TEXT        the instruction, e.g. "make it snowy"
${DIFFUSION}
  --image-guidance G   how closely to keep the image (default 1.5)
${COMMON}

The result has the image's size floored to the VAE's factor (8 for Stable Diffusion).

examples:
  visionllm edit --image house.jpg --prompt "make it snowy" --out snowy.jpg
  visionllm edit --image house.jpg --prompt "turn it into a watercolour" --steps 20 --seed 3 --out paint.png`,
} as const;

export type TaskCommand = keyof typeof TASK_USAGE;
export const TASK_COMMANDS = Object.keys(TASK_USAGE) as TaskCommand[];

export function taskUsage(command: TaskCommand): string {
  return TASK_USAGE[command];
}
