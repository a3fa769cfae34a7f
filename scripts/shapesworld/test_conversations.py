"""Checks ShapesWorld conversations against their pictures: python3 -P scripts/shapesworld/test_conversations.py

Plain Python, not pytest: prints each broken rule and the question-type distribution, exits 1 when
any rule is broken. The truth of each answer is recomputed here from the annotation, with the
rules written out again (thirds, margins, plurals), not read from conversations.py.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.shapesworld import conversations as C  # noqa: E402
from scripts.shapesworld.world import render_picture  # noqa: E402

SEED = 20261207
PICTURES = 300
CLASSES = ('circle', 'square', 'triangle', 'star', 'person')
PLURAL = {'circle': 'circles', 'square': 'squares', 'triangle': 'triangles', 'star': 'stars', 'person': 'people'}
NUMBERS = {2: 'two', 3: 'three', 4: 'four', 5: 'five', 6: 'six'}
POSITION_MARGIN = 0.05       # of the side: no "where" for a centre this near a third line
LARGEST_MARGIN = 1.2         # by area and by visible area
MIN_PARAPHRASES = 5
MIN_SHARE = {'describe': 0.99, 'count': 0.99, 'exists': 0.99, 'colour': 0.5, 'where': 0.4, 'largest': 0.25}
YES_SHARE = (0.40, 0.60)
REGION_VISIBLE = 0.6         # a region caption's object shows at least this share of its area
MAX_REGION_CAPTIONS = 3
TOKENS = {'detection': '[DET]', 'semantic': '[SEG]', 'grounding': '[GRD]', 'pose': '[POSE]',
          'generation': '[GEN]', 'editing': '[EDIT]', 'regions': '[DET]'}
DIST_TEMPLATES = ROOT / 'dist' / 'src' / 'model' / 'tasks' / 'templates.js'
SRC_TEMPLATES = ROOT / 'src' / 'model' / 'tasks' / 'templates.ts'


def name(o):
    return f"{o['colour']} {o['class']}"


def article(words):
    return ('an ' if words[0] in 'aeiou' else 'a ') + words


def thirds(value, side):
    return 0 if value < side / 3 else 2 if value > 2 * side / 3 else 1


def near_third(value, side):
    return min(abs(value - side / 3), abs(value - 2 * side / 3)) < POSITION_MARGIN * side


def location_words(o, w, h):
    col = ('left', 'centre', 'right')[thirds(o['centre'][0], w)]
    row = ('top', 'centre', 'bottom')[thirds(o['centre'][1], h)]
    if col == row == 'centre':
        return 'in the centre'
    if row == 'centre':
        return f'on the {col}'
    if col == 'centre':
        return f'at the {row}'
    return f'at the {row} {col}'


def check_vqa(turn, ann, expect):
    objects, w, h = ann['objects'], ann['width'], ann['height']
    kind, q, a = turn['type'], turn['question'], turn['answer']
    names = Counter(name(o) for o in objects)
    classes = Counter(o['class'] for o in objects)
    subject = turn.get('subject', {})
    if kind == 'describe':
        expect(a.startswith('I see ') and a.endswith('.'), f'describe form: {a}')
        items = re.split(r', | and ', a[len('I see '):-1])
        expect(len(items) == len(names), f'describe names {len(items)} groups for {len(names)}: {a}')
        for thing, n in names.items():
            colour, cls = thing.split(' ')
            words = article(thing) if n == 1 else f'{NUMBERS[n]} {colour} {PLURAL[cls]}'
            expect(words in items, f'describe misses {words}: {a}')
        expect(C.described_things(a) == sorted(name(o) for o in objects), f'described_things({a})')
    elif kind == 'count':
        cls = subject['class']
        n = classes[cls]
        expect(PLURAL[cls] in q, f'count question without {PLURAL[cls]}: {q}')
        want = f'There are no {PLURAL[cls]}.' if n == 0 else f'There is 1 {cls}.' if n == 1 else f'There are {n} {PLURAL[cls]}.'
        expect(a == want, f'count {a} for {n} {cls}')
    elif kind == 'colour':
        cls = subject['class']
        expect(classes[cls] == 1, f'colour of the {cls} asked with {classes[cls]} of them')
        expect(f'the {cls}' in q, f'colour question: {q}')
        same = [o for o in objects if o['class'] == cls]
        expect(same and a == f"The {cls} is {same[0]['colour']}.", f'colour answer {a}')
    elif kind == 'exists':
        thing = f"{subject['colour']} {subject['class']}"
        expect(article(thing) in q, f'exists question: {q}')
        want = f'Yes, there is {article(thing)}.' if names[thing] else f'No, there is no {thing}.'
        expect(a == want, f'exists {a} with {names[thing]} {thing}')
    elif kind == 'where':
        thing = f"{subject['colour']} {subject['class']}"
        expect(names[thing] == 1, f'where asked of {names[thing]} {thing}')
        expect(f'the {thing}' in q, f'where question: {q}')
        o = next(o for o in objects if name(o) == thing)
        expect(not near_third(o['centre'][0], w) and not near_third(o['centre'][1], h),
               f"where asked near a third line: centre {o['centre']} in {w}x{h}")
        expect(a == f'The {thing} is {location_words(o, w, h)}.', f'where answer {a} for centre {o["centre"]}')
    elif kind == 'largest':
        ranked = sorted(objects, key=lambda o: -o['area'])
        big = ranked[0]
        for other in ranked[1:]:
            expect(big['area'] >= LARGEST_MARGIN * other['area'], f'largest asked with areas {big["area"]}, {other["area"]}')
            expect(big['visible_area'] >= LARGEST_MARGIN * other['visible_area'],
                   f'largest asked with visible areas {big["visible_area"]}, {other["visible_area"]}')
        expect(names[name(big)] == 1, f'largest {name(big)} is not unique')
        expect(a == f'The {name(big)} is the largest.', f'largest answer {a}, want {name(big)}')
    else:
        expect(False, f'unknown type {kind}')


def routed_phrases(answer, token):
    """The names before each routing token, in order: 'a[T], b[T]' -> ['a', 'b']."""
    names = []
    for piece in answer.split(token)[:-1]:
        # A name runs back to the list's comma or to the lead-in word before the first one.
        names.append(re.split(r', | for | of | are ', piece)[-1])
    return names


def grounded_objects(expression, ann):
    """The objects an expression names, recomputed from its words."""
    objects, w, h = ann['objects'], ann['width'], ann['height']
    m = re.fullmatch(r'(\w+) (on the|at the) (left|right|top|bottom)', expression)
    if m:
        cls, side = m.group(1), m.group(3)
        same = [o for o in objects if o['class'] == cls]
        axis = 0 if side in ('left', 'right') else 1
        side_of = {'left': 0, 'top': 0, 'right': 2, 'bottom': 2}[side]
        if any(near_third(o['centre'][axis], (w, h)[axis]) for o in same):
            return []  # a close call: reject the expression
        return [o for o in same if thirds(o['centre'][axis], (w, h)[axis]) == side_of]
    words = expression.split(' ')
    if len(words) == 1:
        return [o for o in objects if o['class'] == words[0]]
    return [o for o in objects if name(o) == expression]


def check_task(turn, ann, expect):
    objects = ann['objects']
    kind, phrases = turn['type'], turn['phrases']
    token = TOKENS[kind]
    built = {'detection': lambda: C.detection(phrases), 'semantic': lambda: C.semantic(phrases),
             'grounding': lambda: C.grounding(phrases[0]), 'pose': lambda: C.pose(phrases[:1], phrases[1:]),
             'regions': lambda: C.regions(len(phrases)), 'generation': lambda: None, 'editing': lambda: None}[kind]()
    if built is not None:
        expect(built == {'question': turn['question'], 'answer': turn['answer']}, f'{kind} is not its template: {turn}')
    present = {o['class'] for o in objects}
    if kind in ('detection', 'semantic'):
        expect(present <= set(phrases), f'{kind} leaves out a present class: {phrases} for {present}')
        expect(len(set(phrases)) == len(phrases) and set(phrases) <= set(CLASSES), f'{kind} classes {phrases}')
        expect(routed_phrases(turn['answer'], token) == phrases, f'{kind} routes {turn["answer"]}')
    elif kind == 'pose':
        expect('person' in present and phrases[0] == 'person', f'pose without a person: {present}')
        expect(routed_phrases(turn['answer'], '[DET]') == ['person'], f'pose detection block {turn["answer"]}')
        expect(routed_phrases(turn['answer'], '[POSE]') == list(C.POSE_KEYPOINTS), 'pose keypoint blocks')
    elif kind == 'grounding':
        found = grounded_objects(phrases[0], ann)
        expect([o['id'] for o in found] == turn['objects'], f'grounding "{phrases[0]}" names {len(found)} objects')
        expect(turn['answer'].count('[GRD]') == 1, 'grounding routing')
    elif kind == 'regions':
        expect(routed_phrases(turn['answer'], token) == [f'region{i + 1}' for i in range(len(phrases))], 'regions routing')
        expect(1 <= len(turn['objects']) == len(set(turn['objects'])) == len(phrases), 'regions objects')
    elif kind == 'generation':
        expect(turn['question'].startswith('Generate image with caption: ') and turn['answer'] == 'Here it is [GEN].',
               f'generation template {turn}')
        for o in objects:
            expect(f"{o['colour']} " in turn['question'] and (o['class'] in turn['question'] or PLURAL[o['class']] in turn['question']),
                   f'caption misses {name(o)}: {turn["question"]}')
    elif kind == 'editing':
        instruction = turn['question'][len('Edit the image according to the caption: '):-1]
        expect(C.editing(instruction) == {'question': turn['question'], 'answer': turn['answer']}, f'editing template {turn}')
        target = objects[turn['objects'][0]]
        named = [o for o in objects if name(o) == name(target)]
        expect(len(named) == 1, f'editing target {name(target)} not unique')
        expect(turn['colour'] != target['colour'] and instruction.rstrip('.').endswith(f" {turn['colour']}"),
               f'editing colour: {instruction}')
        expect(f"the {target['class']}" in instruction or f"the {name(target)}" in instruction, f'editing names: {instruction}')
        if f"the {target['class']} " in instruction:
            expect(sum(o['class'] == target['class'] for o in objects) == 1, f'editing by class alone: {instruction}')
    # One routing token per name asked, none of the others.
    for other in set(TOKENS.values()):
        want = {'pose': {'[DET]': 1, '[POSE]': len(C.POSE_KEYPOINTS)}}.get(kind, {token: len(phrases) or 1})
        expect(turn['answer'].count(other) == want.get(other, 0), f'{kind} has {turn["answer"].count(other)} {other}')


def check_regions(turns, ann, expect):
    """Region captions: distinct, mostly visible objects, each its own box, named in the describe form."""
    by_id = {o['id']: o for o in ann['objects']}
    shown = [o for o in ann['objects'] if o['visible_area'] >= REGION_VISIBLE * o['area']]
    expect(len(turns) == min(MAX_REGION_CAPTIONS, len(shown)), f'{len(turns)} region captions for {len(shown)} shown objects')
    expect(len({t['objects'][0] for t in turns}) == len(turns), 'an object captioned twice')
    for t in turns:
        o = by_id[t['objects'][0]]
        expect(o['visible_area'] >= REGION_VISIBLE * o['area'], f'region caption of a hidden object: {t}')
        expect(t['box'] == o['box'], f'region box {t["box"]} is not the object\'s {o["box"]}')
        expect(t['answer'] == f'I see {article(name(o))}.', f'region answer {t["answer"]!r} for {name(o)}')
        expect(t['question'].count('<region>') == 1 and t['question'] in C.PARAPHRASES['region'], f'region question {t["question"]!r}')


def check_paraphrases(questions, expect):
    for kind in C.VQA_TYPES:
        pool = C.PARAPHRASES[kind]
        expect(len(set(pool)) >= MIN_PARAPHRASES, f'{kind}: only {len(set(pool))} paraphrases')
        forms = set()
        for q in questions[kind]:
            matched = [p for p in pool if re.fullmatch(re.sub(r'\\\{\w+\\\}', '.+', re.escape(p)), q)]
            expect(matched, f'{kind} question from no paraphrase: {q}')
            forms.update(matched)
        expect(len(forms) >= MIN_PARAPHRASES, f'{kind}: only {len(forms)} paraphrases used')


def check_determinism(ann, expect):
    a = C.conversation(ann, C.conversation_rng(SEED, 0))
    b = C.conversation(ann, C.conversation_rng(SEED, 0))
    expect(a == b, 'conversation differs for the same rng')
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for k in range(2):
            out = Path(tmp) / f'{k}.jsonl'
            subprocess.run([sys.executable, '-P', str(ROOT / 'scripts/shapesworld/conversations.py'), '--seed', str(SEED),
                            '--first', '5', '--count', '3', '--out', str(out)], check=True, capture_output=True)
            runs.append(out.read_bytes())
        expect(runs[0] == runs[1], 'the CLI writes different bytes for the same seed')
        lines = [json.loads(line) for line in runs[0].decode().splitlines()]
        expect([(d['seed'], d['index']) for d in lines] == [(SEED, 5), (SEED, 6), (SEED, 7)], 'CLI seeds and indices')
        expect(lines[0]['turns'] == C.conversation(render_picture(SEED, 5)[1], C.conversation_rng(SEED, 5)),
               'CLI turns differ from conversation()')
        expect(lines[0]['regions'] == C.region_captions(render_picture(SEED, 5)[1], C.region_rng(SEED, 5)),
               'CLI regions differ from region_captions()')


# Inputs for the cross-language check: punctuation, case and dots exercise the caption and
# instruction clean-ups; one- and many-name lists exercise the joins.
CROSS_CASES = [
    ('detection', [['star']]), ('detection', [['circle', 'person', 'triangle']]),
    ('semantic', [['Star', 'square']]), ('semantic', [['person']]),
    ('grounding', ['red star']), ('grounding', ['person on the left']),
    ('pose', [['person'], list(C.POSE_KEYPOINTS)]), ('pose', [['person'], ['nose', 'left eye']]),
    ('generation', ['A red star: two (green) circles; and... a person!!  ~ "ok" #1*']),
    ('generation', ['a picture of an orange person\n\n']),
    ('editing', ['  Make the star BLUE..  ']), ('editing', ['.colour the red star white.']),
    ('regions', [1]), ('regions', [3]),
]
TS_NAMES = {'detection': 'detectionConversation', 'semantic': 'semanticConversation', 'grounding': 'groundingConversation',
            'pose': 'poseConversation', 'generation': 'generationConversation', 'editing': 'editingConversation',
            'regions': 'regionsConversation'}


def check_typescript(expect):
    if not DIST_TEMPLATES.exists() or DIST_TEMPLATES.stat().st_mtime < SRC_TEMPLATES.stat().st_mtime:
        expect(False, f'{DIST_TEMPLATES.relative_to(ROOT)} is missing or older than its source: run npx tsc -p .')
        return 0
    script = ("import(process.argv[1]).then((m) => { const cases = JSON.parse(process.argv[2]);"
              " const names = JSON.parse(process.argv[3]);"
              " console.log(JSON.stringify(cases.map(([k, args]) => m[names[k]](...args)))); })")
    result = subprocess.run(['node', '-e', script, DIST_TEMPLATES.as_uri(), json.dumps(CROSS_CASES), json.dumps(TS_NAMES)],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ})
    expect(result.returncode == 0, f'node failed: {result.stderr.strip()}')
    if result.returncode:
        return 0
    for (kind, args), ts in zip(CROSS_CASES, json.loads(result.stdout)):
        py = getattr(C, kind)(*args)
        expect(py == ts, f'{kind}{tuple(args)}: Python {py} != TypeScript {ts}')
    return len(CROSS_CASES)


def main():
    start = time.perf_counter()
    errors = []

    def expect(ok, message):
        if not ok:
            errors.append(message)

    types, pictures_with, questions, answers_yes = Counter(), Counter(), {k: [] for k in C.VQA_TYPES}, Counter()
    for index in range(PICTURES):
        _, ann = render_picture(SEED, index)
        turns = C.conversation(ann, C.conversation_rng(SEED, index))
        where = f'{SEED}-{index}'
        for turn in turns:
            def expect_here(ok, message, where=where):
                expect(ok, f'{where}: {message}')
            types[turn['type']] += 1
            if turn['type'] in C.VQA_TYPES:
                questions[turn['type']].append(turn['question'])
                check_vqa(turn, ann, expect_here)
            else:
                check_task(turn, ann, expect_here)
            if turn['type'] == 'exists':
                answers_yes[turn['answer'].startswith('Yes')] += 1
        for kind in {t['type'] for t in turns}:
            pictures_with[kind] += 1
        captions = C.region_captions(ann, C.region_rng(SEED, index))
        types['region'] += len(captions)
        pictures_with['region'] += bool(captions)
        check_regions(captions, ann, lambda ok, message, where=where: expect(ok, f'{where}: {message}'))
        expect(len(turns) == len({t['type'] for t in turns}), f'{where}: a type asked twice')
        expect('person' not in {o['class'] for o in ann['objects']} or 'pose' in {t['type'] for t in turns},
               f'{where}: a person but no pose turn')
    for kind, share in MIN_SHARE.items():
        expect(pictures_with[kind] >= share * PICTURES, f'{kind} in only {pictures_with[kind]} of {PICTURES} pictures')
    yes = answers_yes[True] / max(1, sum(answers_yes.values()))
    expect(YES_SHARE[0] <= yes <= YES_SHARE[1], f'exists answers yes {yes:.0%}')
    check_paraphrases(questions, expect)
    check_determinism(render_picture(SEED, 0)[1], expect)
    compared = check_typescript(expect)

    total = sum(types.values())
    print(f'{PICTURES} pictures of seed {SEED}, {total} turns; turns by type (share of all turns, pictures with one):')
    for kind in C.VQA_TYPES + C.TASK_TYPES + ('region',):
        print(f'  {kind:<10} {types[kind]:>4}  {types[kind] / total:5.1%}  {pictures_with[kind] / PICTURES:6.1%}')
    print(f'exists answers yes {yes:.1%}; {compared} template cases equal in TypeScript; {time.perf_counter() - start:.1f} s')
    for e in errors[:50]:
        print('FAIL', e)
    if errors:
        print(f'{len(errors)} failures')
        sys.exit(1)
    print('ok')


if __name__ == '__main__':
    main()
