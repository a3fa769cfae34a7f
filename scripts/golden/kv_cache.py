"""KV-cache reference: a LLaMA layer's cache filled by a long prompt, then one decoding step
(PyTorch, float64, naive attention over rotated keys).

Inputs are the closed-form hash of attention.py (test/hash-inputs.ts on the other side); the
golden file holds only outputs, sampled rows for the prompt.
"""
import json
import math

import torch

from attention import attention_ref, hashed, sampled_rows
from rope import rope_ref


def generate():
    out = {}
    # A prompt of 513 tokens appended at once, then one decoding step at position 513; keys are
    # rotated when stored, the query by rope(). 8 query heads on 4 kv heads.
    H, Hkv, D, T, theta = 8, 4, 128, 513, 10000.0
    k_all = hashed([1, Hkv, T + 1, D], 2001, 1.0)
    v_all = hashed([1, Hkv, T + 1, D], 2002, 1.0)
    q_new = hashed([1, H, 1, D], 2003, 2.0)
    pos = torch.arange(T + 1, dtype=torch.int64)
    k_rot = rope_ref(k_all, pos.view(1, 1, -1), theta)
    q_rot = rope_ref(q_new, torch.tensor([[[T]]]), theta)
    out['cache_step.out'] = attention_ref(q_rot, k_rot, v_all, 1.0 / math.sqrt(D), causal=True).float()
    # The prompt's own causal attention (queries rotated at positions 0..512), sampled rows.
    q_prompt = hashed([1, H, T, D], 2004, 2.0)
    q_prompt_rot = rope_ref(q_prompt, pos[:T].view(1, 1, -1), theta)
    prompt_rows = sampled_rows(T)
    full = attention_ref(q_prompt_rot, k_rot[:, :, :T], v_all[:, :, :T], 1.0 / math.sqrt(D), causal=True)
    out['cache_prompt.out'] = full[:, :, prompt_rows, :].float().contiguous()
    cache = dict(H=H, Hkv=Hkv, D=D, T=T, theta=theta, seeds=dict(k=2001, v=2002, q=2003, q_prompt=2004), prompt_rows=prompt_rows)
    return {'kv_cache': (out, {'cache': json.dumps(cache)})}
