"""The miniature's Grounding DINO (with VisionLLM v2's mask head): its config, its initialisation and
its training forward and losses. The modules are the golden reference (scripts/golden/reference_gdino.py,
official names); training adds what inference leaves out, as DINO trains (the official
modeling_ov_grounding_dino_mask_dn.py with its DINO criterion):

  - the two-stage selection's boxes enter the decoder detached, and the selected proposals get their
    own matched loss (the "interm" outputs), so the encoder learns which proposals to pick; the
    selection leaves out the invalid proposals (see forward);
  - every decoder layer's logits and boxes are matched and scored (auxiliary losses);
  - every valid encoder position gets a dense one-stage loss (dense_losses), which the release's
    training does not have: it is what lets so small a run find objects at all;
  - the last layer's matched queries get mask losses (binary cross-entropy and dice) at a quarter of
    the padded input's resolution, where the mask head predicts.

Matching is the Hungarian algorithm on DINO's cost (focal class cost 2, L1 5, GIoU 2); the losses
have the same weights, with masks at 5 and 5 (Mask2Former's). Denoising queries are left out: with
at most six objects a picture the plain matching converges, and the release's config has no key
for them.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'golden'))
import reference_gdino as R  # noqa: E402
import reference_gdino_resnet as resnet_ref  # noqa: E402
import reference_gdino_swin as swin_ref  # noqa: E402
from miniature_model import BACKGROUND_WEIGHT, CLASSES, COLOURS, KINDS  # noqa: E402

# (long, short) edge limits of the detector's own copy of the image (our config key `image_scale`;
# the release's mmdet scale is 1333 x 800). ShapesWorld pictures are 192 to 640 pixels a side and
# their smallest objects about 19 pixels, so 512 x 320 keeps every object over four stride-4 cells.
IMAGE_SCALE = [512, 320]
# The backbone is a ResNet (GroundingDinoConfig's own default; the release's is a Swin-T): on crops of
# ShapesWorld objects it names 88 % of held-out objects' classes after 300 steps, where the Swin of the
# same widths named 72 % after 2000 (docs/miniature.md). Stage widths 32 to 256, as the Swin's.
RESNET = resnet_ref.ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[2, 2, 2, 2], layer_type='basic')
# UniPose's backbone is a Swin (src/decoders/unipose reads a Microsoft Swin), trained on the same crops.
SWIN = swin_ref.SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7)
CONFIG = dict(
    R.release_config(),
    backbone_config=RESNET.to_json(),
    d_model=128, num_queries=30, encoder_layers=2, decoder_layers=3, encoder_attention_heads=8, decoder_attention_heads=8,
    encoder_ffn_dim=256, decoder_ffn_dim=256, num_feature_levels=4, encoder_n_points=4, decoder_n_points=4, mask_dim=64,
    l_hidden_size=256, num_embs=4, image_scale=IMAGE_SCALE, semantic_image_scale=IMAGE_SCALE,
)
COST = dict(cls=2.0, l1=5.0, giou=2.0)
WEIGHT = dict(cls=2.0, l1=5.0, giou=2.0, mask_bce=5.0, mask_dice=5.0)
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
QUERY_NORM_START = 1 / 8


def build(seed, backbone_config=None):
    """The detector with DINO's initialisation, from a seed (backbone_config: another backbone's; the Swin
    UniPose starts from is the backbone of a detector built with SWIN's)."""
    torch.manual_seed(seed)
    model = R.OVGroundingDinoForObjectDetection(dict(CONFIG, backbone_config=backbone_config or CONFIG['backbone_config']))
    initialise(model, seed, layer_scales=('vision_param', 'text_param'),
               drawn=lambda name: name == 'model.level_embed' or 'query_position_embeddings' in name)
    with torch.no_grad():
        # DINO: the box heads start at zero, so a query's first box is its reference.
        for head in (model.bbox_embed[0], model.model.encoder_output_bbox_embed):
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.zero_()
        # The class logits are bare dot products of layer-normed queries and text (no scale, no
        # bias), of spread sqrt(d) at the start: the focal loss then first crushes every logit far
        # below zero, where it learns slowly. Queries that start short give logits of spread ~1.
        for norm in (model.model.decoder.layer_norm, model.model.enc_output_norm):
            norm.weight.fill_(QUERY_NORM_START)
    return model


def initialise(model, seed, layer_scales, drawn):
    """DINO's initialisation of a deformable detector (Grounding DINO, UniPose): each deformable head
    starts looking along its own direction with uniform weights, the fusion's layer scales (named
    `layer_scales`) at Grounding DINO's init_values, the parameters `drawn` picks N(0, 1), norms at one,
    other biases at zero and every matrix Xavier-uniform."""
    g = torch.Generator().manual_seed(seed)
    norms = {n + '.weight' for n, m in model.named_modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d))}
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split('.')[-1]
            if 'sampling_offsets' in name:
                # Deformable DETR: each head starts looking along its own direction, n points out.
                if leaf == 'weight':
                    p.zero_()
                else:
                    attention = model.get_submodule(name.rsplit('.', 2)[0])
                    heads, levels, points = attention.n_heads, attention.n_levels, attention.n_points
                    theta = torch.arange(heads, dtype=torch.float32) * (2 * np.pi / heads)
                    grid = torch.stack([theta.cos(), theta.sin()], -1)
                    grid = grid / grid.abs().max(-1, keepdim=True)[0]
                    grid = grid.view(heads, 1, 1, 2).repeat(1, levels, points, 1)
                    grid *= torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, -1, 1)
                    p.copy_(grid.reshape(-1))
            elif 'attention_weights' in name:
                p.zero_()
            elif leaf in layer_scales:
                p.fill_(1e-4)   # the fusion's layer scale (Grounding DINO's init_values)
            elif leaf == 'relative_position_bias_table':
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).clamp(-0.04, 0.04))
            elif drawn(name):
                p.normal_(generator=g)
            elif p.dim() == 1:
                p.fill_(1.0 if name in norms else 0.0)
            else:
                p.copy_(_xavier(p.shape, g))


def _xavier(shape, g):
    fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
    if len(shape) > 2:
        fan_out *= int(np.prod(shape[2:]))
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


# ----------------------------------------------------------------------------- forward

def backbone(model, pixel_values):
    return model.slices[0](pixel_values)


def learning_statistics(backbone, learning):
    """A ResNet's batch norms: batch statistics while it learns alone (learning=True), the frozen running
    ones otherwise, as Grounding DINO runs and trains it (GroundingDinoFrozenBatchNorm2d). A Swin has none."""
    if hasattr(backbone, 'frozen'):
        backbone.frozen = not learning


def forward(model, stages, pixel_mask, class_embeddings):
    """The training forward for one image and one prompt's K class embeddings [K, d]: per decoder layer
    logits [Q, K] and boxes [Q, 4] (cx, cy, w, h in the unpadded image), the selected proposals'
    logits and boxes, the last layer's hidden states with the mask features (masks on demand), and the
    encoder's text features [K, d] (what the logits compare queries with)."""
    _, encoder_side, decoder_side = model.slices
    m = decoder_side.model
    K = class_embeddings.shape[0]
    enc = encoder_side(stages, pixel_mask, class_embeddings[None], torch.ones(1, K, dtype=torch.long))
    text_mask = torch.ones(1, K, dtype=torch.bool)
    memory, flat_mask, shapes = enc['memory'], enc['mask_flatten'], enc['spatial_shapes']
    mask_features = m.build_mask_features(memory, shapes, stages[0])
    object_query, proposals, valid = m.gen_encoder_output_proposals(memory, ~flat_mask, shapes)
    valid = valid & flat_mask
    enc_class = m.encoder_output_class_embed(object_query, enc['text'], text_mask)[..., :K]
    coord_logits = m.encoder_output_bbox_embed(object_query) + proposals
    # The selection as inference makes it, among valid proposals only: padding and border positions
    # share one constant query and infinite boxes, and at the start of training their common score
    # can outrank every real proposal, which leaves the decoder nothing to learn from. Their score is
    # pushed down by its own loss (`invalid_logits`), so inference, which does not mask, ranks them last.
    topk = torch.topk(enc_class.max(-1)[0].masked_fill(~valid, float('-inf')), model.config['num_queries'], dim=1)[1][0]
    interm_logits = enc_class[0, topk]
    interm_boxes = coord_logits[0, topk].sigmoid()
    reference = interm_boxes[None].detach()
    dec = m.decode(memory, flat_mask, shapes, enc['valid_ratios'], enc['text'], text_mask, reference)
    logits, boxes = decoder_side.heads(dec['hs'], reference, dec['refs'], enc['text'], text_mask)
    return dict(logits=[x[0, :, :K] for x in logits], boxes=[b[0] for b in boxes], interm_logits=interm_logits,
                interm_boxes=interm_boxes, invalid_logits=enc_class[0][~valid[0]], hidden=dec['hs'][:, -1], text=enc['text'][0],
                mask_features=mask_features, decoder_side=decoder_side,
                dense=dict(centres=proposals[0][valid[0], :2].sigmoid(), logits=enc_class[0][valid[0]],
                           boxes=coord_logits[0][valid[0]].sigmoid()))


# ----------------------------------------------------------------------------- backbone pretraining

def backbone_heads(backbone_config):
    """Training-only linear heads, one per backbone stage the encoder reads (strides 8, 16, 32), reading which
    class (or background) covers each cell."""
    channels = R.backbone_channels(backbone_config)
    return nn.ModuleList(nn.Linear(c, len(CLASSES) + 1) for c in channels[1:])


def backbone_loss(heads, stages, share, valid, own, kinds):
    """The release's backbones start from ImageNet weights; ours from crops of ShapesWorld objects (object_crops).
    At strides 8, 16 and 32 every cell must say which class covers it (soft cross-entropy over the
    classes and background, from share [B, KINDS + 1, h, w] at stride 4 pooled to each stage; background
    cells weigh BACKGROUND_WEIGHT, as in the tower's stage), and the cells of the crop's own object (own
    [B, h, w]), their logits averaged inside its mask, must say its class. The pooled term is what
    teaches shape: an outline belongs to the whole object, which a lone interior cell cannot see. Colour
    is left out: the backbones tell colours apart without being taught, and with it in the targets (one
    soft-max over the 40 kinds) shape is learnt more slowly. Returns the loss and, per stage, the share
    of crops whose object's class the pooled logits name right."""
    classes = torch.cat([share[:, :KINDS].unflatten(1, (len(CLASSES), len(COLOURS))).sum(2), share[:, KINDS:]], 1)
    labels = kinds // len(COLOURS)
    total, right = 0, []
    for level, (head, features) in enumerate(zip(heads, stages[1:]), start=1):
        pool = 2 ** level
        h, w = features.shape[-2:]
        target = F.avg_pool2d(classes, pool)[..., :h, :w].permute(0, 2, 3, 1)        # [B, h, w, classes + 1]
        cells = (F.avg_pool2d(valid[:, None].float(), pool)[:, 0] > 0.5)[..., :h, :w]
        inside = F.avg_pool2d(own[:, None], pool)[:, 0, :h, :w]
        logits = head(features.permute(0, 2, 3, 1))
        weight = (BACKGROUND_WEIGHT + target[..., :-1].sum(-1).clamp(max=1)) * cells
        total = total + (-(target * F.log_softmax(logits, -1)).sum(-1) * weight).sum() / weight.sum()
        pooled = (logits[..., :-1] * inside[..., None]).sum((1, 2)) / inside.sum((1, 2))[:, None].clamp(min=1e-6)
        total = total + F.cross_entropy(pooled, labels)
        right.append(float((pooled.argmax(-1) == labels).float().mean()))
    return total, right


# ----------------------------------------------------------------------------- matching and losses

def assignment(cost):
    """Minimum-cost assignment of every row to its own column (rows <= columns): the Hungarian algorithm
    with potentials, O(rows^2 columns). Returns each row's column. (scipy is not installable here.)"""
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner, way = np.zeros(m + 1, dtype=int), np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv, used = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    rows = np.full(n, -1)
    for j in range(1, m + 1):
        if owner[j]:
            rows[owner[j] - 1] = j - 1
    return rows


def cxcywh_to_xyxy(b):
    return R.box_cxcywh_to_xyxy(b)


def match(logits, boxes, labels, target_boxes):
    """Each target's query under DINO's cost. logits [Q, K], boxes [Q, 4] cxcywh, labels [T], target_boxes [T, 4]."""
    with torch.no_grad():
        prob = logits.sigmoid()[:, labels]                                      # [Q, T]
        neg = (1 - FOCAL_ALPHA) * prob ** FOCAL_GAMMA * -(1 - prob + 1e-8).log()
        pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -(prob + 1e-8).log()
        cost = COST['cls'] * (pos - neg) + COST['l1'] * torch.cdist(boxes, target_boxes, p=1) \
            - COST['giou'] * generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))
        return torch.from_numpy(assignment(cost.T.double().numpy()))


def box_losses(logits, boxes, labels, target_boxes, normaliser):
    """Focal class loss over every query and class, L1 and GIoU on the matched queries; returns (loss, queries)."""
    queries = match(logits, boxes, labels, target_boxes) if len(labels) else torch.zeros(0, dtype=torch.long)
    onehot = torch.zeros_like(logits)
    onehot[queries, labels] = 1
    cls = sigmoid_focal_loss(logits, onehot, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction='sum') / normaliser
    if len(labels) == 0:
        return WEIGHT['cls'] * cls, queries
    matched = boxes[queries]
    l1 = F.l1_loss(matched, target_boxes, reduction='sum') / normaliser
    giou = (1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(matched), cxcywh_to_xyxy(target_boxes)))).sum() / normaliser
    return WEIGHT['cls'] * cls + WEIGHT['l1'] * l1 + WEIGHT['giou'] * giou, queries


def mask_losses(mask_logits, target_masks, normaliser):
    """Sigmoid cross-entropy (mean over pixels) and dice of matched masks [T, h, w] against [T, h, w] in 0..1."""
    bce = F.binary_cross_entropy_with_logits(mask_logits, target_masks, reduction='none').mean((1, 2)).sum() / normaliser
    p = mask_logits.sigmoid().flatten(1)
    t = target_masks.flatten(1)
    dice = (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).sum() / normaliser
    return WEIGHT['mask_bce'] * bce + WEIGHT['mask_dice'] * dice


def dense_losses(dense, labels, target_boxes):
    """Every valid encoder position, as a one-stage detector is trained: a position whose proposal centre
    lies in an object's box (the smallest, where boxes overlap) should score that object's class and
    regress its box; every other position scores nothing. The matched losses reach only the 30 selected
    proposals; this dense one teaches the encoder, and the text it is compared with, where objects are
    and which class each is from the first steps, so the selection starts on objects."""
    logits, centres = dense['logits'], dense['centres']
    target = torch.zeros_like(logits)
    if len(labels) == 0:   # normalised as if a tenth of the positions were an object's, as is typical
        return WEIGHT['cls'] * sigmoid_focal_loss(logits, target, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction='sum') / max(1, len(logits) // 10)
    xyxy = cxcywh_to_xyxy(target_boxes)
    inside = ((centres[:, None, 0] > xyxy[None, :, 0]) & (centres[:, None, 0] < xyxy[None, :, 2]) &
              (centres[:, None, 1] > xyxy[None, :, 1]) & (centres[:, None, 1] < xyxy[None, :, 3]))
    area = (target_boxes[:, 2] * target_boxes[:, 3])[None].expand_as(inside)
    owner = torch.where(inside, area, torch.full_like(area, float('inf'))).argmin(1)
    positive = inside.any(1)
    target[positive, labels[owner[positive]]] = 1
    count = max(1, int(positive.sum()))
    cls = sigmoid_focal_loss(logits, target, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction='sum') / count
    if not positive.any():
        return WEIGHT['cls'] * cls
    boxes, truth = dense['boxes'][positive], target_boxes[owner[positive]]
    l1 = F.l1_loss(boxes, truth, reduction='none').sum(-1).mean()
    giou = (1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(truth)))).mean()
    return WEIGHT['cls'] * cls + WEIGHT['l1'] * l1 + WEIGHT['giou'] * giou


def loss(model, out, labels, target_boxes, target_masks):
    """The whole criterion for one prompt: every decoder layer, the selected proposals, the last layer's masks.
    Returns the loss and, for the log, its parts."""
    normaliser = max(1, len(labels))
    total, parts = 0, {}
    for level, (logits, boxes) in enumerate(zip(out['logits'], out['boxes'])):
        value, queries = box_losses(logits, boxes, labels, target_boxes, normaliser)
        total = total + value
        parts[f'layer{level}'] = float(value)
    value, _ = box_losses(out['interm_logits'], out['interm_boxes'], labels, target_boxes, normaliser)
    if len(out['invalid_logits']):
        invalid = out['invalid_logits']
        value = value + WEIGHT['cls'] * sigmoid_focal_loss(invalid, torch.zeros_like(invalid), alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA).mean(0).sum()
    total = total + value
    parts['interm'] = float(value)
    value = dense_losses(out['dense'], labels, target_boxes)
    total = total + value
    parts['dense'] = float(value)
    if len(labels):
        mask_logits = out['decoder_side'].seg_heads(out['hidden'], out['mask_features'], queries.tolist())[0]
        value = mask_losses(mask_logits, target_masks, normaliser)
        total = total + value
        parts['mask'] = float(value)
    return total, parts
