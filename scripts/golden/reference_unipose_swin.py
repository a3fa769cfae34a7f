"""UniPose's Swin backbone: Microsoft's Swin Transformer detection code as VisionLLM v2 ships it
(VisionLLMv2/visionllmv2/model/unipose/modeling_unipose.py: Mlp, window_partition, window_reverse,
WindowAttention, SwinTransformerBlock, PatchMerging, BasicLayer, PatchEmbed, SwinTransformer), for
the goldens of src/decoders/unipose/swin.ts. Inference only (no dropout, drop path, absolute
position embedding, checkpointing or dilation), with the official module and parameter names, so a
state_dict of SwinTransformer is the release's `unipose.backbone.0.*` (Joiner(backbone, position)
makes the Swin `backbone.0`).

Behaviour, and where it differs from Hugging Face's SwinBackbone (reference_gdino_swin.py):
- Same patch embedding (pad to whole patches, strided conv, LayerNorm), same block, same merging.
- The window never shrinks and odd blocks always shift: a map is padded to whole windows and
  rolled even when it is smaller than the window (HF 4.34 then uses a window of the map's smaller
  side and no shift). The shifted-window mask is computed on the padded map, as HF's.
- One fused `qkv` Linear (dim -> 3 dim, rows q, k, v); `attn.proj` is the output projection;
  `mlp.fc1`/`mlp.fc2`; norms `norm1`/`norm2`; every LayerNorm has nn.LayerNorm's eps 1e-5.
- Output norms `norm{i}` for i in out_indices (0-based; UniPose: return_interm_indices [1, 2, 3]).

Cross-check: `python3 -P scripts/golden/reference_unipose_swin.py` maps seeded HF weights onto
this module and compares raw stage maps at sizes where every stage map is larger than the window
(HF neither shrinks nor drops the shift there); see crosscheck_hf(). Measured 2026-12-06 (float64,
embed 16, depths 2,2,2,2, seeded weights): max |difference| below 1e-14 on raw stage maps of scale
~7.5 at 260x292, 257x291, 288x416 and 320x320; at 224x224 (s32 map 7x7) they differ by 0.75, as
they should: HF drops the shift there, Microsoft pads nothing and still rolls.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x, window_size):
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)


def window_reverse(windows, window_size, H, W):
    B = int(windows.shape[0] / (H * W / window_size / window_size))
    x = windows.view(B, H // window_size, W // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim, window_size, num_heads, qkv_bias=True):
        super().__init__()
        self.dim = dim
        self.window_size = window_size  # (Wh, Ww)
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        coords = torch.stack(torch.meshgrid([torch.arange(window_size[0]), torch.arange(window_size[1])], indexing='ij'))
        coords_flatten = torch.flatten(coords, 1)
        relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).permute(1, 2, 0).contiguous()
        relative_coords[:, :, 0] += window_size[0] - 1
        relative_coords[:, :, 1] += window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * window_size[1] - 1
        self.register_buffer('relative_position_index', relative_coords.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B_, N, C))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, window_size=7, shift_size=0, mlp_ratio=4., qkv_bias=True):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, (window_size, window_size), num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.H = None
        self.W = None

    def forward(self, x, mask_matrix):
        B, L, C = x.shape
        H, W = self.H, self.W
        assert L == H * W, 'input feature has wrong size'
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        pad_r = (self.window_size - W % self.window_size) % self.window_size
        pad_b = (self.window_size - H % self.window_size) % self.window_size
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, Hp, Wp, _ = x.shape
        if self.shift_size > 0:
            shifted_x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            attn_mask = mask_matrix
        else:
            shifted_x = x
            attn_mask = None
        x_windows = window_partition(shifted_x, self.window_size).view(-1, self.window_size * self.window_size, C)
        attn_windows = self.attn(x_windows, mask=attn_mask).view(-1, self.window_size, self.window_size, C)
        shifted_x = window_reverse(attn_windows, self.window_size, Hp, Wp)
        x = torch.roll(shifted_x, shifts=(self.shift_size, self.shift_size), dims=(1, 2)) if self.shift_size > 0 else shifted_x
        x = x[:, :H, :W, :].contiguous().view(B, H * W, C)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x, H, W):
        B, L, C = x.shape
        x = x.view(B, H, W, C)
        if H % 2 == 1 or W % 2 == 1:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).view(B, -1, 4 * C)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    def __init__(self, dim, depth, num_heads, window_size=7, mlp_ratio=4., qkv_bias=True, downsample=None):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias)
            for i in range(depth)])
        self.downsample = downsample(dim=dim) if downsample is not None else None

    def forward(self, x, H, W):
        Hp = int(np.ceil(H / self.window_size)) * self.window_size
        Wp = int(np.ceil(W / self.window_size)) * self.window_size
        img_mask = torch.zeros((1, Hp, Wp, 1), dtype=x.dtype)
        slices = (slice(0, -self.window_size), slice(-self.window_size, -self.shift_size), slice(-self.shift_size, None))
        cnt = 0
        for h in slices:
            for w in slices:
                img_mask[:, h, w, :] = cnt
                cnt += 1
        mask_windows = window_partition(img_mask, self.window_size).view(-1, self.window_size * self.window_size)
        attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, float(-100.0)).masked_fill(attn_mask == 0, float(0.0))
        for blk in self.blocks:
            blk.H, blk.W = H, W
            x = blk(x, attn_mask)
        if self.downsample is not None:
            return x, H, W, self.downsample(x, H, W), (H + 1) // 2, (W + 1) // 2
        return x, H, W, x, H, W


class PatchEmbed(nn.Module):
    def __init__(self, patch_size=4, in_chans=3, embed_dim=96):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        _, _, H, W = x.size()
        if W % self.patch_size[1] != 0:
            x = F.pad(x, (0, self.patch_size[1] - W % self.patch_size[1]))
        if H % self.patch_size[0] != 0:
            x = F.pad(x, (0, 0, 0, self.patch_size[0] - H % self.patch_size[0]))
        x = self.proj(x)
        Wh, Ww = x.size(2), x.size(3)
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).view(-1, self.embed_dim, Wh, Ww)


class SwinTransformer(nn.Module):
    def __init__(self, patch_size=4, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window_size=7, mlp_ratio=4., qkv_bias=True, out_indices=(1, 2, 3)):
        super().__init__()
        self.num_layers = len(depths)
        self.out_indices = tuple(out_indices)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_features = [int(embed_dim * 2 ** i) for i in range(self.num_layers)]
        self.layers = nn.ModuleList([
            BasicLayer(self.num_features[i], depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias,
                       PatchMerging if i < self.num_layers - 1 else None)
            for i in range(self.num_layers)])
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))

    def forward(self, x, raw=False):
        """forward_raw: the out_indices maps [B, C, h, w], normed (raw=True: every stage's map, unnormed)."""
        x = self.patch_embed(x)
        Wh, Ww = x.size(2), x.size(3)
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            x_out, H, W, x, Wh, Ww = layer(x, Wh, Ww)
            if raw or i in self.out_indices:
                if not raw:
                    x_out = getattr(self, f'norm{i}')(x_out)
                outs.append(x_out.view(-1, H, W, self.num_features[i]).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


def randomize(model, seed):
    """Seeded weights exactly as reference_gdino_swin.randomize (the rule depends only on the names' norm/table/rank)."""
    _hf().randomize(model, seed)


# ---- cross-check against Hugging Face's SwinBackbone (reference_gdino_swin.py) ----

def _hf():
    import importlib.util
    spec = importlib.util.spec_from_file_location('reference_gdino_swin', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_gdino_swin.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def microsoft_state(hf, depths):
    """HF names -> Microsoft names: q, k, v fused (rows in that order) into qkv."""
    s = {k: v for k, v in hf.state_dict().items() if not k.endswith('relative_position_index')}
    out = {}
    for w in ('weight', 'bias'):
        out['patch_embed.proj.' + w] = s['embeddings.patch_embeddings.projection.' + w]
        out['patch_embed.norm.' + w] = s['embeddings.norm.' + w]
    for i, depth in enumerate(depths):
        for j in range(depth):
            a, m = f'encoder.layers.{i}.blocks.{j}.', f'layers.{i}.blocks.{j}.'
            for w in ('weight', 'bias'):
                out[m + 'norm1.' + w] = s[a + 'layernorm_before.' + w]
                out[m + 'norm2.' + w] = s[a + 'layernorm_after.' + w]
                out[m + 'attn.qkv.' + w] = torch.cat([s[a + f'attention.self.{n}.{w}'] for n in ('query', 'key', 'value')])
                out[m + 'attn.proj.' + w] = s[a + 'attention.output.dense.' + w]
                out[m + 'mlp.fc1.' + w] = s[a + 'intermediate.dense.' + w]
                out[m + 'mlp.fc2.' + w] = s[a + 'output.dense.' + w]
            out[m + 'attn.relative_position_bias_table'] = s[a + 'attention.self.relative_position_bias_table']
        if i < len(depths) - 1:
            out[f'layers.{i}.downsample.reduction.weight'] = s[f'encoder.layers.{i}.downsample.reduction.weight']
            for w in ('weight', 'bias'):
                out[f'layers.{i}.downsample.norm.' + w] = s[f'encoder.layers.{i}.downsample.norm.' + w]
    return out


def crosscheck_hf(sizes=((260, 292), (257, 291), (288, 416), (320, 320), (224, 224)), seed=5):
    """Max |HF - Microsoft| over the four raw stage maps per size, float64, and the maps' scale."""
    ref = _hf()
    depths, heads = [2, 2, 2, 2], [2, 2, 4, 4]
    hf = ref.SwinBackbone(ref.SwinConfig(embed_dim=16, depths=depths, num_heads=heads)).double().eval()
    ref.randomize(hf, seed)
    ms = SwinTransformer(embed_dim=16, depths=depths, num_heads=heads, out_indices=()).double().eval()
    missing, unexpected = ms.load_state_dict(microsoft_state(hf, depths), strict=False)
    assert not unexpected and all(m.endswith('relative_position_index') for m in missing), (missing, unexpected)
    results = []
    with torch.no_grad():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * w), dtype=torch.float64)
            a, b = hf(x, raw=True), ms(x, raw=True)
            diff = max((p - q).abs().max().item() for p, q in zip(a, b))
            scale = max(p.abs().max().item() for p in a)
            results.append(((h, w), [tuple(p.shape[-2:]) for p in a], diff, scale))
    return results


if __name__ == '__main__':
    torch.set_num_threads(2)
    for size, maps, diff, scale in crosscheck_hf():
        note = '  (expected to differ: s32 map 7x7, HF drops the shift, Microsoft keeps it)' if size == (224, 224) else ''
        print(f'{size}: stage maps {maps}: max |HF - Microsoft| {diff:.2e} (scale {scale:.2f}){note}')
