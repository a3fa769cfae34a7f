"""ShapesWorld: seeded pictures of shapes and stick figures with exact ground truth.

The rules are written out in docs/shapesworld.md; the constants below are those rules. Picture
(seed, index) comes from numpy's default_rng([seed, index]) alone, so it is the same bytes whatever
else is rendered beside it.

Coordinates are continuous pixels: pixel (row i, column j) covers [j, j + 1) x [i, i + 1).
"""
import math

import numpy as np
from PIL import Image, ImageDraw

SIDE_RANGE = (192, 640)
MAX_ASPECT = 3
NOISE_SIGMA_MAX = 8.0
BACKGROUND_CHANNEL_RANGE = (60, 200)
LIGHT_GREY_RANGE = (210, 235)
DARK_GREY_RANGE = (30, 55)
OBJECT_COUNT_RANGE = (1, 6)
MAX_BOX_IOU = 0.3
MIN_VISIBLE_FRACTION = 0.5
SHAPE_SIDE_RANGE = (0.10, 0.40)      # of the picture's shorter side
PERSON_HEIGHT_RANGE = (0.30, 0.80)   # of the picture's shorter side
COLOUR_JITTER = 15
MIN_BACKGROUND_DISTANCE = 60         # an object's colour must be farther than this (Chebyshev)
TRIES_PER_OBJECT = 50
SUPERSAMPLE = 4
LARGEST_MARGIN = 1.2                 # "largest" is named only when it beats the runner-up by this

CLASSES = ('circle', 'square', 'triangle', 'star', 'person')
COLOURS = {
    'red': (220, 40, 40), 'green': (40, 170, 60), 'blue': (40, 80, 220), 'yellow': (240, 210, 40),
    'purple': (150, 60, 190), 'orange': (245, 140, 30), 'white': (245, 245, 245), 'black': (20, 20, 20),
}
STAR_INNER_RADIUS = 0.45

KEYPOINT_NAMES = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
    'right_knee', 'left_ankle', 'right_ankle')
SKELETON = (  # COCO's pairs, 1-based
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
LIMB_WIDTH = 0.03                    # of the figure's height
HEAD_RADIUS = 0.09                   # of the figure's height
LIMB_ANGLE_JITTER = 30.0             # degrees

# Rest pose in units of the figure's height H, y down from the top of the head, facing the viewer:
# the person's left is the picture's right (+x). Ears sit inside the head circle.
_HEAD_CENTRE = (0.0, HEAD_RADIUS)
_FACE = {'nose': (0.0, 0.12), 'left_eye': (0.035, 0.09), 'right_eye': (-0.035, 0.09),
         'left_ear': (0.08, 0.10), 'right_ear': (-0.08, 0.10)}
_SHOULDER = (0.11, 0.23)
_HIP = (0.07, 0.545)
# (name, from joint, length, rest angle from straight down, outward positive) per limb segment; the
# legs' length makes the rest pose's soles (ankle + half a limb width) land at y = 1.
_SEGMENTS = (('elbow', 'shoulder', 0.17, 15.0), ('wrist', 'elbow', 0.15, 15.0),
             ('knee', 'hip', 0.22, 4.0), ('ankle', 'knee', 0.22, 4.0))


def render_picture(seed, index, recolour=None):
    """The picture (seed, index): (image as uint8 [h, w, 3], annotation dict). `recolour` {object id:
    colour name} paints those objects that palette colour exactly instead (an edit's ground truth): the
    same draws otherwise, so every other pixel, noise included, stays as it was."""
    rng = np.random.default_rng([seed, index])
    width, height = _sample_size(rng)
    background = _sample_background(rng)
    short = min(width, height)
    requested = int(rng.integers(OBJECT_COUNT_RANGE[0], OBJECT_COUNT_RANGE[1] + 1))

    owner = np.full((height, width), -1, dtype=np.int16)  # top object with coverage >= 0.5
    placed = []
    for _ in range(requested):
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        for _ in range(TRIES_PER_OBJECT):
            candidate = _sample_object(rng, cls, width, height, short, background['rgb'])
            if candidate is not None and _fits(candidate, placed, owner):
                _place(candidate, placed, owner)
                break

    for k, name in (recolour or {}).items():
        placed[k] = dict(placed[k], colour=name, rgb=list(COLOURS[name]))
    image = _compose(rng, width, height, background, placed)
    objects = [_annotate(k, obj, owner, width, height) for k, obj in enumerate(placed)]
    annotation = {
        'seed': seed, 'index': index, 'width': width, 'height': height,
        'background': background, 'requested_objects': requested,
        'objects': objects, 'largest': _largest(objects),
    }
    return image, annotation


def _sample_size(rng):
    lo, hi = SIDE_RANGE
    width = int(rng.integers(lo, hi + 1))
    height = int(rng.integers(max(lo, -(-width // MAX_ASPECT)), min(hi, width * MAX_ASPECT) + 1))
    return width, height


def _sample_background(rng):
    kind = ('colour', 'colour', 'colour', 'colour', 'light grey', 'dark grey')[int(rng.integers(6))]
    if kind == 'colour':
        rgb = [int(c) for c in rng.integers(BACKGROUND_CHANNEL_RANGE[0], BACKGROUND_CHANNEL_RANGE[1] + 1, 3)]
    else:
        lo, hi = LIGHT_GREY_RANGE if kind == 'light grey' else DARK_GREY_RANGE
        rgb = [int(rng.integers(lo, hi + 1))] * 3
    # Half the pictures are clean, so a uniform background is as common as a noisy one.
    sigma = 0.0 if rng.random() < 0.5 else round(float(rng.uniform(0.0, NOISE_SIGMA_MAX)), 3)
    return {'kind': kind, 'rgb': rgb, 'noise_sigma': sigma}


def colour_distance(a, b):
    """Largest absolute channel difference (Chebyshev distance) between two RGB triples."""
    return max(abs(int(x) - int(y)) for x, y in zip(a, b))


def _sample_object(rng, cls, width, height, short, background_rgb):
    """One candidate object (coverage already rendered), or None when it breaks a per-object rule."""
    name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
    rgb = [int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[name], jitter)]
    if colour_distance(rgb, background_rgb) <= MIN_BACKGROUND_DISTANCE:
        return None
    obj = {'class': cls, 'colour': name, 'rgb': rgb}
    if cls == 'person':
        obj.update(_sample_person(rng, width, height, short))
    else:
        obj.update(_sample_shape(rng, cls, width, height, short))
    obj['box'] = _tight_box(obj)
    if obj['box'] is None:
        return None
    x0, y0, x1, y1 = obj['box']
    if cls == 'person':
        if not _in_range(y1 - y0, PERSON_HEIGHT_RANGE, short):
            return None
        # Thin limbs can leave a wrist or ankle's own pixel under half covered: such a pose is redrawn.
        if any(not (x0 <= x <= x1 and y0 <= y <= y1) for x, y in obj['points']):
            return None
    elif not _in_range(max(x1 - x0, y1 - y0), SHAPE_SIDE_RANGE, short):
        return None
    return obj


def _in_range(length, fractions, short):
    return math.ceil(fractions[0] * short) <= length <= math.floor(fractions[1] * short)


def _sample_shape(rng, cls, width, height, short):
    side = rng.uniform(*SHAPE_SIDE_RANGE) * short  # the continuous box's longer side
    rotation = 0.0 if cls == 'circle' else float(rng.uniform(0.0, 360.0))
    if cls == 'circle':
        unit = None
        extent = 2.0
    else:
        unit = _unit_polygon(cls, rotation)
        extent = max(unit[:, 0].max() - unit[:, 0].min(), unit[:, 1].max() - unit[:, 1].min())
    scale = side / extent
    if cls == 'circle':
        lo = np.array([-scale, -scale])
        hi = -lo
    else:
        lo, hi = unit.min(0) * scale, unit.max(0) * scale
    centre = _sample_centre(rng, lo, hi, width, height)
    window = _window(centre + lo, centre + hi, width, height)

    def draw(d, to_canvas):
        if cls == 'circle':
            (ax, ay), (bx, by) = to_canvas(centre - scale), to_canvas(centre + scale)
            d.ellipse([ax, ay, bx, by], fill=255)
        else:
            d.polygon([to_canvas(centre + p * scale) for p in unit], fill=255)

    return {'rotation': round(rotation, 3), 'window': window, 'coverage': _coverage(window, draw)}


def _unit_polygon(cls, rotation):
    """Vertices (circumradius 1, y down) rotated clockwise on screen by `rotation` degrees."""
    if cls == 'square':
        radii, step, start = [1.0] * 4, 90.0, 45.0
    elif cls == 'triangle':
        radii, step, start = [1.0] * 3, 120.0, -90.0      # apex up before rotation
    else:
        radii, step, start = [1.0, STAR_INNER_RADIUS] * 5, 36.0, -90.0
    angles = np.radians(start + rotation + step * np.arange(len(radii)))
    return np.stack([np.cos(angles), np.sin(angles)], 1) * np.array(radii)[:, None]


def _sample_person(rng, width, height, short):
    figure_height = rng.uniform(*PERSON_HEIGHT_RANGE) * short
    points = _pose(rng) * figure_height
    limb = LIMB_WIDTH * figure_height
    head = HEAD_RADIUS * figure_height
    head_centre = (points[1] + points[2]) / 2  # between the eyes
    lo = np.minimum(points.min(0) - limb / 2, head_centre - head)
    hi = np.maximum(points.max(0) + limb / 2, head_centre + head)
    centre = _sample_centre(rng, lo, hi, width, height)
    points = points + centre
    head_centre = head_centre + centre
    window = _window(points.min(0) - limb / 2 - head, points.max(0) + limb / 2 + head, width, height)

    def draw(d, to_canvas):
        w = limb * SUPERSAMPLE
        for a, b in SKELETON:
            d.line([to_canvas(points[a - 1]), to_canvas(points[b - 1])], fill=255, width=max(1, round(w)))
        for p in points:  # round joints and line ends
            x, y = to_canvas(p)
            d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=255)
        (ax, ay), (bx, by) = to_canvas(head_centre - head), to_canvas(head_centre + head)
        d.ellipse([ax, ay, bx, by], fill=255)

    return {'figure_height': round(float(figure_height), 3), 'points': points,
            'window': window, 'coverage': _coverage(window, draw)}


def _pose(rng):
    """The 17 keypoints of a standing pose, height 1, each limb segment turned by up to ±30°."""
    joints = {}
    for side, sign in (('left', 1.0), ('right', -1.0)):
        joints[f'{side}_shoulder'] = np.array([sign * _SHOULDER[0], _SHOULDER[1]])
        joints[f'{side}_hip'] = np.array([sign * _HIP[0], _HIP[1]])
        for name, parent, length, rest in _SEGMENTS:
            angle = math.radians(rest + rng.uniform(-LIMB_ANGLE_JITTER, LIMB_ANGLE_JITTER))
            step = np.array([sign * math.sin(angle), math.cos(angle)]) * length
            joints[f'{side}_{name}'] = joints[f'{side}_{parent}'] + step
    joints.update({k: np.array(v) for k, v in _FACE.items()})
    return np.stack([joints[name] for name in KEYPOINT_NAMES])


def _sample_centre(rng, lo, hi, width, height):
    """A centre keeping the extent [centre + lo, centre + hi] one pixel clear of every edge.

    Objects span at most about 0.8 of the shorter side, so there is always room.
    """
    x = rng.uniform(1.0 - lo[0], width - 1.0 - hi[0])
    y = rng.uniform(1.0 - lo[1], height - 1.0 - hi[1])
    return np.array([x, y])


def _window(lo, hi, width, height):
    """Integer pixel window [x0, y0, x1, y1) around a continuous extent, clipped to the picture."""
    x0, y0 = max(0, math.floor(lo[0]) - 1), max(0, math.floor(lo[1]) - 1)
    x1, y1 = min(width, math.ceil(hi[0]) + 1), min(height, math.ceil(hi[1]) + 1)
    return x0, y0, x1, y1


def _coverage(window, draw):
    """Fraction of each window pixel the drawing covers, at 4x4 supersampling: float [h, w] in [0, 1]."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    canvas = Image.new('L', (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)

    # Pillow's integer coordinate k is the centre of canvas pixel k, which sits at (k + 0.5) / 4.
    def to_canvas(p):
        return (float(p[0] - x0) * SUPERSAMPLE - 0.5, float(p[1] - y0) * SUPERSAMPLE - 0.5)

    draw(ImageDraw.Draw(canvas), to_canvas)
    samples = np.asarray(canvas, dtype=np.float64).reshape(h, SUPERSAMPLE, w, SUPERSAMPLE)
    return samples.mean(axis=(1, 3)) / 255.0


def _tight_box(obj):
    """[x0, y0, x1, y1) of the pixels the object covers at least half; None when there are none."""
    mask = obj['coverage'] >= 0.5
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    wx, wy = obj['window'][:2]
    return [int(wx + cols[0]), int(wy + rows[0]), int(wx + cols[-1] + 1), int(wy + rows[-1] + 1)]


def box_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _fits(candidate, placed, owner):
    """Box IoU below 0.3 with every placed object, and each of them keeps half its pixels visible."""
    if any(box_iou(candidate['box'], p['box']) >= MAX_BOX_IOU for p in placed):
        return False
    x0, y0, x1, y1 = candidate['window']
    covered = owner[y0:y1, x0:x1][candidate['coverage'] >= 0.5]
    lost = np.bincount(covered[covered >= 0], minlength=len(placed))
    return all(p['visible_area'] - n >= MIN_VISIBLE_FRACTION * p['area'] for p, n in zip(placed, lost))


def _place(candidate, placed, owner):
    k = len(placed)
    x0, y0, x1, y1 = candidate['window']
    mine = candidate['coverage'] >= 0.5
    covered = owner[y0:y1, x0:x1][mine]
    for j, n in enumerate(np.bincount(covered[covered >= 0], minlength=k)):
        placed[j]['visible_area'] -= int(n)
    owner[y0:y1, x0:x1][mine] = k
    candidate['area'] = candidate['visible_area'] = int(mine.sum())
    placed.append(candidate)


def _compose(rng, width, height, background, placed):
    """Background plus noise, then each object blended over it by its coverage, in order."""
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = background['rgb']
    if background['noise_sigma'] > 0:
        image += rng.normal(0.0, background['noise_sigma'], image.shape)
    for obj in placed:
        x0, y0, x1, y1 = obj['window']
        alpha = obj['coverage'][..., None]
        region = image[y0:y1, x0:x1]
        region *= 1.0 - alpha
        region += alpha * np.array(obj['rgb'], dtype=np.float64)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _annotate(k, obj, owner, width, height):
    visible = owner == k
    x0, y0, x1, y1 = obj['box']
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    out = {'id': k, 'class': obj['class'], 'colour': obj['colour'], 'rgb': obj['rgb'], 'box': obj['box'],
           'area': obj['area'], 'visible_area': obj['visible_area'], 'centre': [cx, cy],
           'position': position_words(cx, cy, width, height), 'mask': encode_rle(visible)}
    if obj['class'] == 'person':
        out['figure_height'] = obj['figure_height']
        # COCO visibility: 2 where the keypoint's pixel shows this person, 1 where a later object hides it.
        out['keypoints'] = [[round(float(x), 2), round(float(y), 2),
                             2 if visible[min(int(y), height - 1), min(int(x), width - 1)] else 1]
                            for x, y in obj['points']]
    else:
        out['rotation'] = obj['rotation']
    return out


def position_words(cx, cy, width, height):
    """Thirds of the picture: 'left'/'centre'/'right' and 'top'/'centre'/'bottom', and one phrase."""
    horizontal = 'left' if cx < width / 3 else 'right' if cx > 2 * width / 3 else 'centre'
    vertical = 'top' if cy < height / 3 else 'bottom' if cy > 2 * height / 3 else 'centre'
    if horizontal == vertical == 'centre':
        phrase = 'centre'
    elif vertical == 'centre':
        phrase = horizontal
    elif horizontal == 'centre':
        phrase = vertical
    else:
        phrase = f'{vertical} {horizontal}'
    return {'horizontal': horizontal, 'vertical': vertical, 'phrase': phrase}


def _largest(objects):
    """Index of the object with the largest area, or None when the runner-up is within 20% of it."""
    if not objects:
        return None
    ranked = sorted(objects, key=lambda o: -o['area'])
    if len(ranked) > 1 and ranked[0]['area'] < LARGEST_MARGIN * ranked[1]['area']:
        return None
    return ranked[0]['id']


def encode_rle(mask):
    """COCO uncompressed RLE of a bool [h, w] mask: column-major runs, the first one of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order='F')
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': counts}


def decode_rle(rle):
    h, w = rle['size']
    values = np.arange(len(rle['counts'])) % 2
    flat = np.repeat(values.astype(bool), rle['counts'])
    return flat.reshape((h, w), order='F')
