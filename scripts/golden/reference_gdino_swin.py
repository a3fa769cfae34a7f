"""Hugging Face's SwinBackbone as Grounding DINO runs it, for the goldens of src/decoders/gdino/swin.ts.

Written from transformers 4.34.0's modeling_swin.py (the version VisionLLM v2 pins in
requirements.txt), with its module and parameter names, so a state_dict of this module is the
release's `gdino.model.backbone.conv_encoder.model.*`. Inference only: no dropout, drop path, head
masks or attention outputs.

Behaviour (decoders.md A.3 step 2):
- Patch embedding: the input padded right/bottom to a multiple of the patch size, a patch-sized
  strided conv, then LayerNorm.
- Each block: LayerNorm, the map zero-padded right/bottom to a multiple of the window, rolled by
  -shift on odd blocks, cut into windows; attention per window with a relative position bias
  (and the -100 mask between the rolled regions); windows put back, rolled back, cropped; residual;
  LayerNorm, MLP (GELU), residual.
- 4.34 calls `set_shift_and_window_size(map size)` in every block's forward: when the map's
  smaller side is at most the window, the window becomes that side and there is no shift. (HF
  stores the result on the module, so a small image shrinks the window of every later call too;
  here the rule is applied per call, which is what it means to do. Newer transformers pass
  `always_partition=True` from SwinBackbone and never shrink; 4.34 has no such argument.)
- Beyond HF: when the window shrinks below the configured one, HF 4.34 fails (its relative
  position bias stays [heads, 49, 49] while the scores are [.., w*w, w*w]). Here the bias of a
  w x w window takes the table entries of the same (dy, dx) offsets, the only reading of the table
  that keeps each offset's meaning. Cases that need this are marked `beyond_hf` in the golden.
- Patch merging: pad to even sizes, concatenate the (0,0), (1,0), (0,1), (1,1) sub-grids, LayerNorm
  of 4C, Linear 4C -> 2C without bias.
- Every stage's output (before merging) normed by hidden_states_norms.stageN, returned NCHW.

Cross-check against torchvision 0.14's swin_t (an independent implementation, Microsoft's naming
with a fused qkv): run `python3 -P scripts/golden/reference_gdino_swin.py` (-P, or this folder's
copy.py shadows the standard module). The two agree where their conventions do: an input of whole
patches, and stage maps larger than the window (torchvision neither pads the input nor shrinks the
window, and drops the shift per axis only when the padded side is within the window). Measured in
float64 (embed 16, depths 2,2,2,2, seeded weights): max |difference| 8.4e-15 on raw stage maps of
scale ~7.7 at 224x224, 256x320, 260x292 and 288x416 (last maps 7x7, 8x10, 9x10, 9x13). At 224x320
(s32 7x10) they differ by 2.8, as they should: HF drops the shift there, torchvision keeps it along
the 10-wide side.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SwinConfig:
    """The SwinConfig keys SwinBackbone reads (HF names), with the release's Swin-T defaults."""

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, patch_size=4,
                 num_channels=3, mlp_ratio=4.0, qkv_bias=True, layer_norm_eps=1e-5, out_features=None):
        self.embed_dim = embed_dim
        self.depths = list(depths)
        self.num_heads = list(num_heads)
        self.window_size = window_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.layer_norm_eps = layer_norm_eps
        self.out_features = out_features or [f'stage{i + 1}' for i in range(len(self.depths))]

    def to_json(self):
        return {
            'model_type': 'swin', 'embed_dim': self.embed_dim, 'depths': self.depths, 'num_heads': self.num_heads,
            'window_size': self.window_size, 'patch_size': self.patch_size, 'num_channels': self.num_channels,
            'mlp_ratio': self.mlp_ratio, 'qkv_bias': self.qkv_bias, 'layer_norm_eps': self.layer_norm_eps,
            'hidden_act': 'gelu', 'use_absolute_embeddings': False, 'out_features': self.out_features,
        }


def window_partition(x, w):
    """[B, H, W, C] (H, W multiples of w) -> [B * windows, w, w, C], windows in row-major order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)


def window_reverse(windows, w, h, wd):
    c = windows.shape[-1]
    x = windows.view(-1, h // w, wd // w, w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, wd, c)


def relative_position_index(window, table_window):
    """[w*w, w*w]: the table row of each (query, key) offset, rows of width 2 * table_window - 1."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (table_window - 1)
    return rel[:, :, 0] * (2 * table_window - 1) + rel[:, :, 1]


class SwinPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(config.num_channels, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixel_values):
        h, w = pixel_values.shape[-2:]
        p = self.patch_size
        pixel_values = F.pad(pixel_values, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.projection(pixel_values)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


class SwinEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = SwinPatchEmbeddings(config)
        self.norm = nn.LayerNorm(config.embed_dim)  # HF: default eps

    def forward(self, pixel_values):
        x, dims = self.patch_embeddings(pixel_values)
        return self.norm(x), dims


class SwinSelfAttention(nn.Module):
    def __init__(self, config, dim, num_heads, window_size):
        super().__init__()
        self.num_heads = num_heads
        self.head_size = dim // num_heads
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size, window_size))
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)

    def relative_position_bias(self, window):
        index = self.relative_position_index if window == self.window_size else relative_position_index(window, self.window_size)
        n = window * window
        return self.relative_position_bias_table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x, window, mask=None):
        b, n, c = x.shape
        split = lambda t: t.view(b, n, self.num_heads, self.head_size).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        scores = scores + self.relative_position_bias(window).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            scores = (scores.view(b // windows, windows, self.num_heads, n, n) + mask[None, :, None]).view(b, self.num_heads, n, n)
        out = scores.softmax(-1) @ v
        return out.transpose(1, 2).reshape(b, n, c)


class SwinSelfOutput(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dense = nn.Linear(dim, dim)


class SwinAttention(nn.Module):
    def __init__(self, config, dim, num_heads, window_size):
        super().__init__()
        self.self = SwinSelfAttention(config, dim, num_heads, window_size)
        self.output = SwinSelfOutput(dim)

    def forward(self, x, window, mask):
        return self.output.dense(self.self(x, window, mask))


class SwinIntermediate(nn.Module):
    def __init__(self, config, dim):
        super().__init__()
        self.dense = nn.Linear(dim, int(config.mlp_ratio * dim))

    def forward(self, x):
        return F.gelu(self.dense(x))


class SwinOutput(nn.Module):
    def __init__(self, config, dim):
        super().__init__()
        self.dense = nn.Linear(int(config.mlp_ratio * dim), dim)


def shifted_window_mask(hp, wp, window, shift, dtype):
    """[windows, w*w, w*w]: -100 between tokens from different regions of the rolled map, else 0."""
    img = torch.zeros((1, hp, wp, 1), dtype=dtype)
    count = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = count
            count += 1
    m = window_partition(img, window).reshape(-1, window * window)
    diff = m.unsqueeze(1) - m.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class SwinLayer(nn.Module):
    def __init__(self, config, dim, num_heads, shift_size):
        super().__init__()
        self.window_size = config.window_size
        self.shift_size = shift_size
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = SwinAttention(config, dim, num_heads, config.window_size)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.intermediate = SwinIntermediate(config, dim)
        self.output = SwinOutput(config, dim)

    def window_and_shift(self, dims):
        """HF's set_shift_and_window_size, without keeping the result."""
        if min(dims) <= self.window_size:
            return min(dims), 0
        return self.window_size, self.shift_size

    def forward(self, x, dims):
        window, shift = self.window_and_shift(dims)
        h, w = dims
        b, _, c = x.shape
        shortcut = x
        x = self.layernorm_before(x).view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, (window - w % window) % window, 0, (window - h % window) % window))
        hp, wp = x.shape[1:3]
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(x, window).reshape(-1, window * window, c)
        mask = shifted_window_mask(hp, wp, window, shift, x.dtype) if shift else None
        out = self.attention(windows, window, mask)
        out = window_reverse(out.view(-1, window, window, c), window, hp, wp)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        x = shortcut + out[:, :h, :w, :].reshape(b, h * w, c)
        return x + self.output.dense(self.intermediate(self.layernorm_after(x)))


class SwinPatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)  # HF: default eps

    def forward(self, x, dims):
        h, w = dims
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, config, dim, depth, num_heads, downsample):
        super().__init__()
        self.blocks = nn.ModuleList([SwinLayer(config, dim, num_heads, 0 if i % 2 == 0 else config.window_size // 2) for i in range(depth)])
        self.downsample = SwinPatchMerging(dim) if downsample else None


class SwinEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        n = len(config.depths)
        self.layers = nn.ModuleList([
            SwinStage(config, config.embed_dim * 2 ** i, config.depths[i], config.num_heads[i], i < n - 1) for i in range(n)
        ])


class SwinBackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = SwinEmbeddings(config)
        self.encoder = SwinEncoder(config)
        channels = {f'stage{i + 1}': config.embed_dim * 2 ** i for i in range(len(config.depths))}
        self.hidden_states_norms = nn.ModuleDict({s: nn.LayerNorm(channels[s]) for s in config.out_features})

    def forward(self, pixel_values, raw=False):
        """The out_features maps [B, C, h, w], normed (raw=True: every stage's map before its norm)."""
        x, dims = self.embeddings(pixel_values)
        maps = {}
        for i, stage in enumerate(self.encoder.layers):
            for block in stage.blocks:
                x = block(x, dims)
            maps[f'stage{i + 1}'] = (x, dims)
            if stage.downsample is not None:
                x = stage.downsample(x, dims)
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
        names = list(maps) if raw else self.config.out_features
        out = []
        for name in names:
            x, (h, w) = maps[name]
            if not raw:
                x = self.hidden_states_norms[name](x)
            out.append(x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous())
        return out


def randomize(model, seed):
    """Seeded weights that exercise everything: LayerNorm scales away from 1, non-zero biases, a varied bias table."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if name.endswith('relative_position_bias_table'):
                v = r
            elif p.dim() == 1 and ('norm' in name or 'layernorm' in name):
                v = 1 + 0.2 * r if name.endswith('weight') else 0.1 * r
            elif p.dim() == 1:
                v = 0.05 * r
            else:
                v = r / math.sqrt(p[0].numel())
            p.copy_(v.to(p.dtype))


# ---- cross-check against torchvision ----

def torchvision_state(hf, config):
    """HF names -> torchvision swin_t names (features.0 = patch embed, features.2i+1 = stage i, features.2i+2 = merging)."""
    s = {k: v for k, v in hf.state_dict().items() if not k.endswith('relative_position_index')}
    out = {
        'features.0.0.weight': s['embeddings.patch_embeddings.projection.weight'],
        'features.0.0.bias': s['embeddings.patch_embeddings.projection.bias'],
        'features.0.2.weight': s['embeddings.norm.weight'],
        'features.0.2.bias': s['embeddings.norm.bias'],
    }
    for i, depth in enumerate(config.depths):
        for j in range(depth):
            a = f'encoder.layers.{i}.blocks.{j}.'
            t = f'features.{2 * i + 1}.{j}.'
            for w in ('weight', 'bias'):
                out[t + 'norm1.' + w] = s[a + 'layernorm_before.' + w]
                out[t + 'norm2.' + w] = s[a + 'layernorm_after.' + w]
                out[t + 'attn.qkv.' + w] = torch.cat([s[a + f'attention.self.{n}.{w}'] for n in ('query', 'key', 'value')])
                out[t + 'attn.proj.' + w] = s[a + 'attention.output.dense.' + w]
                out[t + 'mlp.0.' + w] = s[a + 'intermediate.dense.' + w]
                out[t + 'mlp.3.' + w] = s[a + 'output.dense.' + w]
            out[t + 'attn.relative_position_bias_table'] = s[a + 'attention.self.relative_position_bias_table']
        if i < len(config.depths) - 1:
            out[f'features.{2 * i + 2}.reduction.weight'] = s[f'encoder.layers.{i}.downsample.reduction.weight']
            out[f'features.{2 * i + 2}.norm.weight'] = s[f'encoder.layers.{i}.downsample.norm.weight']
            out[f'features.{2 * i + 2}.norm.bias'] = s[f'encoder.layers.{i}.downsample.norm.bias']
    return out


def crosscheck_torchvision(sizes=((224, 224), (256, 320), (260, 292), (288, 416)), seed=5):
    """Max |HF - torchvision| over the four raw stage maps, per size, in float64; and the scale of the maps."""
    from torchvision.models.swin_transformer import SwinTransformer

    config = SwinConfig(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4])
    hf = SwinBackbone(config).double().eval()
    randomize(hf, seed)
    tv = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=[7, 7]).double().eval()
    missing, unexpected = tv.load_state_dict(torchvision_state(hf, config), strict=False)
    missing = [m for m in missing if not m.endswith('relative_position_index') and not m.startswith(('norm.', 'head.'))]
    assert not missing and not unexpected, (missing, unexpected)
    results = []
    with torch.no_grad():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * w), dtype=torch.float64)
            ours = hf(x, raw=True)
            theirs, y = [], x
            for k, layer in enumerate(tv.features):
                y = layer(y)
                if k % 2 == 1:
                    theirs.append(y.permute(0, 3, 1, 2))
            diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
            scale = max(a.abs().max().item() for a in ours)
            results.append(((h, w), [tuple(a.shape[-2:]) for a in ours], diff, scale))
    return results


if __name__ == '__main__':
    torch.set_num_threads(2)
    for size, maps, diff, scale in crosscheck_torchvision(sizes=((224, 224), (256, 320), (260, 292), (288, 416), (224, 320))):
        note = '  (expected to differ: HF drops the s32 shift, torchvision keeps it along W)' if size == (224, 320) else ''
        print(f'{size}: stage maps {maps}: max |HF - torchvision| {diff:.2e} (scale {scale:.2f}){note}')
