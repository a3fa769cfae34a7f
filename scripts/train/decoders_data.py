"""ShapesWorld examples for the decoders' training: one picture's task turns in the official templates
(scripts/shapesworld/conversations.py), the detector's own copy of the picture (mmdet's resize, as
src/decoders/gdino/image.ts) and each turn's targets: labels, boxes and masks."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from miniature_data import pixels, tile_array
from miniature_model import KINDS, kind_index
from scripts.shapesworld import conversations as talk
from scripts.shapesworld.world import decode_rle, render_picture

import reference_gdino as R

MASK_STRIDE = 4   # the mask head predicts at a quarter of the padded input


def task_turns(annotation, rng):
    """The detector's turns for a picture: detection ([DET]) and semantic ([SEG]) of every class present
    plus some absent, and grounding ([GRD]) of an expression naming one object, when the picture has one."""
    objects = annotation['objects']
    turns = [talk._detection(objects, rng), talk._semantic(objects, rng)]
    expressions = talk.grounding_expressions(annotation)
    if expressions:
        expression, obj = expressions[int(rng.integers(len(expressions)))]
        turns.append(talk._turn('grounding', **talk.grounding(expression), objects=[obj['id']], phrases=[expression]))
    return turns


def turn_labels(turn, annotation):
    """The objects a turn asks for and each one's class column (its routing block's index)."""
    by_id = {o['id']: o for o in annotation['objects']}
    objects = [by_id[i] for i in turn['objects']]
    if turn['type'] == 'grounding':
        return objects, [0]
    return objects, [turn['phrases'].index(o['class']) for o in objects]


class Example:
    """One picture: its anyres tiles for the MLLM, the detector input and the targets' raw material."""

    def __init__(self, seed, index, scale):
        image, self.annotation = render_picture(seed, index)
        pil = Image.fromarray(image)
        self.tiles = pixels(tile_array(pil))
        _, padded, mask = R.mmdet_input(cv2, np.ascontiguousarray(image[:, :, ::-1]), scale)
        self.pixel_values = torch.from_numpy(padded)[None]
        self.pixel_mask = torch.from_numpy(mask)[None].long()
        self.height, self.width = image.shape[:2]
        self.resized = (int(mask[:, 0].sum()), int(mask[0].sum()))
        self.padded = padded.shape[1:]

    def targets(self, objects):
        """Boxes [T, 4] (cx, cy, w, h over the picture's size) and masks [T, Hp/4, Wp/4] (covered fraction)."""
        if not objects:
            return torch.zeros(0, 4), torch.zeros(0, self.padded[0] // MASK_STRIDE, self.padded[1] // MASK_STRIDE)
        size = torch.tensor([self.width, self.height, self.width, self.height], dtype=torch.float32)
        xyxy = torch.tensor([o['box'] for o in objects], dtype=torch.float32) / size
        boxes = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                             xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], 1)
        masks = []
        for o in objects:
            full = decode_rle(o['mask']).astype(np.float32)
            canvas = np.zeros(self.padded, np.float32)
            canvas[:self.resized[0], :self.resized[1]] = cv2.resize(full, self.resized[::-1], interpolation=cv2.INTER_LINEAR)
            masks.append(torch.from_numpy(canvas))
        return boxes, F.avg_pool2d(torch.stack(masks)[:, None], MASK_STRIDE)[:, 0]

    def cover(self, masks):
        """What covers each stride-4 cell of the padded input, from the objects' masks (`targets`): [KINDS + 1,
        Hp/4, Wp/4], each object's share in its (class, colour) kind's channel and the rest in the last
        (background); and the valid cells."""
        share = torch.zeros(KINDS + 1, *masks.shape[1:])
        for obj, mask in zip(self.annotation['objects'], masks):
            share[kind_index(obj)] += mask
        share[KINDS] = 1 - share[:KINDS].sum(0).clamp(max=1)
        valid = F.avg_pool2d(self.pixel_mask[None].float(), MASK_STRIDE)[0, 0] > 0.5
        return share, valid

    def object_crops(self, size, rng, jitter=16):
        """A square of `size` pixels of the padded input around each object, its centre moved by up to
        `jitter` pixels on the stride-4 grid (outside the input: padding). Returns the crops' pixels
        [N, 3, size, size], their cover and valid cells as `cover` gives them ([N, KINDS + 1, size/4,
        size/4] and [N, size/4, size/4]), each centred object's own mask [N, size/4, size/4] and its
        kind [N]; None when the picture has no objects."""
        objects = self.annotation['objects']
        if not objects:
            return None
        _, masks = self.targets(objects)
        share, valid = self.cover(masks)
        cells = size // MASK_STRIDE
        grid = lambda t: F.pad(t, (cells, cells, cells, cells))  # noqa: E731
        pixels, share, valid, masks = F.pad(self.pixel_values[0], (size,) * 4), grid(share), grid(valid.float()) > 0.5, grid(masks)
        scale = np.array([self.resized[1] / self.width, self.resized[0] / self.height]) / MASK_STRIDE
        out = []
        for k, obj in enumerate(objects):
            x0, y0, x1, y1 = obj['box']
            centre = np.array([x0 + x1, y0 + y1]) / 2 * scale + rng.uniform(-jitter, jitter, 2) / MASK_STRIDE
            cx, cy = (np.round(centre - cells / 2).astype(int) + cells)
            window = (slice(cy, cy + cells), slice(cx, cx + cells))
            out.append((pixels[:, cy * MASK_STRIDE:(cy + cells) * MASK_STRIDE, cx * MASK_STRIDE:(cx + cells) * MASK_STRIDE],
                        share[(slice(None),) + window], valid[window], masks[(k,) + window]))
        kinds = torch.tensor([kind_index(o) for o in objects], dtype=torch.long)
        return [torch.stack(part) for part in zip(*out)] + [kinds]
