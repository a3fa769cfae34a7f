"""PyTorch reference of diffusers' UNet2DConditionModel (diffusers 0.28.2), the SD-1.5 / InstructPix2Pix U-Net
(decoders.md 2.C C.2 and 2.D): the inference path only, for the SD-1.5 configuration family, transcribed from
  src/diffusers/models/unets/unet_2d_condition.py   UNet2DConditionModel (forward, forward_upsample_size)
  src/diffusers/models/unets/unet_2d_blocks.py      CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn,
                                                    UpBlock2D, CrossAttnUpBlock2D
  src/diffusers/models/resnet.py                    ResnetBlock2D (default time_embedding_norm, pre-norm)
  src/diffusers/models/downsampling.py / upsampling.py  Downsample2D (conv 3x3 s2 p1), Upsample2D (nearest + conv)
  src/diffusers/models/transformers/transformer_2d.py   Transformer2DModel (continuous input, use_linear_projection
                                                    False: GroupNorm eps 1e-6, proj_in / proj_out 1x1 convs)
  src/diffusers/models/attention.py                 BasicTransformerBlock (layer_norm), FeedForward, GEGLU
  src/diffusers/models/attention_processor.py       Attention (to_q/k/v no bias, to_out.0 bias; AttnProcessor2_0)
  src/diffusers/models/embeddings.py                get_timestep_embedding, Timesteps, TimestepEmbedding
with diffusers' module and parameter names, so state_dict() holds the checkpoint's names (prefix `sd.sd_unet.` or
`ip2p.sd_unet.` in the VisionLLMv2 checkpoint). Dropout modules are kept where diffusers has them (to_out.1,
ff.net.1) because they shift ModuleList indices: to_out.0, ff.net.0.proj, ff.net.2.

diffusers' head-count quirk: `attention_head_dim` (8 for SD-1.5) is the NUMBER of heads (num_attention_heads
defaults to attention_head_dim; unet_2d_condition.py:235-241); a block of C channels has C / heads as head dim
(40 / 80 / 160 / 160 for SD-1.5).

Odd latent sizes (unet_2d_condition.py forward, "forward_upsample_size"): when either spatial dim of the sample is
not a multiple of 2 ** num_upsamplers, every non-final up block upsamples with F.interpolate(size = the spatial
size of the next skip tensor, mode='nearest') instead of scale_factor 2 (legacy 'nearest': src = floor(dst * in /
out)). Downsample2D's conv 3x3 s2 p1 gives ceil(n / 2).

CLI:
  python3 -P scripts/golden/reference_unet.py --time [--threads 2 --repeat 1 --size 64 --batch 2]
      one U-Net call at the release config with random f32 weights; prints one JSON line {unet_ms, ...}
  python3 -P scripts/golden/reference_unet.py --layout [--write]
      the release names / shapes / parameter count (859.52 M); --write writes test/golden/unet_release.json
      (also written by `bash scripts/golden/generate.sh reference_unet` through files())
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def release_config(in_channels=4):
    """SD-1.5 unet/config.json (runwayml/stable-diffusion-v1-5; timbrooks/instruct-pix2pix has in_channels 8)."""
    return dict(in_channels=in_channels, out_channels=4, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32, norm_eps=1e-5,
                down_block_types=['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
                up_block_types=['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
                flip_sin_to_cos=True, freq_shift=0, act_fn='silu', sample_size=64)


# ---------------------------------------------------------------- embeddings.py

def get_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1.0, scale=1.0,
                           max_period=10000):
    """diffusers computes this in float32 (timesteps.float(), arange float32) and casts to the sample dtype; here in
    the dtype of `timesteps` (float64 for the golden), i.e. the exact values f32 approximates."""
    assert timesteps.dim() == 1
    half_dim = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half_dim, dtype=timesteps.dtype)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None] * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    def __init__(self, num_channels, flip_sin_to_cos, downscale_freq_shift):
        super().__init__()
        self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift = num_channels, flip_sin_to_cos, downscale_freq_shift

    def forward(self, timesteps):
        return get_timestep_embedding(timesteps, self.num_channels, flip_sin_to_cos=self.flip_sin_to_cos,
                                      downscale_freq_shift=self.downscale_freq_shift)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels, time_embed_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, sample):
        return self.linear_2(self.act(self.linear_1(sample)))


# ---------------------------------------------------------------- resnet.py, downsampling.py, upsampling.py

class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, eps, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0) if in_channels != out_channels else None

    def forward(self, input_tensor, temb):
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return input_tensor + h  # output_scale_factor 1


class Downsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)  # downsample_padding 1: no extra pad

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, output_size=None):
        if output_size is None:
            x = F.interpolate(x, scale_factor=2.0, mode='nearest')
        else:
            x = F.interpolate(x, size=output_size, mode='nearest')
        return self.conv(x)


# ---------------------------------------------------------------- attention_processor.py, attention.py

class Attention(nn.Module):
    def __init__(self, query_dim, heads, dim_head, cross_attention_dim=None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        kv_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=True), nn.Dropout(0.0)])

    def forward(self, hidden_states, encoder_hidden_states=None):
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        b = hidden_states.shape[0]
        q, k, v = self.to_q(hidden_states), self.to_k(ctx), self.to_v(ctx)
        d = q.shape[-1] // self.heads
        q, k, v = (x.view(b, -1, self.heads, d).transpose(1, 2) for x in (q, k, v))
        w = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)  # F.scaled_dot_product_attention, no mask
        out = (w @ v).transpose(1, 2).reshape(b, -1, self.heads * d)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)  # exact (erf) gelu


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, cross_attention_dim, norm_eps=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.ff = FeedForward(dim)

    def forward(self, x, encoder_hidden_states):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), encoder_hidden_states) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """Continuous input, use_linear_projection False, one layer (transformer_layers_per_block 1)."""

    def __init__(self, num_attention_heads, attention_head_dim, in_channels, cross_attention_dim, norm_num_groups):
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, num_attention_heads, attention_head_dim, cross_attention_dim)])
        self.proj_out = nn.Conv2d(inner, in_channels, 1)

    def forward(self, hidden_states, encoder_hidden_states):
        b, _, h, w = hidden_states.shape
        residual = hidden_states
        x = self.proj_in(self.norm(hidden_states))
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        for block in self.transformer_blocks:
            x = block(x, encoder_hidden_states)
        x = x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(x) + residual


# ---------------------------------------------------------------- unet_2d_blocks.py

class CrossAttnDownBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, num_layers, eps, groups, heads, cross_attention_dim,
                 add_downsample):
        super().__init__()
        # diffusers assigns self.attentions before self.resnets: the state_dict order
        self.attentions = nn.ModuleList([Transformer2DModel(heads, out_channels // heads, out_channels, cross_attention_dim, groups)
                                         for _ in range(num_layers)])
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, eps, groups)
                                      for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if add_downsample else None

    def forward(self, x, temb, encoder_hidden_states):
        states = ()
        for resnet, attn in zip(self.resnets, self.attentions):
            x = attn(resnet(x, temb), encoder_hidden_states)
            states += (x,)
        if self.downsamplers is not None:
            for d in self.downsamplers:
                x = d(x)
            states += (x,)
        return x, states


class DownBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, num_layers, eps, groups, add_downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, eps, groups)
                                      for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if add_downsample else None

    def forward(self, x, temb, encoder_hidden_states=None):
        states = ()
        for resnet in self.resnets:
            x = resnet(x, temb)
            states += (x,)
        if self.downsamplers is not None:
            for d in self.downsamplers:
                x = d(x)
            states += (x,)
        return x, states


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, in_channels, temb_channels, eps, groups, heads, cross_attention_dim, num_layers=1):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(heads, in_channels // heads, in_channels, cross_attention_dim, groups)
                                         for _ in range(num_layers)])
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels, in_channels, temb_channels, eps, groups)
                                      for _ in range(num_layers + 1)])

    def forward(self, x, temb, encoder_hidden_states):
        x = self.resnets[0](x, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attn(x, encoder_hidden_states), temb)
        return x


def _up_resnets(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups):
    out = []
    for i in range(num_layers):
        res_skip_channels = in_channels if i == num_layers - 1 else out_channels
        resnet_in_channels = prev_output_channel if i == 0 else out_channels
        out.append(ResnetBlock2D(resnet_in_channels + res_skip_channels, out_channels, temb_channels, eps, groups))
    return nn.ModuleList(out)


class CrossAttnUpBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, prev_output_channel, temb_channels, num_layers, eps, groups, heads,
                 cross_attention_dim, add_upsample):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(heads, out_channels // heads, out_channels, cross_attention_dim, groups)
                                         for _ in range(num_layers)])
        self.resnets = _up_resnets(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None

    def forward(self, x, res_hidden_states_tuple, temb, encoder_hidden_states, upsample_size=None):
        for resnet, attn in zip(self.resnets, self.attentions):
            res = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            x = torch.cat([x, res], dim=1)  # hidden state first, then the skip
            x = attn(resnet(x, temb), encoder_hidden_states)
        if self.upsamplers is not None:
            for u in self.upsamplers:
                x = u(x, upsample_size)
        return x


class UpBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, prev_output_channel, temb_channels, num_layers, eps, groups, add_upsample):
        super().__init__()
        self.resnets = _up_resnets(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None

    def forward(self, x, res_hidden_states_tuple, temb, encoder_hidden_states=None, upsample_size=None):
        for resnet in self.resnets:
            res = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            x = resnet(torch.cat([x, res], dim=1), temb)
        if self.upsamplers is not None:
            for u in self.upsamplers:
                x = u(x, upsample_size)
        return x


# ---------------------------------------------------------------- unet_2d_condition.py

class UNet2DConditionModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = dict(release_config())
        c.update(config)
        self.config = c
        assert c['act_fn'] == 'silu'
        boc = list(c['block_out_channels'])
        n = len(c['down_block_types'])
        assert len(c['up_block_types']) == n == len(boc)
        heads = c['attention_head_dim']  # the quirk: num_attention_heads = attention_head_dim
        heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * n
        eps, groups, cross, lpb = c['norm_eps'], c['norm_num_groups'], c['cross_attention_dim'], c['layers_per_block']

        self.conv_in = nn.Conv2d(c['in_channels'], boc[0], 3, padding=1)
        time_embed_dim = boc[0] * 4
        self.time_proj = Timesteps(boc[0], c['flip_sin_to_cos'], c['freq_shift'])
        self.time_embedding = TimestepEmbedding(boc[0], time_embed_dim)

        # diffusers creates down_blocks and up_blocks before assigning mid_block: state_dict order down, up, mid
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        output_channel = boc[0]
        for i, kind in enumerate(c['down_block_types']):
            input_channel, output_channel = output_channel, boc[i]
            last = i == n - 1
            if kind == 'CrossAttnDownBlock2D':
                blk = CrossAttnDownBlock2D(input_channel, output_channel, time_embed_dim, lpb, eps, groups, heads[i], cross, not last)
            elif kind == 'DownBlock2D':
                blk = DownBlock2D(input_channel, output_channel, time_embed_dim, lpb, eps, groups, not last)
            else:
                raise ValueError(kind)
            self.down_blocks.append(blk)

        self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], time_embed_dim, eps, groups, heads[-1], cross)

        self.num_upsamplers = 0
        rboc, rheads = list(reversed(boc)), list(reversed(heads))
        output_channel = rboc[0]
        for i, kind in enumerate(c['up_block_types']):
            last = i == n - 1
            prev_output_channel, output_channel = output_channel, rboc[i]
            input_channel = rboc[min(i + 1, n - 1)]
            if not last:
                self.num_upsamplers += 1
            if kind == 'CrossAttnUpBlock2D':
                blk = CrossAttnUpBlock2D(input_channel, output_channel, prev_output_channel, time_embed_dim, lpb + 1, eps,
                                         groups, rheads[i], cross, not last)
            elif kind == 'UpBlock2D':
                blk = UpBlock2D(input_channel, output_channel, prev_output_channel, time_embed_dim, lpb + 1, eps, groups, not last)
            else:
                raise ValueError(kind)
            self.up_blocks.append(blk)

        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], c['out_channels'], 3, padding=1)

    def forward(self, sample, timesteps, encoder_hidden_states, debug=None):
        """sample [B, in, H, W], timesteps [B] (or a scalar: broadcast), encoder_hidden_states [B, L, cross].
        debug: a dict that receives emb, down{i}, mid, up{i} (the block outputs)."""
        default_overall_up_factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(d % default_overall_up_factor != 0 for d in sample.shape[-2:])
        upsample_size = None

        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=sample.dtype)
        timesteps = timesteps.to(sample.dtype).reshape(-1).expand(sample.shape[0])
        t_emb = self.time_proj(timesteps).to(sample.dtype)
        emb = self.time_embedding(t_emb)
        if debug is not None:
            debug['emb'] = emb

        sample = self.conv_in(sample)
        down_block_res_samples = (sample,)
        for i, blk in enumerate(self.down_blocks):
            sample, res = blk(sample, emb, encoder_hidden_states)
            down_block_res_samples += res
            if debug is not None:
                debug[f'down{i}'] = sample

        sample = self.mid_block(sample, emb, encoder_hidden_states)
        if debug is not None:
            debug['mid'] = sample

        for i, blk in enumerate(self.up_blocks):
            is_final_block = i == len(self.up_blocks) - 1
            res_samples = down_block_res_samples[-len(blk.resnets):]
            down_block_res_samples = down_block_res_samples[:-len(blk.resnets)]
            if not is_final_block and forward_upsample_size:
                upsample_size = down_block_res_samples[-1].shape[2:]
            sample = blk(sample, res_samples, emb, encoder_hidden_states, upsample_size=upsample_size)
            if debug is not None:
                debug[f'up{i}'] = sample

        sample = self.conv_act(self.conv_norm_out(sample))
        return self.conv_out(sample)


def randomize(model, seed):
    """Seeded weights, activations O(1): conv / linear weights N(0, 1/fan_in), biases N(0, 0.1^2); norm weights
    1 + N(0, 0.1^2), biases N(0, 0.1^2). Drawn in float64 in state_dict order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * 0.1)
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * 0.1)
    return model


# ---------------------------------------------------------------- CLI: timing and release layout

def part(name):
    for prefix in ('time_embedding', 'conv_in', 'down_blocks', 'mid_block', 'up_blocks'):
        if name.startswith(prefix):
            return prefix
    return 'out'


def layout(in_channels=4):
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import release_layout as L
    module = UNet2DConditionModel(release_config(in_channels))
    tensors = L.entries(module, 'sd.sd_unet.', min)
    parameters, by_part = L.parameter_counts(module, part)
    return tensors, parameters, by_part


def release_json():
    tensors, parameters, by_part = layout(4)
    _, ip2p_parameters, _ = layout(8)
    doc = {
        'description': "The release checkpoint's sd.sd_unet.* tensors (names, shapes, dtypes) at the SD-1.5 config; "
                       'ip2p.sd_unet.* is the same with conv_in.weight [320, 8, 3, 3]. Generated by '
                       'scripts/golden/reference_unet.py --layout --write. No values.',
        'prefix': 'sd.sd_unet',
        'ip2p_prefix': 'ip2p.sd_unet',
        'unet_config': release_config(4),
        'ip2p_in_channels': 8,
        'parameters': parameters,
        'ip2p_parameters': ip2p_parameters,
        'parameters_by_part': by_part,
        'tensors': tensors,
    }
    return (json.dumps(doc, separators=(',', ':')) + '\n').encode()


def files():
    """generate.py: test/golden/unet_release.json (the release layout, no values)."""
    return {'unet_release.json': release_json()}


def time_release(threads, repeat=1, size=64, batch=2, seed=0):
    """One U-Net call at the release config, random f32 weights, batch `batch` (the CFG pair), latents
    [batch, 4, size, size], condition [batch, 77, 768], timesteps 981; the fastest of `repeat` after a warm-up."""
    torch.set_num_threads(threads)
    model = UNet2DConditionModel(release_config())
    randomize(model, seed)
    model = model.float().eval()
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 4, size, size, generator=g)
    c = torch.randn(batch, 77, 768, generator=g)
    t = torch.full((batch,), 981.0)
    runs = []
    with torch.no_grad():
        model(z, t, c)  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            out = model(z, t, c)
            runs.append(time.perf_counter() - start)
            assert torch.isfinite(out).all()
    return dict(unet_ms=round(min(runs) * 1000, 1), config='SD-1.5 U-Net', dtype='f32', batch=batch, latent=[size, size],
                cross=[77, 768], threads=threads, torch=torch.__version__, params=params, repeat=repeat,
                runs_ms=[round(r * 1000, 1) for r in runs],
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--time', action='store_true', help='time one U-Net call at the release config (random f32 weights)')
    parser.add_argument('--layout', action='store_true', help='print the release names / shapes / parameter count')
    parser.add_argument('--write', action='store_true', help='with --layout: write test/golden/unet_release.json')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--batch', type=int, default=2)
    args = parser.parse_args(argv)
    if args.layout:
        tensors, parameters, by_part = layout(4)
        print(f'{len(tensors)} tensors; {parameters / 1e6:.3f} M parameters ({parameters}); IP2P {layout(8)[1]}')
        for name, n in by_part.items():
            print(f'  {name}: {n / 1e6:.3f} M')
        if args.write:
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'unet_release.json')
            with open(path, 'wb') as f:
                f.write(release_json())
            print('wrote', os.path.relpath(path))
    if args.time:
        print(json.dumps(time_release(args.threads, args.repeat, args.size, args.batch)))
    if not (args.time or args.layout):
        parser.print_help()


if __name__ == '__main__':
    main(sys.argv[1:])
