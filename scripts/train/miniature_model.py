"""The miniature VisionLLM v2: its config (official keys), its parameters (official names) and the
training forwards built on the golden reference modules (scripts/golden/reference_mllm.py).

The vision tower is a CLIP ViT on 224-pixel tiles cut into 28-pixel patches (8 x 8 tokens a tile);
the LLM a 4-layer LLaMA. Training-only heads (prefix `aux.`) read the vision features in stage 1
and are not exported.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'golden'))
import reference_mllm as ref  # noqa: E402

TILE = 224
PATCH = 28
GRID = TILE // PATCH
MAX_TILES = 4
SPECIAL_TOKENS = ['[PAD]', '<image>', '<im_patch>', '<region>', '<img>', '</img>', '<reg>', '</reg>',
                  '<det>', '</det>', '<grd>', '</grd>', '[DET]', '[GRD]', '[SEG]', '[POSE]', '[GEN]', '[EDIT]',
                  '[EMB]', '[EMB2]', '[EMB3]', '[EMB4]', '[EMB5]', '[EMB6]', '[EMB7]', '[EMB8]']
SP_VOCAB = 640
NUM_EMBS = 4
NUM_EMBS_GEN = 64
# Routing token -> the super link's query table (the official emb_embeddings_* names) and its size.
ROUTES = {'[DET]': ('emb_embeddings_det', NUM_EMBS), '[SEG]': ('emb_embeddings_det', NUM_EMBS),
          '[GRD]': ('emb_embeddings_det', NUM_EMBS), '[POSE]': ('emb_embeddings_pose', NUM_EMBS),
          '[GEN]': ('emb_embeddings_gen', NUM_EMBS_GEN), '[EDIT]': ('emb_embeddings_edit', NUM_EMBS_GEN)}

VISION = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=6,
              image_size=TILE, patch_size=PATCH, num_channels=3, hidden_act='quick_gelu', layer_norm_eps=1e-5,
              projection_dim=192, model_type='clip_vision_model', architectures=['CLIPVisionModel'])
LLM = dict(vocab_size=SP_VOCAB + len(SPECIAL_TOKENS), hidden_size=256, intermediate_size=704, num_hidden_layers=4,
           num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5,
           rope_theta=10000.0, hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
           pad_token_id=SP_VOCAB, model_type='llama', architectures=['LlamaForCausalLM'], torch_dtype='float32')
CONFIG = {
    'model_type': 'visionllmv2', 'architectures': ['VisionLLMv2Model'],
    'vis_encoder_config': VISION, 'llm_config': LLM,
    'pretrained_vl_bridge': None, 'use_llm_lora': False, 'vl_bridge_type': 'mlp2x_gelu',
    # The last layer's features: the tower is trained for the LLM, so no layer goes unused.
    'vis_output_layer': -1, 'use_pixelshuffle': False,
    'num_embs': NUM_EMBS, 'num_embs_gen': NUM_EMBS_GEN,
    # The decoders come with the decoders' training; until then the routing tokens are plain text.
    'use_region_encoder': False, 'use_gdino': False, 'use_unipose': False, 'use_sd': False, 'use_ip2p': False,
    'torch_dtype': 'float32', 'transformers_version': '4.32.0',
    'image_aspect_ratio': 'anyres', 'image_size': TILE, 'image_max_tile': MAX_TILES, 'conv_mode': 'vicuna_v1',
}

# Stage 1's dense targets, read from each patch's feature by a training-only linear head `aux`:
# which (class, colour) covers the patch or background (a distribution over KINDS + 1), and, where an
# object's box centre falls, which kind it is, that a centre is there, and the object's visible area
# over the picture's largest.
CLASSES = ('circle', 'square', 'triangle', 'star', 'person')
COLOURS = ('red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'black')
KINDS = len(CLASSES) * len(COLOURS)
AUX_OUTPUTS = (KINDS + 1) + KINDS + KINDS + 1
# Most patches are background: a patch's share of the cover loss is this plus its covered fraction,
# so the objects, not the background, decide what the features must say.
BACKGROUND_WEIGHT = 0.1


def kind_index(obj):
    return CLASSES.index(obj['class']) * len(COLOURS) + COLOURS.index(obj['colour'])


def init_params(seed):
    """Official names; GPT-2 style initialisation (normal 0.02, residual outputs scaled down)."""
    g = torch.Generator().manual_seed(seed)
    params = {}

    def normal(name, *shape, std=0.02):
        params[name] = torch.randn(*shape, generator=g) * std

    def const(name, *shape, value):
        params[name] = torch.full(shape, float(value))

    v, d, dv = 'vis_encoder.vision_model.', VISION['hidden_size'], VISION['intermediate_size']
    residual = 0.02 / math.sqrt(2 * VISION['num_hidden_layers'])
    normal(v + 'embeddings.class_embedding', d)
    normal(v + 'embeddings.patch_embedding.weight', d, 3, PATCH, PATCH, std=1 / math.sqrt(3 * PATCH * PATCH))
    # 2-D sine-cosine positions as large as the patch embeddings: a position at std 0.02 under
    # pre_layrnorm is lost next to the content, and the tower starts with no notion of neighbours.
    params[v + 'embeddings.position_embedding.weight'] = torch.cat([torch.zeros(1, d), sincos_positions(GRID, d)])
    for ln in ('pre_layrnorm', 'post_layernorm'):
        const(v + ln + '.weight', d, value=1)
        const(v + ln + '.bias', d, value=0)
    for i in range(VISION['num_hidden_layers']):
        p = f'{v}encoder.layers.{i}.'
        for ln in ('layer_norm1', 'layer_norm2'):
            const(p + ln + '.weight', d, value=1)
            const(p + ln + '.bias', d, value=0)
        for proj in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            const(p + f'self_attn.{proj}.bias', d, value=0)
        normal(p + 'self_attn.v_proj.weight', d, d)
        normal(p + 'self_attn.out_proj.weight', d, d, std=residual)
        # Mimetic initialisation (Trockman & Kolter, 2023): W_q W_k^T near the identity, so each patch
        # starts out attending to the patches most like it, its neighbours (by position) and the rest
        # of its object (by colour); small ViTs trained from scratch learn shapes sooner from there.
        qk = torch.eye(d) + torch.randn(d, d, generator=g) * 0.02
        params[p + 'self_attn.q_proj.weight'] = qk.clone()
        params[p + 'self_attn.k_proj.weight'] = qk.clone()
        normal(p + 'mlp.fc1.weight', dv, d)
        const(p + 'mlp.fc1.bias', dv, value=0)
        normal(p + 'mlp.fc2.weight', d, dv, std=residual)
        const(p + 'mlp.fc2.bias', d, value=0)
    normal('aux.weight', AUX_OUTPUTS, d)
    const('aux.bias', AUX_OUTPUTS, value=0)

    h, hi = LLM['hidden_size'], LLM['intermediate_size']
    normal('vl_bridge.0.weight', h, d)
    const('vl_bridge.0.bias', h, value=0)
    normal('vl_bridge.2.weight', h, h)
    const('vl_bridge.2.bias', h, value=0)
    kv = LLM['num_key_value_heads'] * (h // LLM['num_attention_heads'])
    residual = 0.02 / math.sqrt(2 * LLM['num_hidden_layers'])
    normal('llm.model.embed_tokens.weight', LLM['vocab_size'], h)
    for i in range(LLM['num_hidden_layers']):
        p = f'llm.model.layers.{i}.'
        const(p + 'input_layernorm.weight', h, value=1)
        const(p + 'post_attention_layernorm.weight', h, value=1)
        normal(p + 'self_attn.q_proj.weight', h, h)
        normal(p + 'self_attn.k_proj.weight', kv, h)
        normal(p + 'self_attn.v_proj.weight', kv, h)
        normal(p + 'self_attn.o_proj.weight', h, h, std=residual)
        normal(p + 'mlp.gate_proj.weight', hi, h)
        normal(p + 'mlp.up_proj.weight', hi, h)
        normal(p + 'mlp.down_proj.weight', h, hi, std=residual)
    const('llm.model.norm.weight', h, value=1)
    normal('llm.lm_head.weight', LLM['vocab_size'], h)
    for name, count in sorted(set(ROUTES.values())):
        normal(name + '.weight', count, h)
    return params


def sincos_positions(grid, width):
    """[grid * grid, width]: sines and cosines of the row (first half) and the column (second half)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing='ij')

    def encode(v):
        angles = v.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], 1)

    return torch.cat([encode(rows), encode(cols)], 1)


def vision_names(params):
    return [k for k in params if k.startswith('vis_encoder.') or k.startswith('aux.')]


def language_names(params):
    return [k for k in params if not (k.startswith('vis_encoder.') or k.startswith('aux.'))]


def exported(params):
    return {k: v for k, v in params.items() if not k.startswith('aux.')}


def clip_features(params, pixels):
    """The tower's features for the LLM: hidden state vis_output_layer, CLS dropped. pixels [n, 3, T, T]."""
    states = ref.clip_vision_hidden_states(params, VISION, pixels)
    return states[CONFIG['vis_output_layer']][:, 1:]


def dense_loss(params, pixels, cover, centre, size, from_features=False):
    """The features must say what covers each patch, where objects' centres are, what those objects
    are and how big. cover/centre [n, 64, KINDS], size [n, 64] (defined where centre has a 1).
    `pixels` are the tiles, or their features already computed when from_features.
    Returns the loss and, for the log, how often a centre patch names its object's colour and class."""
    features = pixels if from_features else clip_features(params, pixels)
    out = F.linear(features, params['aux.weight'], params['aux.bias'])
    kind_logits, centre_kind, centre_here, size_logit = out.split([KINDS + 1, KINDS, KINDS, 1], -1)
    covered = cover.sum(-1, keepdim=True).clamp(max=1)
    share = torch.cat([cover, 1 - covered], -1)
    share = share / share.sum(-1, keepdim=True)
    weight = BACKGROUND_WEIGHT + covered[..., 0]
    cover_loss = (-(share * F.log_softmax(kind_logits, -1)).sum(-1) * weight).sum() / weight.sum()
    here_loss = F.binary_cross_entropy_with_logits(centre_here, centre, pos_weight=torch.tensor(20.0))
    has = centre.amax(-1) > 0
    if has.any():
        truth = centre[has].argmax(-1)
        kind_loss = F.cross_entropy(centre_kind[has], truth)
        size_loss = F.mse_loss(torch.sigmoid(size_logit[..., 0][has]), size[has])
        guess = centre_kind[has].argmax(-1)
        colour_right = float((guess % len(COLOURS) == truth % len(COLOURS)).float().mean())
        class_right = float((guess // len(COLOURS) == truth // len(COLOURS)).float().mean())
    else:
        kind_loss = size_loss = out.sum() * 0
        colour_right = class_right = float('nan')
    return cover_loss + here_loss + kind_loss + size_loss, {
        'cover': float(cover_loss), 'centre': float(here_loss), 'kind': float(kind_loss), 'size': float(size_loss),
        'centre colour right': colour_right, 'centre class right': class_right}


def sequence_loss(params, features, seq, seen_ids=None, seen_weight=1.0):
    """Stage 2: one packed sequence (see miniature_data.pack): the prefix with the image, then each
    turn attending to the prefix and itself only, at the positions it has when asked alone.
    Answer tokens among seen_ids (the words that say what the picture shows: colours, classes,
    numbers, places, yes and no) weigh seen_weight times the others: the sentences around them
    are learnt from the question alone, and would otherwise drown the little the picture decides.
    Returns the answers' weighted loss, the share of answer tokens right, the projected image tokens,
    and the unweighted loss of the seen_ids tokens (nan without seen_ids)."""
    ids = seq['ids']
    embeds = params['llm.model.embed_tokens.weight'][ids]
    image = ref.vl_bridge(params, features).reshape(-1, embeds.shape[-1])
    parts = [embeds[:seq['image_at']], image, embeds[seq['image_at'] + image.shape[0]:]]
    embeds = torch.cat(parts)
    for at, table, count in seq['queries']:
        embeds = torch.cat([embeds[:at], params[table + '.weight'][:count], embeds[at + count:]])
    logits = ref.llama_logits(params, LLM, embeds[None], positions=seq['positions'], blocked=seq['blocked'])[0]
    targets = seq['targets']
    scored = targets >= 0
    losses = F.cross_entropy(logits[scored], targets[scored], reduction='none')
    right = (logits[scored].argmax(-1) == targets[scored]).float().mean()
    if seen_ids is None:
        return losses.mean(), float(right), image, float('nan')
    seen = torch.isin(targets[scored], seen_ids)
    weight = torch.where(seen, torch.tensor(seen_weight), torch.tensor(1.0))
    seen_loss = float(losses[seen].mean()) if seen.any() else float('nan')
    return (losses * weight).sum() / weight.sum(), float(right), image, seen_loss


def word_alignment(params, image, centre, kind_words):
    """1 - cosine between each image token holding an object's centre and the input embeddings of
    that object's words ("red" + "circle"; the embeddings themselves are not moved by it). The LLM
    soon learns to copy words from the question into its answer; an image token that looks like
    the words of what it shows can be copied from the same way, which is how it learns to look.
    image [tiles * 64, width], centre [tiles, 64, KINDS] (0/1), kind_words [KINDS, 2] token ids."""
    centre = centre.reshape(image.shape[0], KINDS)
    rows = centre.amax(-1) > 0
    if not rows.any():
        return image.sum() * 0
    words = params['llm.model.embed_tokens.weight'].detach()[kind_words].sum(1)   # [KINDS, width]
    target = centre[rows] @ words
    return (1 - F.cosine_similarity(image[rows], target, dim=-1)).mean()


def common_part(tokens):
    """The share of the image tokens' energy in their mean. Left alone, training drives it to 0.95
    and more: every image token points the same way (presumably one attention sink for the LLM), and
    attention cannot find an object among them. Training keeps it low as a second loss."""
    return tokens.mean(0).pow(2).sum() / tokens.pow(2).sum(-1).mean()
