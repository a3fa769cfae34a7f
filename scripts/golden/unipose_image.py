"""UniPose's image input (decoders.md B.2; test/unipose-image.test.ts): the DETR pipeline of
VisionLLM v2's coco_pose_llava.py (val: RandomResize([800], max_size=1333), ToTensor, Normalize with
ImageNet's mean and std) run with the official transforms' size rule (transform_coco.py resize(),
copied below) and torchvision 0.14's F.resize / to_tensor / normalize on PIL images, then
nested_tensor_from_tensor_list's padding to multiples of 32 with the mask True on padding.

Synthetic images are gdino_image.py's (a gradient plus hashed noise; test/gdino-image.test.ts has
the same generator); fixtures are PNGs. Resized 8-bit images are checked whole through two
checksums (Pillow's bytes), normalised pixels by samples, masks by row and column sums.
"""
import json
import os

import numpy as np
import torch

from gdino_image import FIXTURES, checksums, synthetic
from hashed import sample_indices

SIZE, MAX_SIZE, DIVISOR = 800, 1333, 32
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def get_size_with_aspect_ratio(image_size, size, max_size=None):
    """transform_coco.py resize(): (w, h) -> (oh, ow), verbatim."""
    w, h = image_size
    if max_size is not None:
        min_original_size = float(min((w, h)))
        max_original_size = float(max((w, h)))
        if max_original_size / min_original_size * size > max_size:
            size = int(round(max_size * min_original_size / max_original_size))
    if (w <= h and w == size) or (h <= w and h == size):
        return (h, w)
    if w < h:
        ow = size
        oh = int(size * h / w)
    else:
        oh = size
        ow = int(size * w / h)
    return (oh, ow)


def sizes(out):
    g = np.random.default_rng(18)
    hw = [(int(a), int(b)) for a, b in zip(g.integers(1, 4000, 12), g.integers(1, 4000, 12))]
    # round() halves (Python rounds to even: 2.5 -> 2, 3.5 -> 4), the unchanged size, the max_size limit, extremes
    hw += [(5, 2666), (2666, 5), (7, 2666), (800, 1000), (1000, 800), (800, 1333), (3, 5000), (1, 1)]
    out['sizes.in'] = torch.tensor(hw, dtype=torch.int32)
    out['sizes.out'] = torch.tensor([get_size_with_aspect_ratio((w, h), SIZE, MAX_SIZE) for h, w in hw], dtype=torch.int32)


def images(out, cases):
    from PIL import Image
    import torchvision.transforms.functional as F
    todo = [('scene', 'scene.png', None), ('wide', 'wide.png', None), ('gray', 'gray.png', None),
            ('up', None, (37, 53)), ('down', None, (1000, 1500)), ('same', None, (800, 1000)),
            ('thin', None, (7, 2000)), ('tall', None, (1100, 301))]
    for k, (name, file, size) in enumerate(todo):
        if file:
            image = Image.open(os.path.join(FIXTURES, file)).convert('RGB')
        else:
            image = Image.fromarray(synthetic(size[0], size[1], 200 + k))
        oh, ow = get_size_with_aspect_ratio(image.size, SIZE, MAX_SIZE)
        resized = F.resize(image, (oh, ow))  # torchvision 0.14 on PIL: Image.resize((ow, oh), BILINEAR)
        rgb = np.asarray(resized)
        chw = F.normalize(F.to_tensor(resized), MEAN, STD)
        hp, wp = -(-oh // DIVISOR) * DIVISOR, -(-ow // DIVISOR) * DIVISOR
        padded = torch.zeros(3, hp, wp)
        padded[:, :oh, :ow] = chw
        mask = torch.ones(hp, wp, dtype=torch.bool)
        mask[:oh, :ow] = False
        si = sample_indices(padded.numel(), 4096, k)
        out[f'img.{name}.idx'] = torch.from_numpy(si.astype('int32'))
        out[f'img.{name}.pixels'] = padded.reshape(-1)[torch.from_numpy(si)].clone()
        out[f'img.{name}.mask_rows'] = mask.sum(1).int()
        out[f'img.{name}.mask_cols'] = mask.sum(0).int()
        cases[name] = dict(file=file, size=list(size) if size else None, seed=200 + k, ori=[image.size[1], image.size[0]],
                           img=[oh, ow], pad=[hp, wp], checksums=checksums(np.ascontiguousarray(rgb)))


def generate():
    import PIL
    import torchvision
    out, cases = {}, {}
    sizes(out)
    images(out, cases)
    return {'unipose_image': (out, {'cases': json.dumps(cases), 'pillow': PIL.__version__, 'torchvision': torchvision.__version__})}
