"""PyTorch reference for VisionLLM v2's region encoder (the `<region>` inputs), transcribed from the official
VisionLLMv2/visionllmv2/model/region_encoder.py (RegionEncoder, LayerNorm2d, point_sample, rand_sample) with the
official module and parameter names, so that `RegionEncoder(...).load_state_dict()` takes the checkpoint's
`region_encoder.*` tensors (prefix stripped):

  mask_embedding.0  Conv2d(4, hidden_dim/4, k=patch/2, stride=patch/2)      (RGB + mask in, 7x7 for CLIP's 14)
  mask_embedding.1  LayerNorm2d(hidden_dim/4)                                (eps 1e-6, over channels)
  (2 GELU, exact erf)
  mask_embedding.3  Conv2d(hidden_dim/4, hidden_dim, k=2, stride=2)
  mask_embedding.4  LayerNorm2d(hidden_dim)
  (5 GELU)
  mask_embedding.6  Conv2d(hidden_dim, embed_dim, k=1)
  region_query      Embedding(1, embed_dim)                    cross_attn only
  region_attn       MultiheadAttention(embed_dim, 8 heads, batch_first; in_proj_weight/bias, out_proj)  cross_attn only
  up_dim            Linear(embed_dim, out_dim)

The release builds it as RegionEncoder(hidden_dim=256 (hard-coded), embed_dim=vision hidden_size (1024),
out_dim=LLM hidden_size (4096), patch_size=vision patch_size (14), mask_pool_type='grid_sample')
(modeling_visionllmv2.py build_region_encoder). The model calls it (modeling_visionllmv2.py:609-698) with
  images         the CLIP input (normalised pixels) of the global image, repeated per region [n, 3, H, W]
                 (anyres: the LAST tile, the global view),
  masks          the regions at that input's resolution, 0/1, [n, 1, H, W],
  image_features CLIP hidden_states[-3:] of that image without the class token, each [n, (H/14)*(W/14), C]
                 repeated per region (a 4-D [n, C, h, w] is taken as is),
and the outputs [n, out_dim] replace the `<region>` token embeddings in order.

The ONE change: forward(images, masks, image_features, sample_points=None). For 'grid_sample', sample_points
(a list with one [n_i, 3] tensor per region, rows (index, y/ori_h, x/ori_w) as rand_sample returns them) injects
the points that rand_sample would draw with torch.multinomial, so that a port can be compared exactly; with None
they are drawn as officially (not deterministic: decoders.md D3). Injected points serve every level (officially
each level draws its own: quirk 6); a list of per-level lists may be injected instead.

Official quirks, all kept (except the one marked DEVIATION):
 1. masks_out ACCUMULATES the image features level after level: inside the level loop
    `masks_out = masks_out + image_features`, so level k pools mask_embedding(...) + f_1 + ... + f_k, not
    mask_embedding(...) + f_k. The output is the mean over levels of up_dim(pool_k).
 2. 'mean': masks_out is multiplied by the binary mask and KEPT multiplied for the next level (harmless:
    the mask is 0/1, so (m*b + f)*b = m*b + f*b); the mean divides by h*w (the whole feature grid), NOT by the
    mask's area, so small regions give small features; an empty binary mask gives up_dim(0) = up_dim.bias.
 3. 'mean': the binary mask is F.interpolate(masks.float(), (h, w), bilinear, align_corners=False) > 0.5: no
    antialiasing, so when shrinking by 14 each cell i reads source coordinate 14*i + 6.5, i.e. the mean of the
    2x2 pixels (14i+6, 14i+7) x (14j+6, 14j+7); the cell is on when that mean is > 0.5 (3 or 4 of the 4 pixels).
    The rest of the mask is never looked at.
 4. 'grid_sample': rand_sample draws min(num_points, pixels) of the mask's nonzero pixels without replacement
    (uniform probabilities: one mask per call, so one id), sorted back into row-major order; num_points is 2304
    (48x48) hard-coded. The points are (0, y/ori_h, x/ori_w) in float32 (x.nonzero() / an integer divisor: true
    division in the default dtype): the pixel's CORNER, not its centre (no +0.5). point_sample maps p to
    2p - 1 and grid_sample(align_corners=False, zeros padding) samples feature coordinate p*w - 0.5 = x*w/ori_w - 0.5:
    bilinear between cells, and the first row/column of pixels (coordinate < 0) is attenuated by the zero padding.
 5. 'grid_sample': the regions' point lists are padded with -1 rows (pad_sequence); a row counts when
    index + y + x >= 0. The pooled feature is the plain mean of the counted samples; an EMPTY mask gives 0/0 = nan,
    turned into 0 by nan_to_num, so up_dim(0) = up_dim.bias. But pad_sequence takes the FIRST region's dtype:
    an empty mask's rand_sample returns x.nonzero() (int64), so when the first region is empty every other
    region's float points are truncated to 0 (all its samples at feature coordinate (-0.5, -0.5)). Kept.
    When a mask has at most num_points pixels rand_sample takes them all, sorted: no randomness at all.
 6. 'grid_sample': the points are drawn anew for every level (rand_sample is called inside the level loop), so
    officially each level uses its OWN random points. Injected sample_points are used for every level.
    (A list of per-level lists may be passed instead: sample_points[level][region].)
 7. 'grid_sample': officially masks_out.float() / point_coords.float() before grid_sample (an upcast from the
    release's bf16); here the sampling runs in promote(masks_out dtype, float32), so a float64 run stays float64.
 8. The mask enters the mask embedding as a fourth input channel, masks.to(images.dtype): 0/1, never normalised.
 9. DEVIATION, 'cross_attn' with more than one level: officially masks_out is overwritten by its flattened
    [bs, hw, c] form, and the next level's `assert masks_out.shape[-2:] == image_features.shape[-2:]` fails:
    the official cross_attn path runs with ONE level only. Here the flattened tokens are a separate variable,
    so masks_out keeps accumulating as in the other pool types (identical to the official code for one level).
    The release uses 'grid_sample', which does not reach this.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """detectron2 / ConvNeXt LayerNorm over the channel dimension of [n, c, h, w] (biased variance, eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        x = self.weight[:, None, None] * x + self.bias[:, None, None]
        return x


def point_sample(input, point_coords, **kwargs):
    """detectron2 PointRend point_sample: grid_sample at [0, 1]^2 coordinates (x, y order), [N, P, 2] -> [N, C, P]."""
    add_dim = False
    if point_coords.dim() == 3:
        add_dim = True
        point_coords = point_coords.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * point_coords - 1.0, **kwargs)
    if add_dim:
        output = output.squeeze(3)
    return output


def rand_sample(x, divisor, max_len):
    """Official rand_sample: x a [1, h, w] mask; returns [min(max_len, nonzero), 3] rows (0, y/h, x/w), float32
    (the default dtype), drawn with torch.multinomial without replacement and sorted (row-major)."""
    if len(x.nonzero()) == 0:
        return x.nonzero()  # [0, 3]

    non_zero_point_index = (x.nonzero() / divisor).t()
    mask_ids = non_zero_point_index[0].unique().long()

    # compute probability for each samle
    probs = torch.zeros_like(non_zero_point_index[0])   # [n_nonzero,]
    for idx in mask_ids:
        prob = 1. / (len(mask_ids) * ((non_zero_point_index[0:1] == idx).sum()))
        probs[non_zero_point_index[0] == idx] = prob

    indices = torch.multinomial(probs, num_samples=min(max_len, len(probs)), replacement=False).sort()[0]
    non_zero_point_index = non_zero_point_index[:, indices]
    return non_zero_point_index.t()


class RegionEncoder(nn.Module):
    def __init__(self, hidden_dim, embed_dim, out_dim, patch_size=14, mask_pool_type='mean'):
        super().__init__()
        # NOTE: patch_size=7x2, since clip patch_size=14
        assert patch_size % 2 == 0
        kernel_size = patch_size // 2
        self.patch_size = patch_size
        self.mask_embedding = nn.Sequential(
            nn.Conv2d(4, hidden_dim // 4, kernel_size=kernel_size, stride=kernel_size),
            LayerNorm2d(hidden_dim // 4),
            nn.GELU(),
            nn.Conv2d(hidden_dim // 4, hidden_dim, kernel_size=2, stride=2),
            LayerNorm2d(hidden_dim),
            nn.GELU(),
            nn.Conv2d(hidden_dim, embed_dim, kernel_size=1),
        )

        self.mask_pool_type = mask_pool_type  # 'mean', 'cross_attn', 'grid_sample'
        assert mask_pool_type in ['mean', 'cross_attn', 'grid_sample']
        if self.mask_pool_type == 'cross_attn':
            # using a learnable query
            self.region_query = nn.Embedding(1, embed_dim)
            self.region_attn = nn.MultiheadAttention(embed_dim=embed_dim, num_heads=8, dropout=0., batch_first=True)
        elif self.mask_pool_type == 'grid_sample':
            self.num_points = 2304  # 48 x 48
        self.up_dim = nn.Linear(embed_dim, out_dim)

    def draw_points(self, masks):
        """The points the official forward draws for one level: one rand_sample per region."""
        ori_h, ori_w = masks.shape[-2:]
        divisor = torch.tensor([1, ori_h, ori_w], device=masks.device)[None, ]
        return [rand_sample(m, divisor, self.num_points) for m in masks]

    def forward(self, images, masks, image_features, sample_points=None, trace=None):
        """trace: an optional dict that receives intermediates: 'mask_embedding' (masks_out before any level),
        'binary' ('mean'), 'points' (per level, the per-region point lists), 'pooled' (per level, before up_dim)."""
        assert images.shape[-2:] == masks.shape[-2:]

        # encode mask features
        masks = masks.to(images.dtype)
        masks_in = torch.cat([images, masks], dim=1)
        masks_out = self.mask_embedding(masks_in)
        if trace is not None:
            trace['mask_embedding'] = masks_out
        bs = len(images)
        h, w = masks_out.shape[-2:]

        outs = []
        for level, image_features_per_level in enumerate(image_features):
            if image_features_per_level.dim() == 3:
                image_features = image_features_per_level.reshape(bs, h, w, -1)
                image_features = image_features.permute(0, 3, 1, 2)
            else:
                image_features = image_features_per_level
            assert masks_out.shape[-2:] == image_features.shape[-2:]
            masks_out = masks_out + image_features  # quirk 1: accumulates over levels

            # get region features
            if self.mask_pool_type == 'mean':
                masks_binary = F.interpolate(masks.float(), size=(h, w), mode='bilinear', align_corners=False) > 0.5
                if trace is not None:
                    trace['binary'] = masks_binary
                masks_out = masks_out * masks_binary  # quirk 2: kept multiplied
                out = masks_out.mean(-1).mean(-1)     # quirk 2: / (h*w)
                if trace is not None:
                    trace.setdefault('pooled', []).append(out)
                out = self.up_dim(out)
            elif self.mask_pool_type == 'cross_attn':
                tokens = masks_out.flatten(-2).transpose(1, 2)  # quirk 9: officially `masks_out = ...`
                region_query = self.region_query.weight.unsqueeze(0).repeat(bs, 1, 1)
                out = self.region_attn(region_query, tokens, tokens)[0].squeeze(1)
                if trace is not None:
                    trace.setdefault('pooled', []).append(out)
                out = self.up_dim(out)
            elif self.mask_pool_type == 'grid_sample':
                if sample_points is None:
                    non_zero_pos_point = self.draw_points(masks)
                elif isinstance(sample_points[0], (list, tuple)):
                    non_zero_pos_point = list(sample_points[level])
                else:
                    non_zero_pos_point = list(sample_points)
                assert len(non_zero_pos_point) == bs
                if trace is not None:
                    trace.setdefault('points', []).append(non_zero_pos_point)
                non_zero_pos_index = [m[:, 0:1].long() for m in non_zero_pos_point]
                non_zero_pos_point = nn.utils.rnn.pad_sequence(non_zero_pos_point, padding_value=-1).permute(1, 0, 2)
                non_zero_pos_index = nn.utils.rnn.pad_sequence(non_zero_pos_index, padding_value=-1).permute(1, 0, 2)[:, :, 0]
                non_zero_pos_mask = (non_zero_pos_point.sum(dim=-1) >= 0)
                point_coords = non_zero_pos_point[:, :, -2:].flip(dims=[-1])
                dtype = masks_out.dtype
                sample_dtype = torch.promote_types(dtype, torch.float32)  # quirk 7: officially .float()
                sample_features = point_sample(masks_out.to(sample_dtype), point_coords.to(sample_dtype), align_corners=False).permute(0, 2, 1)
                sample_features = sample_features.to(dtype)
                # get region features, [bs, c]
                out = sample_features * non_zero_pos_mask.unsqueeze(-1)
                out = (out.sum(1) / non_zero_pos_mask.sum(1).unsqueeze(-1)).nan_to_num()  # quirk 5
                if trace is not None:
                    trace.setdefault('pooled', []).append(out)
                out = self.up_dim(out)
            else:
                raise NotImplementedError
            outs.append(out)
        out = torch.stack(outs).mean(dim=0)  # [bs, c], mean on multi-scale features
        return out


def randomize(model, seed):
    """Seeded weights, activations O(1), in float64: the common tensors (mask_embedding.*, up_dim.*) from one
    generator in a fixed order, so every pool type gets the same values for the shared names; region_query and
    region_attn.* (cross_attn) from a second generator (seed + 1). Convs and linears N(0, 1/fan_in), their biases
    N(0, 0.1^2); LayerNorm2d weights 1 + N(0, 0.1^2), biases N(0, 0.1^2); region_query N(0, 1) (nn.Embedding's
    init). Returns the model."""
    import math
    model.double()
    state = dict(model.named_parameters())
    common = ['mask_embedding.0.weight', 'mask_embedding.0.bias', 'mask_embedding.1.weight', 'mask_embedding.1.bias',
              'mask_embedding.3.weight', 'mask_embedding.3.bias', 'mask_embedding.4.weight', 'mask_embedding.4.bias',
              'mask_embedding.6.weight', 'mask_embedding.6.bias', 'up_dim.weight', 'up_dim.bias']
    attn = ['region_query.weight', 'region_attn.in_proj_weight', 'region_attn.in_proj_bias',
            'region_attn.out_proj.weight', 'region_attn.out_proj.bias']
    assert set(state) == set(common) | (set(attn) if model.mask_pool_type == 'cross_attn' else set()), sorted(state)

    def draw(g, name, p):
        r = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if name in ('mask_embedding.1.weight', 'mask_embedding.4.weight'):
            return 1.0 + 0.1 * r
        if name == 'region_query.weight':
            return r
        if p.dim() == 1:
            return 0.1 * r
        return r / math.sqrt(p[0].numel())  # fan_in: in_channels * kh * kw, or in_features

    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for name in common:
            state[name].copy_(draw(g, name, state[name]))
        g = torch.Generator().manual_seed(seed + 1)
        for name in attn:
            if name in state:
                state[name].copy_(draw(g, name, state[name]))
    return model
