"""The tiny checkpoint's UniPose (weights/tiny/, unipose.*) and its end-to-end golden
(test/golden/unipose_tiny.safetensors).

install() rewrites weights/tiny/model.safetensors and config.json in place, deterministically and
idempotently, as tiny_detector.py does for Grounding DINO: every tensor that is not UniPose's keeps
its bytes, UniPose's previous tensors are dropped except the super link's projections
(projection_llava, projection_kpt_llava, made by tiny_visionllm.py), and the rest of the pose decoder
(reference_unipose.UniPose at POSE, seeded random weights, stored as F16 to keep the checkpoint
small; the index buffers as I64 like torch's) is added under the release's names, each shared
head once (test/golden/unipose.safetensors and the release layout test the aliases). config.json's unipose_config gains the decoder's keys after the ones it has.

The golden: the scene test image (test/fixtures/images/scene.png) with 'Please detect the keypoints
of the person in the image.' and the teacher-forced official-format answer naming the person with a
[DET] block and the 17 COCO keypoints with [POSE] blocks, through the tiny MLLM and the super link
(superlink.teacher_forced), then UniPose's DETR input and the composed decoder, in float64: the
projected text, the last layer's outputs and the post-processed instances in original pixels.
"""
import json
import os
import time

import torch

import reference_unipose as R
import reference_unipose_pose as P
import release_layout as L
import tiny_visionllm as tiny
from unipose_image import get_size_with_aspect_ratio

SEED = 23
DTYPE = torch.float16
POSE = dict(
    backbone_config=dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7),
    return_interm_indices=[1, 2, 3], hidden_dim=256, nheads=8, enc_layers=1, dec_layers=2, num_box_decoder_layers=1,
    dim_feedforward=64, num_feature_levels=4, enc_n_points=2, dec_n_points=2, num_queries=30, num_group=10,
    num_body_points=68, pe_temperatureH=20, pe_temperatureW=20, l_hidden_size=tiny.LLM['hidden_size'],
    dec_pred_bbox_embed_share=True,
)
KEEP = ('unipose.projection_llava.', 'unipose.projection_kpt_llava.')  # the super link's projections

IMAGE = 'scene.png'
QUESTION = 'Please detect the keypoints of the person in the image.'
COCO_KEYPOINTS = ['nose', 'left eye', 'right eye', 'left ear', 'right ear', 'left shoulder', 'right shoulder', 'left elbow',
                  'right elbow', 'left wrist', 'right wrist', 'left hip', 'right hip', 'left knee', 'right knee', 'left ankle',
                  'right ankle']
ANSWER = ('There is person[DET] in the image. The image analysis reveals the location of '
          + ', '.join(f'{k}[POSE]' for k in COCO_KEYPOINTS) + '.')
TOPK = 5
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def pose_state(existing):
    """UniPose's tensors (release names under unipose.) other than the checkpoint's own projections, each
    shared module once (its first name; the loader reads those and frees any aliases a checkpoint holds)."""
    model = R.UniPose(POSE)
    R.randomize(model, SEED)
    with torch.no_grad():
        # Random heads on layer-normed states give logits of tens: every top score would be sigmoid's 1.0,
        # and the top-k order a tie. A smaller final norm keeps the scores distinct.
        model.transformer.decoder.norm.weight.mul_(0.1)
    out = {}
    state = model.state_dict()
    for k in canonical_names(state):
        v = state[k]
        name = 'unipose.' + k
        if name.startswith(KEEP):
            assert tuple(existing[name].shape) == tuple(v.shape), f'{name}: checkpoint {tuple(existing[name].shape)}, decoder {tuple(v.shape)}'
            continue
        out[name] = v.to(DTYPE) if v.is_floating_point() else v.clone()
    return out


def canonical_names(state):
    """One name per tensor: the one the loader reads (a top-level head's index 0, not transformer.decoder.*)."""
    return [min(names, key=lambda n: (n.startswith('transformer.decoder.') and len(names) > 1, n)) for names in L.shared_groups(state)]


def install(directory=tiny.TINY_DIR):
    """Adds the pose decoder to the checkpoint in `directory` (model.safetensors, config.json); returns the tensors added."""
    import superlink
    return superlink.replace_decoder(directory, 'unipose.', KEEP, pose_state, 'unipose_config', POSE, ('hidden_dim', 'l_hidden_size'))


def load_pose(params, config):
    model = R.UniPose(config['unipose_config']).double().eval()
    stored = {k[len('unipose.'):]: v.double() if v.is_floating_point() else v for k, v in params.items() if k.startswith('unipose.')}
    state = {}
    for names in L.shared_groups(model.state_dict()):  # every slot of a shared head from its one stored name
        [have] = [n for n in names if n in stored]
        state.update({n: stored[have] for n in names})
    model.load_state_dict(state, strict=True)
    return model


def detr_input(image):
    """coco_pose_llava.py's val transform and the size-32 padding (decoders.md B.2), as unipose_image.py."""
    import torchvision.transforms.functional as F
    oh, ow = get_size_with_aspect_ratio(image.size, 800, 1333)
    chw = F.normalize(F.to_tensor(F.resize(image, (oh, ow))), MEAN, STD).double()
    hp, wp = -(-oh // 32) * 32, -(-ow // 32) * 32
    pixels = torch.zeros(1, 3, hp, wp, dtype=torch.float64)
    pixels[0, :, :oh, :ow] = chw
    mask = torch.ones(1, hp, wp, dtype=torch.bool)
    mask[:, :oh, :ow] = False
    return pixels, mask, (oh, ow)


def generate():
    from PIL import Image

    import superlink
    clock = {}
    t = time.time()
    size = superlink.install_decoder(install, 'tiny pose decoder')
    clock['install'] = time.time() - t

    t = time.time()
    params, config, sp, added_tokens = superlink.checkpoint()
    p64 = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}
    path = os.path.join(tiny.IMAGE_DIR, IMAGE)
    image = Image.open(path).convert('RGB')
    tiles, proj = superlink.image_tokens(p64, config, image)
    model = load_pose(params, config)
    pixels, mask, img = detr_input(image)
    ori = (image.size[1], image.size[0])
    clock['load'] = time.time() - t

    t = time.time()
    ids, spliced, blocks, hidden, conds = superlink.teacher_forced(params=p64, config=config, sp=sp, added=added_tokens, proj=proj,
                                                                   tiles=len(tiles), question=QUESTION, answer=ANSWER)
    clock['mllm'] = time.time() - t
    t = time.time()
    objects = torch.stack([hidden[b[2]] for b in blocks if b[1] == '[DET]'])
    keypoints = torch.stack([hidden[b[2]] for b in blocks if b[1] == '[POSE]'])
    with torch.no_grad():
        out = model(pixels, mask, objects, keypoints)
    # The decoder's projections are the super link's.
    assert (out['obj'] - conds['objects']).abs().max().item() < 1e-12
    assert (out['kpt'][: len(COCO_KEYPOINTS)] - conds['keypoints']).abs().max().item() < 1e-12
    scores, labels, boxes, kps = P.post_process_pose(out['logits'][None], out['boxes'][None], out['keypoints'][None],
                                                     torch.tensor([ori], dtype=torch.float64), num_classes=objects.shape[0],
                                                     topk=TOPK, num_body_points=len(COCO_KEYPOINTS))
    queries = torch.topk(out['logits'][:, : objects.shape[0]].sigmoid().reshape(-1), TOPK)[1] // objects.shape[0]
    clock['decoder'] = time.time() - t
    tensors = {
        'ids': torch.tensor(ids, dtype=torch.int32),
        'objects': out['obj'].float(),
        'keypoint_text': out['kpt'].float(),
        'topk': out['topk'].to(torch.int32),
        'groups': out['groups'].to(torch.int32),
        'logits': out['logits'].float(),
        'boxes': out['boxes'].float(),
        'keypoints': out['keypoints'].float(),
        'scores': scores[0].float(),
        'labels': labels[0].to(torch.int32),
        'queries': queries.to(torch.int32),
        'det_boxes': boxes[0].float(),
        'det_keypoints': kps[0].float(),
    }
    select_gap = superlink.score_gap(out['selection_scores'], POSE['num_queries'])
    group_gap = superlink.score_gap(out['group_scores'], POSE['num_group'])
    print(f'unipose_tiny: {len(blocks)} blocks, groups {out["groups"].tolist()}, top-{TOPK} scores '
          f'{[round(s, 4) for s in scores[0].tolist()]}, selection gap {select_gap:.2e}, group gap {group_gap:.2e}')
    print('unipose_tiny timings (s): ' + ', '.join(f'{k} {v:.1f}' for k, v in clock.items()))
    metadata = {
        'question': QUESTION,
        'answer': ANSWER,
        'keypoint_names': json.dumps(COCO_KEYPOINTS),
        'topk': str(TOPK),
        'config': json.dumps(config['unipose_config']),
        'image': json.dumps(dict(file=IMAGE, ori=list(ori), img=list(img), pad=list(pixels.shape[2:]))),
        'select_gap': str(select_gap),
        'group_gap': str(group_gap),
        'checkpoint_bytes': str(size),
    }
    return {'unipose_tiny': (tensors, metadata)}
