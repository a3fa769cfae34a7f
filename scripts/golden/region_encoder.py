"""Goldens for VisionLLM v2's region encoder (`<region>` inputs; reference_region.py, the official RegionEncoder):
test/golden/region_encoder.safetensors.

Tiny config: hidden_dim 256 (the release's hard-code), embed_dim 64, out_dim 128, patch_size 14; a 112 x 112 input
(8 x 8 grid), 3 regions, 3 feature levels, float64 compute, stored as f32.

Inputs (stored once):
  image            [1, 3, 112, 112] f32: the CLIP input, N(0, 0.8^2) rounded to f16-exact values. The model repeats
                   it per region (official repeat_interleave), so images = image.expand(3, ...).
  masks            U8 [3, 112, 112] (0/1; the model's [n, 1, H, W]):
                     0  a box: rows 20..69, cols 31..90 (inclusive; masks[0, 20:70, 31:91] = 1), 3000 pixels;
                     1  an irregular blob: the disc (y - 62)^2 + (x - 55)^2 < 24^2 with 12% of the pixels of the
                        window rows 30..93, cols 23..86 flipped (torch.Generator seed MASK_SEED);
                     2  seven pixels: the 2x2 (20..21, 34..35) (the centre pixels of cell (1, 2), so 'mean' keeps
                        that cell), (0, 0), (0, 57), (111, 111) (border pixels: grid_sample's zero padding).
                   Box 0's column 90/91 pair (cell column 6) averages to exactly 0.5, which is NOT > 0.5: off.
  image_features   [3 levels, 64 tokens, 64] f32 (f16-exact N(0, 1)): hidden_states[-3:] without the class token,
                   tokens row-major over the 8 x 8 grid, the same for every region (repeated as officially).
  region_encoder.<state_dict name>  F16: one weight set (reference_region.randomize(seed MODEL_SEED), rounded to
                   f16, the values computed with). mask_embedding.* and up_dim.* serve all three pool types; the
                   cross_attn model adds region_query.weight and region_attn.{in_proj_weight, in_proj_bias,
                   out_proj.weight, out_proj.bias}. nn.MultiheadAttention: 8 heads, q/k/v = rows 0:64/64:128/128:192
                   of in_proj.

Outputs:
  mask_embedding.out  [3, 64, 8, 8]   masks_out before any level is added
  mean.binary         I32 [3, 1, 8, 8] F.interpolate(masks, 8x8, bilinear, align_corners=False) > 0.5
  {type}.out          [3, 128]        type in mean, cross_attn, grid_sample
  {type}.pooled       [3 levels, 3, 64] the pooled feature of each level before up_dim
  cross_attn_level0.out [3, 128]      cross_attn with level 0's features only: the official code unchanged (with
                                      more levels the official cross_attn fails an assert; see reference_region.py
                                      quirk 9: cross_attn.out uses the accumulate-as-the-others fix)
  grid_sample.points  [total, 3] f32  the injected points, rows (0, y/112, x/112) as rand_sample returns them
                                      (float32), region after region; the same points serve every level
  grid_sample.counts  I32 [3]         points per region (num_points 2304: box 0's 3000 pixels are subsampled to
                                      2304; the blob and the 7 pixels are taken whole)
  grid_sample.pixels  I32 [total, 2]  the same points as integer pixels (y, x)
  grid_sample_sub.*   the same with num_points SUB_POINTS (64): every region but the 7 pixels is subsampled
  grid_sample_empty.out [2, 128]      regions (mask 2, an all-zero mask): the empty one gives nan -> 0 -> up_dim.bias
The points were drawn once with torch.manual_seed(POINT_SEED) (resp. + 1) through the official rand_sample, in
region order; with fewer pixels than num_points rand_sample takes every pixel in row-major order.
"""
import json

import torch

import reference_region as R

HIDDEN_DIM, EMBED_DIM, OUT_DIM, PATCH = 256, 64, 128, 14
SIZE = 112
LEVELS = 3
MODEL_SEED = 4242
INPUT_SEED = 4243
MASK_SEED = 4244
POINT_SEED = 4245
SUB_POINTS = 64
PREFIX = 'region_encoder.'
POOLS = ('mean', 'cross_attn', 'grid_sample')


def f16(x):
    return x.to(torch.float16).to(torch.float64)


def test_masks():
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[0, 20:70, 31:91] = True
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing='ij')
    disc = (y - 62) ** 2 + (x - 55) ** 2 < 24 ** 2
    g = torch.Generator().manual_seed(MASK_SEED)
    flip = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    flip[30:94, 23:87] = torch.rand(64, 64, generator=g) < 0.12
    masks[1] = disc ^ flip
    for py, px in [(20, 34), (20, 35), (21, 34), (21, 35), (0, 0), (0, 57), (111, 111)]:
        masks[2, py, px] = True
    return masks


def models():
    """The three pool types' models, float64, sharing the common weights (f16-rounded)."""
    out = {}
    for pool in POOLS:
        m = R.randomize(R.RegionEncoder(HIDDEN_DIM, EMBED_DIM, OUT_DIM, PATCH, pool), MODEL_SEED)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(f16(p))
        out[pool] = m.eval()
    for name, v in out['mean'].state_dict().items():
        assert torch.equal(v, out['cross_attn'].state_dict()[name]) and torch.equal(v, out['grid_sample'].state_dict()[name])
    return out


def draw(model, masks, seed, num_points):
    torch.manual_seed(seed)
    saved = model.num_points
    model.num_points = num_points
    try:
        points = model.draw_points(masks[:, None])
    finally:
        model.num_points = saved
    return points


def pack(points, size):
    flat = torch.cat(points).float()
    pixels = torch.round(flat[:, 1:].double() * size).to(torch.int32)
    assert torch.equal(flat[:, 1:], (pixels.double() / size).float()), 'points are not pixel corners'
    return flat, torch.tensor([len(p) for p in points], dtype=torch.int32), pixels


def generate():
    g = torch.Generator().manual_seed(INPUT_SEED)
    image = f16(torch.randn(1, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * 0.8)
    features = f16(torch.randn(LEVELS, (SIZE // PATCH) ** 2, EMBED_DIM, generator=g, dtype=torch.float64))
    masks = test_masks()
    n = len(masks)
    images = image.expand(n, -1, -1, -1)
    mlvl = [features[l][None].expand(n, -1, -1) for l in range(LEVELS)]
    ms = models()

    tensors = {}
    for k, v in ms['cross_attn'].state_dict().items():
        tensors[PREFIX + k] = v.to(torch.float16)
    tensors['image'] = image.float()
    tensors['masks'] = masks.to(torch.uint8)
    tensors['image_features'] = features.float()

    meta = {}
    with torch.no_grad():
        points = draw(ms['grid_sample'], masks, POINT_SEED, 2304)
        sub_points = draw(ms['grid_sample'], masks, POINT_SEED + 1, SUB_POINTS)
        for pool in POOLS:
            trace = {}
            out = ms[pool](images, masks[:, None], mlvl, sample_points=points if pool == 'grid_sample' else None, trace=trace)
            tensors[f'{pool}.out'] = out
            tensors[f'{pool}.pooled'] = torch.stack(trace['pooled'])
            if pool == 'mean':
                tensors['mask_embedding.out'] = trace['mask_embedding']
                tensors['mean.binary'] = trace['binary'].to(torch.int32)
            else:
                assert torch.equal(trace['mask_embedding'], tensors['mask_embedding.out'])
            if pool == 'grid_sample':
                tensors['grid_sample.points'], tensors['grid_sample.counts'], tensors['grid_sample.pixels'] = pack(points, SIZE)
        tensors['cross_attn_level0.out'] = ms['cross_attn'](images, masks[:, None], mlvl[:1])
        out = ms['grid_sample'](images, masks[:, None], mlvl, sample_points=sub_points)
        tensors['grid_sample_sub.out'] = out
        tensors['grid_sample_sub.points'], tensors['grid_sample_sub.counts'], tensors['grid_sample_sub.pixels'] = pack(sub_points, SIZE)
        empty = torch.stack([masks[2], torch.zeros_like(masks[2])])
        tensors['grid_sample_empty.out'] = ms['grid_sample'](images[:2], empty[:, None], [f[:2] for f in mlvl])
        bias = ms['grid_sample'].up_dim.bias
        assert torch.allclose(tensors['grid_sample_empty.out'][1], bias, rtol=0, atol=1e-15)
        # The empty mask does not change the other row (pad_sequence, first region non-empty).
        alone = ms['grid_sample'](images[:1], masks[2:3, None], [f[:1] for f in mlvl])
        assert torch.allclose(tensors['grid_sample_empty.out'][0], alone[0], rtol=0, atol=1e-12)

    counts = [int(m.sum()) for m in masks]
    print(f'region_encoder: mask pixels {counts}, points {tensors["grid_sample.counts"].tolist()}, '
          f'sub points {tensors["grid_sample_sub.counts"].tolist()}, binary cells {tensors["mean.binary"].sum((1, 2, 3)).tolist()}')
    for pool in POOLS:
        print(f'region_encoder: {pool}.out |max| {tensors[pool + ".out"].abs().max():.3f}')
    config = dict(hidden_dim=HIDDEN_DIM, embed_dim=EMBED_DIM, out_dim=OUT_DIM, patch_size=PATCH, num_heads=8,
                  layer_norm_eps=1e-6)
    meta.update({
        'config': json.dumps(config),
        'prefix': PREFIX,
        'image': json.dumps(dict(size=[SIZE, SIZE], grid=[SIZE // PATCH, SIZE // PATCH], regions=n, levels=LEVELS)),
        'mask_pixels': json.dumps(counts),
        'masks': json.dumps(['box rows 20..69 cols 31..90 inclusive', 'disc (62, 55) r 24 xor 12% flips in rows 30..93 cols 23..86',
                             '2x2 at (20..21, 34..35) + (0, 0), (0, 57), (111, 111)']),
        'grid_sample.num_points': '2304',
        'grid_sample_sub.num_points': str(SUB_POINTS),
        'grid_sample_empty.regions': 'masks[2], all-zero',
        'point_seeds': json.dumps({'grid_sample': POINT_SEED, 'grid_sample_sub': POINT_SEED + 1}),
        'seeds': json.dumps(dict(model=MODEL_SEED, inputs=INPUT_SEED, masks=MASK_SEED)),
        'weights': 'F16',
        'layouts': 'image [1,3,H,W] repeated per region; masks U8 [n,H,W]; image_features [levels, h*w, C] repeated per region; '
                   'points rows (index 0, y/H, x/W) f32; pixels (y, x)',
    })
    return {'region_encoder': (tensors, meta)}
