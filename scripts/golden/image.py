"""Image references: PIL resizes of synthetic images with edges and gradients, the CLIP input path
of VisionLLM v2 (CLIPImageProcessor; the 7B model's anyres tiling), and the decoder fixtures under
test/fixtures/images (PNG/JPEG, grayscale, RGBA, EXIF-rotated, CMYK JPEG and TIFF, truncated).
"""
import io
import json
import os

import numpy as np
import torch
from PIL import Image, ImageOps

from hashed import hash_u32, sample_indices

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'images')
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAMPLES = 4096


def scene(w, h, seed):
    """A photo-like test image: gradients, a sinusoid, hard-edged shapes, thin lines, a checkerboard, mild noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 100 * np.sin(x / 17.0 + y / 23.0)], -1)
    img[(x - 0.3 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.18 * h) ** 2] = [250, 240, 20]
    img[int(0.55 * h):int(0.8 * h), int(0.6 * w):int(0.85 * w)] = [10, 20, 200]
    img[np.abs(x - y * w / h) < 1.0] = [255, 255, 255]
    checker = ((x // 4 + y // 4) % 2 == 0) & (x > 0.1 * w) & (x < 0.25 * w) & (y > 0.7 * h)
    img[checker] = [0, 0, 0]
    noise = (hash_u32(w * h * 3, seed) % 9).astype(np.float64).reshape(h, w, 3) - 4
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def clip_processor(image, size=336, crop=336):
    """CLIPImageProcessor.preprocess as transformers runs it: shortest edge to `size` (PIL bicubic),
    center crop, rescale by 1/255 (float64, then float32), normalise in float32."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = image.resize((new_w, new_h), Image.BICUBIC)  # PIL returns a copy when the size is unchanged
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    cropped = np.asarray(resized)[top:top + crop, left:left + crop]
    scaled = (cropped.astype(np.float64) * (1 / 255)).astype(np.float32)
    normed = (scaled - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return cropped, normed.transpose(2, 0, 1), dict(resized=[new_w, new_h], crop=[left, top])


def closest_grid(aspect, width, height, tile, min_tiles, max_tiles):
    """VisionLLM v2's find_closest_aspect_ratio over grids (cols, rows) with min <= cols * rows <= max."""
    grids = sorted({(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                    if min_tiles <= i * j <= max_tiles}, key=lambda g: g[0] * g[1])
    best, best_diff = (1, 1), float('inf')
    for g in grids:
        diff = abs(aspect - g[0] / g[1])
        if diff < best_diff:
            best, best_diff = g, diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * g[0] * g[1]:
            best = g
    return best


def anyres(image, tile=336, min_tiles=1, max_tiles=4):
    """VisionLLM v2's dynamic_preprocess: resize to the grid, cut tiles row-major, then a thumbnail."""
    w, h = image.size
    cols, rows = closest_grid(w / h, w, h, tile, min_tiles, max_tiles)
    resized = image.resize((tile * cols, tile * rows))  # Pillow's default filter: bicubic
    tiles = [resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)) for r in range(rows) for c in range(cols)]
    if len(tiles) > 1:
        tiles.append(image.resize((tile, tile)))
    return tiles, [cols, rows]


def write_fixtures(big):
    os.makedirs(FIXTURES, exist_ok=True)
    Image.fromarray(big).save(os.path.join(FIXTURES, 'scene.png'), optimize=True)
    # EXIF orientation 6: the stored pixels are the scene rotated; viewers (and our decoder) turn them back.
    stored_pixels = Image.fromarray(big).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored_pixels.save(os.path.join(FIXTURES, 'rotated.jpg'), quality=92, exif=exif.tobytes())
    small = Image.fromarray(big[:61, :83])
    small.convert('L').save(os.path.join(FIXTURES, 'gray.png'))
    rgba = np.concatenate([big[:61, :83], (np.arange(61 * 83) % 256).astype(np.uint8).reshape(61, 83, 1)], -1)
    Image.fromarray(rgba, 'RGBA').save(os.path.join(FIXTURES, 'rgba.png'))
    small.save(os.path.join(FIXTURES, 'small.jpg'), quality=85)
    with open(os.path.join(FIXTURES, 'small.jpg'), 'rb') as f:
        data = f.read()
    with open(os.path.join(FIXTURES, 'truncated.jpg'), 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(FIXTURES, 'not-an-image.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + bytes(range(64)))
    write_cmyk_fixtures()


def write_cmyk_fixtures():
    """CMYK as print workflows save it, with black ink where the scene is dark (Pillow's own RGB->CMYK
    leaves K at 0, which would not test K): a JPEG with the Adobe APP14 marker Pillow writes (samples
    stored inverted), the same file without the marker (Pillow reads it inverted all the same), a TIFF."""
    rgb = scene(33, 21, 5).astype(np.int32)
    k = 255 - rgb.max(-1, keepdims=True)
    cmyk = Image.fromarray(np.concatenate([255 - rgb - k, k], -1).astype(np.uint8), 'CMYK')
    cmyk.save(os.path.join(FIXTURES, 'cmyk.jpg'), quality=90)
    with open(os.path.join(FIXTURES, 'cmyk.jpg'), 'rb') as f:
        data = f.read()
    with open(os.path.join(FIXTURES, 'cmyk-no-adobe.jpg'), 'wb') as f:
        f.write(without_app14(data))
    cmyk.save(os.path.join(FIXTURES, 'cmyk.tif'))


def without_app14(jpeg):
    """The JPEG with its APP14 (Adobe) segments removed: markers before the scan are 0xFF, id, 2-byte length."""
    out, at = bytearray(jpeg[:2]), 2
    while jpeg[at + 1] != 0xDA:  # start of scan: entropy-coded data follows
        end = at + 2 + int.from_bytes(jpeg[at + 2:at + 4], 'big')
        if jpeg[at + 1] != 0xEE:
            out += jpeg[at:end]
        at = end
    assert len(out) < at, 'no APP14 segment to remove'
    return bytes(out + jpeg[at:])


def generate():
    out, clip = {}, {}
    meta = {'clip_mean': CLIP_MEAN, 'clip_std': CLIP_STD}

    # PIL resizes of a small scene, stored whole (bytes).
    small = scene(97, 73, 7)
    out['small'] = torch.from_numpy(small)
    resizes = {
        'bicubic_down': ((41, 29), Image.BICUBIC), 'bicubic_up': ((150, 111), Image.BICUBIC),
        'bicubic_mixed': ((336, 20), Image.BICUBIC), 'bilinear_down': ((30, 64), Image.BILINEAR),
        'bicubic_width_only': ((50, 73), Image.BICUBIC), 'same_size': ((97, 73), Image.BICUBIC),
        'lanczos_floor8': ((96, 72), Image.LANCZOS), 'lanczos_up': ((130, 101), Image.LANCZOS),  # diffusers' VaeImageProcessor
    }
    meta['resizes'] = {}
    for name, (size, filt) in resizes.items():
        meta['resizes'][name] = dict(size=list(size), filter={Image.BICUBIC: 'bicubic', Image.BILINEAR: 'bilinear', Image.LANCZOS: 'lanczos'}[filt])
        out[f'resize.{name}'] = torch.from_numpy(np.asarray(Image.fromarray(small).resize(size, filt)).copy())
    # expand2square (VisionLLM's 'pad' mode) with the CLIP mean as background, then resized.
    fill = tuple(int(m * 255) for m in CLIP_MEAN)
    sq = Image.new('RGB', (97, 97), fill)
    sq.paste(Image.fromarray(small), (0, (97 - 73) // 2))
    out['pad_square'] = torch.from_numpy(np.asarray(sq.resize((64, 64), Image.BICUBIC)).copy())
    meta['pad_square'] = dict(fill=list(fill), top=(97 - 73) // 2, size=[64, 64])

    # The CLIP path end to end on a larger scene (also the decoder fixture scene.png).
    big = scene(517, 353, 11)
    write_fixtures(big)
    image = Image.open(os.path.join(FIXTURES, 'scene.png')).convert('RGB')
    cropped, normed, info = clip_processor(image)
    meta['clip'] = info
    idx = sample_indices(normed.size, SAMPLES, 1)
    clip['clip.idx'] = torch.from_numpy(idx.astype('int32'))
    clip['clip.pixel_values'] = torch.from_numpy(normed.reshape(-1)[idx].copy())
    clip['clip.cropped'] = torch.from_numpy(np.ascontiguousarray(cropped))
    wide = image.crop((0, 0, 517, 240))  # aspect 2.15: a 2x1 grid plus the thumbnail
    tiles, grid = anyres(wide)
    meta['anyres'] = dict(grid=grid, tiles=len(tiles), crop_height=240)
    for t, tile in enumerate(tiles):
        _, tn, _ = clip_processor(tile)
        ti = sample_indices(tn.size, SAMPLES // 4, 10 + t)
        clip[f'anyres.{t}.idx'] = torch.from_numpy(ti.astype('int32'))
        clip[f'anyres.{t}.pixel_values'] = torch.from_numpy(tn.reshape(-1)[ti].copy())
    # What PIL decodes from the fixtures (EXIF applied), sampled.
    for name in ('rotated.jpg', 'gray.png', 'rgba.png', 'small.jpg', 'cmyk.jpg', 'cmyk-no-adobe.jpg', 'cmyk.tif'):
        im = ImageOps.exif_transpose(Image.open(os.path.join(FIXTURES, name))).convert('RGB')
        arr = np.asarray(im)
        di = sample_indices(arr.size, SAMPLES, 3)
        clip[f'decode.{name}.shape'] = torch.tensor(arr.shape, dtype=torch.int32)
        clip[f'decode.{name}.idx'] = torch.from_numpy(di.astype('int32'))
        clip[f'decode.{name}.values'] = torch.from_numpy(arr.reshape(-1)[di].astype('int32'))
    return {'image': (out, {'cases': json.dumps(meta)}), 'image_clip': (clip, {'cases': json.dumps(meta)})}
