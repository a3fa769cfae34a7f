"""The miniature's UniPose (the decoders stage's pose part), trained on ShapesWorld's people end to end
through the super link: the MLLM reads the official pose prompt with its answer teacher-forced
("... person[DET] ... nose[POSE], left eye[POSE], ..."), the [DET] block's query states are UniPose's
object text and the [POSE] blocks' its keypoint queries (projection_llava, projection_kpt_llava).
The LLM keeps its weights; the gradient runs back through it into the pose query table
(emb_embeddings_pose), which only pose answers use, so no other answer changes. The det table is
the detector's and stays as the detector left it.

The modules are the golden reference (scripts/golden/reference_unipose.py, official names); training
adds what inference leaves out, as ED-Pose (UniPose's base) trains:
  - the two-stage selection's boxes enter the decoder detached, with their own matched loss, plus
    the dense one-stage loss and the invalid positions' loss the detector trains with (detector.py);
  - each box layer's boxes and scores are matched to the people and scored (detector.box_losses);
  - each pose layer's groups are matched on ED-Pose's cost (focal class 2, box L1 5, GIoU 2,
    keypoint L1 10, OKS 4) and get those losses; references are detached between layers.
The Swin learnt ShapesWorld's objects from crops in the pose_backbone part (decoders.train_backbone;
microsoft_state maps the names), as the release's starts from ImageNet weights, and keeps its weights
here: the part's dozen minutes go further without its backward pass. The keypoint embeddings start centred
(centre_keypoint_embeddings).
"""
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou, generalized_box_iou, sigmoid_focal_loss

from decoders import DETECTOR_SEED, LossLog, prompt_hidden, scale_learning_rates, turn_queries, warmup_then_drop
from miniature_data import pixels, tile_array
import detector
from scripts.shapesworld import conversations as talk
from scripts.shapesworld.world import render_picture

import reference_gdino_decoder as gdino_decoder
import reference_unipose as R
import reference_unipose_pose as P
import reference_unipose_swin as swin_ref
from tiny_pose import canonical_names
from unipose_image import DIVISOR, MEAN, STD, get_size_with_aspect_ratio

POSE_STEPS, POSE_BATCH, POSE_LR, POSE_QUERY_LR, POSE_SEED = 240, 2, 4e-4, 1e-4, 31
POSE_TABLE = 'emb_embeddings_pose.weight'
# (max_size, size) of UniPose's own copy of the picture (our config key `image_scale`, as the detector's;
# the release resizes the short side to 800, the long one at most 1333): the detector's scale, at which
# the Swin learnt ShapesWorld's objects.
IMAGE_SCALE = detector.IMAGE_SCALE
CONFIG = dict(
    R.release_config(),
    backbone_config={k: detector.SWIN.to_json()[k] for k in ('embed_dim', 'depths', 'num_heads', 'window_size')},
    hidden_dim=128, nheads=8, enc_layers=2, dec_layers=4, num_box_decoder_layers=2, dim_feedforward=256,
    num_queries=30, num_group=6, l_hidden_size=256, image_scale=IMAGE_SCALE,
)
KEYPOINTS = len(talk.POSE_KEYPOINTS)
COST = dict(cls=2.0, l1=5.0, giou=2.0, keypoints=10.0, oks=4.0)
WEIGHT = dict(keypoints=10.0, oks=4.0)
# COCO's keypoint sigmas (pycocotools), for the OKS term.
SIGMAS = torch.tensor([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
HELD_OUT_FIRST, HELD_OUT_COUNT, HELD_OUT_EVERY = 6100, 24, 120
# Training pictures whose keypoint embeddings centre_keypoint_embeddings averages.
CENTRE_PICTURES = 16


def build(seed=POSE_SEED, swin=None):
    """UniPose with DINO's initialisation (detector.initialise) from a seed, its Swin from the pose_backbone
    part's (an HF-named SwinBackbone) when given; the box and pose heads start at zero, so a query's first box
    is its reference and every keypoint starts where select_groups puts it."""
    torch.manual_seed(seed)
    model = R.UniPose(CONFIG)
    detector.initialise(model, seed, layer_scales=('gam_v', 'gam_l'),
                        drawn=lambda name: name == 'transformer.level_embed' or name.startswith(('transformer.tgt_embed', 'transformer.decoder.hw')))
    with torch.no_grad():
        for head in (model.bbox_embed[0], model.transformer.enc_out_bbox_embed, model.pose_embed[0], model.pose_hw_embed[0]):
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.zero_()
        # The selection's scores are bare dot products, as the detector's: its queries start short. Not the
        # decoder's final norm: the official heads read its output for the losses but the un-normed
        # output for the next layer's references, and a shrunk norm would give the same heads inputs of
        # two scales (the references then leap eight times as far as the losses teach).
        model.transformer.enc_output_norm.weight.fill_(detector.QUERY_NORM_START)
    if swin is not None:
        state = swin_ref.microsoft_state(swin, CONFIG['backbone_config']['depths'])
        state.update({f'norm{i}.{w}': swin.state_dict()[f'hidden_states_norms.stage{i + 1}.{w}']
                      for i in CONFIG['return_interm_indices'] for w in ('weight', 'bias')})
        missing, unexpected = model.backbone[0].load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith('relative_position_index') for k in missing), (missing, unexpected)
    return model


def named_state(model):
    """The checkpoint's tensors under unipose., each shared head once (the names the loader reads)."""
    state = model.state_dict()
    return {'unipose.' + k: state[k].detach().clone() for k in canonical_names(state)}


def pictures_with_people(seed, rng, count):
    """`count` training pictures with at least one person: only they teach keypoints, and each has
    groups enough on other shapes and background to learn to score those low."""
    found = []
    for index in rng.permutation(6000):
        picture = render_picture(seed, int(index))
        if any(o['class'] == 'person' for o in picture[1]['objects']):
            found.append(PoseExample(picture))
        if len(found) == count:
            return found


class PoseExample:
    """One rendered picture (image, annotation): its anyres tiles, UniPose's own copy (transform_coco's resize at IMAGE_SCALE with
    Pillow's bilinear, ImageNet's mean and std, zeros to multiples of 32, the mask True on padding)
    and its people's boxes [T, 4] (cx, cy, w, h) and keypoints [T, 17, 2], over the picture's size."""

    def __init__(self, picture):
        image, self.annotation = picture
        pil = Image.fromarray(image)
        self.tiles = pixels(tile_array(pil))
        self.turn = talk.pose_turn(self.annotation['objects'])
        oh, ow = get_size_with_aspect_ratio(pil.size, IMAGE_SCALE[1], IMAGE_SCALE[0])
        resized = np.asarray(pil.resize((ow, oh), Image.BILINEAR), np.float32) / 255
        chw = torch.from_numpy(((resized - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)
        hp, wp = -(-oh // DIVISOR) * DIVISOR, -(-ow // DIVISOR) * DIVISOR
        self.pixel_values = F.pad(chw, (0, wp - ow, 0, hp - oh))[None]
        self.pad_mask = torch.ones(1, hp, wp, dtype=torch.bool)
        self.pad_mask[:, :oh, :ow] = False
        people = [o for o in self.annotation['objects'] if o['class'] == 'person']
        w, h = pil.size
        xyxy = torch.tensor([o['box'] for o in people], dtype=torch.float32).reshape(-1, 4) / torch.tensor([w, h, w, h])
        self.boxes = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
        self.keypoints = torch.tensor([[p[:2] for p in o['keypoints']] for o in people], dtype=torch.float32).reshape(-1, KEYPOINTS, 2) \
            / torch.tensor([w, h])
        self.size = torch.tensor([w, h], dtype=torch.float32)
        self.heights = torch.tensor([o['figure_height'] for o in people], dtype=torch.float32)


def queries(params, tokens, example, rng):
    """The pose answer's [DET] block [1, n, l] and [POSE] blocks [17, n, l] of query states."""
    seq, hidden = prompt_hidden(params, tokens, example, [example.turn], rng)
    rows = turn_queries(seq, [example.turn])[0]
    return hidden[rows[:1]], hidden[rows[1:]]


def forward(model, example, obj_queries, kpt_queries):
    """The training forward: the selection's scores and boxes, the dense and invalid positions' scores,
    per box layer (logits [Q, 1], boxes [Q, 4]) and per pose layer (logits [G, 1], boxes [G, 4],
    keypoints [G, 17, 2]), each layer's heads on its normed output and its input reference (as the
    official outputs), references detached between layers."""
    c = model.c
    nb, nbp, G = c['num_box_decoder_layers'], c['num_body_points'], c['num_group']
    obj, kpt, kpt_mask = model.text_queries(obj_queries, kpt_queries)
    with torch.no_grad():
        maps = model.backbone[0](example.pixel_values)   # the pose_backbone part's Swin, kept (see the top)
    enc = model.encode(maps, example.pad_mask, obj)
    t = model.transformer
    memory, proposals, valid = gdino_decoder.OVGroundingDinoModel.gen_encoder_output_proposals(
        t, enc['memory'], enc['mask_flatten'], enc['spatial_shapes'])
    valid = valid[0] & ~enc['mask_flatten'][0]
    text = enc['text'][0]
    scores = P.class_embed(memory[0], text)
    coords = t.enc_out_bbox_embed(memory[0]) + proposals[0]
    topk = torch.topk(scores.max(-1)[0].masked_fill(~valid, float('-inf')), c['num_queries'])[1]
    out = dict(interm_logits=scores[topk], interm_boxes=coords[topk].sigmoid(), invalid_logits=scores[~valid],
               dense=dict(centres=proposals[0][valid, :2].sigmoid(), logits=scores[valid], boxes=coords[valid].sigmoid()),
               box_layers=[], pose_layers=[])
    output, ref = t.tgt_embed.weight, out['interm_boxes'].detach()
    for layer in range(nb):
        output = model._layer(layer, output, ref, enc, None)
        normed = t.decoder.norm(output)
        out['box_layers'].append((P.class_embed(normed, text), (model.bbox_embed[layer](normed) + P.inverse_sigmoid(ref)).sigmoid()))
        ref = (model.bbox_embed[layer](output) + P.inverse_sigmoid(ref)).sigmoid().detach()
    _, output, ref = P.select_groups(output, ref, text, kpt, model.pose_embed, t.decoder.hw.weight, t.decoder.hw_append.weight, G)
    ref = ref.detach()
    attn_mask = P.prepare_for_mask(kpt_mask, nbp, c['nheads'], G)
    for layer in range(nb, c['dec_layers']):
        reference_in = ref
        output = model._layer(layer, output, ref, enc, attn_mask)
        logits, boxes, keypoints = P.outputs(t.decoder.norm(output), reference_in, text, model.bbox_embed[layer],
                                             model.pose_embed[layer - nb], nbp, G)
        out['pose_layers'].append((logits, boxes, keypoints[:, :2 * nbp].view(G, nbp, 2)[:, :KEYPOINTS]))
        ref = P.refine(output, ref, model.bbox_embed[layer], model.pose_embed[layer - nb], model.pose_hw_embed[layer - nb], nbp, G).detach()
    return out


def oks(keypoints, target, boxes):
    """Object keypoint similarity [G, T] of predicted keypoints [G, 17, 2] with the targets [T, 17, 2],
    each target's scale its box's area (every ShapesWorld keypoint is labelled)."""
    d2 = ((keypoints[:, None] - target[None]) ** 2).sum(-1)                          # [G, T, 17]
    area = (boxes[:, 2] * boxes[:, 3]).clamp(min=1e-6)[None, :, None]
    return torch.exp(-d2 / (2 * area * (2 * SIGMAS) ** 2)).mean(-1)


def pose_losses(logits, boxes, keypoints, example, normaliser):
    """One pose layer's groups matched to the people on ED-Pose's cost, then its losses."""
    T = len(example.boxes)
    target = torch.zeros_like(logits)
    if T == 0:
        return detector.WEIGHT['cls'] * sigmoid_focal_loss(logits, target, alpha=detector.FOCAL_ALPHA, gamma=detector.FOCAL_GAMMA, reduction='sum') / normaliser
    flat, truth = keypoints.flatten(1), example.keypoints.flatten(1)
    with torch.no_grad():
        prob = logits.sigmoid()[:, [0] * T]
        neg = (1 - detector.FOCAL_ALPHA) * prob ** detector.FOCAL_GAMMA * -(1 - prob + 1e-8).log()
        pos = detector.FOCAL_ALPHA * (1 - prob) ** detector.FOCAL_GAMMA * -(prob + 1e-8).log()
        xyxy, truth_xyxy = detector.cxcywh_to_xyxy(boxes), detector.cxcywh_to_xyxy(example.boxes)
        cost = COST['cls'] * (pos - neg) + COST['l1'] * torch.cdist(boxes, example.boxes, p=1) \
            - COST['giou'] * generalized_box_iou(xyxy, truth_xyxy) + COST['keypoints'] * torch.cdist(flat, truth, p=1) \
            + COST['oks'] * (1 - oks(keypoints, example.keypoints, example.boxes))
        groups = torch.from_numpy(detector.assignment(cost.T.double().numpy()))
    target[groups, 0] = 1
    cls = sigmoid_focal_loss(logits, target, alpha=detector.FOCAL_ALPHA, gamma=detector.FOCAL_GAMMA, reduction='sum') / normaliser
    matched = boxes[groups]
    l1 = F.l1_loss(matched, example.boxes, reduction='sum') / normaliser
    giou = (1 - torch.diag(generalized_box_iou(detector.cxcywh_to_xyxy(matched), detector.cxcywh_to_xyxy(example.boxes)))).sum() / normaliser
    points = F.l1_loss(flat[groups], truth, reduction='sum') / normaliser
    similarity = torch.diag(oks(keypoints[groups], example.keypoints, example.boxes))
    return detector.WEIGHT['cls'] * cls + detector.WEIGHT['l1'] * l1 + detector.WEIGHT['giou'] * giou \
        + WEIGHT['keypoints'] * points + WEIGHT['oks'] * (1 - similarity).sum() / normaliser


def loss(out, example):
    """The whole criterion for one picture; returns the loss and, for the log, its parts."""
    labels = torch.zeros(len(example.boxes), dtype=torch.long)
    normaliser = max(1, len(labels))
    parts = {}
    value, _ = detector.box_losses(out['interm_logits'], out['interm_boxes'], labels, example.boxes, normaliser)
    if len(out['invalid_logits']):
        invalid = out['invalid_logits']
        value = value + detector.WEIGHT['cls'] * sigmoid_focal_loss(
            invalid, torch.zeros_like(invalid), alpha=detector.FOCAL_ALPHA, gamma=detector.FOCAL_GAMMA).mean(0).sum()
    parts['interm'] = value
    parts['dense'] = detector.dense_losses(out['dense'], labels, example.boxes)
    parts['boxes'] = sum(detector.box_losses(logits, boxes, labels, example.boxes, normaliser)[0] for logits, boxes in out['box_layers'])
    parts['pose'] = sum(pose_losses(*layer, example, normaliser) for layer in out['pose_layers'])
    return sum(parts.values()), {k: float(v) for k, v in parts.items()}


@torch.no_grad()
def held_out(params, model, tokens, seed):
    """On held-out pictures' people: PCK@0.1 of the figure height of the best-scoring group whose box
    overlaps each person most (IoU >= 0.5, else every keypoint missed), and the share of people whose
    box the top group finds (IoU >= 0.5): a quick view of learning, not the evaluation."""
    hits, found, people = [], 0, 0
    for index in range(HELD_OUT_FIRST, HELD_OUT_FIRST + HELD_OUT_COUNT):
        example = PoseExample(render_picture(seed, index))
        if not len(example.boxes):
            continue
        logits, boxes, keypoints = forward(model, example, *queries(params, tokens, example, np.random.default_rng(0)))['pose_layers'][-1]
        iou = box_iou(detector.cxcywh_to_xyxy(boxes), detector.cxcywh_to_xyxy(example.boxes))   # [G, T]
        order = logits[:, 0].argsort(descending=True)
        for t in range(len(example.boxes)):
            people += 1
            overlapping = [g for g in order.tolist() if iou[g, t] >= 0.5]
            found += bool(iou[order[0], t] >= 0.5)
            if not overlapping:
                hits.append(torch.zeros(KEYPOINTS))
                continue
            distance = ((keypoints[overlapping[0]] - example.keypoints[t]) * example.size).norm(dim=-1)
            hits.append((distance <= 0.1 * example.heights[t]).float())
    return float(torch.cat(hits).mean()) if hits else float('nan'), found / max(1, people)


@torch.no_grad()
def centre_keypoint_embeddings(model, params, tokens, seed):
    """Moves projection_kpt_llava's last bias so that the keypoint embeddings of CENTRE_PICTURES training
    pictures average to zero. The 17 [POSE] blocks' query states share most of their direction (mean
    cosine 0.85 after the projection): every keypoint query then starts nearly the same, at the same
    reference, and only their small differences can tell the pose head which keypoint each is. The
    detector's discriminant_start centres its class embeddings too: the architecture is unchanged, only
    the starting bias differs."""
    embeddings = []
    for index in range(CENTRE_PICTURES):
        example = PoseExample(render_picture(seed, index))
        embeddings.append(model.projection_kpt_llava(queries(params, tokens, example, np.random.default_rng(0))[1]).mean(-2))
    model.projection_kpt_llava.layers[-1].bias -= torch.cat(embeddings).mean(0)


def train_pose(run, params, tokens, seed, steps):
    """Trains UniPose and the pose query table; the run's state keeps both (resumable)."""
    saved = run.state.get('pose')
    swin = None
    if not saved:
        swin = detector.build(DETECTOR_SEED, detector.SWIN.to_json()).slices[0]
        swin_state = {k[len('model.backbone.conv_encoder.model.'):]: v for k, v in run.state['pose_backbone']['model'].items()
                      if k.startswith('model.backbone.conv_encoder.model.')}
        swin.load_state_dict(swin_state)
    model = build(swin=swin)
    if saved:
        model.load_state_dict(saved['model'])
        params[POSE_TABLE] = saved['table'].clone()
    else:
        centre_keypoint_embeddings(model, params, tokens, seed)
    for v in params.values():
        v.requires_grad_(False)
    table = params[POSE_TABLE].requires_grad_(True)
    learning = [p for n, p in model.named_parameters() if not n.startswith('backbone.')]
    opt = torch.optim.AdamW([{'params': learning, 'lr': POSE_LR},
                             {'params': [table], 'lr': POSE_QUERY_LR}], weight_decay=1e-4)
    if saved:
        opt.load_state_dict(saved['opt'])
    base = [g['lr'] for g in opt.param_groups]
    step, clock, log = run.state['step'], time.time(), LossLog()
    while step < steps:
        rng = np.random.default_rng([seed, 10, step])
        scale_learning_rates(opt, base, warmup_then_drop(step, steps, 30))
        opt.zero_grad()
        for example in pictures_with_people(seed, rng, POSE_BATCH):
            value, parts = loss(forward(model, example, *queries(params, tokens, example, rng)), example)
            (value / POSE_BATCH).backward()
            log.add(value, parts)
        torch.nn.utils.clip_grad_norm_(learning + [table], 0.1)
        opt.step()
        step += 1
        if step % 10 == 0:
            run.log(f'pose step {step}/{steps}: {log.line()}')
        if step % HELD_OUT_EVERY == 0 or step == steps:
            pck, found = held_out(params, model, tokens, seed)
            run.log(f'pose step {step}/{steps}: held-out PCK@0.1 {pck:.3f}, people found by the top group {found:.3f}')
        if time.time() - clock > 240 or step == steps:
            run.checkpoint(step=step, pose={'model': model.state_dict(), 'table': table.detach().clone(), 'opt': opt.state_dict()})
            clock = time.time()
    for v in params.values():
        v.requires_grad_(False)
    params[POSE_TABLE] = table.detach().clone()
    return model
