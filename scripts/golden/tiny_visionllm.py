"""The embedded tiny VisionLLM v2 checkpoint (weights/tiny/) and the MLLM goldens computed from it.

weights/tiny/ is a complete VisionLLM v2 checkpoint at tiny sizes: the official config keys and
parameter names, a SentencePiece BPE tokenizer trained here (byte fallback, LLaMA's settings) with
VisionLLM's 26 added tokens, random weights from a fixed seed. Everything is deterministic.
test/fixtures/tiny-llama/ is a plain Hugging Face LlamaForCausalLM checkpoint (text-only mode).

Goldens (test/golden/mllm.safetensors, test/golden/tiny_llama.safetensors):
  anyres tile grids for many aspect ratios; PIL's uint8 tiles for two test images;
  vision features and projected tokens (sampled rows) per tile; for every prompt position the
  top-5 logits, their ids and the log-sum-exp of the row (plus whole rows at sampled positions);
  20 greedy token ids.
"""
import json
import math
import os
import random
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image

import common
import reference_mllm as ref

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TINY_DIR = os.path.join(ROOT, 'weights', 'tiny')
LLAMA_DIR = os.path.join(ROOT, 'test', 'fixtures', 'tiny-llama')
IMAGE_DIR = os.path.join(ROOT, 'test', 'fixtures', 'images')

SPECIAL_TOKENS = ['[PAD]', '<image>', '<im_patch>', '<region>', '<img>', '</img>', '<reg>', '</reg>',
                  '<det>', '</det>', '<grd>', '</grd>', '[DET]', '[GRD]', '[SEG]', '[POSE]', '[GEN]', '[EDIT]',
                  '[EMB]', '[EMB2]', '[EMB3]', '[EMB4]', '[EMB5]', '[EMB6]', '[EMB7]', '[EMB8]']

VOCAB = 320
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
              image_size=336, patch_size=14, num_channels=3, hidden_act='quick_gelu', layer_norm_eps=1e-5,
              projection_dim=64, model_type='clip_vision_model', architectures=['CLIPVisionModel'])
LLM = dict(vocab_size=VOCAB + len(SPECIAL_TOKENS), hidden_size=128, intermediate_size=344, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5,
           rope_theta=10000.0, hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
           pad_token_id=VOCAB, model_type='llama', architectures=['LlamaForCausalLM'], torch_dtype='float32')
# The plain LLaMA fixture: its own smaller model, multi-query attention (4 query heads, 1 key/value head).
TEXT_LLM = dict(LLM, hidden_size=64, intermediate_size=176, num_attention_heads=4, num_key_value_heads=1)
QUESTION = 'What is in the picture? Describe the colours.'
GREEDY_STEPS = 20


# ----------------------------------------------------------------------------- tokenizer

def corpus_lines():
    rng = random.Random(7)
    things = ['cat', 'dog', 'person', 'bicycle', 'car', 'tree', 'house', 'bird', 'boat', 'horse', 'cup', 'chair',
              'table', 'picture', 'image', 'sky', 'road', 'flower', 'window', 'book']
    colours = ['red', 'green', 'blue', 'yellow', 'white', 'black', 'orange', 'purple', 'grey', 'brown']
    places = ['on the table', 'in the garden', 'near the window', 'under the tree', 'on the road', 'in the sky',
              'next to the house', 'in the water']
    verbs = ['is sitting', 'is standing', 'is running', 'is sleeping', 'looks', 'appears']
    lines = []
    for _ in range(3000):
        t, c, p, v = rng.choice(things), rng.choice(colours), rng.choice(places), rng.choice(verbs)
        form = rng.randrange(5)
        if form == 0:
            lines.append(f'A {c} {t} {v} {p}.')
        elif form == 1:
            lines.append(f'What is in the {t}? There is a {c} {t} {p}.')
        elif form == 2:
            lines.append(f'USER: Describe the image. ASSISTANT: The image shows {rng.randint(1, 12)} {t}s, mostly {c}.')
        elif form == 3:
            lines.append(f'The {t} and the {rng.choice(things)} are {c}; the colours are bright, detailed and polite.')
        else:
            lines.append(f'A chat between a curious user and an artificial intelligence assistant about a {c} {t}.')
    return lines


def conversations(count, seed):
    """Vicuna-formatted exchanges about pictures, in the corpus's words, for training the tiny LLM."""
    rng = random.Random(seed)
    things = ['cat', 'dog', 'person', 'bicycle', 'car', 'tree', 'house', 'bird', 'boat', 'horse', 'cup', 'chair']
    colours = ['red', 'green', 'blue', 'yellow', 'white', 'black', 'orange', 'purple', 'grey', 'brown']
    places = ['on the table', 'in the garden', 'near the window', 'under the tree', 'on the road', 'in the water']
    questions = [QUESTION, 'Describe the image.', 'What do you see?', 'What is in the picture?']
    out = []
    for _ in range(count):
        t, c, c2, p = rng.choice(things), rng.choice(colours), rng.choice(colours), rng.choice(places)
        answer = rng.choice([
            f'The picture shows a {c} {t} {p}. The colours are {c} and {c2}.',
            f'I see a {c} {t} {p}, mostly {c} and {c2}.',
            f'There is a {c} {t} {p}. It looks bright and {c2}.',
        ])
        out.append((rng.choice(questions), answer))
    return out


def train_llm(params, config, sp, added, steps=200, batch=6):
    """A few hundred Adam steps so the tiny model answers like a chat and ends with </s>: picture
    conversations in the corpus's words, half of them with an image (features of synthetic pictures
    through the fixed random CLIP; vl_bridge and the LLM learn). Deterministic: fixed seeds, one thread."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    images = []
    with torch.no_grad():
        for w, h in [(300, 300), (520, 260), (336, 336), (400, 300), (260, 520)]:
            tiles = ref.anyres_tiles(test_image(w, h))
            pixels = torch.stack([ref.clip_pixels(t) for t in tiles])
            feats, _ = ref.image_features({k: v for k, v in params.items()}, config, pixels)
            images.append(feats)
    talks = conversations(2000, 11)
    names = [k for k in params if k.startswith('llm.') or k.startswith('vl_bridge.')]
    weights = {k: params[k].clone().requires_grad_(True) for k in names}
    opt = torch.optim.Adam(weights.values(), lr=3e-3)
    order = random.Random(12)
    patch = added['<im_patch>']
    for step in range(steps):
        opt.zero_grad()
        loss = 0.0
        for b in range(batch):
            q, a = order.choice(talks)
            feats = images[order.randrange(len(images))] if b % 2 else None
            tiles = feats.shape[0] if feats is not None else 0
            text = ref.vicuna_prompt(('<image>\n' if tiles else '') + q) + ' ' + a
            pieces = text.split('<image>')
            ids = [1] + tokenize_chunked(sp, added, pieces[0])
            if tiles:
                ids += [patch] * (576 * tiles) + tokenize_chunked(sp, added, pieces[1])
            ids += [2]
            x = torch.tensor(ids)
            embeds = weights['llm.model.embed_tokens.weight'][x]
            if tiles:
                projected = ref.vl_bridge(weights, feats).reshape(-1, embeds.shape[-1])
                embeds = torch.cat([embeds[:ids.index(patch)], projected, embeds[ids.index(patch) + projected.shape[0]:]])
            logits = ref.llama_logits(weights, LLM, embeds[None])[0]
            answer_from = len(ids) - len(tokenize_chunked(sp, added, ' ' + a)) - 2
            loss = loss + torch.nn.functional.cross_entropy(logits[answer_from:-1], x[answer_from + 1:]) / batch
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f'tiny LLM training: step {step}, loss {float(loss):.3f}')
    for k in names:
        params[k] = weights[k].detach().clone()
    torch.set_num_threads(2)


def train_tokenizer(directory):
    """Trains into directory/tok.model. The model file records its input paths, so training runs
    inside `directory` with relative names: the same bytes on every run and machine."""
    here = os.getcwd()
    os.chdir(directory)
    try:
        with open('corpus.txt', 'w') as f:
            f.write('\n'.join(corpus_lines()) + '\n')
        # LLaMA's trainer settings: BPE, byte fallback, digits split, identity normaliser, dummy prefix.
        spm.SentencePieceTrainer.train(
            input='corpus.txt', model_prefix='tok', vocab_size=VOCAB, model_type='bpe', byte_fallback=True,
            character_coverage=1.0, split_digits=True, normalization_rule_name='identity',
            remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    finally:
        os.chdir(here)
    return os.path.join(directory, 'tok.model')


# ----------------------------------------------------------------------------- weights

def init_params(seed, llm=LLM, llm_only=False, prefix='llm.'):
    g = torch.Generator().manual_seed(seed)
    params = {}

    def add(name, *shape, scale=None, const=None):
        if const is not None:
            params[name] = torch.full(shape, float(const))
        else:
            fan_in = shape[-1] if len(shape) > 1 else 1
            s = scale if scale is not None else 1.0 / math.sqrt(fan_in)
            params[name] = torch.randn(*shape, generator=g) * s

    if not llm_only:
        add_vision(add, params)
    h = llm['hidden_size']
    if not llm_only:
        d = VISION['hidden_size']
        add('vl_bridge.0.weight', h, d)
        add('vl_bridge.0.bias', h, scale=0.1)
        add('vl_bridge.2.weight', h, h)
        add('vl_bridge.2.bias', h, scale=0.1)

    add(prefix + 'model.embed_tokens.weight', llm['vocab_size'], h, scale=1.0)
    kv = llm['num_key_value_heads'] * (h // llm['num_attention_heads'])
    for i in range(llm['num_hidden_layers']):
        p = f'{prefix}model.layers.{i}.'
        add(p + 'input_layernorm.weight', h, scale=0.1)
        params[p + 'input_layernorm.weight'] += 1.0
        add(p + 'post_attention_layernorm.weight', h, scale=0.1)
        params[p + 'post_attention_layernorm.weight'] += 1.0
        add(p + 'self_attn.q_proj.weight', h, h)
        add(p + 'self_attn.k_proj.weight', kv, h)
        add(p + 'self_attn.v_proj.weight', kv, h)
        add(p + 'self_attn.o_proj.weight', h, h)
        add(p + 'mlp.gate_proj.weight', llm['intermediate_size'], h)
        add(p + 'mlp.up_proj.weight', llm['intermediate_size'], h)
        add(p + 'mlp.down_proj.weight', h, llm['intermediate_size'])
    add(prefix + 'model.norm.weight', h, const=1.0)
    add(prefix + 'lm_head.weight', llm['vocab_size'], h, scale=3.0 / math.sqrt(h))

    if not llm_only:
        # Super-link query tables (4 rows for det/pose, 64 for gen/edit), used by the routing tokens.
        for task, rows in (('det', 4), ('pose', 4), ('gen', 64), ('edit', 64)):
            add(f'emb_embeddings_{task}.weight', rows, h, scale=1.0)
    return params


def add_vision(add, params):
    """CLIP vision tower parameters, in the official names."""
    v, d = 'vis_encoder.vision_model.', VISION['hidden_size']
    n_pos = (VISION['image_size'] // VISION['patch_size']) ** 2 + 1
    add(v + 'embeddings.class_embedding', d, scale=0.5)
    add(v + 'embeddings.patch_embedding.weight', d, 3, 14, 14, scale=1.0 / math.sqrt(3 * 14 * 14))
    add(v + 'embeddings.position_embedding.weight', n_pos, d, scale=0.5)
    add(v + 'pre_layrnorm.weight', d, scale=0.1)
    params[v + 'pre_layrnorm.weight'] += 1.0
    add(v + 'pre_layrnorm.bias', d, scale=0.1)
    for i in range(VISION['num_hidden_layers']):
        p = f'{v}encoder.layers.{i}.'
        for ln in ('layer_norm1', 'layer_norm2'):
            add(p + ln + '.weight', d, scale=0.1)
            params[p + ln + '.weight'] += 1.0
            add(p + ln + '.bias', d, scale=0.1)
        for proj in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            add(p + f'self_attn.{proj}.weight', d, d)
            add(p + f'self_attn.{proj}.bias', d, scale=0.1)
        add(p + 'mlp.fc1.weight', VISION['intermediate_size'], d)
        add(p + 'mlp.fc1.bias', VISION['intermediate_size'], scale=0.1)
        add(p + 'mlp.fc2.weight', d, VISION['intermediate_size'])
        add(p + 'mlp.fc2.bias', d, scale=0.1)
    add(v + 'post_layernorm.weight', d, const=1.0)
    add(v + 'post_layernorm.bias', d, const=0.0)


# The super link's projections, at the official widths where they are small (256 for the detector
# and pose decoder) and a tiny Stable Diffusion width (the official 768 would be 17M parameters).
DET_DIM = 256
POSE_DIM = 256
SD_DIM = 96
SD_QUERIES = 77


def superlink_params(seed):
    """Projection weights of the decoders' super-link inputs, under the official names."""
    g = torch.Generator().manual_seed(seed)
    h = LLM['hidden_size']
    params = {}

    def linear(name, rows, cols):
        params[name + '.weight'] = torch.randn(rows, cols, generator=g) / math.sqrt(cols)
        params[name + '.bias'] = torch.randn(rows, generator=g) * 0.1

    for name, width in (('gdino.patch2query', DET_DIM), ('unipose.projection_llava', POSE_DIM), ('unipose.projection_kpt_llava', POSE_DIM)):
        linear(f'{name}.layers.0', width, h)
        linear(f'{name}.layers.1', width, width)
        linear(f'{name}.layers.2', width, width)
    for module in ('sd', 'ip2p'):
        linear(f'{module}.emb_proj.0', SD_DIM, h)
        linear(f'{module}.emb_proj.2', SD_DIM, SD_DIM)
        torch.manual_seed(seed + len(module))
        mapper = torch.nn.Transformer(d_model=SD_DIM, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                                      dim_feedforward=4 * SD_DIM, dropout=0.0, batch_first=True, norm_first=True)
        for k, v in mapper.state_dict().items():
            params[f'{module}.llm2sd_mapper.{k}'] = v.detach().clone()
        # Perturb the norms so a missing or swapped norm shows in the output.
        for k in list(params):
            if k.startswith(f'{module}.llm2sd_mapper') and '.norm' in k:
                params[k] = params[k] + torch.randn(params[k].shape, generator=g) * 0.1
        params[f'{module}.llm2sd_mapper_queries'] = torch.randn(1, SD_QUERIES, SD_DIM, generator=g)
    return params


def config_json():
    return {
        'model_type': 'visionllmv2', 'architectures': ['VisionLLMv2Model'],
        'vis_encoder_config': VISION, 'llm_config': LLM,
        'pretrained_vl_bridge': None, 'use_llm_lora': False, 'vl_bridge_type': 'mlp2x_gelu',
        'vis_output_layer': -2, 'use_pixelshuffle': False, 'num_embs': 4, 'num_embs_gen': 64,
        'use_region_encoder': False,
        # The decoders' super-link projections (tiny_detector.install adds the detector and its config keys).
        'use_gdino': True, 'gdino_config': {'d_model': DET_DIM, 'l_hidden_size': LLM['hidden_size']},
        'use_unipose': True, 'unipose_config': {'hidden_dim': POSE_DIM, 'l_hidden_size': LLM['hidden_size']},
        'use_sd': True, 'sd_config': {'llm_hidden_size': LLM['hidden_size'], 'sd_hidden_size': SD_DIM, 'num_queries': SD_QUERIES,
                                      'num_encoder_layers': 1, 'num_decoder_layers': 1, 'trigger_token': '[GEN]'},
        'use_ip2p': True, 'ip2p_config': {'llm_hidden_size': LLM['hidden_size'], 'sd_hidden_size': SD_DIM, 'num_queries': SD_QUERIES,
                                          'num_encoder_layers': 1, 'num_decoder_layers': 1, 'trigger_token': '[EDIT]'},
        'torch_dtype': 'float32', 'transformers_version': '4.32.0',
        # Data arguments of the official evaluation scripts, kept beside the model config.
        'image_aspect_ratio': 'anyres', 'image_size': 336, 'image_max_tile': 4, 'conv_mode': 'vicuna_v1',
    }


# ----------------------------------------------------------------------------- test images

def test_image(width, height):
    """Gradients, hard edges and a few shapes: everything a resampler can get wrong."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 127.5 + 127.5 * np.sin(x * 0.21) * np.cos(y * 0.13)
    img = np.stack([r, g, b], -1)
    img[(x // 23 + y // 17) % 2 == 0] *= 0.6          # checkerboard
    img[(np.abs(x - width * 0.6) < width * 0.1) & (np.abs(y - height * 0.4) < height * 0.2)] = [250, 20, 30]
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), 'RGB')


# ----------------------------------------------------------------------------- prompt ids

def tokenize_chunked(sp, added, text):
    """Hugging Face's slow LlamaTokenizer (transformers 4.34, legacy): split on added tokens and
    encode each stretch of text with SentencePiece on its own (a dummy prefix each time). Added
    tokens made by add_tokens() strip no whitespace around them in 4.34."""
    ids = []
    pattern = sorted(added, key=len, reverse=True)
    i, piece = 0, ''
    pieces = []
    while i < len(text):
        hit = next((t for t in pattern if text.startswith(t, i)), None)
        if hit:
            pieces.extend([piece, hit])
            piece = ''
            i += len(hit)
        else:
            piece += text[i]
            i += 1
    pieces.append(piece)
    for p in pieces:
        if p in added:
            ids.append(added[p])
        elif p:
            ids.extend(sp.encode(p))
    return ids


def prompt_ids(sp, added, question, tiles):
    """LLaVA's tokenizer_image_token: chunks around <image>, BOS once, <image> -> <im_patch> x 576 x tiles."""
    prompt = ref.vicuna_prompt('<image>\n' + question)
    before, after = prompt.split('<image>')
    ids = [1] + tokenize_chunked(sp, added, before)
    ids += [added['<im_patch>']] * (576 * tiles)
    ids += tokenize_chunked(sp, added, after)
    return ids


# ----------------------------------------------------------------------------- goldens

def logits_fingerprint(logits):
    top = logits.topk(5, dim=-1)
    return top.values, top.indices.to(torch.int32), torch.logsumexp(logits, dim=-1)


def mllm_case(params, config, sp, added, name, image):
    tiles = ref.anyres_tiles(image)
    pixels = torch.stack([ref.clip_pixels(t) for t in tiles]).to(torch.float64)
    p64 = {k: v.to(torch.float64) for k, v in params.items()}
    feats, proj = ref.image_features(p64, config, pixels)
    ids = prompt_ids(sp, added, QUESTION, len(tiles))
    table = p64['llm.model.embed_tokens.weight']
    embeds = table[torch.tensor(ids)].clone()
    patch = torch.tensor(ids) == added['<im_patch>']
    embeds[patch] = proj.reshape(-1, proj.shape[-1])
    embeds = embeds[None]
    logits = ref.llama_logits(p64, LLM, embeds)[0]
    top_v, top_i, lse = logits_fingerprint(logits)
    greedy_ids, margins = ref.greedy(p64, LLM, embeds, table, GREEDY_STEPS, eos=2)
    rows = torch.arange(0, 576, 37)
    sample_pos = torch.tensor(sorted(set(list(range(0, len(ids), 97)) + list(range(len(ids) - 8, len(ids))))))
    out = {
        f'{name}.tiles_u8': torch.from_numpy(np.stack([np.asarray(t) for t in tiles])),
        f'{name}.feature_rows': rows.to(torch.int32),
        f'{name}.features': feats[:, rows],
        f'{name}.projected': proj[:, rows],
        f'{name}.prompt_ids': torch.tensor(ids, dtype=torch.int32),
        f'{name}.top5_values': top_v,
        f'{name}.top5_ids': top_i,
        f'{name}.logsumexp': lse,
        f'{name}.sample_positions': sample_pos.to(torch.int32),
        f'{name}.sample_logits': logits[sample_pos],
        f'{name}.greedy_ids': torch.tensor(greedy_ids, dtype=torch.int32),
    }
    return out, {f'{name}.min_margin': min(margins), f'{name}.size': f'{image.width}x{image.height}'}


def text_only_case(params, sp, added):
    ids = [1] + tokenize_chunked(sp, added, ref.vicuna_prompt('Describe a red cat on the table.'))
    p64 = {k: v.to(torch.float64) for k, v in params.items()}
    table = p64['model.embed_tokens.weight']
    embeds = table[torch.tensor(ids)][None]
    logits = ref.llama_logits(p64, TEXT_LLM, embeds, prefix='')[0]
    greedy_ids, margins = ref.greedy(p64, TEXT_LLM, embeds, table, GREEDY_STEPS, eos=2, prefix='')
    print(f'tiny llama: smallest greedy margin {min(margins):.4f}')
    return {'prompt_ids': torch.tensor(ids, dtype=torch.int32), 'logits': logits,
            'greedy_ids': torch.tensor(greedy_ids, dtype=torch.int32)}


def write_checkpoint(directory, params, config, tokenizer_src, added):
    os.makedirs(directory, exist_ok=True)
    common.write_safetensors(os.path.join(directory, 'model.safetensors'), params, {'format': 'pt'})
    with open(os.path.join(directory, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    with open(tokenizer_src, 'rb') as src, open(os.path.join(directory, 'tokenizer.model'), 'wb') as dst:
        dst.write(src.read())
    with open(os.path.join(directory, 'added_tokens.json'), 'w') as f:
        json.dump(added, f, indent=2)
        f.write('\n')
    with open(os.path.join(directory, 'special_tokens_map.json'), 'w') as f:
        json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '[PAD]'}, f, indent=2)
        f.write('\n')


def generate():
    torch.set_default_dtype(torch.float32)
    os.makedirs(IMAGE_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = train_tokenizer(tmp)
        sp = spm.SentencePieceProcessor(model_file=model_file)
        assert sp.get_piece_size() == VOCAB, sp.get_piece_size()
        added = {tok: VOCAB + i for i, tok in enumerate(SPECIAL_TOKENS)}
        params = init_params(seed=20240608)
        config = config_json()
        train_llm(params, config, sp, added)
        params.update(superlink_params(seed=608))
        write_checkpoint(TINY_DIR, params, config, model_file, added)
        import tiny_detector  # imports this module: loaded here
        tiny_detector.install(TINY_DIR)  # the Grounding DINO detector's weights and config (gdino.*)
        import tiny_pose
        tiny_pose.install(TINY_DIR)  # UniPose's weights and config (unipose.*)
        import tiny_region
        tiny_region.install(TINY_DIR)  # the region encoder's weights and config (region_encoder.*)
        import tiny_diffusion
        tiny_diffusion.install(TINY_DIR)  # SD / IP2P U-Net, VAE, text encoder and schedulers (sd.sd_*, ip2p.sd_*)
        llama_params = init_params(seed=7, llm=TEXT_LLM, llm_only=True, prefix='')
        write_checkpoint(LLAMA_DIR, llama_params, TEXT_LLM, model_file, added)

        out, meta = {}, {'question': QUESTION}
        for name, (w, h) in {'wide': (520, 260), 'square': (300, 300)}.items():
            image = test_image(w, h)
            image.save(os.path.join(IMAGE_DIR, f'{name}.png'))
            tensors, m = mllm_case(params, config, sp, added, name, image)
            out.update(tensors)
            meta.update(m)
            print(f'{name}: prompt of {len(tensors[name + ".prompt_ids"])} tokens, smallest greedy margin {m[name + ".min_margin"]:.4f}')
        # Tile grids for many aspect ratios (official find_closest_aspect_ratio, 336 tiles, at most 4).
        sizes = [(336, 336), (520, 260), (260, 520), (1000, 250), (250, 1000), (640, 480), (480, 640), (1200, 400),
                 (1001, 999), (700, 1400), (336, 1008), (2000, 100), (100, 2000), (673, 336)]
        out['grid_sizes'] = torch.tensor(sizes, dtype=torch.int32)
        out['grids'] = torch.tensor([ref.tile_grid(w, h) for w, h in sizes], dtype=torch.int32)
        text = text_only_case(llama_params, sp, added)
    return {
        'mllm': (out, meta),
        'tiny_llama': (text, {'prompt': ref.vicuna_prompt('Describe a red cat on the table.')}),
    }
