"""ShapesWorld conversations: the questions and answers a miniature VisionLLM v2 learns from a picture.

  python3 -P scripts/shapesworld/conversations.py --seed S --count N --out FILE.jsonl [--first I]

Each JSON line is one picture (seed, index, turns, regions); the picture itself is
world.render_picture(seed, index). `regions` are region-captioning turns (region_captions), each with
the `box` its `<region>` token stands for, drawn from their own stream. A turn is {type, question,
answer} plus what an evaluation needs to score it without parsing the sentence: `subject` (the colour
and class asked about), `objects` (annotation ids it refers to), `phrases` (task turns: the names the
answer must route, in order) and, for editing, `colour`.

Two kinds of turn (docs/shapesworld.md, Conversations):
- VQA: one natural sentence in a canonical form, so exact-match accuracy is measurable; the question
  is one of several paraphrases so the model learns the meaning, not one string.
- Tasks: the official VisionLLM v2 templates, ported byte for byte from src/model/tasks/templates.ts.
  Routing tokens go without their [EMB] queries, which the model's super link appends.
"""
import json
import re
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ''):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.shapesworld.render import picture_range_args  # noqa: E402
from scripts.shapesworld.world import CLASSES, COLOURS, render_picture  # noqa: E402

COLOUR_NAMES = tuple(COLOURS)
PLURALS = {'circle': 'circles', 'square': 'squares', 'triangle': 'triangles', 'star': 'stars', 'person': 'people'}
SINGULARS = {plural: cls for cls, plural in PLURALS.items()}
NUMBER_WORDS = ('no', 'one', 'two', 'three', 'four', 'five', 'six')  # a picture holds at most six objects
# COCO's 17 keypoints as datasets/coco_pose_llava.py names them (src/model/tasks/vocabularies.ts).
POSE_KEYPOINTS = (
    'nose', 'left eye', 'right eye', 'left ear', 'right ear', 'left shoulder', 'right shoulder', 'left elbow',
    'right elbow', 'left wrist', 'right wrist', 'left hip', 'right hip', 'left knee', 'right knee', 'left ankle',
    'right ankle')
# A centre closer than this (fraction of the side) to a third line gets no position question: the
# word would be a close call by eye, and a model must not be taught a coin flip.
POSITION_MARGIN = 0.05
# "Largest" is asked only when the largest object's visible area also beats every other visible area
# by this factor: world.py ranks by area, occlusion included, but the model sees only what shows.
VISIBLE_LARGEST_MARGIN = 1.2
MAX_REGIONS = 3
CONVERSATION_STREAM = 1  # third seed word: the conversation's rng never shares the picture's stream
REGION_STREAM = 2  # region captions draw from their own stream, so adding them changed no conversation
# A region caption is asked of an object at least this much of which shows: its box is then its own.
REGION_VISIBLE = 0.6

VQA_TYPES = ('describe', 'count', 'colour', 'exists', 'where', 'largest')
TASK_TYPES = ('detection', 'semantic', 'grounding', 'pose', 'generation', 'editing', 'regions')

# {thing} is "red star" style (colour + class), {cls} a class, {classes} a plural.
PARAPHRASES = {
    'describe': (
        'What is in the picture?', 'What do you see in this image?', 'Describe the objects in the picture.',
        'List every object in the image with its colour.', 'Which objects can you see?',
        'Tell me what the picture shows.'),
    'count': (
        'How many {classes} are there?', 'How many {classes} are in the picture?', 'Count the {classes} in the image.',
        'What is the number of {classes} in this picture?', 'How many {classes} can you see?'),
    'colour': (
        'What colour is the {cls}?', 'What is the colour of the {cls}?', 'Which colour does the {cls} have?',
        'Tell me the colour of the {cls}.', 'What color is the {cls}?'),
    'exists': (
        'Is there {a_thing}?', 'Is there {a_thing} in the picture?', 'Can you see {a_thing}?',
        'Does the image contain {a_thing}?', 'Do you see {a_thing} in this image?'),
    # Not "Where can we locate ...": that is the grounding template, whose answer is a [GRD] block.
    'where': (
        'Where is the {thing}?', 'Where is the {thing} in the picture?', 'In which part of the image is the {thing}?',
        'Tell me where the {thing} is.', 'Which part of the picture holds the {thing}?'),
    'largest': (
        'Which object is the largest?', 'What is the biggest object in the picture?', 'Which object is largest?',
        'Which is the largest object in the image?', 'Which object takes up the most space?'),
    # Region captioning: the `<region>` token takes the region encoder's embedding of a box. Worded
    # as the describe questions, whose answer form the region's takes.
    'region': ('What is in <region>?', 'What do you see in <region>?', 'Describe the object in <region>.',
               'Tell me what <region> shows.'),
    'caption': ('{objects}', 'a picture of {objects}', '{objects} on a plain background', 'an image showing {objects}',
                'a simple drawing of {objects}'),
    'edit': ('make the {thing} {colour}', 'turn the {thing} {colour}', 'change the colour of the {thing} to {colour}',
             'paint the {thing} {colour}', 'colour the {thing} {colour}.'),
}
# position phrase (world.position_words) -> the words after "is" in a where answer
LOCATION_WORDS = {'centre': 'in the centre', 'left': 'on the left', 'right': 'on the right', 'top': 'at the top',
                  'bottom': 'at the bottom'}


# --- The official templates, ported from src/model/tasks/templates.ts (same strings, same order) ---

def detection(classes):
    return {'question': f"Can you analyze the image and identify the {', '.join(classes)} present?",
            'answer': f'Yes, here are the results for {_routed(classes, "[DET]")} in the image.'}


def semantic(classes):
    return {'question': 'Could you aid me in generating unique masks for every category present in '
                        f"{', '.join(classes).lower()} in this image?",
            'answer': f'Yes, here are the results for {_routed(classes, "[SEG]")} in the image.'}


def regions(count):
    if not isinstance(count, int) or count < 1:
        raise ValueError(f'segment: regions must hold at least one region, got {count}')
    names = [f'region{i + 1}' for i in range(count)]
    marked = ', '.join(f'<reg>{n}<region></reg>' for n in names)
    return {'question': f'Can you examine the image and segment the corresponding objects denoted as {marked}?',
            'answer': f'Sure, these objects are {_routed(names, "[DET]")}.'}


def grounding(expression):
    return {'question': f'Where can we locate the {expression} in the image?', 'answer': 'Yes, it is [GRD].'}


def pose(classes, keypoints):
    d = detection(classes)
    return {'question': f"{d['question']} Can you examine the image and pinpoint the keypoint locations of the "
                        f"{', '.join(keypoints)}?",
            'answer': f"{d['answer']} Utilizing keypoints detection, the image analysis reveals the location of "
                      f"{_routed(keypoints, '[POSE]')}."}


def generation(caption):
    return {'question': f'Generate image with caption: {preprocess_caption(caption)}.', 'answer': 'Here it is [GEN].'}


def editing(instruction):
    return {'question': f"Edit the image according to the caption: {instruction.lower().strip().strip('.')}.",
            'answer': 'Here it is [EDIT].'}


def _routed(names, token):
    return ', '.join(f'{n}{token}' for n in names)


def preprocess_caption(caption):
    """text2img.py preprocess_caption as templates.ts writes it; JS's \\s and Python's differ only on some
    Unicode spaces, and the captions here are ASCII."""
    caption = re.sub(r'[.!"()*#:;~]', ' ', caption.lower())
    caption = re.sub(r'\s{2,}', ' ', caption)
    return re.sub(r'\n+$', '', caption).strip(' ')


# --- Words for objects ---

def thing(obj):
    return f"{obj['colour']} {obj['class']}"


def with_article(words):
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def object_list(objects):
    """'a red star, two green circles and an orange person': each colour + class once, counted, in the
    order of its leftmost object (top to bottom on a tie)."""
    groups = {}
    for o in sorted(objects, key=lambda o: (o['centre'][0], o['centre'][1])):
        groups.setdefault((o['colour'], o['class']), []).append(o)
    names = [with_article(f'{c} {k}') if len(same) == 1 else f'{NUMBER_WORDS[len(same)]} {c} {PLURALS[k]}'
             for (c, k), same in groups.items()]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def described_things(answer):
    """The sorted 'colour class' phrases a describe answer names, one per object: order-free scoring,
    since two objects side by side have no clear left-to-right order by eye."""
    body = answer.removeprefix('I see ').removesuffix('.')
    things = []
    for part in re.split(r', | and ', body):
        words = part.split(' ')
        if words[0] in ('a', 'an'):
            things.append(' '.join(words[1:]))
        else:
            n, colour, plural = NUMBER_WORDS.index(words[0]), words[1], words[2]
            things += [f'{colour} {SINGULARS[plural]}'] * n
    return sorted(things)


def location(obj):
    return LOCATION_WORDS.get(obj['position']['phrase'], f"at the {obj['position']['phrase']}")


# --- Which questions are unambiguous ---

def unique_things(objects):
    """Objects whose colour + class no other object shares: 'the red star' names exactly one."""
    return [o for o in objects if sum(thing(p) == thing(o) for p in objects) == 1]


def unique_classes(objects):
    return [o for o in objects if sum(p['class'] == o['class'] for p in objects) == 1]


def clear_of_thirds(obj, width, height, axes=('x', 'y')):
    """True when the centre is at least POSITION_MARGIN of the side away from each third line."""
    cx, cy = obj['centre']
    near_x = min(abs(cx - width / 3), abs(cx - 2 * width / 3)) < POSITION_MARGIN * width
    near_y = min(abs(cy - height / 3), abs(cy - 2 * height / 3)) < POSITION_MARGIN * height
    return not (('x' in axes and near_x) or ('y' in axes and near_y))


def clear_largest(annotation):
    """The largest object when its size is plain to see (area and visible area), else None."""
    objects = annotation['objects']
    if annotation['largest'] is None:
        return None
    big = objects[annotation['largest']]
    if any(big['visible_area'] < VISIBLE_LARGEST_MARGIN * o['visible_area'] for o in objects if o is not big):
        return None
    return big


# --- VQA turns ---

def vqa_items(annotation, rng):
    """One turn of each VQA type the picture allows a clear answer to."""
    objects = annotation['objects']
    w, h = annotation['width'], annotation['height']
    turns = [_describe(objects, rng), _count(objects, rng), _exists(objects, rng)]
    named = unique_classes(objects)
    if named:
        turns.append(_colour(_pick(rng, named), rng))
    placed = [o for o in unique_things(objects) if clear_of_thirds(o, w, h)]
    if placed:
        turns.append(_where(_pick(rng, placed), rng))
    big = clear_largest(annotation)
    if big is not None and big in unique_things(objects):
        turns.append(_turn('largest', _ask(rng, 'largest'), f'The {thing(big)} is the largest.',
                           subject=_subject(big), objects=[big['id']]))
    return turns


def _describe(objects, rng):
    answer = f'I see {object_list(objects)}.' if objects else 'I see no objects.'
    return _turn('describe', _ask(rng, 'describe'), answer, objects=[o['id'] for o in objects])


def _count(objects, rng):
    """Half the time a class in the picture, half any class, so 'no' counts are learned too."""
    present = sorted({o['class'] for o in objects}, key=CLASSES.index)
    cls = _pick(rng, present) if present and rng.random() < 0.5 else _pick(rng, CLASSES)
    ids = [o['id'] for o in objects if o['class'] == cls]
    n = len(ids)
    answer = (f'There are no {PLURALS[cls]}.' if n == 0 else f'There is 1 {cls}.' if n == 1
              else f'There are {n} {PLURALS[cls]}.')
    return _turn('count', _ask(rng, 'count', classes=PLURALS[cls]), answer, subject={'class': cls}, objects=ids)


def _colour(obj, rng):
    return _turn('colour', _ask(rng, 'colour', cls=obj['class']), f"The {obj['class']} is {obj['colour']}.",
                 subject={'class': obj['class']}, objects=[obj['id']])


def _exists(objects, rng):
    """Yes and no with even odds; a 'no' names a colour + class pair absent from the picture."""
    shown = {thing(o) for o in objects}
    if objects and rng.random() < 0.5:
        obj = _pick(rng, objects)
        colour, cls, ids = obj['colour'], obj['class'], [o['id'] for o in objects if thing(o) == thing(obj)]
    else:
        absent = [(c, k) for k in CLASSES for c in COLOUR_NAMES if f'{c} {k}' not in shown]
        colour, cls = _pick(rng, absent)
        ids = []
    words = f'{colour} {cls}'
    answer = f'Yes, there is {with_article(words)}.' if ids else f'No, there is no {words}.'
    return _turn('exists', _ask(rng, 'exists', a_thing=with_article(words)), answer,
                 subject={'colour': colour, 'class': cls}, objects=ids)


def _where(obj, rng):
    return _turn('where', _ask(rng, 'where', thing=thing(obj)), f'The {thing(obj)} is {location(obj)}.',
                 subject=_subject(obj), objects=[obj['id']])


# --- Task turns ---

def task_items(annotation, rng):
    """One turn per task the picture allows, each in its official template."""
    objects = annotation['objects']
    turns = [_detection(objects, rng), _semantic(objects, rng), _generation(objects, rng)]
    expressions = grounding_expressions(annotation)
    if expressions:
        expression, obj = expressions[int(rng.integers(len(expressions)))]
        turns.append(_turn('grounding', **grounding(expression), objects=[obj['id']], phrases=[expression]))
    if any(o['class'] == 'person' for o in objects):
        turns.append(pose_turn(objects))
    editable = unique_things(objects)
    if editable:
        turns.append(_editing(_pick(rng, editable), objects, rng))
    if objects:
        count = int(rng.integers(1, min(MAX_REGIONS, len(objects)) + 1))
        marked = [objects[int(k)]['id'] for k in rng.permutation(len(objects))[:count]]
        turns.append(_turn('regions', **regions(count), objects=marked,
                           phrases=[f'region{i + 1}' for i in range(count)]))
    return turns


def _asked_classes(objects, rng):
    """Every class present plus a random few absent ones, in random order."""
    present = [c for c in CLASSES if any(o['class'] == c for o in objects)]
    absent = [c for c in CLASSES if c not in present]
    extra = [absent[int(k)] for k in rng.permutation(len(absent))[:int(rng.integers(0, len(absent) + 1))]]
    if not present and not extra:
        extra = [absent[int(rng.integers(len(absent)))]]
    chosen = present + extra
    return [chosen[int(k)] for k in rng.permutation(len(chosen))]


def _detection(objects, rng):
    classes = _asked_classes(objects, rng)
    return _turn('detection', **detection(classes), objects=[o['id'] for o in objects if o['class'] in classes],
                 phrases=classes)


def _semantic(objects, rng):
    classes = _asked_classes(objects, rng)
    return _turn('semantic', **semantic(classes), objects=[o['id'] for o in objects if o['class'] in classes],
                 phrases=classes)


def _generation(objects, rng):
    """A caption of this very picture, so the generator's training pairs stay true to the world."""
    listed = object_list(objects) if objects else 'nothing'
    caption = PARAPHRASES['caption'][int(rng.integers(len(PARAPHRASES['caption'])))].format(objects=listed)
    return _turn('generation', **generation(caption), objects=[o['id'] for o in objects], phrases=[])


def _editing(obj, objects, rng):
    """Recolour one object; named by class alone when its class is unique, else by colour + class."""
    name = obj['class'] if obj in unique_classes(objects) and rng.random() < 0.5 else thing(obj)
    colour = _pick(rng, [c for c in COLOUR_NAMES if c != obj['colour']])
    form = PARAPHRASES['edit'][int(rng.integers(len(PARAPHRASES['edit'])))]
    return _turn('editing', **editing(form.format(thing=name, colour=colour)), objects=[obj['id']], phrases=[],
                 subject=_subject(obj), colour=colour)


def grounding_expressions(annotation):
    """(expression, object) pairs naming exactly one object: 'red star', 'star', 'person on the left'."""
    objects = annotation['objects']
    w, h = annotation['width'], annotation['height']
    pairs = [(thing(o), o) for o in unique_things(objects)]
    pairs += [(o['class'], o) for o in unique_classes(objects)]
    for cls in CLASSES:
        same = [o for o in objects if o['class'] == cls]
        if len(same) < 2:
            continue
        # A side names one of several only when it alone is on that side and none is a close call.
        for axis, key, words in (('x', 'horizontal', {'left': 'on the left', 'right': 'on the right'}),
                                 ('y', 'vertical', {'top': 'at the top', 'bottom': 'at the bottom'})):
            if not all(clear_of_thirds(o, w, h, axes=(axis,)) for o in same):
                continue
            for o in same:
                side = o['position'][key]
                if side in words and sum(p['position'][key] == side for p in same) == 1:
                    pairs.append((f'{cls} {words[side]}', o))
    return pairs


# --- One picture ---

def conversation(annotation, rng):
    """Every VQA and task turn of one picture, in random order."""
    turns = vqa_items(annotation, rng) + task_items(annotation, rng)
    return [turns[int(k)] for k in rng.permutation(len(turns))]


def region_captions(annotation, rng, count=MAX_REGIONS):
    """Up to `count` region-captioning turns: a mostly visible object's box (`box`, the `<region>`) and
    its colour and class, in the describe answer's form ("I see a red circle."), which the LLM already
    gives: the region encoder learns with the LLM frozen (scripts/train/regions.py)."""
    shown = [o for o in annotation['objects'] if o['visible_area'] >= REGION_VISIBLE * o['area']]
    picked = [shown[int(k)] for k in rng.permutation(len(shown))[:count]]
    return [_turn('region', _ask(rng, 'region'), f'I see {with_article(thing(o))}.', box=o['box'], subject=_subject(o),
                  objects=[o['id']]) for o in picked]


def region_rng(seed, index):
    return np.random.default_rng([seed, index, REGION_STREAM])


def conversation_rng(seed, index):
    return np.random.default_rng([seed, index, CONVERSATION_STREAM])


def pose_turn(objects):
    """The pose turn for the person class and COCO's 17 keypoints, naming the picture's people."""
    people = [o['id'] for o in objects if o['class'] == 'person']
    return _turn('pose', **pose(['person'], POSE_KEYPOINTS), objects=people, phrases=['person', *POSE_KEYPOINTS])


def _turn(kind, question, answer, **facts):
    return {'type': kind, 'question': question, 'answer': answer, **facts}


def _ask(rng, kind, **words):
    pool = PARAPHRASES[kind]
    return pool[int(rng.integers(len(pool)))].format(**words)


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _subject(obj):
    return {'colour': obj['colour'], 'class': obj['class']}


def main():
    args = picture_range_args(__doc__)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open('w') as f:
        for index in range(args.first, args.first + args.count):
            _, annotation = render_picture(args.seed, index)
            turns = conversation(annotation, conversation_rng(args.seed, index))
            regions = region_captions(annotation, region_rng(args.seed, index))
            f.write(json.dumps({'seed': args.seed, 'index': index, 'turns': turns, 'regions': regions}, separators=(',', ':')) + '\n')
    print(f'{args.count} conversations -> {args.out}')


if __name__ == '__main__':
    main()
