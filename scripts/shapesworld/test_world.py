"""Checks that sampled ShapesWorld pictures follow every rule: python3 -P scripts/shapesworld/test_world.py

Plain Python, not pytest: prints each broken rule and exits 1 when any is broken.
"""
import io
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from scripts.shapesworld import world as W  # noqa: E402

SEED = 20261206
PICTURES = 300

# The numbers, written out again rather than read from world.py, so a changed constant
# there shows up here as a broken rule.
SIDE_RANGE, MAX_ASPECT, NOISE_SIGMA_MAX = (192, 640), 3, 8.0
BACKGROUND_RANGES = {'colour': (60, 200), 'light grey': (210, 235), 'dark grey': (30, 55)}
OBJECT_COUNT_RANGE, MAX_BOX_IOU, MIN_VISIBLE_FRACTION = (1, 6), 0.3, 0.5
SHAPE_SIDE_RANGE, PERSON_HEIGHT_RANGE = (0.10, 0.40), (0.30, 0.80)
COLOUR_JITTER, MIN_BACKGROUND_DISTANCE = 15, 60
COLOURS = {
    'red': (220, 40, 40), 'green': (40, 170, 60), 'blue': (40, 80, 220), 'yellow': (240, 210, 40),
    'purple': (150, 60, 190), 'orange': (245, 140, 30), 'white': (245, 245, 245), 'black': (20, 20, 20),
}
CLASSES = ('circle', 'square', 'triangle', 'star', 'person')
FIXTURES = Path(__file__).resolve().parents[2] / 'test' / 'fixtures' / 'shapesworld'


def check_picture(image, ann):
    """The rules one picture breaks, as messages (empty when it follows them all)."""
    errors = []

    def expect(ok, message):
        if not ok:
            errors.append(f"picture {ann['seed']}-{ann['index']}: {message}")

    w, h = ann['width'], ann['height']
    short = min(w, h)
    expect(image.shape == (h, w, 3) and image.dtype == np.uint8, f'image {image.shape} {image.dtype}')
    expect(SIDE_RANGE[0] <= w <= SIDE_RANGE[1] and SIDE_RANGE[0] <= h <= SIDE_RANGE[1], f'size {w}x{h}')
    expect(max(w, h) <= MAX_ASPECT * min(w, h), f'aspect {w}x{h}')

    bg = ann['background']
    lo, hi = BACKGROUND_RANGES[bg['kind']]
    expect(all(lo <= c <= hi for c in bg['rgb']), f"background {bg}")
    expect(bg['kind'] == 'colour' or len(set(bg['rgb'])) == 1, f'grey background not grey {bg}')
    expect(0 <= bg['noise_sigma'] <= NOISE_SIGMA_MAX, f"noise sigma {bg['noise_sigma']}")

    objects = ann['objects']
    expect(OBJECT_COUNT_RANGE[0] <= ann['requested_objects'] <= OBJECT_COUNT_RANGE[1],
           f"requested {ann['requested_objects']}")
    expect(len(objects) <= ann['requested_objects'], f'{len(objects)} objects for {ann["requested_objects"]}')

    masks = [W.decode_rle(o['mask']) for o in objects]
    owner = np.full((h, w), -1)
    for k, (o, m) in enumerate(zip(objects, masks)):
        where = f"object {k} ({o['class']} {o['colour']})"
        expect(o['mask']['size'] == [h, w] and sum(o['mask']['counts']) == h * w, f'{where}: rle size')
        expect(not (owner[m] >= 0).any(), f'{where}: visible masks overlap')
        owner[m] = k
        x0, y0, x1, y1 = o['box']
        # Inside with a pixel to spare: an object touching the edge might have been cut by it.
        expect(1 <= x0 < x1 <= w - 1 and 1 <= y0 < y1 <= h - 1,
               f'{where}: box {o["box"]} touches the edge of {w}x{h}')
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        expect(rows.size and rows[0] >= y0 and rows[-1] < y1 and cols[0] >= x0 and cols[-1] < x1,
               f'{where}: visible mask leaves its box')
        expect(m.sum() == o['visible_area'] and o['visible_area'] >= MIN_VISIBLE_FRACTION * o['area'],
               f"{where}: visible area {m.sum()} / {o['visible_area']} of {o['area']}")

        base = COLOURS[o['colour']]
        expect(all(abs(c - b) <= COLOUR_JITTER for c, b in zip(o['rgb'], base)), f"{where}: jitter {o['rgb']}")
        expect(max(abs(a - b) for a, b in zip(o['rgb'], bg['rgb'])) > MIN_BACKGROUND_DISTANCE,
               f"{where}: colour {o['rgb']} near background {bg['rgb']}")

        side = max(x1 - x0, y1 - y0)
        if o['class'] == 'person':
            expect(PERSON_HEIGHT_RANGE[0] * short <= y1 - y0 <= PERSON_HEIGHT_RANGE[1] * short,
                   f'{where}: height {y1 - y0} of {short}')
            expect(PERSON_HEIGHT_RANGE[0] * short <= o['figure_height'] <= PERSON_HEIGHT_RANGE[1] * short,
                   f"{where}: figure height {o['figure_height']} of {short}")
            kps = o['keypoints']
            expect(len(kps) == 17, f'{where}: {len(kps)} keypoints')
            for x, y, v in kps:
                expect(x0 <= x <= x1 and y0 <= y <= y1, f'{where}: keypoint ({x}, {y}) outside {o["box"]}')
                expect(v == (2 if m[min(int(y), h - 1), min(int(x), w - 1)] else 1), f'{where}: visibility {v}')
        else:
            expect(o['class'] in CLASSES, f'{where}: class')
            expect(SHAPE_SIDE_RANGE[0] * short <= side <= SHAPE_SIDE_RANGE[1] * short,
                   f'{where}: box side {side} of {short}')
        errors += check_mask_colours(image, o, m, masks, objects, where, ann)

    for i in range(len(objects)):
        for j in range(i):
            iou = box_iou(objects[i]['box'], objects[j]['box'])
            expect(iou < MAX_BOX_IOU, f'objects {j} and {i}: IoU {iou:.3f}')

    # Away from every box (and the faint antialiased tips just outside it), the picture is the
    # background plus its noise: no sample past 7 sigma (odds 1e-11 each), and the right spread.
    free = np.ones((h, w), dtype=bool)
    for o in objects:
        x0, y0, x1, y1 = o['box']
        free[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = False
    if free.sum() > 1000:
        residual = image[free].astype(np.float64) - bg['rgb']
        expect(np.abs(residual).max() <= 7 * bg['noise_sigma'] + 1, f'background deviates by {np.abs(residual).max()}')
        if bg['noise_sigma'] >= 1:  # below one level, rounding to integers hides most of the noise
            spread = residual.std()  # rounding adds a spread of sqrt(1/12)
            expected = math.sqrt(bg['noise_sigma'] ** 2 + 1 / 12)
            expect(abs(spread - expected) <= 0.1 * expected, f"noise spread {spread:.2f}, sigma {bg['noise_sigma']}")
        elif bg['noise_sigma'] == 0:
            expect(not residual.any(), 'a clean background is not uniform')
    return errors


def box_iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def check_mask_colours(image, o, m, masks, objects, where, ann):
    """A mask's inner pixels have the object's colour; its colour shows nowhere else."""
    errors = []
    near = (np.abs(image.astype(int) - o['rgb']).max(2) <= 1)
    inner = m.copy()  # the mask eroded by a 3x3 square: no antialiased edge left
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= inner[:, :-1].copy()
    inner[:, :-1] &= inner[:, 1:].copy()
    if inner.sum() >= 20 and near[inner].mean() < 0.95:
        errors.append(f"picture {ann['seed']}-{ann['index']} {where}: {near[inner].mean():.3f} of inner pixels match")
    # Another object of nearly the same colour may match too; only look outside such objects' masks.
    others = np.zeros_like(m)
    for p, pm in zip(objects, masks):
        if p is not o and W.colour_distance(p['rgb'], o['rgb']) <= 8:
            others |= pm
    stray = near & ~m & ~others
    if stray.sum() > 0.01 * max(1, m.sum()):
        errors.append(f"picture {ann['seed']}-{ann['index']} {where}: {stray.sum()} matching pixels outside the mask")
    return errors


def check_rle():
    errors = []
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 5), (7, 4)):
        for fill in (0.0, 0.5, 1.0):
            mask = rng.random(shape) < fill
            rle = W.encode_rle(mask)
            leading_zeros = int(mask.flatten('F').argmax()) if mask.any() else mask.size
            if not (W.decode_rle(rle) == mask).all() or rle['counts'][0] != leading_zeros:
                errors.append(f'rle round trip {shape} {fill}')
    # Column-major, zeros first: [[0, 1], [1, 1]] runs down column 0 first: 0, then 1, 1, 1.
    if W.encode_rle(np.array([[0, 1], [1, 1]], bool))['counts'] != [1, 3]:
        errors.append('rle order')
    return errors


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='PNG')
    return buffer.getvalue()


def check_determinism():
    errors = []
    for index in (0, 1, 2):
        a_image, a_ann = W.render_picture(SEED, index)
        b_image, b_ann = W.render_picture(SEED, index)
        if png_bytes(a_image) != png_bytes(b_image) or json.dumps(a_ann) != json.dumps(b_ann):
            errors.append(f'picture {SEED}-{index} differs between two renders')
    if png_bytes(W.render_picture(SEED, 0)[0]) == png_bytes(W.render_picture(SEED + 1, 0)[0]):
        errors.append('two seeds gave the same picture')
    return errors


def check_recolour():
    """An edit's ground truth changes that object's pixels alone, to the palette colour."""
    errors = []
    for index in (0, 1, 2, 3):
        image, ann = W.render_picture(SEED, index)
        target = ann['objects'][0]
        colour = next(c for c in W.COLOURS if c != target['colour'])
        edited, edited_ann = W.render_picture(SEED, index, {target['id']: colour})
        changed = np.argwhere(np.any(image != edited, axis=-1))
        x0, y0, x1, y1 = target['box']
        inside = (changed[:, 1] >= np.floor(x0) - 1) & (changed[:, 1] < np.ceil(x1) + 1) & \
                 (changed[:, 0] >= np.floor(y0) - 1) & (changed[:, 0] < np.ceil(y1) + 1)
        shown = W.decode_rle(target['mask'])
        if not inside.all():
            errors.append(f'recolouring {SEED}-{index} object 0 changed {int((~inside).sum())} pixels outside its box')
        if shown.any() and list(np.median(edited[shown], axis=0)) != list(W.COLOURS[colour]):
            errors.append(f'recolouring {SEED}-{index} object 0: its pixels are not {colour} {W.COLOURS[colour]}')
        if edited_ann['objects'][0]['colour'] != colour or edited_ann['objects'][1:] != ann['objects'][1:]:
            errors.append(f'recolouring {SEED}-{index}: the annotation should change object 0\'s colour only')
    return errors


def check_fixtures():
    """The committed fixtures are still what the generator draws."""
    errors = []
    for path in sorted(FIXTURES.glob('*.json')):
        seed, index = (int(s) for s in path.stem.split('-'))
        image, ann = W.render_picture(seed, index)
        stored = np.asarray(Image.open(path.with_suffix('.png')).convert('RGB'))
        if not np.array_equal(stored, image) or json.loads(path.read_text()) != json.loads(json.dumps(ann)):
            errors.append(f'fixture {path.name} differs from the generator')
    return errors


def main():
    start = time.perf_counter()
    errors, counts, requested, classes = [], [], 0, {}
    for index in range(PICTURES):
        image, ann = W.render_picture(SEED, index)
        errors += check_picture(image, ann)
        counts.append(len(ann['objects']))
        requested += ann['requested_objects']
        for o in ann['objects']:
            classes[o['class']] = classes.get(o['class'], 0) + 1
    sampled = time.perf_counter() - start
    for c in CLASSES:
        if classes.get(c, 0) < PICTURES // 10:
            errors.append(f'class {c} drawn only {classes.get(c, 0)} times')
    errors += check_rle() + check_determinism() + check_recolour() + check_fixtures()
    total = time.perf_counter() - start

    for e in errors[:50]:
        print('FAIL', e)
    print(f'{PICTURES} pictures, {sum(counts)} of {requested} requested objects placed, '
          f'classes {classes}; sampled and checked at {PICTURES / sampled:.1f} pictures/s, {total:.1f} s in all')
    if errors:
        print(f'{len(errors)} broken rules')
        sys.exit(1)
    print('ok')


if __name__ == '__main__':
    main()
