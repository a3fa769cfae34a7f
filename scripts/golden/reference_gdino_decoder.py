"""Grounding DINO's decoder side as VisionLLM v2 runs it at inference, from the official code
(VisionLLMv2/visionllmv2/model/grounding_dino/modeling_ov_grounding_dino_mask_dn.py, "G:" below):
the mask features, two-stage query selection, the decoder with iterative box refinement, and the
shared heads of OVGroundingDinoForObjectDetection.forward_test. Module and parameter names are the
official ones, so `GdinoDecoderReference().state_dict()` holds the checkpoint's names under `gdino.`
(aliases included: a shared head appears once per decoder layer, as a torch save keeps it).

The multi-scale deformable attention and the box sine embedding are reference_gdino_encoder.py's
(one definition for both sides); reference_gdino.py composes both sides and the backbone.

Only what inference runs is here: no denoising queries, no dropout, no training-time heads
(`model.mask_embed` is built because the checkpoint holds it, but forward_test never calls it).
"""
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_gdino_encoder import GroundingDinoMultiscaleDeformableAttention, get_proposal_pos_embed


def as_config(c):
    """The decoder side reads GroundingDinoConfig attributes; generators may pass a dict of them."""
    return SimpleNamespace(**c) if isinstance(c, dict) else c


def inverse_sigmoid(x, eps=1e-5):
    """G:401-405."""
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


class GroundingDinoMLPPredictionHead(nn.Module):
    """G:3704-3720: Linear layers `layers.{i}`, ReLU between."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def hidden(self, x):
        """What the last layer reads (the ReLU of every layer before it)."""
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return x

    def forward(self, x):
        return self.layers[-1](self.hidden(x))


class D2Conv2d(nn.Conv2d):
    """detectron2.layers.Conv2d: conv, then `norm`, then the activation (G:2116-2153)."""

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x):
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class GroundingDinoDecoderLayer(nn.Module):
    """G:1292-1407: post-norm; self-attention, text cross-attention, deformable cross-attention, FFN."""

    def __init__(self, c):
        super().__init__()
        d = c.d_model
        heads = c.decoder_attention_heads
        self.self_attn = nn.MultiheadAttention(embed_dim=d, num_heads=heads, batch_first=True)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn_text = nn.MultiheadAttention(embed_dim=d, num_heads=heads, batch_first=True)
        self.encoder_attn_text_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = GroundingDinoMultiscaleDeformableAttention(c, num_heads=heads, n_points=c.decoder_n_points)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, c.decoder_ffn_dim)
        self.fc2 = nn.Linear(c.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, hidden_states, position_embeddings, reference_points, spatial_shapes,
                vision_encoder_hidden_states, vision_encoder_attention_mask, text_encoder_hidden_states, text_encoder_attention_mask):
        residual = hidden_states
        q = k = hidden_states + position_embeddings
        hidden_states, _ = self.self_attn(query=q, key=k, value=hidden_states, attn_mask=None)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)

        second_residual = hidden_states
        hidden_states, _ = self.encoder_attn_text(
            query=hidden_states + position_embeddings,
            key=text_encoder_hidden_states,
            value=text_encoder_hidden_states,
            key_padding_mask=text_encoder_attention_mask,
        )
        hidden_states = self.encoder_attn_text_layer_norm(second_residual + hidden_states)

        third_residual = hidden_states
        hidden_states, _ = self.encoder_attn(
            hidden_states=hidden_states,
            attention_mask=vision_encoder_attention_mask,
            encoder_hidden_states=vision_encoder_hidden_states,
            encoder_attention_mask=vision_encoder_attention_mask,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
        )
        hidden_states = self.encoder_attn_layer_norm(third_residual + hidden_states)

        residual = hidden_states
        hidden_states = self.fc2(F.relu(self.fc1(hidden_states)))
        return self.final_layer_norm(residual + hidden_states)


class GroundingDinoDecoder(nn.Module):
    """G:1724-1975."""

    def __init__(self, c):
        super().__init__()
        d = c.d_model
        self.layer_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList([GroundingDinoDecoderLayer(c) for _ in range(c.decoder_layers)])
        self.reference_points_head = GroundingDinoMLPPredictionHead(4 // 2 * d, d, d, 2)
        self.bbox_embed = None  # set by the detection model (G:2634)

    def forward(self, inputs_embeds, vision_encoder_hidden_states, vision_encoder_attention_mask, text_encoder_hidden_states,
                text_encoder_attention_mask, reference_points, spatial_shapes, valid_ratios):
        hidden_states = inputs_embeds
        d = hidden_states.shape[-1]
        intermediate, intermediate_reference_points, query_pos_all, refs_in = [], [], [], []
        for idx, layer in enumerate(self.layers):
            reference_points_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            query_pos = self.reference_points_head(get_proposal_pos_embed(reference_points_input[:, :, 0, :], d))
            query_pos_all.append(query_pos)
            refs_in.append(reference_points_input)
            hidden_states = layer(hidden_states, query_pos, reference_points_input, spatial_shapes,
                                  vision_encoder_hidden_states, vision_encoder_attention_mask,
                                  text_encoder_hidden_states, text_encoder_attention_mask)
            tmp = self.bbox_embed[idx](hidden_states)
            reference_points = (tmp + inverse_sigmoid(reference_points)).sigmoid().detach()
            intermediate.append(self.layer_norm(hidden_states))
            intermediate_reference_points.append(reference_points)
        return torch.stack(intermediate, 1), torch.stack(intermediate_reference_points, 1), query_pos_all, refs_in


class GroundingDinoContrastiveEmbedding(nn.Module):
    """G:1410-1430: plain dot products, -inf at masked text, padded with -inf to max_text_len."""

    def __init__(self, max_text_len):
        super().__init__()
        self.max_text_len = max_text_len

    def forward(self, vision_hidden_state, text_hidden_state, text_token_mask):
        output = vision_hidden_state @ text_hidden_state.transpose(-1, -2)
        output = output.masked_fill(~text_token_mask[:, None, :], float('-inf'))
        new_output = torch.full((*output.shape[:-1], self.max_text_len), float('-inf'), dtype=output.dtype)
        new_output[..., : output.shape[-1]] = output
        return new_output


class OVGroundingDinoModel(nn.Module):
    """The decoder-side modules of G:2065-2600 (`gdino.model.*`)."""

    def __init__(self, c):
        super().__init__()
        c = as_config(c)
        d = c.d_model
        self.config = c
        self.mask_features = D2Conv2d(d, c.mask_dim, kernel_size=1, stride=1, padding=0)
        # num_fpn_levels = max(num_feature_levels - 3, 1) = 1: one lateral conv on the stride-4 stage (G:2113, 2127-2150).
        self.lateral_convs = nn.ModuleList([D2Conv2d(c.stage1_channels, d, kernel_size=1, bias=False, norm=nn.GroupNorm(32, d))])
        self.output_convs = nn.ModuleList([D2Conv2d(d, d, kernel_size=3, stride=1, padding=1, bias=False, norm=nn.GroupNorm(32, d), activation=F.relu)])
        self.query_position_embeddings = nn.Embedding(c.num_queries, d)
        self.mask_embed = GroundingDinoMLPPredictionHead(d, d, c.mask_dim, 3)  # training only
        self.decoder = GroundingDinoDecoder(c)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.encoder_output_bbox_embed = GroundingDinoMLPPredictionHead(d, d, 4, 3)  # two_stage_bbox_embed_share false
        self.encoder_output_class_embed = GroundingDinoContrastiveEmbedding(c.max_text_len)

    def gen_encoder_output_proposals(self, enc_output, padding_mask, spatial_shapes):
        """G:2228-2276. padding_mask: True = padding."""
        batch_size = enc_output.shape[0]
        proposals = []
        current = 0
        for level, (height, width) in enumerate(spatial_shapes.tolist()):
            m = padding_mask[:, current: current + height * width].view(batch_size, height, width, 1)
            valid_height = torch.sum(~m[:, :, 0, 0], 1)
            valid_width = torch.sum(~m[:, 0, :, 0], 1)
            grid_y, grid_x = torch.meshgrid(torch.linspace(0, height - 1, height, dtype=enc_output.dtype),
                                            torch.linspace(0, width - 1, width, dtype=enc_output.dtype), indexing='ij')
            grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
            scale = torch.cat([valid_width.unsqueeze(-1), valid_height.unsqueeze(-1)], 1).view(batch_size, 1, 1, 2)
            grid = (grid.unsqueeze(0).expand(batch_size, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** level)
            proposals.append(torch.cat((grid, wh), -1).view(batch_size, -1, 4))
            current += height * width
        output_proposals = torch.cat(proposals, 1)
        valid = ((output_proposals > 0.01) & (output_proposals < 0.99)).all(-1, keepdim=True)
        output_proposals = torch.log(output_proposals / (1 - output_proposals))
        output_proposals = output_proposals.masked_fill(padding_mask.unsqueeze(-1), float('inf'))
        output_proposals = output_proposals.masked_fill(~valid, float('inf'))
        object_query = enc_output.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        object_query = object_query.masked_fill(~valid, 0.0)
        object_query = self.enc_output_norm(self.enc_output(object_query))
        return object_query, output_proposals, valid[..., 0]

    def build_mask_features(self, memory, spatial_shapes, stage1):
        """G:2470-2497: lateral(stage 1) + bilinear_up(level 0 of the memory), output conv, 1x1 conv."""
        bs, _, d = memory.shape
        h0, w0 = spatial_shapes[0].tolist()
        out0 = memory[:, : h0 * w0].transpose(1, 2).reshape(bs, d, h0, w0)
        cur_fpn = self.lateral_convs[0](stage1)
        y = cur_fpn + F.interpolate(out0, size=cur_fpn.shape[-2:], mode='bilinear', align_corners=False)
        y = self.output_convs[0](y)
        return self.mask_features(y)

    def select(self, memory, mask_flatten, spatial_shapes, text, text_token_mask):
        """Two-stage query selection (G:2503-2547): the num_queries best proposals and their reference boxes."""
        object_query, output_proposals, valid = self.gen_encoder_output_proposals(memory, ~mask_flatten, spatial_shapes)
        enc_outputs_class = self.encoder_output_class_embed(object_query, text, text_token_mask)
        enc_outputs_coord_logits = self.encoder_output_bbox_embed(object_query) + output_proposals
        topk_logits = enc_outputs_class.max(-1)[0]
        topk_proposals = torch.topk(topk_logits, self.config.num_queries, dim=1)[1]
        topk_coords_logits = torch.gather(enc_outputs_coord_logits, 1, topk_proposals.unsqueeze(-1).repeat(1, 1, 4))
        reference_points = topk_coords_logits.sigmoid()
        return dict(proposals=output_proposals, proposals_valid=valid, object_query=object_query,
                    enc_outputs_class=enc_outputs_class, scores=topk_logits, topk=topk_proposals, reference=reference_points)

    def decode(self, memory, mask_flatten, spatial_shapes, valid_ratios, text, text_token_mask, reference_points):
        """The decoder from the learned content queries (embedding_init_target) and the selected boxes."""
        target = self.query_position_embeddings.weight.unsqueeze(0).repeat(memory.shape[0], 1, 1)
        hs, refs, query_pos, refs_in = self.decoder(target, memory, mask_flatten, text, ~text_token_mask,
                                                    reference_points, spatial_shapes, valid_ratios)
        return dict(hs=hs, refs=refs, query_pos=query_pos, refs_in=refs_in)

    def forward(self, memory, mask_flatten, spatial_shapes, valid_ratios, text, text_token_mask, stage1):
        """memory [1, N, d]; mask_flatten [1, N] True = valid; text [1, K, d]; stage1 [1, C1, H/4, W/4]."""
        out = dict(mask_features=self.build_mask_features(memory, spatial_shapes, stage1))
        out.update(self.select(memory, mask_flatten, spatial_shapes, text, text_token_mask))
        out.update(self.decode(memory, mask_flatten, spatial_shapes, valid_ratios, text, text_token_mask, out['reference']))
        return out


class GdinoDecoderReference(nn.Module):
    """OVGroundingDinoForObjectDetection (G:2609-2660) without the backbone/encoder/patch2query; forward_test's heads (G:3124-3211)."""

    def __init__(self, c):
        super().__init__()
        c = as_config(c)
        self.config = c
        d = c.d_model
        self.model = OVGroundingDinoModel(c)
        _class_embed = GroundingDinoContrastiveEmbedding(c.max_text_len)
        _bbox_embed = GroundingDinoMLPPredictionHead(d, d, 4, 3)
        mask_embed = GroundingDinoMLPPredictionHead(d, d, c.mask_dim, 3)
        L = c.decoder_layers
        self.mask_embed = nn.ModuleList([mask_embed for _ in range(L)])
        self.bbox_embed = nn.ModuleList([_bbox_embed for _ in range(L)])  # decoder_bbox_embed_share
        self.class_embed = nn.ModuleList([_class_embed for _ in range(L)])
        self.model.decoder.bbox_embed = self.bbox_embed

    def heads(self, hs, init_reference, inter_references, text, text_token_mask):
        """forward_test's class and box heads per decoder layer (G:3166-3199): logits [B, Q, max_text_len], boxes [B, Q, 4]."""
        logits, boxes = [], []
        for level in range(hs.shape[1]):
            reference = init_reference if level == 0 else inter_references[:, level - 1]
            logits.append(self.class_embed[level](hs[:, level], text, text_token_mask))
            boxes.append((self.bbox_embed[level](hs[:, level]) + inverse_sigmoid(reference)).sigmoid())
        return logits, boxes

    def seg_heads(self, hidden, mask_features, mask_queries, level=-1):
        """forward_seg_heads for the chosen queries only (exact: einsum('bqc,bchw->bqhw') is row by row)."""
        return torch.einsum('bqc,bchw->bqhw', self.mask_embed[level](hidden[:, mask_queries]), mask_features)

    def forward(self, memory, mask_flatten, spatial_shapes, valid_ratios, text, stage1, mask_queries):
        text_token_mask = torch.ones(text.shape[:2], dtype=torch.bool)
        out = self.model(memory, mask_flatten, spatial_shapes, valid_ratios, text, text_token_mask, stage1)
        logits, boxes = self.heads(out['hs'], out['reference'], out['refs'], text, text_token_mask)
        masks = self.seg_heads(out['hs'][:, -1], out['mask_features'], mask_queries)
        out.update(logits=logits, boxes=boxes, masks=masks)
        return out
