"""Trains the miniature VisionLLM v2 on ShapesWorld (npm run train:tiny), PyTorch on CPU.

  python3 -P scripts/train/miniature.py [--run DIR] [--out weights/miniature] [--probe]
                                        [--decoders [--start-from WEIGHTS]]

Stages, all from fixed seeds (TRAIN_SEED's pictures only; evaluation uses another seed):
  1. tokenizer   SentencePiece BPE on the conversations of the first pictures
  2. pictures    the pool of pictures as anyres tiles, with dense targets
  3. vision      the CLIP tower learns, per 28-pixel patch, which (class, colour) covers it, where
                 objects' centres are and their relative size (a training-only linear head reads it)
  4. language    vl_bridge, the LLM and the super link's query tables learn the conversations
                 (packed single-turn answers, see miniature_data); the tower goes on learning,
                 more slowly, with its dense targets
  5. link        with --decoders only: the super link's det query table learns to make each routing
                 block's query states name its class (decoders.train_link); the LLM keeps its weights
  6. backbone    with --decoders only: the detector's ResNet learns ShapesWorld's objects first, from
                 crops around them (decoders.train_backbone), as the release's starts from ImageNet weights
  7. decoders    with --decoders only: Grounding DINO with its mask head learns through the super
                 link (decoders.py)
  8. pose_backbone  with --decoders only: UniPose's Swin learns the same from crops
  9. pose        with --decoders only: UniPose learns ShapesWorld's people through the super link
                 (pose.py), its Swin kept as stage 8 left it
 10. regions     with --decoders only, in a second process beside stages 5-9 (SIDE_STAGES): the region
                 encoder learns region captions through the frozen MLLM (regions.py)
 11. diffusion   with --decoders only, in the second process after regions: generation and editing,
                 Stable Diffusion's and InstructPix2Pix's U-Nets with their VAE, through the super
                 link's [GEN] and [EDIT] queries (diffusion.py); the main process joins its results
 12. export      an official-layout checkpoint, converted to f16 safetensors by scripts/convert.ts

Resumable: the run folder keeps the tokenizer and a checkpoint every few minutes; run the
same command again to go on from the last one. The log (train.log) is copied next to the weights.
--start-from WEIGHTS begins a new run folder at the link stage from an exported miniature (its f16
weights and tokenizer) instead of training stages 1-4.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from miniature_data import (ROOT, Tokens, pack, picture_entry, pixels, render_picture, tokenizer_corpus,  # noqa: E402
                            train_tokenizer, training_turns)
import miniature_model as mm  # noqa: E402
import decoders  # noqa: E402
import regions  # noqa: E402
import pose  # noqa: E402
import diffusion  # noqa: E402
import detector  # noqa: E402
import reference_gdino as R  # noqa: E402
from common import read_safetensors  # noqa: E402
from scripts.shapesworld.conversations import NUMBER_WORDS, PLURALS  # noqa: E402

TRAIN_SEED = 1000
POOL = 6000
TOKENIZER_PICTURES = 2000
# A step is one tile from each of VISION_BATCH pictures: a third of the cost of all their tiles, and
# per minute the tower learns as fast (docs/miniature.md); more steps is what shapes need.
VISION_STEPS, VISION_BATCH, VISION_LR = 4000, 8, 1e-3
# The tower keeps learning with the language side, more slowly, its dense targets still asked.
LANGUAGE_STEPS, LANGUAGE_BATCH, LANGUAGE_LR, TOWER_LR_SCALE = 700, 4, 2e-3, 0.2
DENSE_WEIGHT, COMMON_WEIGHT, WORD_WEIGHT, SEEN_WEIGHT = 0.5, 1.0, 1.0, 4.0
# Binding is measured on pictures just past the pool (TRAIN_SEED, never trained on), every so often.
BINDING_PICTURES, BINDING_EVERY = 16, 100
STANDARDISE_PICTURES = 200
CHECKPOINT_SECONDS = 240
# The decoders stage runs one thread a process: its operations are small, and with two threads PyTorch's
# and OpenBLAS's own fight over the two cores (a detector step 6.0 s against 4.0 s with one;
# docs/miniature.md), so the second core runs the parts beside (SIDE_STAGES). The vision and language
# stages keep the two threads run G was trained with: sums in another order would make another run.
LANGUAGE_THREADS, DECODER_THREADS = 2, 1
# The decoders stage's parts in the main process, in order; the parts beside read only the language
# stage's MLLM (frozen there, and no other part's results), so a second process started from it gives
# what the same parts would give in sequence.
MAIN_STAGES = ('link', 'backbone', 'decoders', 'pose_backbone', 'pose', 'join')
SIDE_STAGES = ('regions', 'diffusion')
# The picture the CLI shows the model when given none (seed, index): test/fixtures/shapesworld/29-1.png.
EXAMPLE_PICTURE = (29, 1)


class Run:
    def __init__(self, folder, log_to_console=True):
        self.folder = folder
        self.log_to_console = log_to_console
        os.makedirs(folder, exist_ok=True)
        self.log_file = open(os.path.join(folder, 'train.log'), 'a')
        self.state = self.load('checkpoint.pt') or {'stage': 'vision', 'step': 0, 'elapsed': 0.0}
        self.started = time.time() - self.state['elapsed']

    def path(self, name):
        return os.path.join(self.folder, name)

    def load(self, name):
        return torch.load(self.path(name)) if os.path.exists(self.path(name)) else None

    def save(self, name, value):
        torch.save(value, self.path(name + '.part'))
        os.replace(self.path(name + '.part'), self.path(name))

    def elapsed(self):
        return time.time() - self.started

    def log(self, line):
        text = f'[{self.elapsed() / 60:6.2f} min] {line}'
        if self.log_to_console:
            print(text, flush=True)
        self.log_file.write(text + '\n')
        self.log_file.flush()

    def checkpoint(self, **state):
        self.state = {**self.state, **state, 'elapsed': self.elapsed()}
        self.save('checkpoint.pt', self.state)


def render(index):
    return picture_entry(TRAIN_SEED, index)


def build_pool(run, count):
    """Rendered afresh on every start (about a minute): cheaper than keeping gigabytes on disk."""
    with Pool(2) as workers:
        pool = list(workers.imap(render, range(count), chunksize=10))
    run.log(f'pictures: {count} of seed {TRAIN_SEED}, {sum(len(p["tiles"]) for p in pool)} tiles')
    return pool


def build_tokenizer(run, pool):
    model_file = run.path('tokenizer.model')
    if not os.path.exists(model_file):
        lines = tokenizer_corpus([p['annotation'] for p in pool[:TOKENIZER_PICTURES]])
        train_tokenizer(run.folder, lines)
        run.log(f'tokenizer: {mm.SP_VOCAB} pieces from {len(lines)} lines')
    return Tokens(model_file)


def schedule(step, steps, lr, warmup=50):
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, steps - warmup))) * 0.95 + lr * 0.05


def optimiser(params, names, lr, saved):
    weights = [params[k] for k in names]
    for w in weights:
        w.requires_grad_(True)
    opt = torch.optim.AdamW(weights, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    if saved is not None:
        opt.load_state_dict(saved)
    return opt


def train_vision(run, params, pool, steps):
    opt = optimiser(params, mm.vision_names(params), VISION_LR, run.state.get('opt'))
    step, clock, recent = run.state['step'], time.time(), []
    while step < steps:
        rng = np.random.default_rng([TRAIN_SEED, 1, step])
        tiles = [(pool[i], int(rng.integers(len(pool[i]['tiles'])))) for i in rng.choice(len(pool), VISION_BATCH, replace=False)]
        x = pixels(np.stack([p['tiles'][t] for p, t in tiles]))
        cover, centre, size = (torch.from_numpy(np.stack([p[k][t] for p, t in tiles]).astype(np.float32))
                               for k in ('cover', 'centre', 'size'))
        for group in opt.param_groups:
            group['lr'] = schedule(step, steps, VISION_LR)
        opt.zero_grad()
        loss, parts = mm.dense_loss(params, x, cover, centre, size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]['params'], 1.0)
        opt.step()
        step += 1
        recent.append({'loss': float(loss), **parts})
        if step % 50 == 0 or step == steps:
            run.log(f'vision step {step}/{steps}: ' + ', '.join(f'{k} {np.nanmean([r[k] for r in recent]):.4f}'
                                                                for k in recent[0]))
            recent = []
        if time.time() - clock > CHECKPOINT_SECONDS or step == steps:
            run.checkpoint(step=step, params=mm_params(params), opt=opt.state_dict())
            clock = time.time()
    for w in opt.param_groups[0]['params']:
        w.requires_grad_(False)


def mm_params(params):
    return {k: v.detach().clone() for k, v in params.items()}


def standardise_bridge(run, params, pool):
    """Folds the tower's feature statistics into vl_bridge's first layer (W / sigma, b - W mu / sigma):
    the features share a large common part, which left every projected image token pointing the same
    way (cosine 0.999 between tokens), so attention could not tell them apart and the LLM learnt to
    answer without looking. The architecture is unchanged; only the starting weights differ."""
    with torch.no_grad():
        sample = torch.cat([mm.clip_features(params, pixels(p['tiles'])).reshape(-1, mm.VISION['hidden_size'])
                            for p in pool[:STANDARDISE_PICTURES]])
        mu, sigma = sample.mean(0), sample.std(0) + 1e-6
        before = token_similarity(params, sample)
        w = params['vl_bridge.0.weight'] / sigma
        params['vl_bridge.0.bias'] = params['vl_bridge.0.bias'] - w @ mu
        params['vl_bridge.0.weight'] = w
        run.log(f'vl_bridge standardised on {len(sample)} tokens: mean cosine between projected tokens {before:.4f} -> '
                f'{token_similarity(params, sample):.4f}')


def token_similarity(params, features):
    projected = torch.nn.functional.normalize(mm.ref.vl_bridge(params, features[:2000]), dim=-1)
    return float((projected @ projected.T).mean())


def train_language(run, params, pool, tokens, steps):
    if run.state['step'] == 0:
        standardise_bridge(run, params, pool)
    opt = optimiser(params, mm.language_names(params), LANGUAGE_LR, None)
    tower = [params[k] for k in mm.vision_names(params)]
    for w in tower:
        w.requires_grad_(True)
    opt.add_param_group({'params': tower, 'scale': TOWER_LR_SCALE})
    opt.param_groups[0]['scale'] = 1.0
    if run.state.get('opt') is not None:
        opt.load_state_dict(run.state['opt'])
    weights = [w for group in opt.param_groups for w in group['params']]
    seen_ids = seen_words(tokens)
    held_out = [picture_entry(TRAIN_SEED, POOL + k) for k in range(BINDING_PICTURES)]
    kind_words = torch.tensor([[single_token(tokens, colour), single_token(tokens, cls)]
                               for cls in mm.CLASSES for colour in mm.COLOURS])
    step, clock = run.state['step'], time.time()
    recent = []
    while step < steps:
        rng = np.random.default_rng([TRAIN_SEED, 2, step])
        chosen = rng.choice(len(pool), LANGUAGE_BATCH, replace=False)
        for group in opt.param_groups:
            group['lr'] = schedule(step, steps, LANGUAGE_LR, warmup=100) * group['scale']
        opt.zero_grad()
        for i in chosen:
            picture = pool[i]
            epoch = step * LANGUAGE_BATCH // len(pool)
            turns, turn_rng = training_turns(picture['annotation'], TRAIN_SEED, int(i), epoch)
            seq = pack(tokens, len(picture['tiles']), turns, turn_rng)
            features = mm.clip_features(params, pixels(picture['tiles']))
            loss, right, image, seen_loss = mm.sequence_loss(params, features, seq, seen_ids, SEEN_WEIGHT)
            cover, centre, size = targets([picture])
            dense, _ = mm.dense_loss(params, features, cover, centre, size, from_features=True)
            common = mm.common_part(image)
            words = mm.word_alignment(params, image, centre, kind_words)
            ((loss + DENSE_WEIGHT * dense + COMMON_WEIGHT * common + WORD_WEIGHT * words) / LANGUAGE_BATCH).backward()
            recent.append((float(loss), right, float(dense), float(common), float(words), seen_loss))
        torch.nn.utils.clip_grad_norm_(weights, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == steps:
            mean = np.nanmean(recent, axis=0)
            run.log(f'language step {step}/{steps}: loss {mean[0]:.4f}, answer tokens right {mean[1]:.3f}, '
                    f'seen words {mean[5]:.3f}, dense {mean[2]:.4f}, image tokens common part {mean[3]:.3f}, '
                    f'word alignment {mean[4]:.3f}')
            recent = []
        if step % BINDING_EVERY == 0 or step == steps:
            own, other = binding(params, held_out, tokens, seen_ids)
            run.log(f'language step {step}/{steps}: held-out seen-word loss {own:.3f} with the picture, '
                    f'{other:.3f} with another picture (the gap is what looking is worth)')
        if time.time() - clock > CHECKPOINT_SECONDS or step == steps:
            run.checkpoint(step=step, params=mm_params(params), opt=opt.state_dict())
            clock = time.time()


def seen_words(tokens):
    """Token ids of the words an answer can only get right by looking (sequence_loss's seen_ids)."""
    words = [*mm.COLOURS, *mm.CLASSES, *PLURALS.values(), *NUMBER_WORDS, *'0123456789',
             'left', 'right', 'top', 'bottom', 'centre', 'Yes', 'No', 'largest']
    return torch.tensor(sorted({i for w in words for i in tokens.sp.encode(w)}))


def binding(params, pictures, tokens, seen_ids):
    """The held-out pictures' seen-word loss (their first conversation, VQA turns, nothing spliced)
    with each picture's own image and with the next picture's: equal when the model does not look."""
    own, other = [], []
    with torch.no_grad():
        features = [mm.clip_features(params, pixels(p['tiles'])) for p in pictures]
        for k, picture in enumerate(pictures):
            annotation = picture['annotation']
            turns, _ = training_turns(annotation, annotation['seed'], annotation['index'], 0)
            turns = [t for t in turns if 'phrases' not in t]
            for shown, losses in ((features[k], own), (features[(k + 1) % len(pictures)], other)):
                seq = pack(tokens, len(shown), turns, np.random.default_rng(0), splice_odds=0)
                losses.append(mm.sequence_loss(params, shown, seq, seen_ids)[3])
    return float(np.nanmean(own)), float(np.nanmean(other))


def single_token(tokens, word):
    ids = tokens.sp.encode(word)
    if len(ids) != 1:
        raise ValueError(f'the tokenizer splits {word!r} into {len(ids)} pieces; word alignment needs one')
    return ids[0]


def targets(batch):
    return (torch.from_numpy(np.concatenate([p[k] for p in batch]).astype(np.float32)) for k in ('cover', 'centre', 'size'))


def export(run, params, out):
    """An official-layout checkpoint (torch.save .bin, config, tokenizer files), then the project's converter."""
    official = run.path('official')
    shutil.rmtree(official, ignore_errors=True)
    os.makedirs(official)
    tensors, config = {**mm.exported(params)}, dict(mm.CONFIG)
    if run.state.get('detector'):
        model = detector.build(decoders.DETECTOR_SEED)
        model.load_state_dict(run.state['detector']['model'])
        tensors.update(R.named_state(model))
        # class_names (our key): what the task helpers ask for by default instead of COCO's classes.
        config.update(use_gdino=True, gdino_config=detector.CONFIG, class_names=list(mm.CLASSES))
    if run.state.get('regions'):
        encoder = regions.build()
        encoder.load_state_dict(run.state['regions']['model'])
        tensors.update(regions.named_state(encoder))
        # region_encoder_config (our key): the pooling the release hard-codes, so the reader need not guess.
        config.update(use_region_encoder=True, region_encoder_config=regions.CONFIG)
    if run.state.get('pose'):
        model = pose.build()
        model.load_state_dict(run.state['pose']['model'])
        tensors.update(pose.named_state(model))
        config.update(use_unipose=True, unipose_config=pose.CONFIG)
    if run.state.get('diffusion', {}).get('ip2p'):
        added, sections = diffusion.exported(run.state['diffusion'])
        tensors.update(added)
        config.update(use_sd=True, use_ip2p=True, **sections)
    torch.save({k: v.contiguous() for k, v in tensors.items()}, os.path.join(official, 'pytorch_model.bin'))
    with open(os.path.join(official, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    shutil.copy(run.path('tokenizer.model'), os.path.join(official, 'tokenizer.model'))
    with open(os.path.join(official, 'added_tokens.json'), 'w') as f:
        json.dump({t: mm.SP_VOCAB + i for i, t in enumerate(mm.SPECIAL_TOKENS)}, f, indent=2)
    with open(os.path.join(official, 'special_tokens_map.json'), 'w') as f:
        json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '[PAD]'}, f)
    converter = os.path.join(ROOT, 'dist', 'scripts', 'convert.js')
    if not os.path.exists(converter):
        subprocess.run(['npx', 'tsc', '-p', '.'], cwd=ROOT, check=True)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(['node', converter, official, out, '--dtype', 'f16'], cwd=ROOT, check=True)
    image, _ = render_picture(*EXAMPLE_PICTURE)
    Image.fromarray(image).save(os.path.join(out, 'example.png'))
    run.log(f'exported to {os.path.relpath(out, ROOT)}, with ShapesWorld picture {EXAMPLE_PICTURE} as example.png')
    shutil.copy(run.path('train.log'), os.path.join(out, 'TRAINING.log'))


def start_from(run, weights):
    """A new run at the link stage, from an exported miniature's weights (f16, widened) and tokenizer."""
    tensors = read_safetensors(os.path.join(weights, 'model.safetensors'))
    params = {k: v.float() for k, v in tensors.items() if not k.startswith(('gdino.', 'region_encoder.', 'unipose.', 'sd.', 'ip2p.'))}
    missing = sorted(set(mm.exported(mm.init_params(TRAIN_SEED))) - set(params))
    if missing:
        sys.exit(f'--start-from {weights}: model.safetensors lacks {len(missing)} of the miniature\'s tensors, e.g. {missing[0]}')
    shutil.copy(os.path.join(weights, 'tokenizer.model'), run.path('tokenizer.model'))
    run.checkpoint(stage='link', step=0, params=params)
    run.log(f'started from {weights} at the link stage')


def start_side(run, params, probe):
    """The parts beside (SIDE_STAGES) in a second process and run folder, from the language stage's MLLM;
    a side process still running from before the last restart is waited for instead of started again."""
    side = Run(run.path('side'), log_to_console=False)
    if side.load('checkpoint.pt') is None:
        shutil.copy(run.path('tokenizer.model'), side.path('tokenizer.model'))
        side.checkpoint(stage=SIDE_STAGES[0], step=0, params=params)
    if side.state['stage'] == 'done' or process_alive(side.load('pid')):
        return None
    command = [sys.executable, '-P', os.path.abspath(__file__), '--side', '--run', side.folder] + (['--probe'] if probe else [])
    with open(side.path('stderr.log'), 'a') as errors:   # the child keeps its own copy of the handle
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
    run.log(f'{" and ".join(SIDE_STAGES)} run beside the other parts, in {side.folder} (its log: train.log there)')
    return process


def process_alive(pid):
    """Whether the side process `pid` still runs. Where /proc shows command lines (Linux) it must be this
    script's --side: after a crash its pid may since belong to another program, which a restarted main
    process would otherwise wait on. Elsewhere any live process with that pid counts."""
    if pid is None:
        return False
    if os.path.isdir('/proc'):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                words = f.read().split(b'\0')
            return b'--side' in words and any(w.endswith(b'miniature.py') for w in words)
        except OSError:
            return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def join_side(run, process):
    """Waits for the parts beside, then takes their results and log into this run."""
    side = Run(run.path('side'), log_to_console=False)
    while side.state['stage'] != 'done':
        stopped = process.poll() is not None if process else not process_alive(side.load('pid'))
        side.state = side.load('checkpoint.pt')
        if stopped and side.state['stage'] != 'done':
            sys.exit(f'the parts beside stopped before they were done: see {side.path("stderr.log")} and {side.path("train.log")}')
        time.sleep(0 if stopped else 10)
    with open(side.path('train.log')) as f:
        run.log_file.writelines('beside ' + line for line in f)
    run.checkpoint(stage='export', step=0, **{k: side.state[k] for k in SIDE_STAGES})
    run.log(f'{" and ".join(SIDE_STAGES)} joined from {side.folder}, which finished at {side.state["elapsed"] / 60:.1f} min of its own')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--run', default=os.path.join(ROOT, 'runs', 'miniature'), help='run folder (resumes from it)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'weights', 'miniature'))
    parser.add_argument('--probe', action='store_true', help='a few steps of each stage on a small pool, timed')
    parser.add_argument('--decoders', action='store_true', help='after the language stage, train the decoders (decoders.py)')
    parser.add_argument('--start-from', metavar='WEIGHTS', help='a new run begins at the link stage from these exported weights')
    parser.add_argument('--side', action='store_true', help=argparse.SUPPRESS)   # the second process of the decoders stage
    args = parser.parse_args()
    if args.start_from and not args.decoders:
        parser.error('--start-from begins at the decoders\' stages: give --decoders too')
    torch.manual_seed(0)
    torch.set_num_threads(LANGUAGE_THREADS)
    pool_size, vision_steps, language_steps, link_steps, backbone_steps, detector_steps, swin_steps, region_steps, pose_steps = \
        (64, 6, 6, 4, 4, 4, 4, 4, 4) if args.probe else \
        (POOL, VISION_STEPS, LANGUAGE_STEPS, decoders.LINK_STEPS, decoders.BACKBONE_STEPS, decoders.DETECTOR_STEPS, decoders.SWIN_STEPS,
         regions.REGION_STEPS, pose.POSE_STEPS)
    diffusion_steps = (4, 4, 4) if args.probe else (diffusion.VAE_STEPS, diffusion.SD_STEPS, diffusion.IP2P_STEPS)
    run = Run(args.run)
    if args.side:
        run.save('pid', os.getpid())
    if args.start_from and run.load('checkpoint.pt') is None:
        start_from(run, args.start_from)
    run.log(f'run {args.run}: stage {run.state["stage"]}, step {run.state["step"]}')
    params = run.state.get('params') or mm.init_params(TRAIN_SEED)
    if run.state['stage'] in ('vision', 'language'):
        pool = build_pool(run, pool_size)
        tokens = build_tokenizer(run, pool)
    else:
        tokens = Tokens(run.path('tokenizer.model'))
    if run.state['stage'] == 'vision':
        t = time.time()
        train_vision(run, params, pool, vision_steps)
        run.log(f'vision done ({(time.time() - t) / max(1, vision_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='language', step=0, opt=None, params=mm_params(params))
    if run.state['stage'] == 'language':
        t = time.time()
        train_language(run, params, pool, tokens, language_steps)
        run.log(f'language done ({(time.time() - t) / max(1, language_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='link' if args.decoders else 'export', step=0, opt=None, params=mm_params(params))
    torch.set_num_threads(DECODER_THREADS)
    side = start_side(run, mm_params(params), args.probe) if run.state['stage'] in MAIN_STAGES else None
    if run.state['stage'] == 'link':
        t = time.time()
        decoders.train_link(run, params, tokens, TRAIN_SEED, link_steps)
        run.log(f'link done ({(time.time() - t) / max(1, link_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='backbone', step=0, link=None, params=mm_params(params))
    if run.state['stage'] == 'backbone':
        t = time.time()
        decoders.train_backbone(run, TRAIN_SEED, backbone_steps)
        run.log(f'backbone done ({(time.time() - t) / max(1, backbone_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='decoders', step=0)
    if run.state['stage'] == 'decoders':
        t = time.time()
        decoders.train_detector(run, params, tokens, TRAIN_SEED, detector_steps)
        run.log(f'detector done ({(time.time() - t) / max(1, detector_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='pose_backbone', step=0, opt=None, params=mm_params(params))
    if run.state['stage'] == 'pose_backbone':
        t = time.time()
        decoders.train_backbone(run, TRAIN_SEED, swin_steps, 'pose_backbone')
        run.log(f'pose backbone done ({(time.time() - t) / max(1, swin_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='pose', step=0)
    if run.state['stage'] == 'pose':
        t = time.time()
        pose.train_pose(run, params, tokens, TRAIN_SEED, pose_steps)
        run.log(f'pose done ({(time.time() - t) / max(1, pose_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='join', step=0, params=mm_params(params))
    if run.state['stage'] == 'join':
        join_side(run, side)
    if run.state['stage'] == 'regions':
        t = time.time()
        regions.train_regions(run, params, tokens, TRAIN_SEED, region_steps)
        run.log(f'regions done ({(time.time() - t) / max(1, region_steps) * 1000:.0f} ms/step this session)')
        run.checkpoint(stage='diffusion', step=0)
    if run.state['stage'] == 'diffusion':
        t = time.time()
        diffusion.train_diffusion(run, params, tokens, TRAIN_SEED, *diffusion_steps)
        run.log(f'diffusion done ({(time.time() - t) / 60:.1f} min this session)')
        run.checkpoint(stage='done', step=0)
    if args.side:
        os.remove(run.path('pid'))
        return
    export(run, params, args.out)
    run.log(f'finished in {run.elapsed() / 60:.1f} min')


if __name__ == '__main__':
    main()
