"""ShapesWorld data for the miniature: pictures cut into anyres tiles with stage 1's dense targets,
the tokenizer, and stage 2's packed conversation sequences.

A packed sequence is one picture's prefix (system prompt, USER:, the image) followed by several
turns, each of which attends only to the prefix and to itself and sits at the positions it would
have if asked alone: the model learns single questions (as chat() asks them) at the cost of one
image prefix per picture.
"""
import os
import sys

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'scripts', 'golden'))

import reference_mllm as ref  # noqa: E402
from tiny_visionllm import tokenize_chunked  # noqa: E402
from scripts.shapesworld.conversations import conversation  # noqa: E402
from scripts.shapesworld.world import decode_rle, render_picture  # noqa: E402
from miniature_model import (GRID, KINDS, MAX_TILES, PATCH, ROUTES, SPECIAL_TOKENS, SP_VOCAB, TILE,  # noqa: E402
                             kind_index)

IGNORE = -100
# Per packed sequence: the VQA turns of this many draws of the picture's conversation (other
# paraphrases, other things counted and asked about), and a few task turns, whose routing answers
# mostly copy the question. Seeing the picture is what is slow to learn, and the image prefix is
# most of a sequence's cost, so each prefix carries as many questions as it usefully can.
VQA_DRAWS = 2
TASK_TURNS = 2


def tile_array(image):
    """A PIL picture's anyres tiles as the model sees them, uint8 [n, T, T, 3] (pixels() normalises them)."""
    return np.stack([np.asarray(t.convert('RGB')) for t in ref.anyres_tiles(image, TILE, MAX_TILES)])


def picture_entry(seed, index):
    """One picture: uint8 tiles [n, T, T, 3] as the model sees them, and stage 1's targets."""
    image, annotation = render_picture(seed, index)
    pil = Image.fromarray(image)
    tiles = tile_array(pil)
    cols, rows = ref.tile_grid(pil.width, pil.height, TILE, MAX_TILES)
    cover, centre, size = dense_targets(annotation, cols, rows, len(tiles))
    for obj in annotation['objects']:
        del obj['mask']   # the targets hold what training needs of it; the pool stays a few GB
    return {'tiles': tiles, 'annotation': annotation,
            'cover': cover.astype(np.float16), 'centre': centre.astype(bool), 'size': size.astype(np.float16)}


def dense_targets(annotation, cols, rows, count):
    w, h = annotation['width'], annotation['height']
    objects = annotation['objects']
    owner = np.zeros((h, w), dtype=np.uint8)   # 0: background, k + 1: object k's visible pixels
    for k, obj in enumerate(objects):
        owner[decode_rle(obj['mask'])] = k + 1
    owner_image = Image.fromarray(owner)
    canvas = np.asarray(owner_image.resize((cols * TILE, rows * TILE), Image.NEAREST))
    views = [canvas[(i // cols) * TILE:(i // cols + 1) * TILE, (i % cols) * TILE:(i % cols + 1) * TILE]
             for i in range(cols * rows)]
    if count > 1:
        views.append(np.asarray(owner_image.resize((TILE, TILE), Image.NEAREST)))
    cover = np.zeros((count, GRID * GRID, KINDS), dtype=np.float32)
    centre = np.zeros((count, GRID * GRID, KINDS), dtype=np.float32)
    size = np.zeros((count, GRID * GRID), dtype=np.float32)
    biggest = max(obj['visible_area'] for obj in objects)
    for t, view in enumerate(views):
        patches = view.reshape(GRID, PATCH, GRID, PATCH).transpose(0, 2, 1, 3).reshape(GRID * GRID, -1)
        for k, obj in enumerate(objects):
            cover[t, :, kind_index(obj)] += (patches == k + 1).mean(1)
    for obj in objects:
        x0, y0, x1, y1 = obj['box']
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        spots = []
        gx, gy = cx * cols * TILE / w, cy * rows * TILE / h
        tile = min(int(gy // TILE), rows - 1) * cols + min(int(gx // TILE), cols - 1)
        spots.append((tile, gx % TILE, gy % TILE))
        if count > 1:
            spots.append((count - 1, cx * TILE / w, cy * TILE / h))
        for tile, px, py in spots:
            cell = min(int(py // PATCH), GRID - 1) * GRID + min(int(px // PATCH), GRID - 1)
            centre[tile, cell, kind_index(obj)] = 1
            size[tile, cell] = obj['visible_area'] / biggest
    return np.minimum(cover, 1), centre, size


def pixels(tiles):
    """uint8 tiles [n, T, T, 3] -> CLIP-normalised float [n, 3, T, T] (CLIPImageProcessor)."""
    a = torch.from_numpy(tiles).float() / 255.0
    a = (a - torch.tensor(ref.CLIP_MEAN)) / torch.tensor(ref.CLIP_STD)
    return a.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- tokenizer

def tokenizer_corpus(annotations):
    """The system prompt and every question and answer of these pictures (their epoch-0 draws)."""
    lines = [ref.SYSTEM + ' USER: ', 'ASSISTANT:']
    for annotation in annotations:
        seed, index = annotation['seed'], annotation['index']
        for turn in conversation(annotation, np.random.default_rng([seed, index, 1, 0])):
            lines.append(turn['question'] + ' ASSISTANT:')
            lines.append(turn['answer'])
    return lines


def train_tokenizer(directory, lines):
    """LLaMA's SentencePiece settings (BPE, byte fallback, split digits, identity normaliser, dummy
    prefix). Trains inside `directory` with relative names: the model file records its input path."""
    here = os.getcwd()
    os.chdir(directory)
    try:
        with open('corpus.txt', 'w') as f:
            f.write('\n'.join(lines) + '\n')
        spm.SentencePieceTrainer.train(
            input='corpus.txt', model_prefix='tokenizer', vocab_size=SP_VOCAB, model_type='bpe', byte_fallback=True,
            character_coverage=1.0, split_digits=True, normalization_rule_name='identity',
            remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
            user_defined_symbols=[], unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
        os.remove('corpus.txt')
    finally:
        os.chdir(here)
    return os.path.join(directory, 'tokenizer.model')


class Tokens:
    """Hugging Face's legacy LlamaTokenizer over SentencePiece plus VisionLLM's added tokens, as
    src/tokenizer/tokenizer.ts encodes: each stretch between added tokens on its own, dummy prefix each time."""

    def __init__(self, model_file):
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        self.added = {t: SP_VOCAB + i for i, t in enumerate(SPECIAL_TOKENS)}

    def encode(self, text):
        return tokenize_chunked(self.sp, self.added, text)


# ----------------------------------------------------------------------------- packed sequences

def pack(tokens, tile_count, turns, rng, splice_odds=0.5):
    """ids, targets, positions, the blocked attention pairs and the super link's query spans.

    The prefix is chat()'s prompt up to the image; each turn is '\\n<question> ASSISTANT:' then the
    answer and </s>. A routing token is followed by its query block with probability splice_odds (as
    the super link splices when a decoder is attached) and otherwise by the answer's next token (as
    generation goes on when none is): the answers read the same either way."""
    image_tokens = tile_count * GRID * GRID
    patch = tokens.added['<im_patch>']
    prefix = [1] + tokens.encode(ref.SYSTEM + ' USER: ')
    image_at = len(prefix)
    prefix += [patch] * image_tokens
    ids, targets, positions, segment = list(prefix), [IGNORE] * len(prefix), list(range(len(prefix))), [0] * len(prefix)
    queries = []
    for n, turn in enumerate(turns, start=1):
        question = tokens.encode('\n' + turn['question'] + ' ASSISTANT:')
        answer = tokens.encode(turn['answer']) + [2]
        seg_ids, seg_targets, seg_queries = list(question), [IGNORE] * (len(question) - 1), []
        seg_targets.append(answer[0])
        for j, token in enumerate(answer):
            seg_ids.append(token)
            route = next((ROUTES[t] for t, i in tokens.added.items() if i == token and t in ROUTES), None)
            if route and rng.random() < splice_odds:
                table, count = route
                seg_targets.append(IGNORE)
                seg_queries.append((len(seg_ids), table, count))
                seg_ids.extend(tokens.added['[EMB]'] for _ in range(count))
                seg_targets.extend([IGNORE] * (count - 1))
            seg_targets.append(answer[j + 1] if j + 1 < len(answer) else IGNORE)
        start = len(ids)
        ids += seg_ids
        targets += seg_targets
        positions += range(len(prefix), len(prefix) + len(seg_ids))
        segment += [n] * len(seg_ids)
        queries += [(start + at, table, count) for at, table, count in seg_queries]
    segment = torch.tensor(segment)
    index = torch.arange(len(ids))
    # A query may see a key before it in its own turn, or in the prefix.
    allowed = (index[None, :] <= index[:, None]) & ((segment[None, :] == segment[:, None]) | (segment[None, :] == 0))
    return {'ids': torch.tensor(ids), 'targets': torch.tensor(targets), 'positions': torch.tensor(positions),
            'blocked': ~allowed, 'image_at': image_at, 'queries': queries}


def training_turns(annotation, seed, index, epoch):
    """The VQA turns of VQA_DRAWS conversations of the picture (each question once) and TASK_TURNS
    task turns (regions left out: the miniature has no region encoder yet), drawn afresh each epoch."""
    rng = np.random.default_rng([seed, index, 1, epoch])
    vqa, tasks, asked = [], [], set()
    for _ in range(VQA_DRAWS):
        for turn in conversation(annotation, rng):
            if 'phrases' in turn:
                tasks.append(turn)
            elif turn['question'] not in asked:
                asked.add(turn['question'])
                vqa.append(turn)
    tasks = [t for t in tasks if t['type'] != 'regions']
    return vqa + tasks[:TASK_TURNS], rng
