"""Goldens of the super link (test/golden/superlink.safetensors), computed from the committed tiny
checkpoint (weights/tiny/, made by tiny_visionllm.py) with the PyTorch reference in
reference_superlink.py, in float64. Teacher-forced answers with the square test image:

  coco    the 80 COCO classes as [DET] blocks: 80 Grounding DINO class tokens
  mixed   [DET], [GEN] and [EDIT] blocks: det tokens and two [77, d] diffusion conditions
  pose    the official pose format (coco_pose_llava.py): the object class is a [DET] block, the
          keypoints are [POSE] blocks; UniPose takes both (decoders.md D1)
"""
import json
import os

import sentencepiece as spm
import torch

import common
import reference_mllm as ref
import reference_superlink as link
import tiny_visionllm as tiny

COCO = ['person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
        'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
        'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
        'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
        'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
        'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
        'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
        'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
        'scissors', 'teddy bear', 'hair drier', 'toothbrush']
DET_QUESTION = 'Please detect the objects in the image.'
MIXED_QUESTION = 'Find the people, and draw and edit a picture.'
MIXED_ANSWER = 'A person[DET] rides a bicycle[DET]. A red cat[GEN], now make it blue[EDIT].'
POSE_QUESTION = 'Please detect the keypoints of the person in the image.'
POSE_ANSWER = ('There is person[DET] in the image. The image analysis reveals the location of '
               'nose[POSE], left eye[POSE], right eye[POSE].')


def checkpoint():
    params = common.read_safetensors(os.path.join(tiny.TINY_DIR, 'model.safetensors'))
    with open(os.path.join(tiny.TINY_DIR, 'config.json')) as f:
        config = json.load(f)
    with open(os.path.join(tiny.TINY_DIR, 'added_tokens.json')) as f:
        added = json.load(f)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tiny.TINY_DIR, 'tokenizer.model'))
    return params, config, sp, added


def replace_decoder(directory, prefix, keep, make_state, config_key, values, checked):
    """Installs a tiny decoder into the checkpoint in `directory`, deterministically and idempotently: the
    tensors under `prefix` are dropped except those starting with `keep` (the super link's projections),
    make_state(params) gives the decoder's (added after the rest), and config.json's `config_key` takes
    `values` once the `checked` keys agree. Returns the tensors added."""
    path = os.path.join(directory, 'model.safetensors')
    params = common.read_safetensors(path)
    params = {k: v for k, v in params.items() if not k.startswith(prefix) or k.startswith(keep)}
    added = make_state(params)
    params.update(added)
    common.write_safetensors(path, params, {'format': 'pt'})
    config_path = os.path.join(directory, 'config.json')
    with open(config_path) as f:
        config = json.load(f)
    section = config[config_key]
    for key in checked:
        assert section[key] == values[key], f'{config_key}.{key} {section[key]} != the decoder\'s {values[key]}'
    section.update(values)
    with open(config_path, 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    return added


def install_decoder(install, what):
    """Runs a tiny decoder's installer on weights/tiny (tiny_detector.install, tiny_pose.install) and says what it added."""
    added = install()
    size = os.path.getsize(os.path.join(tiny.TINY_DIR, 'model.safetensors'))
    print(f'{what}: {len(added)} tensors, {sum(v.numel() for v in added.values()) / 1e6:.2f} M values added; '
          f'weights/tiny/model.safetensors {size / 2 ** 20:.2f} MiB')
    return size


def score_gap(values, k):
    """The smallest gap between consecutive values among the top k + 1, over the largest |value|: how far a
    top-k selection is from a tie."""
    top = torch.sort(values.reshape(-1), descending=True).values[: k + 1]
    return ((top[:-1] - top[1:]).min() / values.abs().max()).item()


def image_tokens(p64, config, image):
    """The anyres tiles of a PIL image and their projected CLIP features."""
    tiles = ref.anyres_tiles(image)
    pixels = torch.stack([ref.clip_pixels(t) for t in tiles]).to(torch.float64)
    _, proj = ref.image_features(p64, config, pixels)
    return tiles, proj


def teacher_forced(params, config, sp, added, proj, tiles, question, answer):
    """One teacher-forced answer through the tiny MLLM and the super link: the prompt ids, the spliced ids, the
    blocks, the final hidden states and the decoders' conditions (reference_superlink.project)."""
    # The answer continues the prompt's last piece, as in the training data: "... ASSISTANT: answer</s>".
    before, after = (ref.vicuna_prompt('<image>\n' + question) + ' ' + answer).split('<image>')
    ids = [1] + tiny.tokenize_chunked(sp, added, before) + [added['<im_patch>']] * (576 * tiles) + tiny.tokenize_chunked(sp, added, after) + [2]
    spliced, blocks, rows = link.splice(ids, added, params)
    embeds = link.embeddings(params, spliced, rows, proj, added['<im_patch>'])
    hidden = link.final_hidden(params, config, embeds)
    return ids, spliced, blocks, hidden, link.project(params, config, blocks, hidden)


def generate():
    params, config, sp, added = checkpoint()
    p64 = {k: v.to(torch.float64) for k, v in params.items()}
    tiles, proj = image_tokens(p64, config, tiny.test_image(300, 300))
    meta = {'det_question': DET_QUESTION, 'coco_answer': ', '.join(f'{c}[DET]' for c in COCO),
            'mixed_question': MIXED_QUESTION, 'mixed_answer': MIXED_ANSWER, 'pose_question': POSE_QUESTION, 'pose_answer': POSE_ANSWER}
    out = {}
    cases = (('coco', DET_QUESTION, meta['coco_answer']), ('mixed', MIXED_QUESTION, MIXED_ANSWER), ('pose', POSE_QUESTION, POSE_ANSWER))
    for name, question, answer in cases:
        ids, spliced, blocks, hidden, conds = teacher_forced(params=p64, config=config, sp=sp, added=added, proj=proj,
                                                             tiles=len(tiles), question=question, answer=answer)
        out[f'{name}.ids'] = torch.tensor(ids, dtype=torch.int32)
        out[f'{name}.spliced_ids'] = torch.tensor(spliced, dtype=torch.int32)
        out[f'{name}.first_block_hidden'] = hidden[blocks[0][2]]
        out[f'{name}.last_block_hidden'] = hidden[blocks[-1][2]]
        for key, c in conds.items():
            out[f'{name}.{key}'] = c
        print(f'superlink {name}: {len(spliced)} positions, {len(blocks)} blocks, ' + ', '.join(f'{k} {tuple(v.shape)}' for k, v in conds.items()))
    return {'superlink': (out, meta)}
