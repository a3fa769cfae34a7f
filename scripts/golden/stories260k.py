"""A real trained model: llama2.c's stories260K (../shared/models/stories260K.bin, legacy fp32 format).

llama2.c rotates interleaved pairs (Meta's RoPE); Hugging Face LLaMA rotates halves. Loading it into a
Hugging Face-style model means permuting the rows of wq and wk per head, as transformers'
convert_llama_weights_to_hf does. This reference runs both forms, checks they agree, and stores the
logits of a fixed token sequence and 40 greedy tokens for the TypeScript loader and model to match.
Skipped when ../shared is absent.
"""
import math
import os
import struct

import numpy as np
import torch

import reference_mllm as ref

SHARED = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'models', 'stories260K.bin')


def read_llama2c(path):
    with open(path, 'rb') as f:
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack('<7i', f.read(28))
        data = np.frombuffer(f.read(), dtype='<f4')
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // heads
    kv_dim = kv_heads * head
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = torch.from_numpy(data[at:at + n].copy()).reshape(shape).to(torch.float64)
        at += n
        return out

    w = {'tok': take(vocab, dim), 'rms_att': take(layers, dim), 'wq': take(layers, dim, dim),
         'wk': take(layers, kv_dim, dim), 'wv': take(layers, kv_dim, dim), 'wo': take(layers, dim, dim),
         'rms_ffn': take(layers, dim), 'w1': take(layers, hidden, dim), 'w2': take(layers, dim, hidden),
         'w3': take(layers, hidden, dim), 'rms_final': take(dim)}
    take(seq_len, head // 2)  # freq_cis_real (unused: recomputed)
    take(seq_len, head // 2)  # freq_cis_imag
    w['cls'] = w['tok'] if shared else take(vocab, dim)
    cfg = dict(hidden_size=dim, intermediate_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv_heads, vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0,
               max_position_embeddings=seq_len)
    return w, cfg


def interleaved_forward(w, cfg, ids):
    """llama2.c's own formulation (run.c / model.py): RoPE on interleaved pairs."""
    dim, heads, kv = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = dim // heads
    n = len(ids)
    pos = torch.arange(n, dtype=torch.float64)
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    angle = pos[:, None] * freqs[None]
    cos, sin = angle.cos(), angle.sin()

    def rope(x):  # [n, h, hd]
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos[:, None] - b * sin[:, None]
        out[..., 1::2] = a * sin[:, None] + b * cos[:, None]
        return out

    x = w['tok'][torch.tensor(ids)]
    for l in range(cfg['num_hidden_layers']):
        h = ref.rms_norm(x, w['rms_att'][l], 1e-5)
        q = rope((h @ w['wq'][l].T).view(n, heads, hd))
        k = rope((h @ w['wk'][l].T).view(n, kv, hd)).repeat_interleave(heads // kv, dim=1)
        v = (h @ w['wv'][l].T).view(n, kv, hd).repeat_interleave(heads // kv, dim=1)
        s = torch.einsum('qhd,khd->hqk', q, k) / math.sqrt(hd)
        s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float('-inf'))
        o = torch.einsum('hqk,khd->qhd', torch.softmax(s, -1), v).reshape(n, dim)
        x = x + o @ w['wo'][l].T
        h = ref.rms_norm(x, w['rms_ffn'][l], 1e-5)
        x = x + (torch.nn.functional.silu(h @ w['w1'][l].T) * (h @ w['w3'][l].T)) @ w['w2'][l].T
    return ref.rms_norm(x, w['rms_final'], 1e-5) @ w['cls'].T


def permute_rows(m, heads):
    """Interleaved-pair rows -> rotate-half rows, per head (convert_llama_weights_to_hf's permute)."""
    out_dim, in_dim = m.shape
    return m.view(heads, out_dim // heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def hf_params(w, cfg):
    p = {'model.embed_tokens.weight': w['tok'], 'model.norm.weight': w['rms_final'], 'lm_head.weight': w['cls']}
    for l in range(cfg['num_hidden_layers']):
        q = f'model.layers.{l}.'
        p[q + 'input_layernorm.weight'] = w['rms_att'][l]
        p[q + 'post_attention_layernorm.weight'] = w['rms_ffn'][l]
        p[q + 'self_attn.q_proj.weight'] = permute_rows(w['wq'][l], cfg['num_attention_heads'])
        p[q + 'self_attn.k_proj.weight'] = permute_rows(w['wk'][l], cfg['num_key_value_heads'])
        p[q + 'self_attn.v_proj.weight'] = w['wv'][l]
        p[q + 'self_attn.o_proj.weight'] = w['wo'][l]
        p[q + 'mlp.gate_proj.weight'] = w['w1'][l]
        p[q + 'mlp.down_proj.weight'] = w['w2'][l]
        p[q + 'mlp.up_proj.weight'] = w['w3'][l]
    return p


def generate():
    if not os.path.exists(SHARED):
        print(f'stories260k: {SHARED} not found, skipped')
        return {}
    w, cfg = read_llama2c(SHARED)
    ids = [1, 400, 34, 270, 415, 302, 43, 21, 316, 297, 4, 250, 67, 13, 28, 469, 99, 3, 258, 301, 500, 7, 11, 123]
    native = interleaved_forward(w, cfg, ids)
    params = hf_params(w, cfg)
    logits = ref.llama_logits(params, cfg, params['model.embed_tokens.weight'][torch.tensor(ids)][None], prefix='')[0]
    gap = float((native - logits).abs().max())
    assert gap < 1e-9, f'permuted weights disagree with llama2.c by {gap}'
    greedy_ids, margins = ref.greedy(params, cfg, params['model.embed_tokens.weight'][torch.tensor([1])][None],
                                     params['model.embed_tokens.weight'], 40, eos=-1, prefix='')
    print(f'stories260k: llama2.c and rotate-half forms agree to {gap:.1e}; smallest greedy margin {min(margins):.4f}')
    return {'stories260k': ({'ids': torch.tensor(ids, dtype=torch.int32), 'logits': logits,
                             'greedy_from_bos': torch.tensor(greedy_ids, dtype=torch.int32)},
                            {'config': str(cfg)})}
