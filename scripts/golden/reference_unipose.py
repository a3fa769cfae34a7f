"""UniPose whole, as VisionLLM v2's inference runs it (decoders.md 2.B): the Swin backbone, the
encoder side, the two-stage query selection, the two-phase decoder (box layers over num_queries,
then pose layers over num_group x (1 + num_body_points)) and the last layer's heads, batch 1,
no denoising queries. Transcribed from OpenGVLab/VisionLLM VisionLLMv2/visionllmv2/model/unipose/
modeling_unipose.py ("U:" below) and utils/model_utils.py ("MU:"), composed from the project's
verified slice references (one definition each):

  backbone.0                           reference_unipose_swin.SwinTransformer (Joiner = Sequential(swin, position), U:1212-1225)
  input_proj, transformer (encoder),
  transformer.decoder.layers/ref_point_head/norm
                                       reference_unipose_encoder.UniPoseEncoderSide (U:430-452, 2490-2555, 2701-2867, 3188-3324)
  transformer.enc_output, enc_output_norm, tgt_embed, enc_out_bbox_embed
                                       DeformableTransformer.__init__ / forward two-stage (U:2393-2410, 2556-2615),
                                       UniPose.__init__ (U:200-212: two_stage_bbox_embed_share False, a deep copy)
  transformer.decoder.hw, hw_append    TransformerDecoder.__init__ (U:2943-2946)
  bbox_embed, pose_embed, pose_hw_embed and their transformer.decoder.* aliases
                                       UniPose.__init__ (U:150-195): with dec_pred_bbox_embed_share the lists
                                       repeat one MLP object; pose_hw_embed always repeats one
  projection_llava, projection_kpt_llava
                                       UniPose.__init__ (U:110-111), MLP(l_hidden_size, d, d, 3)
  the decoder loop                     TransformerDecoder.forward (U:2949-3130)
  group selection, pose refinement,
  heads, attn_mask2, post-processing   reference_unipose_pose.py (U:887-918, 3048-3117, 483-546; eval_pose.py:19-85)
  gen_encoder_output_proposals         MU:58-110 = reference_gdino_decoder.OVGroundingDinoModel.gen_encoder_output_proposals
                                       (same maths: proposals 0.05 * 2^l, valid in (0.01, 0.99), inf where invalid or padded,
                                       memory zeroed there; enc_output + enc_output_norm applied after it as in U:2564-2566)
  gen_sineembed_for_position           MU:178-205 = reference_gdino_encoder.get_proposal_pos_embed (y, x, w, h)

Deliberate changes, all for tiny test configs (identical at release_config()): `num_group` is a config key
(the official code hard-codes 50, U:483, 887-918, 2988, 2942); gen_sineembed_for_position's 128 features
per coordinate are d/2 and the encoder's text positions are d wide (both hard-coded for d = 256); the
backbone is configured by `backbone_config` {embed_dim, depths, num_heads, window_size} (a project
extension; the release is swin_T_224_1k).

Timing of the release config on the CPU (random f32 weights):
  python3 -P scripts/golden/reference_unipose.py --time [--height 800 --width 1333 --keypoints 17 --threads 2 --repeat 1]
  python3 -P scripts/golden/reference_unipose.py --attention [--threads 2 --repeat 1]
each prints one JSON line. (-P: this folder's copy.py would shadow the standard module.)
"""
import argparse
import copy
import json
import math
import os
import resource
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.realpath(__file__))
if HERE not in (os.path.realpath(p or os.curdir) for p in sys.path):
    sys.path.append(HERE)

import reference_gdino_decoder as gdino_decoder  # noqa: E402
import reference_gdino_encoder as gdino_encoder  # noqa: E402
import reference_unipose_encoder as encoder_ref  # noqa: E402
import reference_unipose_pose as pose_ref  # noqa: E402
import reference_unipose_swin as swin_ref  # noqa: E402
from reference_unipose_pose import (MLP, inverse_sigmoid, kpt_mask_of, outputs, post_process_pose,  # noqa: E402,F401
                                    prepare_for_mask, refine, select_groups)


# ---- configuration (UniPoseConfig attribute names) ----

def release_config():
    """decoders.md B.1: UniPose_SwinT.py values with VisionLLM v2's l_hidden_size 4096."""
    return dict(hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6, num_box_decoder_layers=2, dim_feedforward=2048,
                num_feature_levels=4, enc_n_points=4, dec_n_points=4, num_queries=900, num_group=50, num_body_points=68,
                pe_temperatureH=20, pe_temperatureW=20, l_hidden_size=4096, return_interm_indices=[1, 2, 3],
                dec_pred_bbox_embed_share=True,
                backbone_config=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7))


# ---- the model ----

class UniPose(nn.Module):
    """UniPose (U:69-560) for batch 1 at inference. state_dict() holds the checkpoint's names after `unipose.`
    (decoders.md B.5), aliases included."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c['hidden_dim']
        b = c['backbone_config']
        swin = swin_ref.SwinTransformer(embed_dim=b['embed_dim'], depths=b['depths'], num_heads=b['num_heads'],
                                        window_size=b['window_size'], out_indices=c['return_interm_indices'])
        self.backbone = nn.ModuleList([swin])  # Joiner(backbone, position_embedding): the position embedding has no parameters
        channels = [swin.num_features[i] for i in c['return_interm_indices']]
        side = encoder_ref.UniPoseEncoderSide(c, channels)
        self.transformer = side.transformer
        t = self.transformer
        # DeformableTransformer two-stage members (U:2393-2410; embed_init_tgt True)
        t.tgt_embed = nn.Embedding(c['num_queries'], d)
        t.enc_output = nn.Linear(d, d)
        t.enc_output_norm = nn.LayerNorm(d)
        # TransformerDecoder: per-keypoint box sizes (U:2943-2946)
        t.decoder.hw = nn.Embedding(17, 2)
        t.decoder.hw_append = nn.Embedding(c['num_body_points'] - 17, 2)
        # UniPose.__init__ (U:110-111, 150-195)
        self.projection_llava = MLP(c['l_hidden_size'], d, d, 3)
        self.projection_kpt_llava = MLP(c['l_hidden_size'], d, d, 3)
        self.input_proj = side.input_proj
        nl, nb = c['dec_layers'], c['num_box_decoder_layers']
        _bbox_embed = MLP(d, d, 4, 3)
        _pose_embed = MLP(d, d, 2, 3)
        _pose_hw_embed = MLP(d, d, 2, 3)
        share = c.get('dec_pred_bbox_embed_share', True)
        clone = (lambda m: m) if share else (lambda m: _copy(m))
        self.bbox_embed = nn.ModuleList([clone(_bbox_embed) for _ in range(nl)])
        self.pose_embed = nn.ModuleList([clone(_pose_embed) for _ in range(nl - nb + 1)])
        self.pose_hw_embed = nn.ModuleList([_pose_hw_embed for _ in range(nl - nb)])
        t.decoder.bbox_embed = self.bbox_embed
        t.decoder.pose_embed = self.pose_embed
        t.decoder.pose_hw_embed = self.pose_hw_embed
        # two_stage_bbox_embed_share False: a copy of _bbox_embed (U:200-209)
        t.enc_out_bbox_embed = _copy(_bbox_embed)
        object.__setattr__(self, 'side', side)  # the encoder side itself, unregistered (its modules are the ones above)

    # -- steps --

    def text_queries(self, obj_queries, kpt_queries):
        """U:379-395. obj_queries [Ko, n, l], kpt_queries [Kk, n, l] -> obj [Ko, d], kpt [num_body_points, d],
        kpt_mask [1, 1 + num_body_points]."""
        nbp = self.c['num_body_points']
        obj = self.projection_llava(obj_queries).mean(-2)
        kk = kpt_queries.shape[0]
        assert kk <= nbp
        kpt = torch.zeros(nbp, self.c['hidden_dim'], dtype=obj.dtype)
        kpt[:kk] = self.projection_kpt_llava(kpt_queries).mean(-2)[:kk]
        return obj, kpt, kpt_mask_of(kk, nbp)

    def encode(self, maps, pad_mask, obj):
        """Input projections, positions, flattening and the encoder (U:430-452, 2490-2555)."""
        K = obj.shape[0]
        return self.side(list(maps), pad_mask, obj[None], torch.ones(1, K, dtype=torch.long))

    def select(self, enc):
        """Two-stage selection (U:2556-2615): output_memory = enc_output_norm(enc_output(masked memory)),
        scores = max over classes of output_memory . textᵀ (enc_out_class_embed = ContrastiveAssign, no parameters),
        the top num_queries; reference = sigmoid(enc_out_bbox_embed(output_memory) + proposals)[top]."""
        t = self.transformer
        output_memory, proposals, valid = gdino_decoder.OVGroundingDinoModel.gen_encoder_output_proposals(
            t, enc['memory'], enc['mask_flatten'], enc['spatial_shapes'])
        text = enc['text'][0]
        scores = pose_ref.class_embed(output_memory[0], text).max(-1)[0]  # [N]
        coords = t.enc_out_bbox_embed(output_memory[0]) + proposals[0]
        topk = torch.topk(scores, self.c['num_queries'], dim=0)[1]
        return dict(topk=topk, scores=scores, reference=coords[topk].sigmoid(), proposals_valid=valid[0])

    def _layer(self, layer_id, output, reference_points, enc, self_attn_mask):
        """One pass of TransformerDecoder.forward's loop body up to the layer (U:2990-3032): query_pos from the
        references (times the level-0 valid ratios), then the layer. Seq-first with bs = 1."""
        d = self.c['hidden_dim']
        dec = self.transformer.decoder
        vr = enc['valid_ratios'][0].to(output.dtype)
        ref_in = reference_points[:, None] * torch.cat([vr, vr], -1)[None]  # [nq, L, 4]
        sine = gdino_encoder.get_proposal_pos_embed(ref_in[None, :, 0, :], d)[0]  # gen_sineembed_for_position
        query_pos = dec.ref_point_head(sine)
        out = dec.layers[layer_id](output[:, None], query_pos[:, None], ref_in[:, None], enc['text'],
                                   ~enc['text_token_mask'], enc['memory'].transpose(0, 1), enc['mask_flatten'],
                                   enc['level_start_index'], enc['spatial_shapes'], self_attn_mask=self_attn_mask)
        return out[:, 0]

    def box_phase(self, enc, sel, kpt, masks_used=None):
        """Layers 0 .. num_box_decoder_layers-1 over num_queries (tgt_embed content, the selection's boxes),
        ref <- sigmoid(bbox_embed[l](output) + inverse_sigmoid(ref)) with the un-normed output (U:3036-3042),
        then the group selection after the last box layer (U:3044-3085). The official loop's
        `output += self.hw.weight[0, 0] * 0.0` (U:2981) changes nothing and is left out."""
        c = self.c
        dec = self.transformer.decoder
        text = enc['text'][0]
        output = self.transformer.tgt_embed.weight.to(enc['memory'].dtype)
        ref = sel['reference']
        for layer_id in range(c['num_box_decoder_layers']):
            if masks_used is not None:
                masks_used.append(None)
            output = self._layer(layer_id, output, ref, enc, None)
            ref = (self.bbox_embed[layer_id](output) + inverse_sigmoid(ref)).sigmoid()
        group_scores = pose_ref.class_embed(output, text).max(-1)[0]
        box_hidden, box_reference = output, ref
        groups, output, ref = select_groups(output, ref, text, kpt, self.pose_embed, dec.hw.weight, dec.hw_append.weight,
                                            c['num_group'])
        return dict(output=output, reference=ref, groups=groups, group_scores=group_scores, box_hidden=box_hidden,
                    box_reference=box_reference)

    def pose_phase(self, enc, box, kpt_mask, masks_used=None):
        """Layers num_box_decoder_layers .. dec_layers-1 over num_group x (1 + num_body_points) queries with
        attn_mask2 (prepare_for_mask, U:887-918; [nheads, L, L] as passed to nn.MultiheadAttention), refine()
        after each (U:3088-3117), then outputs() on the last layer's normed output and input reference (U:483-546)."""
        c = self.c
        dec = self.transformer.decoder
        nb, nbp, G = c['num_box_decoder_layers'], c['num_body_points'], c['num_group']
        attn_mask2 = prepare_for_mask(kpt_mask, nbp, c['nheads'], G)
        output, ref = box['output'], box['reference']
        for layer_id in range(nb, c['dec_layers']):
            if masks_used is not None:
                masks_used.append(attn_mask2)
            ref_in = ref
            output = self._layer(layer_id, output, ref, enc, attn_mask2)
            ref = refine(output, ref, self.bbox_embed[layer_id], self.pose_embed[layer_id - nb], self.pose_hw_embed[layer_id - nb], nbp, G)
        last = c['dec_layers'] - 1
        hs = dec.norm(output)
        logits, boxes, keypoints = outputs(hs, ref_in, enc['text'][0], self.bbox_embed[last], self.pose_embed[last - nb], nbp, G)
        return dict(hs=hs, reference_in=ref_in, logits=logits, boxes=boxes, keypoints=keypoints, attn_mask2=attn_mask2)

    def forward(self, pixel_values, pad_mask, obj_queries, kpt_queries, masks_used=None):
        """pixel_values [1, 3, Hp, Wp]; pad_mask [1, Hp, Wp] bool, True at padding; obj_queries [Ko, n, l_hidden_size];
        kpt_queries [Kk, n, l_hidden_size]. masks_used (a list) collects the self-attention mask each layer got."""
        obj, kpt, kpt_mask = self.text_queries(obj_queries, kpt_queries)
        maps = self.backbone[0](pixel_values)
        enc = self.encode(maps, pad_mask, obj)
        sel = self.select(enc)
        box = self.box_phase(enc, sel, kpt, masks_used)
        pose = self.pose_phase(enc, box, kpt_mask, masks_used)
        return dict(obj=obj, kpt=kpt, kpt_mask=kpt_mask, backbone=list(maps), memory=enc['memory'][0], text=enc['text'][0],
                    mask_flatten=enc['mask_flatten'][0], spatial_shapes=enc['spatial_shapes'],
                    level_start_index=enc['level_start_index'], valid_ratios=enc['valid_ratios'][0],
                    topk=sel['topk'], selection_scores=sel['scores'], reference0=sel['reference'],
                    box_hidden=box['box_hidden'], box_reference=box['box_reference'],
                    groups=box['groups'], group_scores=box['group_scores'], logits=pose['logits'], boxes=pose['boxes'],
                    keypoints=pose['keypoints'], hs=pose['hs'], reference_in=pose['reference_in'], encoder=enc)


def _copy(module):
    return copy.deepcopy(module)


# ---- seeded weights ----

def randomize(model, seed):
    """Seeded weights for every parameter, activations O(1): the Swin by reference_unipose_swin.randomize; the
    encoder side (input_proj, transformer: encoder, decoder layers, ref_point_head, norms, two-stage) by
    reference_gdino_encoder.seed_weights; then the embeddings and heads with their own generator: tgt_embed, hw,
    hw_append N(0, 1) (nn.Embedding's init), MLP weights N(0, 1/fan_in) with the box/pose heads' last layer
    0.3/sqrt(fan_in) (not the official zero init, so that every refinement matters), biases N(0, 0.1²).
    Shared modules are drawn once."""
    swin_ref.randomize(model.backbone[0], seed)
    gdino_encoder.seed_weights(model.side, seed + 1, level_embed='transformer.level_embed', layer_scales=('gam_v', 'gam_l'),
                               input_proj='input_proj')
    g = torch.Generator().manual_seed(seed + 2)
    t = model.transformer
    with torch.no_grad():
        for emb in (t.tgt_embed, t.decoder.hw, t.decoder.hw_append):
            emb.weight.copy_(torch.randn(emb.weight.shape, generator=g, dtype=torch.float64))
        heads = [model.projection_llava, model.projection_kpt_llava, t.enc_out_bbox_embed]
        for lst in (model.bbox_embed, model.pose_embed, model.pose_hw_embed):
            for m in lst:
                if all(m is not h for h in heads):
                    heads.append(m)
        for m in heads:
            last_gain = 1.0 if m in (model.projection_llava, model.projection_kpt_llava) else 0.3
            for j, layer in enumerate(m.layers):
                gain = last_gain if j == len(m.layers) - 1 else 1.0
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64) * gain / math.sqrt(layer.weight.shape[1]))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64) * 0.1)
    return model


# ---- timing of the release config ----

def timed_forward(model, pixel_values, pad_mask, obj_q, kpt_q):
    """forward() with a clock: backbone (Swin); encoder (queries' projections, input projections, positions, encoder);
    box_phase (two-stage selection, box layers, group selection); pose_phase (pose layers and the heads)."""
    clock = time.perf_counter
    t0 = clock()
    maps = model.backbone[0](pixel_values)
    t1 = clock()
    obj, kpt, kpt_mask = model.text_queries(obj_q, kpt_q)
    enc = model.encode(maps, pad_mask, obj)
    t2 = clock()
    sel = model.select(enc)
    box = model.box_phase(enc, sel, kpt)
    t3 = clock()
    pose = model.pose_phase(enc, box, kpt_mask)
    t4 = clock()
    split = dict(backbone=t1 - t0, encoder=t2 - t1, box_phase=t3 - t2, pose_phase=t4 - t3)
    return {k: round(v * 1000, 1) for k, v in split.items()}, pose


def time_release(height, width, keypoints, threads, repeat=1, seed=0):
    """One object, `keypoints` keypoint queries (n = 4 embeddings of 4096), random f32 weights; the fastest of `repeat`
    runs after a warm-up."""
    torch.set_num_threads(threads)
    c = release_config()
    model = randomize(UniPose(c), seed).float().eval()
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(seed)
    hp, wp = -(-height // 32) * 32, -(-width // 32) * 32
    pixel_values = torch.zeros(1, 3, hp, wp)
    pixel_values[:, :, :height, :width] = torch.randn(1, 3, height, width, generator=g)
    pad_mask = torch.ones(1, hp, wp, dtype=torch.bool)
    pad_mask[:, :height, :width] = False
    obj_q = torch.randn(1, 4, c['l_hidden_size'], generator=g)
    kpt_q = torch.randn(keypoints, 4, c['l_hidden_size'], generator=g)
    runs = []
    with torch.no_grad():
        timed_forward(model, pixel_values, pad_mask, obj_q, kpt_q)  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            split, pose = timed_forward(model, pixel_values, pad_mask, obj_q, kpt_q)
            runs.append((time.perf_counter() - start, split))
            assert torch.isfinite(pose['keypoints']).all() and torch.isfinite(pose['boxes']).all()
    total, split = min(runs, key=lambda r: r[0])
    return dict(config='release Swin-T, d 256, 900 queries, 2 box + 4 pose layers, 50 groups x 69', dtype='f32',
                height=height, width=width, padded=[hp, wp], objects=1, keypoints=keypoints, threads=threads,
                torch=torch.__version__, params=params, repeat=repeat, total_ms=round(total * 1000, 1), split_ms=split,
                runs_ms=[round(r[0] * 1000, 1) for r in runs],
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def time_attention(threads, repeat=1, seed=0):
    """The pose phase's masked self-attention alone: nn.MultiheadAttention(256, 8) on [3450, 1, 256], q = k = v random,
    attn_mask = prepare_for_mask(kpt_mask_of(17), 68, 1, 50)[0] (bool [3450, 3450], True = blocked)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(256, 8).eval()
    mask = prepare_for_mask(kpt_mask_of(17), 68, 1, 50)[0]
    x = torch.randn(3450, 1, 256, generator=torch.Generator().manual_seed(seed))
    runs = []
    with torch.no_grad():
        mha(x, x, x, attn_mask=mask)  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            out = mha(x, x, x, attn_mask=mask)[0]
            runs.append(time.perf_counter() - start)
            assert torch.isfinite(out).all()
    return dict(attention_ms=round(min(runs) * 1000, 1), queries=3450, d=256, heads=8, threads=threads, torch=torch.__version__,
                runs_ms=[round(r * 1000, 1) for r in runs], blocked_fraction=round(mask.float().mean().item(), 4))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--time', action='store_true', help='time one forward of the release config (random f32 weights)')
    parser.add_argument('--attention', action='store_true', help="time the pose phase's masked self-attention alone")
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1333)
    parser.add_argument('--keypoints', type=int, default=17)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=1, help='timed runs after the warm-up; the fastest is reported')
    args = parser.parse_args(argv)
    if args.attention:
        print(json.dumps(time_attention(args.threads, args.repeat)))
    if args.time:
        print(json.dumps(time_release(args.height, args.width, args.keypoints, args.threads, args.repeat)))
    if not (args.time or args.attention):
        parser.print_help()


if __name__ == '__main__':
    main(sys.argv[1:])
