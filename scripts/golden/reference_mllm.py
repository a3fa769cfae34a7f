"""PyTorch reference modules for the VisionLLM v2 MLLM: the parts the TypeScript model must match.

Written from the Hugging Face / official semantics (transformers is not available on Debian):
  CLIPVisionModel (pre-layernorm, quick_gelu, CLS + learned positions, hidden_states tuple),
  LlamaForCausalLM (RMSNorm, rotate-half RoPE, SwiGLU, GQA, untied head),
  the vl_bridge (mlp2x_gelu: Linear, GELU, Linear),
  the "anyres" tiling of visionllmv2/mm_utils.py (dynamic_preprocess) with CLIPImageProcessor normalisation,
  the Vicuna v1 template and LLaVA's tokenizer_image_token chunking.
Parameter names are the official checkpoint's (vis_encoder.vision_model.*, llm.model.*, vl_bridge.N.*).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")


# ----------------------------------------------------------------------------- image tiling

def closest_aspect_ratio(aspect, ratios, width, height, tile):
    best_diff, best = float('inf'), (1, 1)
    area = width * height
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best_diff, best = diff, r
        elif diff == best_diff and area > 0.5 * tile * tile * r[0] * r[1]:
            best = r
    return best


def tile_grid(width, height, tile=336, max_tiles=4):
    ratios = sorted({(i, j) for n in range(1, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                     if 1 <= i * j <= max_tiles}, key=lambda r: r[0] * r[1])
    return closest_aspect_ratio(width / height, ratios, width, height, tile)


def anyres_tiles(image, tile=336, max_tiles=4):
    """dynamic_preprocess: PIL images, row-major tiles then (if more than one) a thumbnail."""
    cols, rows = tile_grid(image.width, image.height, tile, max_tiles)
    resized = image.resize((tile * cols, tile * rows), Image.BICUBIC)
    tiles = [resized.crop(((i % cols) * tile, (i // cols) * tile, (i % cols + 1) * tile, (i // cols + 1) * tile))
             for i in range(cols * rows)]
    if len(tiles) > 1:
        tiles.append(image.resize((tile, tile), Image.BICUBIC))
    return tiles


def clip_pixels(tile_image):
    """CLIPImageProcessor on an already 336x336 tile: rescale 1/255, normalise, CHW float32."""
    a = np.asarray(tile_image.convert('RGB'), dtype=np.float32) / 255.0
    a = (a - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


# ----------------------------------------------------------------------------- CLIP vision

def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def clip_vision_hidden_states(params, cfg, pixels):
    """hidden_states tuple of CLIPVisionModel(output_hidden_states=True): embeddings (after
    pre_layrnorm), then each encoder layer's output. pixels: [n, 3, H, W]."""
    p = 'vis_encoder.vision_model.'
    d, heads, eps = cfg['hidden_size'], cfg['num_attention_heads'], cfg['layer_norm_eps']
    patch = F.conv2d(pixels, params[p + 'embeddings.patch_embedding.weight'], stride=cfg['patch_size'])
    x = patch.flatten(2).transpose(1, 2)
    cls = params[p + 'embeddings.class_embedding'].expand(x.shape[0], 1, d)
    x = torch.cat([cls, x], dim=1) + params[p + 'embeddings.position_embedding.weight']
    x = layer_norm(x, params[p + 'pre_layrnorm.weight'], params[p + 'pre_layrnorm.bias'], eps)
    states = [x]
    for i in range(cfg['num_hidden_layers']):
        q = f'{p}encoder.layers.{i}.'
        h = layer_norm(x, params[q + 'layer_norm1.weight'], params[q + 'layer_norm1.bias'], eps)
        x = x + attention(h, params, q + 'self_attn.', heads, heads, out_name='out_proj', bias=True)
        h = layer_norm(x, params[q + 'layer_norm2.weight'], params[q + 'layer_norm2.bias'], eps)
        h = F.linear(h, params[q + 'mlp.fc1.weight'], params[q + 'mlp.fc1.bias'])
        h = F.linear(quick_gelu(h), params[q + 'mlp.fc2.weight'], params[q + 'mlp.fc2.bias'])
        x = x + h
        states.append(x)
    return states


def attention(h, params, prefix, heads, kv_heads, out_name, bias, rope=None, causal=False, blocked=None):
    """blocked: an optional [length, length] bool matrix of the pairs (query, key) that may not attend,
    used instead of the causal one (training packs several single-turn answers after one prefix)."""
    n, length, d = h.shape
    hd = d // heads
    lin = lambda name: F.linear(h, params[prefix + name + '.weight'], params.get(prefix + name + '.bias') if bias else None)
    q = lin('q_proj').view(n, length, heads, hd).transpose(1, 2)
    k = lin('k_proj').view(n, length, kv_heads, hd).transpose(1, 2)
    v = lin('v_proj').view(n, length, kv_heads, hd).transpose(1, 2)
    if rope is not None:
        q, k = rope(q), rope(k)
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if blocked is None and causal:
        blocked = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    if blocked is not None:
        scores = scores.masked_fill(blocked, float('-inf'))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, length, d)
    return F.linear(out, params[prefix + out_name + '.weight'], params.get(prefix + out_name + '.bias') if bias else None)


# ----------------------------------------------------------------------------- LLaMA

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotary(head_dim, theta, positions):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def apply(x):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x * cos.to(x.dtype) + rotated * sin.to(x.dtype))
    return apply


def llama_hidden(params, cfg, embeds, prefix='llm.', positions=None, blocked=None):
    """Final hidden states (after model.norm) of LlamaModel for input embeddings [1, L, d]. By default
    positions are 0..L-1 and attention is causal; `positions` and `blocked` (see attention) override."""
    d, heads = cfg['hidden_size'], cfg['num_attention_heads']
    kv = cfg.get('num_key_value_heads', heads)
    eps, theta = cfg['rms_norm_eps'], cfg.get('rope_theta', 10000.0)
    rope = rotary(d // heads, theta, torch.arange(embeds.shape[1]) if positions is None else positions)
    x = embeds
    for i in range(cfg['num_hidden_layers']):
        q = f'{prefix}model.layers.{i}.'
        h = rms_norm(x, params[q + 'input_layernorm.weight'], eps)
        x = x + attention(h, params, q + 'self_attn.', heads, kv, out_name='o_proj', bias=False, rope=rope, causal=True, blocked=blocked)
        h = rms_norm(x, params[q + 'post_attention_layernorm.weight'], eps)
        gate = F.linear(h, params[q + 'mlp.gate_proj.weight'])
        up = F.linear(h, params[q + 'mlp.up_proj.weight'])
        x = x + F.linear(F.silu(gate) * up, params[q + 'mlp.down_proj.weight'])
    return rms_norm(x, params[prefix + 'model.norm.weight'], eps)


def llama_logits(params, cfg, embeds, prefix='llm.', positions=None, blocked=None):
    hidden = llama_hidden(params, cfg, embeds, prefix, positions, blocked)
    head = params.get(prefix + 'lm_head.weight', params[prefix + 'model.embed_tokens.weight'])
    return F.linear(hidden, head)


def greedy(params, cfg, embeds, embed_table, steps, eos, prefix='llm.'):
    """Greedy decoding by recomputing the full sequence each step (the reference needs no cache).
    Returns the ids and, per step, the gap between the best and second-best logit."""
    ids, margins = [], []
    x = embeds
    for _ in range(steps):
        last = llama_logits(params, cfg, x, prefix)[0, -1]
        top = last.topk(2)
        nxt = int(top.indices[0])
        ids.append(nxt)
        margins.append(float(top.values[0] - top.values[1]))
        if nxt == eos:
            break
        x = torch.cat([x, embed_table[nxt][None, None]], dim=1)
    return ids, margins


# ----------------------------------------------------------------------------- the MLLM

def vl_bridge(params, feats):
    h = F.linear(feats, params['vl_bridge.0.weight'], params['vl_bridge.0.bias'])
    return F.linear(F.gelu(h), params['vl_bridge.2.weight'], params['vl_bridge.2.bias'])


def image_features(params, config, pixels):
    """Per-tile features from the configured hidden layer (CLS dropped), and their projection."""
    vcfg = config['vis_encoder_config']
    states = clip_vision_hidden_states(params, vcfg, pixels)
    feats = states[config.get('vis_output_layer', -2)][:, 1:]
    return feats, vl_bridge(params, feats)


def vicuna_prompt(question, history=()):
    """Vicuna v1: system, then 'USER: q ASSISTANT: a</s>' rounds, ending with 'ASSISTANT:'."""
    out = SYSTEM + ' '
    for q, a in history:
        out += f'USER: {q} ASSISTANT: {a}</s>'
    return out + f'USER: {question} ASSISTANT:'
