"""The miniature's decoders stage (miniature.py --decoders, after the language stage), trained on
ShapesWorld end to end through the super link, as the official training does. Work in progress:
docs/miniature.md#the-decoders-in-progress has what it reaches so far, and why.

For each picture the MLLM reads the official task prompts (detection [DET], semantic [SEG],
grounding [GRD]) with their answers teacher-forced and every routing token's [EMB] queries spliced
after it; the final hidden states at those queries are the decoder's class embeddings (through
gdino.patch2query). With LLM_LR 0 the LLM and the tower keep their weights, so every answer the
language stage taught stays as it was, and the gradient runs back through the LLM into the super
link's query table (emb_embeddings_det), which learns with the decoder; with LLM_LR the LLM learns
too, its answers held by their language loss.

  link       the det query table learns to make each routing block's query states name its class (train_link)
  backbone   the detector's ResNet learns ShapesWorld's objects from crops around them (train_backbone)
  detector   Grounding DINO with the mask head (detector.py), DINO's matching losses
  pose_backbone  UniPose's Swin learns the same from crops (train_backbone; pose.py trains UniPose)
"""
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from decoders_data import Example, task_turns, turn_labels
from miniature_data import pack, ref, training_turns
import detector
import miniature_model as mm

# One picture a step: the detector is far from converged within the stage's budget, and twice the steps
# for the same pictures learnt more (held-out recall 26.4 % after 400 pictures against 19.5 % with two a
# step; docs/miniature.md).
DETECTOR_STEPS, DETECTOR_BATCH, DETECTOR_LR, QUERY_LR = 1000, 1, 4e-4, 1e-4
# The parts that start knowing something learn slower, or not at all (scale 0), than the detector's rate:
# the backbone at a tenth, as Grounding DINO's (1e-5 against 1e-4), and the text side (patch2query and
# the encoder's text layers, whose inputs play BERT's part) frozen after discriminant_start. At the full
# rate the detector's first steps, whose losses are large, undid both: held-out crops' classes named
# 79/93/92 % before the detector part and 47/25/23 % after, and a prompt's class features, apart at the
# start, came out of the encoder at a mean cosine of 0.99, every class one vector. At a tenth the text
# side still drifted together (class embeddings' cosine -0.14 at the start, 0.57 after 500 steps; out of
# the encoder 0.27 and 0.89; docs/miniature.md).
PART_LR_SCALES = {'.backbone.': 0.1, 'patch2query.': 0.0, 'text_enhancer_layer.': 0.0}
DETECTOR_SEED = 23
# The LLM learns with the detector at this rate (0: frozen), its own answers kept by the language
# loss on each picture's VQA turns, weighted so it stays as large as the detector's.
LLM_LR, LANGUAGE_WEIGHT = 0.0, 20.0
# The super link's query states must name what they route before a decoder can learn from them. After
# the language stage they say where a block stands in its answer's list, not which class it names (a
# linear probe fitted on 300 blocks reads the position of 153 others 97 % of the time, their class
# 36 %), and the detector's loss alone did not change that. So first, for LINK_STEPS steps, the query
# table DET_TABLE learns to let a training-only linear probe read each block's class from its mean
# query state, the language loss of the detector's prompts keeping their answers. Only the table learns:
# the LLM's weights, and so every answer without a detector block (VQA, generation, editing, pose), stay
# exactly as the language stage left them. The table alone names 98 % of held-out blocks; letting the
# LLM learn too named 99 to 100 %, but cost a third of the count answers (docs/miniature.md).
DET_TABLE = 'emb_embeddings_det.weight'
LINK_STEPS, LINK_BATCH, LINK_LR, PROBE_LR = 180, 4, 3e-2, 1e-2
# The backbones first learn ShapesWorld's objects on their own (detector.backbone_loss), as the
# release's start from ImageNet weights: steps of BACKBONE_BATCH crops of BACKBONE_CROP pixels, each
# around one object, whose class they must name. Whole pictures taught colour but not shape (a quarter
# of held-out objects' classes after 600 steps); crops teach the detector's ResNet 88 % in 300 steps,
# the Swin 72 % in 2000. UniPose's Swin gets 1000: the stage's two hours hold no more beside the
# detector (docs/miniature.md). BACKBONES: each one's config, by its run-state key.
BACKBONE_BATCH, BACKBONE_CROP, BACKBONE_LR, BACKBONE_HELD_OUT = 32, 128, 1e-3, 256
BACKBONE_STEPS, SWIN_STEPS = 600, 1000
BACKBONES = {'backbone': detector.CONFIG['backbone_config'], 'pose_backbone': detector.SWIN.to_json()}
# Held-out pictures of the training seed (past the language stage's pool and its binding set).
HELD_OUT_FIRST, HELD_OUT_COUNT, HELD_OUT_EVERY = 6100, 24, 200
# patch2query's start (discriminant_start): the training pictures whose prompts it reads, the within-class
# spread's shrinkage, the class means' spread it sets and the share of the drawn weights kept.
DISCRIMINANT_PICTURES, DISCRIMINANT_SHRINK, DISCRIMINANT_SPREAD, DRAWN_SHARE = 100, 0.01, 3.0, 0.5


def query_hidden(params, features, seq, replaced=None):
    """The LLM's final hidden states [L, d] for a packed sequence, the query tables' rows spliced in;
    `replaced`: (positions, rows) whose embeddings take those positions' (the `<region>` tokens')."""
    embeds = params['llm.model.embed_tokens.weight'][seq['ids']]
    image = ref.vl_bridge(params, features).reshape(-1, embeds.shape[-1])
    at = seq['image_at']
    embeds = torch.cat([embeds[:at], image, embeds[at + image.shape[0]:]])
    for start, table, count in seq['queries']:
        embeds = torch.cat([embeds[:start], params[table + '.weight'][:count], embeds[start + count:]])
    if replaced is not None:
        embeds = embeds.index_put((replaced[0],), replaced[1])
    return ref.llama_hidden(params, mm.LLM, embeds[None], positions=seq['positions'], blocked=seq['blocked'])[0]


def prompt_hidden(params, tokens, example, turns, rng):
    """The packed sequence of a picture's turns and its hidden states (the tower's features without gradients)."""
    with torch.no_grad():
        features = mm.clip_features(params, example.tiles)
    seq = pack(tokens, len(example.tiles), turns, rng, splice_odds=1.0)
    return seq, query_hidden(params, features, seq)


def language_loss(params, hidden, seq):
    """The next-token loss of a sequence's answers."""
    scored = seq['targets'] >= 0
    return F.cross_entropy(F.linear(hidden[scored], params['llm.lm_head.weight']), seq['targets'][scored])


def vqa_turns(annotation, seed, index, step):
    """The picture's VQA turns of the language stage's draw for this step (what keeps the answers)."""
    return [t for t in training_turns(annotation, seed, index, step)[0] if 'phrases' not in t]


def mean_cosine(vectors):
    """Mean cosine between distinct rows of [k, d] (1: they point the same way)."""
    unit = F.normalize(vectors, dim=-1)
    k = unit.shape[0]
    return float(((unit @ unit.T).sum() - k) / max(1, k * (k - 1)))


def warmup_then_drop(step, steps, warmup):
    """The learning-rate factor: linear warm-up, then a tenth for the last fifth of the steps."""
    return min(1.0, (step + 1) / warmup) * (0.1 if step >= 0.8 * steps else 1.0)


def scale_learning_rates(opt, base, scale):
    """Each parameter group's learning rate: its base rate times this step's factor."""
    for group, lr in zip(opt.param_groups, base):
        group['lr'] = lr * scale


class LossLog:
    """A part's losses and their terms since the last log line, for lines of their means."""

    def __init__(self):
        self.losses, self.parts = [], {}

    def add(self, loss, parts):
        self.losses.append(float(loss))
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    def line(self):
        """'loss L (term t, ...)', the means since the last line; then starts again."""
        n = len(self.losses)
        text = f'loss {np.mean(self.losses):.3f} (' + ', '.join(f'{k} {v / n:.3f}' for k, v in self.parts.items()) + ')'
        self.losses, self.parts = [], {}
        return text


def warmup_then_cosine(step, steps, warmup):
    """The learning-rate factor: linear warm-up, then a half cosine down to zero."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * step / steps))


def turn_queries(seq, turns):
    """Per turn, its blocks' query positions [blocks, num_embs], in answer order: one block per routing
    token of its answer (pack splices one after each), None for a turn without any."""
    blocks = iter(seq['queries'])
    out = []
    for turn in turns:
        count = sum(turn['answer'].count(route) for route in mm.ROUTES) if 'phrases' in turn else 0
        out.append(torch.stack([torch.arange(start, start + n) for start, _, n in (next(blocks) for _ in range(count))])
                   if count else None)
    return out


def block_classes(turn, annotation):
    """Each block's class index: the phrase's, or for a grounding expression its object's."""
    if turn['type'] == 'grounding':
        return [mm.CLASSES.index(next(o['class'] for o in annotation['objects'] if o['id'] == turn['objects'][0]))]
    return [mm.CLASSES.index(p) for p in turn['phrases']]


def picture_loss(params, model, tokens, example, turns, rng, language_turns=()):
    """The detector's loss summed over a picture's turns (one backbone pass, one MLLM pass), plus the
    language loss of the whole sequence when the LLM learns too (language_turns: its VQA turns)."""
    every = list(language_turns) + list(turns)
    seq, hidden = prompt_hidden(params, tokens, example, every, rng)
    stages = detector.backbone(model, example.pixel_values)
    total, parts = 0, {}
    if LLM_LR:
        language = language_loss(params, hidden, seq)
        total, parts['language'] = LANGUAGE_WEIGHT * language, float(language)
    for turn, rows in zip(every, turn_queries(seq, every)):
        if rows is None:
            continue
        objects, labels = turn_labels(turn, example.annotation)
        boxes, masks = example.targets(objects)
        embeddings = model.text_queries(hidden[rows])
        out = detector.forward(model, stages, example.pixel_mask, embeddings)
        value, turn_parts = detector.loss(model, out, torch.tensor(labels, dtype=torch.long), boxes, masks)
        total = total + value
        for k, v in turn_parts.items():
            parts[k] = parts.get(k, 0.0) + v
    return total, parts


def fixed_prompts(params, tokens, seed, first, count, draw):
    """(example, turns, seq, hidden) for pictures first.. of the seed, their task prompts drawn with a
    fixed generator (draw), for the measures and the centring, which must see the same prompts each time."""
    for index in range(first, first + count):
        example = Example(seed, index, detector.IMAGE_SCALE)
        turns = task_turns(example.annotation, np.random.default_rng([seed, index, draw]))
        yield (example, turns, *prompt_hidden(params, tokens, example, turns, np.random.default_rng(0)))


def block_states(hidden, seq, turns, annotation):
    """Each routing block's mean query state [blocks, d] and the class it names (block_classes)."""
    states, classes = [], []
    for turn, rows in zip(turns, turn_queries(seq, turns)):
        if rows is not None:
            states.append(hidden[rows].mean(1))
            classes += block_classes(turn, annotation)
    return torch.cat(states), torch.tensor(classes)


def link_loss(params, tokens, probe, example, turns, rng):
    """The probe's cross-entropy over a picture's blocks and the language loss of the same sequence."""
    seq, hidden = prompt_hidden(params, tokens, example, turns, rng)
    states, classes = block_states(hidden, seq, turns, example.annotation)
    return F.cross_entropy(probe(states), classes), language_loss(params, hidden, seq)


@torch.no_grad()
def link_held_out(params, tokens, probe, seed):
    """How often the probe names a held-out block's class, and a prompt's blocks' mean cosine."""
    right = total = 0
    similar = []
    for example, turns, seq, hidden in fixed_prompts(params, tokens, seed, HELD_OUT_FIRST, HELD_OUT_COUNT, 7):
        states, classes = block_states(hidden, seq, turns, example.annotation)
        right += int((probe(states).argmax(1) == classes).sum())
        total += len(classes)
        if len(states) > 1:
            similar.append(mean_cosine(states))
    return right / max(1, total), float(np.mean(similar))


def train_link(run, params, tokens, seed, steps):
    """The query table DET_TABLE learns to name each block's class in its query states (LINK_STEPS)."""
    for k, v in params.items():
        v.requires_grad_(k == DET_TABLE)
    table = params[DET_TABLE]
    probe = torch.nn.Linear(mm.LLM['hidden_size'], len(mm.CLASSES))
    opt = torch.optim.AdamW([{'params': [table], 'lr': LINK_LR, 'weight_decay': 0.0},
                             {'params': list(probe.parameters()), 'lr': PROBE_LR}])
    saved = run.state.get('link')
    if saved:
        probe.load_state_dict(saved['probe'])
        opt.load_state_dict(saved['opt'])
    step, clock, named, language = run.state['step'], time.time(), [], []
    while step < steps:
        rng = np.random.default_rng([seed, 4, step])
        opt.zero_grad()
        for index in rng.choice(6000, LINK_BATCH, replace=False):
            example = Example(seed, int(index), detector.IMAGE_SCALE)
            turns = task_turns(example.annotation, rng)
            probe_loss, answers_loss = link_loss(params, tokens, probe, example, turns, rng)
            ((probe_loss + answers_loss) / LINK_BATCH).backward()
            named.append(float(probe_loss))
            language.append(float(answers_loss))
        torch.nn.utils.clip_grad_norm_([table], 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            run.log(f'link step {step}/{steps}: probe {np.mean(named):.3f}, language {np.mean(language):.3f}')
            named, language = [], []
        if time.time() - clock > 240 and step < steps:
            run.checkpoint(step=step, params={k: v.detach().clone() for k, v in params.items()}, link={'probe': probe.state_dict(), 'opt': opt.state_dict()})
            clock = time.time()
    right, similar = link_held_out(params, tokens, probe, seed)
    run.log(f'link step {step}/{steps}: held-out blocks named right {right:.3f}, mean cosine of a prompt\'s blocks {similar:.3f}')
    for v in params.values():
        v.requires_grad_(False)


def crop_batch(seed, indices, count, rng):
    """`count` object crops (Example.object_crops) from pictures drawn in turn from `indices`."""
    parts, found = [], 0
    for index in indices:
        crops = Example(seed, int(index), detector.IMAGE_SCALE).object_crops(BACKBONE_CROP, rng)
        if crops is not None:
            parts.append(crops)
            found += len(crops[-1])
        if found >= count:
            break
    return [torch.cat(part)[:count] for part in zip(*parts)]


def train_backbone(run, seed, steps, key='backbone'):
    """A backbone (BACKBONES[key]: the detector's, or UniPose's) and training-only heads learn ShapesWorld's
    objects from crops; the run's state keeps them under `key` (resumable)."""
    config = BACKBONES[key]
    model, heads = detector.build(DETECTOR_SEED, config), detector.backbone_heads(config)
    learning = [p for n, p in model.named_parameters() if '.backbone.' in n] + list(heads.parameters())
    opt = torch.optim.AdamW(learning, lr=BACKBONE_LR, weight_decay=0.05)
    saved = run.state.get(key)
    if saved:
        model.load_state_dict(saved['model'])
        heads.load_state_dict(saved['heads'])
        opt.load_state_dict(saved['opt'])
    held = crop_batch(seed, range(HELD_OUT_FIRST, HELD_OUT_FIRST + 100), BACKBONE_HELD_OUT, np.random.default_rng([seed, 6]))
    step, clock, losses, right = run.state['step'], time.time(), [], []
    detector.learning_statistics(model.slices[0], True)
    while step < steps:
        rng = np.random.default_rng([seed, 5, step])
        for g in opt.param_groups:
            g['lr'] = BACKBONE_LR * warmup_then_cosine(step, steps, 100)
        crops = crop_batch(seed, rng.permutation(6000), BACKBONE_BATCH, rng)
        loss, named = detector.backbone_loss(heads, detector.backbone(model, crops[0]), *crops[1:])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(learning, 1.0)
        opt.step()
        losses.append(float(loss))
        right.append(named)
        step += 1
        if step % 50 == 0 or step == steps:
            line = f'{key.replace("_", " ")} step {step}/{steps}: loss {np.mean(losses):.3f}, crops\' classes named right at strides 8/16/32 ' + \
                '/'.join(f'{x:.2f}' for x in np.mean(right, 0))
            if step % 250 == 0 or step == steps:
                line += ', held-out ' + '/'.join(f'{x:.2f}' for x in backbone_held_out(model, heads, held))
            run.log(line)
            losses, right = [], []
        if time.time() - clock > 240 or step == steps:
            run.checkpoint(step=step, **{key: {'model': model.state_dict(), 'heads': heads.state_dict(), 'opt': opt.state_dict()}})
            clock = time.time()
    detector.learning_statistics(model.slices[0], False)


@torch.no_grad()
def backbone_held_out(model, heads, held):
    """Per stage, the share of held-out crops whose object's class the pooled logits name right (a ResNet
    with its running statistics, as the detector runs it)."""
    detector.learning_statistics(model.slices[0], False)
    chunks = list(zip(*(t.split(64) for t in held)))
    parts = [detector.backbone_loss(heads, detector.backbone(model, chunk[0]), *chunk[1:])[1] for chunk in chunks]
    detector.learning_statistics(model.slices[0], True)
    return np.average(parts, axis=0, weights=[len(chunk[0]) for chunk in chunks])


@torch.no_grad()
def held_out(params, model, tokens, seed):
    """A quick view of learning on held-out pictures, not the evaluation: the recall of their objects among
    each detection prompt's top 10 (the right class, IoU >= 0.5), and which of finding and naming holds it
    back (per object the best IoU of any query's box, and whether that query's first class is the object's);
    the grounding box's mean IoU; a prompt's class embeddings' mean cosine, and out of the encoder."""
    found, best, named, grounding, similar = [], [], [], [], []
    for example, turns, seq, hidden in fixed_prompts(params, tokens, seed, HELD_OUT_FIRST, HELD_OUT_COUNT, 7):
        stages = detector.backbone(model, example.pixel_values)
        for turn, rows in zip(turns, turn_queries(seq, turns)):
            if turn['type'] == 'semantic':
                continue
            objects, labels = turn_labels(turn, example.annotation)
            boxes, _ = example.targets(objects)
            embeddings = model.text_queries(hidden[rows])
            out = detector.forward(model, stages, example.pixel_mask, embeddings)
            if len(rows) > 1:
                similar.append((mean_cosine(embeddings), mean_cosine(out['text'])))
            logits, pred = out['logits'][-1], out['boxes'][-1]
            K = logits.shape[1]
            top = logits.sigmoid().reshape(-1).topk(min(10, logits.numel())).indices
            iou = box_iou(detector.cxcywh_to_xyxy(pred), detector.cxcywh_to_xyxy(boxes))   # [queries, objects]
            if turn['type'] == 'grounding':
                grounding.append(float(iou[top[0] // K, 0]))
                continue
            for t, label in enumerate(labels):
                found.append(bool(((iou[top // K, t] >= 0.5) & (top % K == label)).any()))
                query = int(iou[:, t].argmax())
                best.append(float(iou[query, t]))
                named.append(int(logits[query].argmax()) == label)
    mean = lambda values: float(np.mean(values)) if len(values) else float('nan')  # noqa: E731
    return dict(recall=mean(found), best_iou=mean(best), named=mean(named), grounding=mean(grounding),
                cosine=mean([s for s, _ in similar]), encoder_cosine=mean([t for _, t in similar]))


def patch2query_inputs(model, hidden):
    """What patch2query's last layer reads, averaged over the block's queries: [K, d] (the mean over num_embs
    commutes with that layer, so a class embedding is its weight times this, plus its bias)."""
    return model.patch2query.hidden(hidden).mean(-2)


@torch.no_grad()
def discriminant_start(model, params, tokens, seed):
    """patch2query's last layer starts where the class embeddings tell the classes apart. With its drawn
    weights, embeddings of the same class differ between prompts (a block's place in its list, its
    neighbours) as much as different classes do (spreads 1.7 and 1.5), and 500 detector steps did not
    change that: the detector learnt only what the classes share. So, from DISCRIMINANT_PICTURES training
    pictures' prompts, Fisher's discriminant directions of the layer's inputs (within-class spread shrunk
    by DISCRIMINANT_SHRINK of its mean, and whitened) enter the layer along its own images of them, scaled
    so the class means spread by DISCRIMINANT_SPREAD; the drawn weights stay at DRAWN_SHARE, keeping what
    else the states say (a grounding expression's colour and relations). The bias then centres the
    embeddings, as the class logits are bare dot products that a shared part would dominate. The
    architecture is unchanged; only the layer's start differs (as vl_bridge's standardisation)."""
    inputs, classes = [], []
    for example, turns, seq, hidden in fixed_prompts(params, tokens, seed, 0, DISCRIMINANT_PICTURES, 6):
        for turn, rows in zip(turns, turn_queries(seq, turns)):
            if rows is not None:
                inputs.append(patch2query_inputs(model, hidden[rows]))
                classes += block_classes(turn, example.annotation)
    z, classes = torch.cat(inputs).double(), torch.tensor(classes)
    means = torch.stack([z[classes == k].mean(0) for k in range(len(mm.CLASSES))])
    within = (z - means[classes]).T @ (z - means[classes]) / len(z)
    within += DISCRIMINANT_SHRINK * within.trace() / len(within) * torch.eye(len(within), dtype=z.dtype)
    between = (means - means.mean(0)).T @ (means - means.mean(0)) / len(means)
    whiten = torch.linalg.inv(torch.linalg.cholesky(within))
    _, vectors = torch.linalg.eigh(whiten @ between @ whiten.T)
    directions = whiten.T @ vectors[:, -(len(mm.CLASSES) - 1):]             # [d_in, classes - 1], unit spread within
    last = model.patch2query.layers[-1]
    outputs = torch.linalg.qr(last.weight.double() @ directions)[0]        # [d, classes - 1], orthonormal
    spread = ((means - means.mean(0)) @ directions).pow(2).sum(-1).mean().sqrt()
    last.weight.copy_(DRAWN_SHARE * last.weight + (DISCRIMINANT_SPREAD / spread * outputs @ directions.T).float())
    last.bias.zero_()
    last.bias -= (z.float() @ last.weight.T).mean(0)


def part_scale(name):
    """A detector parameter's learning-rate scale (PART_LR_SCALES; 1 for the parts that start afresh)."""
    return next((scale for part, scale in PART_LR_SCALES.items() if part in name), 1.0)


def train_detector(run, params, tokens, seed, steps):
    """Trains the detector and the det query table; the run's state keeps both (resumable)."""
    model = detector.build(DETECTOR_SEED)
    saved = run.state.get('detector')
    if run.state.get('backbone'):
        model.load_state_dict(run.state['backbone']['model'])
    if saved:
        model.load_state_dict(saved['model'])
        params[DET_TABLE] = saved['table'].clone()
    else:
        discriminant_start(model, params, tokens, seed)
    if saved and saved.get('llm'):
        params.update({k: v.clone() for k, v in saved['llm'].items()})
    for k, v in params.items():
        v.requires_grad_(False)
    table = params[DET_TABLE].requires_grad_(True)
    llm = [k for k in mm.language_names(params) if k != DET_TABLE] if LLM_LR else []
    # A ResNet's frozen batch norms keep their scales and shifts too (GroundingDinoFrozenBatchNorm2d's buffers).
    frozen = {n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for n, p in model.named_parameters():
        p.requires_grad_(part_scale(n) > 0)
    # In named_parameters' order: clip_grad_norm_ sums in it, and the committed run followed it.
    named = [(n, p) for n, p in model.named_parameters() if n.rsplit('.', 1)[0] not in frozen and p.requires_grad]
    learning = [p for _, p in named]
    scales = sorted({part_scale(n) for n, _ in named}, reverse=True)
    groups = [{'params': [p for n, p in named if part_scale(n) == s], 'lr': DETECTOR_LR * s} for s in scales]
    groups.append({'params': [table], 'lr': QUERY_LR})
    if llm:
        groups.append({'params': [params[k].requires_grad_(True) for k in llm], 'lr': LLM_LR, 'weight_decay': 0.0})
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    if saved:
        opt.load_state_dict(saved['opt'])
    base = [g['lr'] for g in opt.param_groups]
    step, clock, log = run.state['step'], time.time(), LossLog()
    while step < steps:
        rng = np.random.default_rng([seed, 3, step])
        scale_learning_rates(opt, base, warmup_then_drop(step, steps, 100))
        opt.zero_grad()
        for index in rng.choice(6000, DETECTOR_BATCH, replace=False):
            example = Example(seed, int(index), detector.IMAGE_SCALE)
            turns = task_turns(example.annotation, rng)
            language = vqa_turns(example.annotation, seed, int(index), step) if LLM_LR else []
            loss, parts = picture_loss(params, model, tokens, example, turns, rng, language)
            (loss / DETECTOR_BATCH).backward()
            log.add(loss, parts)
        torch.nn.utils.clip_grad_norm_(learning + [table] + [params[k] for k in llm], 0.1)
        opt.step()
        step += 1
        if step % 20 == 0:
            run.log(f'detector step {step}/{steps}: {log.line()}')
        if step % HELD_OUT_EVERY == 0 or step == steps:
            m = held_out(params, model, tokens, seed)
            run.log(f'detector step {step}/{steps}: held-out recall in the top 10 {m["recall"]:.3f} (best box IoU {m["best_iou"]:.3f}, '
                    f'its class right {m["named"]:.3f}), grounding box IoU {m["grounding"]:.3f}, '
                    f'a prompt\'s class embeddings\' mean cosine {m["cosine"]:.3f}, out of the encoder {m["encoder_cosine"]:.3f}')
        if time.time() - clock > 240 or step == steps:
            run.checkpoint(step=step, detector={'model': model.state_dict(), 'table': table.detach().clone(), 'opt': opt.state_dict(),
                                                'llm': {k: params[k].detach().clone() for k in llm}})
            clock = time.time()
    for v in params.values():
        v.requires_grad_(False)
    return model
