"""UniPose's encoder side and decoder layer, written from the official code under UniPose's own class
and parameter names (decoders.md 2.B, B.3.2-5, B.5), so that `UniPoseEncoderSide().state_dict()`
holds the checkpoint's names under `unipose.`.

Source: OpenGVLab/VisionLLM, VisionLLMv2/visionllmv2/model/unipose/modeling_unipose.py ("U:" below)
and its utils/model_utils.py, ops/modules/ms_deform_attn.py:
  PositionEmbeddingSineHW              U:1037-1078  (cumsum of ~mask, mask True at padding)
  BiMultiHeadAttention                 U:1943-2083  (stable_softmax_2d: global max subtracted; ±5e4 clamps)
  TransformerEncoderLayer              U:2122-2166  (text layer: seq-first MHA, post-norm; key padding unused)
  BiAttentionBlock                     U:2169-2203  (fusion: pre-LN, layer scales gam_v / gam_l)
  DeformableTransformer (encoder side) U:2206-2560  (flattening, level_embed, valid ratios)
  TransformerEncoder                   U:2701-2867  (per layer: fusion_layers[i], text_layers[i], layers[i])
  DeformableTransformerEncoderLayer    U:3132-3185
  DeformableTransformerDecoderLayer    U:3188-3324  (self_attn/norm2, ca_text/catext_norm, cross_attn/norm1, FFN/norm3)
  UniPose.forward input projections    U:430-452
  MSDeformAttn.forward                 ms_deform_attn.py:83-140 (use_4D_normalizer False)
The sampling itself (the official PyTorch grid_sample path), get_sine_pos_embed (identical in
utils/model_utils.py:26-55), the 4-d box sine (gen_sineembed_for_position) and the encoder's
reference points are reference_gdino_encoder.py's: one definition each.

One deliberate change: TransformerEncoder hard-codes the text positions' width to 256
(get_sine_pos_embed(..., num_pos_feats=256), U:2821-2823), which is d_model in the release; here it
is d_model, so that a tiny config runs at all. Only inference is reproduced (no dropout, drop path,
checkpointing, channel attention or denoising queries).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from reference_gdino_encoder import GroundingDinoEncoder, get_sine_pos_embed, multi_scale_deformable_attention


class PositionEmbeddingSineHW(nn.Module):
    def __init__(self, num_pos_feats=64, temperatureH=10000, temperatureW=10000, normalize=False, scale=None):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperatureH = temperatureH
        self.temperatureW = temperatureW
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x, mask):
        """mask [B, H, W], True at padding."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_tx = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_tx = self.temperatureW ** (2 * (dim_tx // 2) / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_tx
        dim_ty = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_ty = self.temperatureH ** (2 * (dim_ty // 2) / self.num_pos_feats)
        pos_y = y_embed[:, :, :, None] / dim_ty
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class MSDeformAttn(nn.Module):
    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes, input_level_start_index, input_padding_mask=None):
        N, Len_q, _ = query.shape
        N, Len_in, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], float(0))
        value = value.view(N, Len_in, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(query).view(N, Len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(query).view(N, Len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(N, Len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            sampling_locations = reference_points[:, :, None, :, None, :] + sampling_offsets / offset_normalizer[None, None, None, :, None, :]
        else:  # use_4D_normalizer False
            sampling_locations = reference_points[:, :, None, :, None, :2] + sampling_offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
        output = multi_scale_deformable_attention(value, input_spatial_shapes, sampling_locations, attention_weights)
        return self.output_proj(output)


class BiMultiHeadAttention(nn.Module):
    def __init__(self, v_dim, l_dim, embed_dim, num_heads):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** (-0.5)
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        self.stable_softmax_2d = True
        self.clamp_min_for_underflow = True
        self.clamp_max_for_overflow = True

    def _shape(self, tensor, seq_len, bsz):
        return tensor.view(bsz, seq_len, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def forward(self, v, l, attention_mask_v=None, attention_mask_l=None):
        bsz, tgt_len, _ = v.size()
        query_states = self.v_proj(v) * self.scale
        key_states = self._shape(self.l_proj(l), -1, bsz)
        value_v_states = self._shape(self.values_v_proj(v), -1, bsz)
        value_l_states = self._shape(self.values_l_proj(l), -1, bsz)
        proj_shape = (bsz * self.num_heads, -1, self.head_dim)
        query_states = self._shape(query_states, tgt_len, bsz).view(*proj_shape)
        key_states = key_states.view(*proj_shape)
        value_v_states = value_v_states.view(*proj_shape)
        value_l_states = value_l_states.view(*proj_shape)
        src_len = key_states.size(1)
        attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
        if self.stable_softmax_2d:
            attn_weights = attn_weights - attn_weights.max()
        if self.clamp_min_for_underflow:
            attn_weights = torch.clamp(attn_weights, min=-50000)
        if self.clamp_max_for_overflow:
            attn_weights = torch.clamp(attn_weights, max=50000)
        attn_weights_T = attn_weights.transpose(1, 2)
        attn_weights_l = attn_weights_T - torch.max(attn_weights_T, dim=-1, keepdim=True)[0]
        if self.clamp_min_for_underflow:
            attn_weights_l = torch.clamp(attn_weights_l, min=-50000)
        if self.clamp_max_for_overflow:
            attn_weights_l = torch.clamp(attn_weights_l, max=50000)
        if attention_mask_v is not None:
            attention_mask_v = attention_mask_v[:, None, None, :].repeat(1, self.num_heads, 1, 1).flatten(0, 1)
            attn_weights_l.masked_fill_(attention_mask_v, float('-inf'))
        attn_weights_l = attn_weights_l.softmax(dim=-1)
        if attention_mask_l is not None:
            attention_mask_l = attention_mask_l[:, None, None, :].repeat(1, self.num_heads, 1, 1).flatten(0, 1)
            attn_weights.masked_fill_(attention_mask_l, float('-inf'))
        attn_weights_v = attn_weights.softmax(dim=-1)
        attn_output_v = torch.bmm(attn_weights_v, value_l_states)
        attn_output_l = torch.bmm(attn_weights_l, value_v_states)
        attn_output_v = attn_output_v.view(bsz, self.num_heads, tgt_len, self.head_dim).transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)
        attn_output_l = attn_output_l.view(bsz, self.num_heads, src_len, self.head_dim).transpose(1, 2).reshape(bsz, src_len, self.embed_dim)
        return self.out_v_proj(attn_output_v), self.out_l_proj(attn_output_l)


class BiAttentionBlock(nn.Module):
    def __init__(self, v_dim, l_dim, embed_dim, num_heads, init_values=1e-4):
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim=v_dim, l_dim=l_dim, embed_dim=embed_dim, num_heads=num_heads)
        self.gam_v = nn.Parameter(init_values * torch.ones((v_dim)))
        self.gam_l = nn.Parameter(init_values * torch.ones((l_dim)))

    def forward(self, v, l, attention_mask_v=None, attention_mask_l=None):
        v = self.layer_norm_v(v)
        l = self.layer_norm_l(l)
        delta_v, delta_l = self.attn(v, l, attention_mask_v=attention_mask_v, attention_mask_l=attention_mask_l)
        return v + self.gam_v * delta_v, l + self.gam_l * delta_l


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)  # seq-first
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.nhead = nhead

    def forward(self, src, src_mask=None, src_key_padding_mask=None, pos=None):
        """src [K, B, d]. src_key_padding_mask is accepted and unused, as in the official call (U:2158-2159)."""
        if src_mask.dim() == 3 and src_mask.shape[0] == src.shape[1]:
            src_mask = src_mask.repeat(self.nhead, 1, 1)
        q = k = src if pos is None else src + pos
        src2 = self.self_attn(q, k, value=src, attn_mask=src_mask)[0]
        src = self.norm1(src + src2)
        src2 = self.linear2(F.relu(self.linear1(src)))
        return self.norm2(src + src2)


class DeformableTransformerEncoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, key_padding_mask=None):
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, key_padding_mask)
        src = self.norm1(src + src2)
        src2 = self.linear2(F.relu(self.linear1(src)))
        return self.norm2(src + src2)


class TransformerEncoder(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, num_layers, n_levels, n_points):
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(DeformableTransformerEncoderLayer(d_model, dim_feedforward, n_levels, nhead, n_points) for _ in range(num_layers))
        self.text_layers = nn.ModuleList(TransformerEncoderLayer(d_model, nhead // 2, dim_feedforward // 2) for _ in range(num_layers))
        self.fusion_layers = nn.ModuleList(BiAttentionBlock(d_model, d_model, dim_feedforward // 2, nhead // 2) for _ in range(num_layers))

    def forward(self, src, pos, spatial_shapes, level_start_index, valid_ratios, key_padding_mask, memory_text,
                text_attention_mask, text_self_attention_masks, position_ids, keep_layers=None):
        output = src
        reference_points = GroundingDinoEncoder.get_reference_points(spatial_shapes, valid_ratios, device=src.device).to(src.dtype)
        pos_text = get_sine_pos_embed(position_ids[..., None], num_pos_feats=self.d_model, exchange_xy=False).to(src.dtype)  # 256 officially
        for layer_id, layer in enumerate(self.layers):
            output, memory_text = self.fusion_layers[layer_id](v=output, l=memory_text, attention_mask_v=key_padding_mask,
                                                               attention_mask_l=text_attention_mask)
            memory_text = self.text_layers[layer_id](src=memory_text.transpose(0, 1), src_mask=~text_self_attention_masks,
                                                     src_key_padding_mask=text_attention_mask, pos=pos_text.transpose(0, 1)).transpose(0, 1)
            output = layer(src=output, pos=pos, reference_points=reference_points, spatial_shapes=spatial_shapes,
                           level_start_index=level_start_index, key_padding_mask=key_padding_mask)
            if keep_layers is not None:
                keep_layers.append((output, memory_text))
        return output, memory_text


class DeformableTransformerDecoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.ca_text = nn.MultiheadAttention(d_model, n_heads)
        self.catext_norm = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, tgt_query_pos, tgt_reference_points, memory_text, text_attention_mask, memory,
                memory_key_padding_mask, memory_level_start_index, memory_spatial_shapes, self_attn_mask=None):
        """tgt, tgt_query_pos [nq, bs, d]; tgt_reference_points [nq, bs, L, 4]; memory_text [bs, K, d]; memory [hw, bs, d]."""
        q = k = tgt + tgt_query_pos
        tgt2 = self.self_attn(q, k, tgt, attn_mask=self_attn_mask)[0]
        tgt = self.norm2(tgt + tgt2)
        tgt2 = self.ca_text(tgt + tgt_query_pos, memory_text.transpose(0, 1), memory_text.transpose(0, 1), key_padding_mask=text_attention_mask)[0]
        tgt = self.catext_norm(tgt + tgt2)
        tgt2 = self.cross_attn((tgt + tgt_query_pos).transpose(0, 1), tgt_reference_points.transpose(0, 1).contiguous(),
                               memory.transpose(0, 1), memory_spatial_shapes, memory_level_start_index,
                               memory_key_padding_mask).transpose(0, 1)
        tgt = self.norm1(tgt + tgt2)
        tgt2 = self.linear2(F.relu(self.linear1(tgt)))
        return self.norm3(tgt + tgt2)


class MLP(nn.Module):
    """utils/model_utils.py MLP: `layers.{i}`, ReLU between."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        h = [hidden_dim] * (num_layers - 1)
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class TransformerDecoder(nn.Module):
    """Only what one box-phase layer reads: `layers`, `ref_point_head`, `norm`."""

    def __init__(self, d_model, nhead, dim_feedforward, num_layers, n_levels, n_points):
        super().__init__()
        self.layers = nn.ModuleList(DeformableTransformerDecoderLayer(d_model, dim_feedforward, n_levels, nhead, n_points) for _ in range(num_layers))
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.norm = nn.LayerNorm(d_model)


class DeformableTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_feature_levels = c['num_feature_levels']
        self.level_embed = nn.Parameter(torch.Tensor(c['num_feature_levels'], c['hidden_dim']))
        self.encoder = TransformerEncoder(c['hidden_dim'], c['nheads'], c['dim_feedforward'], c['enc_layers'], c['num_feature_levels'], c['enc_n_points'])
        self.decoder = TransformerDecoder(c['hidden_dim'], c['nheads'], c['dim_feedforward'], c['dec_layers'], c['num_feature_levels'], c['dec_n_points'])

    @staticmethod
    def get_valid_ratio(mask):
        _, H, W = mask.shape
        valid_H = torch.sum(~mask[:, :, 0], 1)
        valid_W = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_W.float() / W, valid_H.float() / H], -1)


def generate_masks_with_text_query_masks(text_query_masks):
    """U:928-945."""
    batch_size, num_token = text_query_masks.shape
    self_attention_mask = torch.eye(num_token).bool().unsqueeze(0).repeat(batch_size, 1, 1)
    position_ids = torch.zeros((batch_size, num_token), dtype=torch.long)
    for b in range(batch_size):
        num_valid = text_query_masks[b].sum()
        self_attention_mask[b, :num_valid, :num_valid] = True
        position_ids[b, :num_valid] = torch.arange(0, num_valid)
    return self_attention_mask, position_ids


class UniPoseEncoderSide(nn.Module):
    """UniPose's `input_proj`, the backbone's position embedding and `transformer` (encoder and decoder
    layers), under the official names. `c`: the UniPoseConfig attributes these read."""

    def __init__(self, c, backbone_channels):
        super().__init__()
        self.c = c
        d = c['hidden_dim']
        self.position_embedding = PositionEmbeddingSineHW(d // 2, temperatureH=c['pe_temperatureH'], temperatureW=c['pe_temperatureW'], normalize=True)
        input_proj_list = []
        for in_channels in backbone_channels:
            input_proj_list.append(nn.Sequential(nn.Conv2d(in_channels, d, kernel_size=1), nn.GroupNorm(32, d)))
        for _ in range(c['num_feature_levels'] - len(backbone_channels)):
            input_proj_list.append(nn.Sequential(nn.Conv2d(in_channels, d, kernel_size=3, stride=2, padding=1), nn.GroupNorm(32, d)))
            in_channels = d
        self.input_proj = nn.ModuleList(input_proj_list)
        self.transformer = DeformableTransformer(c)

    def forward(self, features, pad_mask, encoded_text, obj_query_masks, keep_layers=None):
        """features: the backbone's maps [B, C, h, w]; pad_mask [B, H, W] True at padding (NestedTensor.mask)."""
        text_self_attention_masks, position_ids = generate_masks_with_text_query_masks(obj_query_masks)
        text_token_mask = obj_query_masks.bool()
        masks, poss, srcs = [], [], []
        for l, feat in enumerate(features):  # Joiner: each map's mask and position (U:1216-1227)
            mask = F.interpolate(pad_mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
            poss.append(self.position_embedding(feat, mask).to(feat.dtype))
            srcs.append(self.input_proj[l](feat))
            masks.append(mask)
        for l in range(len(srcs), self.c['num_feature_levels']):  # U:440-452
            src = self.input_proj[l](features[-1]) if l == len(features) else self.input_proj[l](srcs[-1])
            mask = F.interpolate(pad_mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
            poss.append(self.position_embedding(src, mask).to(src.dtype))
            srcs.append(src)
            masks.append(mask)
        t = self.transformer
        src_flatten, mask_flatten, lvl_pos_embed_flatten, spatial_shapes = [], [], [], []
        for lvl, (src, mask, pos_embed) in enumerate(zip(srcs, masks, poss)):  # U:2503-2523
            spatial_shapes.append(src.shape[-2:])
            src_flatten.append(src.flatten(2).transpose(1, 2))
            mask_flatten.append(mask.flatten(1))
            lvl_pos_embed_flatten.append(pos_embed.flatten(2).transpose(1, 2) + t.level_embed[lvl].view(1, 1, -1))
        src_flatten = torch.cat(src_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        lvl_pos_embed_flatten = torch.cat(lvl_pos_embed_flatten, 1)
        spatial_shapes = torch.as_tensor([tuple(s) for s in spatial_shapes], dtype=torch.long)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([t.get_valid_ratio(m) for m in masks], 1)  # float32, as officially
        memory, memory_text = t.encoder(src_flatten, pos=lvl_pos_embed_flatten, spatial_shapes=spatial_shapes,
                                        level_start_index=level_start_index, valid_ratios=valid_ratios,
                                        key_padding_mask=mask_flatten, memory_text=encoded_text,
                                        text_attention_mask=~text_token_mask, text_self_attention_masks=text_self_attention_masks,
                                        position_ids=position_ids, keep_layers=keep_layers)
        return dict(memory=memory, text=memory_text, mask_flatten=mask_flatten, spatial_shapes=spatial_shapes,
                    level_start_index=level_start_index, valid_ratios=valid_ratios, sources=src_flatten,
                    lvl_pos=lvl_pos_embed_flatten, text_token_mask=text_token_mask)
