"""The miniature's region encoder (the `<region>` inputs), trained on ShapesWorld region captions: given
a box around an object, the MLLM must say its colour and class ("a red circle").

As the official model calls it (modeling_visionllmv2.py, scripts/golden/reference_region.py), the
encoder reads the global tile's CLIP input with the box's mask as a fourth channel and pools, inside
the mask, its own features plus CLIP's last three hidden states; its output replaces the `<region>`
token's embedding. Only the encoder learns: the tower and the LLM keep their weights, so every other
answer stays the language stage's, and the encoder must learn to say what the LLM already reads
(the way the language stage's word alignment made image tokens read like "red" + "circle"), in the
describe answer's form ("I see a red circle."), which the LLM already gives. Training-only heads on
its pooled features must name the object's class and colour too (HEADS_WEIGHT).
"""
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from decoders import language_loss, query_hidden
from miniature_data import pack, pixels, ref, tile_array
import miniature_model as mm
from scripts.shapesworld.conversations import region_captions
from scripts.shapesworld.world import render_picture

import reference_region as R

REGION_STEPS, REGION_BATCH, REGION_LR, REGION_SEED = 300, 4, 2e-3, 29
# The answer loss alone taught the colour but left the class at chance (the LLM said "square" for every
# shape after 200 steps): training-only linear heads on the pooled features must also name the object's
# class and colour, a direct signal for the encoder's own convolutions to learn shapes from.
HEADS_WEIGHT = 1.0

# The release hard-codes the encoder's width (256) and its 48 x 48 sample points; our config records them.
UP_DIM_START = 0.01
CONFIG = {'mask_pool_type': 'grid_sample', 'hidden_dim': 256, 'num_points': 48 * 48}
# Held-out pictures of the training seed (past the language stage's pool), as the detector's.
HELD_OUT_FIRST, HELD_OUT_COUNT = 6100, 24


def build(seed=REGION_SEED):
    """The encoder from its seed, up_dim started small: it pools CLIP's residual stream (norm about 30),
    which PyTorch's default initialisation maps to a `<region>` embedding of norm about 250, where the
    LLM's word embeddings have 0.4."""
    torch.manual_seed(seed)
    model = R.RegionEncoder(CONFIG['hidden_dim'], mm.VISION['hidden_size'], mm.LLM['hidden_size'],
                            patch_size=mm.VISION['patch_size'], mask_pool_type=CONFIG['mask_pool_type'])
    with torch.no_grad():
        model.up_dim.weight.mul_(UP_DIM_START)
        model.up_dim.bias.mul_(UP_DIM_START)
    return model


def named_state(model):
    return {'region_encoder.' + k: v.detach().clone() for k, v in model.state_dict().items()}


def box_mask(box, width, height, side=mm.TILE):
    """The box as a mask over the global tile (side x side), as src/model/regions.ts and the official
    refcoco pipeline build it: scaled by side/W and side/H, clamped to [0, side - 1], truncated, both
    ends inclusive."""
    x0, y0, x1, y1 = (min(max(v * side / size, 0), side - 1) for v, size in zip(box, (width, height, width, height)))
    mask = torch.zeros(side, side)
    mask[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = 1
    return mask


class RegionExample:
    """One picture's tiles, its region-captioning turns and their masks over the global tile."""

    def __init__(self, seed, index, rng):
        image, annotation = render_picture(seed, index)
        pil = Image.fromarray(image)
        self.tiles = pixels(tile_array(pil))
        self.turns = region_captions(annotation, rng)
        self.masks = torch.stack([box_mask(t['box'], pil.width, pil.height) for t in self.turns])[:, None] if self.turns else None


def encode(params, encoder, example):
    """The tower's features for the LLM, each region's embedding (the encoder's output) and its pooled
    features before up_dim (mean over CLIP's levels, what the training-only heads read)."""
    with torch.no_grad():
        states = ref.clip_vision_hidden_states(params, mm.VISION, example.tiles)
    glance = example.tiles[-1:]   # the global view: the last tile (the only one for a single-tile picture)
    levels = [s[-1:, 1:].expand(len(example.turns), -1, -1) for s in states[-3:]]
    trace = {}
    regions = encoder(glance.expand(len(example.turns), -1, -1, -1), example.masks, levels, trace=trace)
    return states[mm.CONFIG['vis_output_layer']][:, 1:], regions, torch.stack(trace['pooled']).mean(0)


def region_hidden(params, tokens, example, features, regions, rng):
    """The packed sequence of a picture's region turns and the LLM's final hidden states, each `<region>`
    token's embedding replaced by its turn's region embedding."""
    seq = pack(tokens, len(example.tiles), example.turns, rng, splice_odds=0.0)
    where = (seq['ids'] == tokens.added['<region>']).nonzero()[:, 0]
    assert len(where) == len(example.turns), 'one <region> per region turn'
    return seq, query_hidden(params, features, seq, replaced=(where, regions))


def kind_targets(example):
    """Each region's object's class and colour indices [n, 2]."""
    return torch.tensor([[mm.CLASSES.index(t['subject']['class']), mm.COLOURS.index(t['subject']['colour'])]
                         for t in example.turns])


def heads_loss(heads, pooled, kinds):
    """Training-only heads on the pooled features must name the object's class and colour; returns the
    loss and how often each is named right."""
    out = heads(pooled)
    classes, colours = out[:, :len(mm.CLASSES)], out[:, len(mm.CLASSES):]
    loss = F.cross_entropy(classes, kinds[:, 0]) + F.cross_entropy(colours, kinds[:, 1])
    return loss, (classes.argmax(1) == kinds[:, 0]).float(), (colours.argmax(1) == kinds[:, 1]).float()


@torch.no_grad()
def held_out(params, encoder, heads, tokens, seed):
    """On held-out pictures' regions: the share of answers the LLM gives right, teacher-forced (every
    token the argmax; a quick view, the evaluation asks through chat()), and how often the heads name
    the class and the colour."""
    right = total = 0
    named = []
    for index in range(HELD_OUT_FIRST, HELD_OUT_FIRST + HELD_OUT_COUNT):
        example = RegionExample(seed, index, np.random.default_rng([seed, index, 8]))
        if not example.turns:
            continue
        features, regions, pooled = encode(params, encoder, example)
        named.append(torch.stack(heads_loss(heads, pooled, kind_targets(example))[1:], 1))
        seq, hidden = region_hidden(params, tokens, example, features, regions, np.random.default_rng(0))
        scored = seq['targets'] >= 0
        hit = F.linear(hidden[scored], params['llm.lm_head.weight']).argmax(1) == seq['targets'][scored]
        segment = torch.cumsum((seq['targets'][scored] == 2).long(), 0) - (seq['targets'][scored] == 2).long()
        for turn in range(len(example.turns)):
            right += bool(hit[segment == turn].all())
            total += 1
    return (right / max(1, total), *torch.cat(named).mean(0).tolist())


def train_regions(run, params, tokens, seed, steps):
    """The region encoder learns region captions through the frozen MLLM (REGION_STEPS); resumable."""
    encoder, heads = build(), torch.nn.Linear(mm.VISION['hidden_size'], len(mm.CLASSES) + len(mm.COLOURS))
    for v in params.values():
        v.requires_grad_(False)
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(heads.parameters()), lr=REGION_LR, weight_decay=0.01)
    saved = run.state.get('regions')
    if saved:
        encoder.load_state_dict(saved['model'])
        heads.load_state_dict(saved['heads'])
        opt.load_state_dict(saved['opt'])
    step, clock, losses, named = run.state['step'], time.time(), [], []
    while step < steps:
        rng = np.random.default_rng([seed, 9, step])
        for g in opt.param_groups:
            g['lr'] = REGION_LR * min(1.0, (step + 1) / 30) * 0.5 * (1 + np.cos(np.pi * step / steps))
        opt.zero_grad()
        for index in rng.choice(6000, REGION_BATCH, replace=False):
            example = RegionExample(seed, int(index), rng)
            if not example.turns:
                continue
            features, regions, pooled = encode(params, encoder, example)
            seq, hidden = region_hidden(params, tokens, example, features, regions, rng)
            answers = language_loss(params, hidden, seq)
            kinds, class_right, colour_right = heads_loss(heads, pooled, kind_targets(example))
            ((answers + HEADS_WEIGHT * kinds) / REGION_BATCH).backward()
            losses.append((float(answers), float(kinds)))
            named.append(torch.stack([class_right, colour_right], 1))
        torch.nn.utils.clip_grad_norm_(list(encoder.parameters()) + list(heads.parameters()), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0 or step == steps:
            answers, kinds = np.mean(losses, 0)
            class_right, colour_right = torch.cat(named).mean(0).tolist()
            line = f'regions step {step}/{steps}: answers {answers:.3f}, heads {kinds:.3f} (class {class_right:.2f}, colour {colour_right:.2f})'
            if step % 100 == 0 or step == steps:
                line += ', held-out: answers right (teacher-forced) {:.3f}, class {:.2f}, colour {:.2f}'.format(
                    *held_out(params, encoder, heads, tokens, seed))
            run.log(line)
            losses, named = [], []
        if time.time() - clock > 240 or step == steps:
            run.checkpoint(step=step, regions={'model': encoder.state_dict(), 'heads': heads.state_dict(), 'opt': opt.state_dict()})
            clock = time.time()
    return encoder
