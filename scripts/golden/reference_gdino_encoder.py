"""Grounding DINO's encoder side, written from the official code: from the backbone's stage maps
and the text tokens to the encoder's outputs (decoders.md 2.A, A.3 steps 1, 3, 4, 5).

Source: OpenGVLab/VisionLLM, VisionLLMv2/visionllmv2/model/grounding_dino/
modeling_ov_grounding_dino_mask_dn.py (an early Hugging Face port of Grounding DINO). Class names,
parameter names and the order of operations are the official ones:
  GroundingDinoSinePositionEmbedding   :529-564  (backbone 2-D sine, normalize=True, T from config)
  get_sine_pos_embed                   :1185-1214 (text positions, T=10000, no xy swap)
  GroundingDinoDecoder.get_proposal_pos_embed :1755-1790 (the decoder's 4-d box sine, y x w h)
  GroundingDinoTextEnhancerLayer       :787-857
  GroundingDinoBiMultiHeadAttention    :860-1006
  GroundingDinoFusionLayer             :1044-1101
  GroundingDinoDeformableLayer         :1105-1182
  GroundingDinoEncoderLayer            :1217-1289
  GroundingDinoEncoder                 :1560-1722 (reference points)
  OVGroundingDinoModel.__init__ / forward :2081-2102, 2388-2450 (input projections, masks,
                                          valid ratios, level embeddings, flattening)
The deformable attention and get_proposal_pos_embed serve the decoder reference too (imported there).
Only inference is reproduced (no dropout, no drop path). Multi-scale deformable attention is the
official PyTorch fallback (grid_sample), which the custom CUDA kernel equals.
"""
import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def gdino_config(**overrides):
    """The GroundingDinoConfig attributes the encoder side reads (release values by default)."""
    c = dict(d_model=256, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, num_feature_levels=4,
             encoder_n_points=4, positional_embedding_temperature=20, activation_function='relu', layer_norm_eps=1e-5)
    c.update(overrides)
    return SimpleNamespace(**c)


# ---- position embeddings ----

class GroundingDinoSinePositionEmbedding(nn.Module):
    def __init__(self, embedding_dim=64, temperature=10000, normalize=False, scale=None):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.temperature = temperature
        self.normalize = normalize
        if scale is None:
            scale = 2 * math.pi
        self.scale = scale

    def forward(self, pixel_values, pixel_mask):
        y_embed = pixel_mask.cumsum(1, dtype=torch.float32)
        x_embed = pixel_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.embedding_dim, dtype=torch.float32, device=pixel_values.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.embedding_dim)

        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return pos


def build_position_encoding(config):
    return GroundingDinoSinePositionEmbedding(config.d_model // 2, config.positional_embedding_temperature, normalize=True)


def get_sine_pos_embed(pos_tensor, num_pos_feats=128, temperature=10000, exchange_xy=True):
    scale = 2 * math.pi
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=pos_tensor.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    def sine_func(x):
        sin_x = x * scale / dim_t
        sin_x = torch.stack((sin_x[..., 0::2].sin(), sin_x[..., 1::2].cos()), dim=3).flatten(2)
        return sin_x

    pos_res = [sine_func(x) for x in pos_tensor.split([1] * pos_tensor.shape[-1], dim=-1)]
    if exchange_xy:
        pos_res[0], pos_res[1] = pos_res[1], pos_res[0]
    pos_res = torch.cat(pos_res, dim=-1)
    return pos_res


def get_proposal_pos_embed(proposals, d_model):
    """GroundingDinoDecoder.get_proposal_pos_embed: [B, Q, 4] (cx, cy, w, h) -> [B, Q, 4 * d_model / 2], (y, x, w, h).
    dim_t is the official arange in the proposals' dtype (float32 there; exact powers in a float64 reference)."""
    num_pos_feats = d_model // 2
    temperature = 10000
    scale = 2 * math.pi
    dim_t = torch.arange(num_pos_feats, dtype=proposals.dtype, device=proposals.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    parts = []
    for c in range(4):
        e = proposals[:, :, c] * scale
        p = e[:, :, None] / dim_t
        parts.append(torch.stack((p[:, :, 0::2].sin(), p[:, :, 1::2].cos()), dim=3).flatten(2))
    pos_x, pos_y, pos_w, pos_h = parts
    return torch.cat((pos_y, pos_x, pos_w, pos_h), dim=2)


# ---- multi-scale deformable attention (the official PyTorch path) ----

def multi_scale_deformable_attention(value, value_spatial_shapes, sampling_locations, attention_weights):
    """value_spatial_shapes: [levels, 2] (height, width), a tensor or a list."""
    batch_size, _, num_heads, hidden_dim = value.shape
    _, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
    value_spatial_shapes = [(int(height), int(width)) for height, width in value_spatial_shapes]
    value_list = value.split([height * width for height, width in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for level_id, (height, width) in enumerate(value_spatial_shapes):
        value_l_ = value_list[level_id].flatten(2).transpose(1, 2).reshape(batch_size * num_heads, hidden_dim, height, width)
        sampling_grid_l_ = sampling_grids[:, :, :, level_id].transpose(1, 2).flatten(0, 1)
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    attention_weights = attention_weights.transpose(1, 2).reshape(batch_size * num_heads, 1, num_queries, num_levels * num_points)
    output = ((torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights).sum(-1)
              .view(batch_size, num_heads * hidden_dim, num_queries))
    return output.transpose(1, 2).contiguous()


class GroundingDinoMultiscaleDeformableAttention(nn.Module):
    """The encoder's self-attention and the decoder's cross-attention (G:~650-790)."""

    def __init__(self, config, num_heads, n_points):
        super().__init__()
        self.d_model = config.d_model
        self.n_levels = config.num_feature_levels
        self.n_heads = num_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(config.d_model, num_heads * self.n_levels * n_points * 2)
        self.attention_weights = nn.Linear(config.d_model, num_heads * self.n_levels * n_points)
        self.value_proj = nn.Linear(config.d_model, config.d_model)
        self.output_proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                position_embeddings=None, reference_points=None, spatial_shapes=None, level_start_index=None):
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch_size, num_queries, _ = hidden_states.shape
        batch_size, sequence_length, _ = encoder_hidden_states.shape
        value = self.value_proj(encoder_hidden_states)
        if attention_mask is not None:
            # True = valid (the caller inverts the padding mask)
            value = value.masked_fill(~attention_mask[..., None], float(0))
        value = value.view(batch_size, sequence_length, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(hidden_states).view(batch_size, num_queries, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(hidden_states).view(batch_size, num_queries, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(batch_size, num_queries, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            sampling_locations = (reference_points[:, :, None, :, None, :]
                                  + sampling_offsets / offset_normalizer[None, None, None, :, None, :])
        else:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        output = multi_scale_deformable_attention(value, spatial_shapes, sampling_locations, attention_weights)
        output = self.output_proj(output)
        return output, attention_weights


# ---- encoder layers ----

class GroundingDinoTextEnhancerLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim=config.d_model, num_heads=config.encoder_attention_heads // 2,
                                               dropout=0.0, batch_first=True)
        self.fc1 = nn.Linear(config.d_model, config.encoder_ffn_dim // 2)
        self.fc2 = nn.Linear(config.encoder_ffn_dim // 2, config.d_model)
        self.layer_norm_before = nn.LayerNorm(config.d_model)
        self.layer_norm_after = nn.LayerNorm(config.d_model)
        self.activation = nn.ReLU()
        self.num_heads = config.encoder_attention_heads // 2

    def forward(self, hidden_states, attention_masks=None, position_embeddings=None):
        if attention_masks.dim() == 3 and attention_masks.shape[0] == hidden_states.shape[0]:
            attention_masks = attention_masks.repeat(self.num_heads, 1, 1)
        queries = keys = hidden_states if position_embeddings is None else hidden_states + position_embeddings
        attention_output, attention_weights = self.self_attn(query=queries, key=keys, value=hidden_states,
                                                             attn_mask=attention_masks, average_attn_weights=False)
        hidden_states = hidden_states + attention_output
        hidden_states = self.layer_norm_before(hidden_states)
        residual = hidden_states
        hidden_states = self.activation(self.fc1(hidden_states))
        hidden_states = self.fc2(hidden_states)
        hidden_states = hidden_states + residual
        hidden_states = self.layer_norm_after(hidden_states)
        return hidden_states, attention_weights


class GroundingDinoBiMultiHeadAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        vision_dim = text_dim = config.d_model
        embed_dim = config.encoder_ffn_dim // 2
        num_heads = config.encoder_attention_heads // 2
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** (-0.5)
        self.vision_proj = nn.Linear(vision_dim, embed_dim)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.values_vision_proj = nn.Linear(vision_dim, embed_dim)
        self.values_text_proj = nn.Linear(text_dim, embed_dim)
        self.out_vision_proj = nn.Linear(embed_dim, vision_dim)
        self.out_text_proj = nn.Linear(embed_dim, text_dim)

    def _shape(self, tensor, seq_len, batch_size):
        return tensor.view(batch_size, seq_len, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def forward(self, vision_features, text_features, vision_attention_mask=None, text_attention_mask=None):
        batch_size, tgt_len, _ = vision_features.size()
        vision_query_states = self._shape(self.vision_proj(vision_features) * self.scale, tgt_len, batch_size)
        text_key_states = self._shape(self.text_proj(text_features), -1, batch_size)
        vision_value_states = self._shape(self.values_vision_proj(vision_features), -1, batch_size)
        text_value_states = self._shape(self.values_text_proj(text_features), -1, batch_size)
        proj_shape = (batch_size * self.num_heads, -1, self.head_dim)
        vision_query_states = vision_query_states.view(*proj_shape)
        text_key_states = text_key_states.view(*proj_shape)
        vision_value_states = vision_value_states.view(*proj_shape)
        text_value_states = text_value_states.view(*proj_shape)

        attn_weights = torch.bmm(vision_query_states, text_key_states.transpose(1, 2))
        attn_weights = attn_weights - attn_weights.max()
        attn_weights = torch.clamp(attn_weights, min=-50000, max=50000)
        attn_weights_transposed = attn_weights.transpose(1, 2)
        text_attn_weights = attn_weights_transposed - torch.max(attn_weights_transposed, dim=-1, keepdim=True)[0]
        text_attn_weights = torch.clamp(text_attn_weights, min=-50000, max=50000)
        if vision_attention_mask is not None:
            vision_attention_mask = vision_attention_mask[:, None, None, :].repeat(1, self.num_heads, 1, 1).flatten(0, 1)
            text_attn_weights.masked_fill_(vision_attention_mask, float("-inf"))
        text_attn_weights = text_attn_weights.softmax(dim=-1)
        if text_attention_mask is not None:
            text_attention_mask = text_attention_mask[:, None, None, :].repeat(1, self.num_heads, 1, 1).flatten(0, 1)
            attn_weights.masked_fill_(text_attention_mask, float("-inf"))
        vision_attn_weights = attn_weights.softmax(dim=-1)

        vision_attn_output = torch.bmm(vision_attn_weights, text_value_states)
        text_attn_output = torch.bmm(text_attn_weights, vision_value_states)
        src_len = text_key_states.size(1)
        vision_attn_output = vision_attn_output.view(batch_size, self.num_heads, tgt_len, self.head_dim).transpose(1, 2).reshape(batch_size, tgt_len, self.embed_dim)
        text_attn_output = text_attn_output.view(batch_size, self.num_heads, src_len, self.head_dim).transpose(1, 2).reshape(batch_size, src_len, self.embed_dim)
        vision_attn_output = self.out_vision_proj(vision_attn_output)
        text_attn_output = self.out_text_proj(text_attn_output)
        return (vision_attn_output, vision_attn_weights), (text_attn_output, text_attn_weights)


class GroundingDinoFusionLayer(nn.Module):
    def __init__(self, config, init_values=1e-4):
        super().__init__()
        self.layer_norm_vision = nn.LayerNorm(config.d_model)
        self.layer_norm_text = nn.LayerNorm(config.d_model)
        self.attn = GroundingDinoBiMultiHeadAttention(config)
        self.vision_param = nn.Parameter(init_values * torch.ones((config.d_model)))
        self.text_param = nn.Parameter(init_values * torch.ones((config.d_model)))

    def forward(self, vision_features, text_features, attention_mask_vision=None, attention_mask_text=None):
        vision_features = self.layer_norm_vision(vision_features)
        text_features = self.layer_norm_text(text_features)
        (delta_v, vision_attn), (delta_t, text_attn) = self.attn(vision_features, text_features,
                                                                 vision_attention_mask=attention_mask_vision,
                                                                 text_attention_mask=attention_mask_text)
        vision_features = vision_features + self.vision_param * delta_v
        text_features = text_features + self.text_param * delta_t
        return (vision_features, vision_attn), (text_features, text_attn)


class GroundingDinoDeformableLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_dim = config.d_model
        self.self_attn = GroundingDinoMultiscaleDeformableAttention(config, num_heads=config.encoder_attention_heads,
                                                                    n_points=config.encoder_n_points)
        self.self_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.activation_fn = nn.ReLU()
        self.fc1 = nn.Linear(self.embed_dim, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)

    def forward(self, hidden_states, attention_mask, position_embeddings=None, reference_points=None,
                spatial_shapes=None, level_start_index=None):
        residual = hidden_states
        hidden_states, attn_weights = self.self_attn(hidden_states=hidden_states, attention_mask=attention_mask,
                                                     encoder_hidden_states=hidden_states, encoder_attention_mask=attention_mask,
                                                     position_embeddings=position_embeddings, reference_points=reference_points,
                                                     spatial_shapes=spatial_shapes, level_start_index=level_start_index)
        hidden_states = residual + hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        residual = hidden_states
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = self.fc2(hidden_states)
        hidden_states = residual + hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states, attn_weights


class GroundingDinoEncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.d_model = config.d_model
        self.text_enhancer_layer = GroundingDinoTextEnhancerLayer(config)
        self.fusion_layer = GroundingDinoFusionLayer(config)
        self.deformable_layer = GroundingDinoDeformableLayer(config)

    def get_text_position_embeddings(self, text_features, text_position_embedding, text_position_ids):
        if text_position_ids is not None:
            text_position_embedding = get_sine_pos_embed(text_position_ids[..., None], num_pos_feats=self.d_model, exchange_xy=False)
        return text_position_embedding

    def forward(self, vision_features, vision_position_embedding, spatial_shapes, level_start_index, key_padding_mask,
                reference_points, text_features=None, text_attention_mask=None, text_position_embedding=None,
                text_self_attention_masks=None, text_position_ids=None):
        text_position_embedding = self.get_text_position_embeddings(text_features, text_position_embedding,
                                                                     text_position_ids).to(vision_features.dtype)
        (vision_features, _), (text_features, _) = self.fusion_layer(
            vision_features=vision_features, text_features=text_features,
            attention_mask_vision=key_padding_mask, attention_mask_text=text_attention_mask)
        (text_features, _) = self.text_enhancer_layer(hidden_states=text_features, attention_masks=~text_self_attention_masks,
                                                      position_embeddings=text_position_embedding)
        (vision_features, _) = self.deformable_layer(hidden_states=vision_features, attention_mask=~key_padding_mask,
                                                     position_embeddings=vision_position_embedding, reference_points=reference_points,
                                                     spatial_shapes=spatial_shapes, level_start_index=level_start_index)
        return vision_features, text_features


class GroundingDinoEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList([GroundingDinoEncoderLayer(config) for _ in range(config.encoder_layers)])

    @staticmethod
    def get_reference_points(spatial_shapes, valid_ratios, device):
        reference_points_list = []
        for level, (height, width) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device),
                torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
            ref = torch.stack((ref_x, ref_y), -1)
            reference_points_list.append(ref)
        reference_points = torch.cat(reference_points_list, 1)
        reference_points = reference_points[:, :, None] * valid_ratios[:, None]
        return reference_points

    def forward(self, vision_features, vision_attention_mask, vision_position_embedding, spatial_shapes, level_start_index,
                valid_ratios=None, text_features=None, text_attention_mask=None, text_self_attention_masks=None,
                text_position_ids=None, keep_layers=None):
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, device=vision_features.device)
        reference_points = reference_points.to(vision_features.dtype)
        for encoder_layer in self.layers:
            vision_features, text_features = encoder_layer(
                vision_features=vision_features, vision_position_embedding=vision_position_embedding,
                spatial_shapes=spatial_shapes, level_start_index=level_start_index, key_padding_mask=vision_attention_mask,
                reference_points=reference_points, text_features=text_features, text_attention_mask=text_attention_mask,
                text_self_attention_masks=text_self_attention_masks, text_position_ids=text_position_ids)
            if keep_layers is not None:
                keep_layers.append((vision_features, text_features))
        return vision_features, text_features, reference_points


def generate_masks_with_text_query_masks(text_query_masks):
    batch_size, num_token = text_query_masks.shape
    self_attention_mask = torch.eye(num_token, device=text_query_masks.device).bool().unsqueeze(0).repeat(batch_size, 1, 1)
    position_ids = torch.zeros((batch_size, num_token), dtype=torch.long, device=text_query_masks.device)
    for batch_idx in range(batch_size):
        num_valid = text_query_masks[batch_idx].sum()
        self_attention_mask[batch_idx, :num_valid, :num_valid] = True
        position_ids[batch_idx, :num_valid] = torch.arange(0, num_valid, device=text_query_masks.device)
    return self_attention_mask, position_ids


class GroundingDinoEncoderSide(nn.Module):
    """The part of OVGroundingDinoModel between the backbone and the decoder: input_proj_vision,
    level_embed, the backbone's position embedding and the encoder, under the official names."""

    def __init__(self, config, stage_channels):
        super().__init__()
        self.config = config
        self.position_embedding = build_position_encoding(config)
        in_sizes = stage_channels[-3:]
        input_proj_list = []
        for in_channels in in_sizes:
            input_proj_list.append(nn.Sequential(nn.Conv2d(in_channels, config.d_model, kernel_size=1), nn.GroupNorm(32, config.d_model)))
        in_channels = in_sizes[-1]
        for _ in range(config.num_feature_levels - len(in_sizes)):
            input_proj_list.append(nn.Sequential(nn.Conv2d(in_channels, config.d_model, kernel_size=3, stride=2, padding=1),
                                                 nn.GroupNorm(32, config.d_model)))
            in_channels = config.d_model
        self.input_proj_vision = nn.ModuleList(input_proj_list)
        self.encoder = GroundingDinoEncoder(config)
        self.level_embed = nn.Parameter(torch.Tensor(config.num_feature_levels, config.d_model))

    @staticmethod
    def get_valid_ratio(mask):
        _, height, width = mask.shape
        valid_height = torch.sum(mask[:, :, 0], 1)
        valid_width = torch.sum(mask[:, 0, :], 1)
        valid_ratio_heigth = valid_height.float() / height
        valid_ratio_width = valid_width.float() / width
        return torch.stack([valid_ratio_width, valid_ratio_heigth], -1)

    def forward(self, stages, pixel_mask, text_query, text_query_masks, keep_layers=None):
        """stages: the backbone's feature maps [B, C, h, w] (all of them); pixel_mask [B, H, W] (1 = valid)."""
        text_self_attention_masks, position_ids = generate_masks_with_text_query_masks(text_query_masks)
        text_token_mask = text_query_masks.bool()
        # GroundingDinoConvEncoder: each map's mask, nearest from the pixel mask; GroundingDinoConvModel: its position embedding.
        vision_features = []
        position_embeddings_list = []
        for feature_map in stages:
            mask = F.interpolate(pixel_mask[None].float(), size=feature_map.shape[-2:]).to(torch.bool)[0]
            vision_features.append((feature_map, mask))
            position_embeddings_list.append(self.position_embedding(feature_map, mask).to(feature_map.dtype))

        vision_features_input = vision_features[1:]
        position_embeddings_list_input = position_embeddings_list[1:]
        sources, masks = [], []
        for level, (source, mask) in enumerate(vision_features_input):
            sources.append(self.input_proj_vision[level](source))
            masks.append(mask)
        if self.config.num_feature_levels > len(sources):
            _len_sources = len(sources)
            for level in range(_len_sources, self.config.num_feature_levels):
                if level == _len_sources:
                    source = self.input_proj_vision[level](vision_features[-1][0])
                else:
                    source = self.input_proj_vision[level](sources[-1])
                mask = F.interpolate(pixel_mask[None].float(), size=source.shape[-2:]).to(torch.bool)[0]
                pos_l = self.position_embedding(source, mask).to(source.dtype)
                sources.append(source)
                masks.append(mask)
                position_embeddings_list_input.append(pos_l)

        source_flatten, mask_flatten, lvl_pos_embed_flatten, spatial_shapes = [], [], [], []
        for level, (source, mask, pos_embed) in enumerate(zip(sources, masks, position_embeddings_list_input)):
            batch_size, num_channels, height, width = source.shape
            spatial_shapes.append((height, width))
            source = source.flatten(2).transpose(1, 2)
            mask = mask.flatten(1)
            pos_embed = pos_embed.flatten(2).transpose(1, 2)
            lvl_pos_embed = pos_embed + self.level_embed[level].view(1, 1, -1)
            lvl_pos_embed_flatten.append(lvl_pos_embed)
            source_flatten.append(source)
            mask_flatten.append(mask)
        source_flatten = torch.cat(source_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        lvl_pos_embed_flatten = torch.cat(lvl_pos_embed_flatten, 1)
        spatial_shapes = torch.as_tensor(spatial_shapes, dtype=torch.long, device=source_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1).float()

        memory, text, reference_points = self.encoder(
            vision_features=source_flatten, vision_attention_mask=~mask_flatten,
            vision_position_embedding=lvl_pos_embed_flatten, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, valid_ratios=valid_ratios, text_features=text_query,
            text_attention_mask=~text_token_mask, text_self_attention_masks=text_self_attention_masks,
            text_position_ids=position_ids, keep_layers=keep_layers)
        return dict(memory=memory, text=text, reference_points=reference_points, sources=source_flatten,
                    lvl_pos=lvl_pos_embed_flatten, pos=[p.flatten(2).transpose(1, 2) for p in position_embeddings_list_input],
                    mask_flatten=mask_flatten, spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                    valid_ratios=valid_ratios)


def seed_weights(module, seed, level_embed, layer_scales, input_proj):
    """Seeded weights for an encoder side's goldens, under either model's names (Grounding DINO's or
    UniPose's): norms near 1, small biases, layer scales of order 1 so the fusion matters, sampling
    offsets that reach across cells, weights scaled by their fan-in."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, s=1.0: torch.randn(*shape, generator=g, dtype=torch.float64) * s
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.split('.')[-1]
            if name == level_embed:
                p.copy_(rand(*p.shape, s=0.5))
            elif leaf in layer_scales:
                p.copy_(0.2 + rand(*p.shape).abs() * 0.4)
            elif 'norm' in name or (input_proj in name and '.1.' in name):  # LayerNorm / GroupNorm affine
                p.copy_((1.0 if leaf == 'weight' else 0.0) + rand(*p.shape, s=0.1))
            elif 'sampling_offsets' in name:
                p.copy_(rand(*p.shape, s=0.3 / math.sqrt(p.shape[-1])) if leaf == 'weight' else rand(*p.shape, s=1.5))
            elif leaf in ('weight', 'in_proj_weight'):
                p.copy_(rand(*p.shape, s=1 / math.sqrt(p[0].numel())))
            else:  # biases
                p.copy_(rand(*p.shape, s=0.1))
