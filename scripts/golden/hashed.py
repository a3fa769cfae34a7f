"""Closed-form test inputs, reproduced bit for bit by test/hashed.ts.

Large golden cases store only their parameters and sampled outputs; both sides build the inputs
from this integer hash (murmur3's finaliser of i + seed * golden ratio), giving values k / 2^23 - 1
in [-1, 1): exact in f32, and rounded to f16 identically by PyTorch and the tests.
"""
import numpy as np
import torch

M32 = np.uint64(0xFFFFFFFF)


def hash_u32(n, seed):
    u = (np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)) & M32
    u = ((u ^ (u >> np.uint64(16))) * np.uint64(0x85EBCA6B)) & M32
    u = ((u ^ (u >> np.uint64(13))) * np.uint64(0xC2B2AE35)) & M32
    return u ^ (u >> np.uint64(16))


def hashed(shape, seed, scale=1.0):
    """float64 tensor of `shape`; `scale` should be a power of two to stay exact."""
    n = int(np.prod(shape))
    u = hash_u32(n, seed)
    v = (u >> np.uint64(8)).astype(np.float64) / 2.0 ** 23 - 1.0
    return torch.from_numpy(v * scale).reshape(shape)


def store_sampled(tensors, key, value, count, seed):
    """A large output's sample for a golden: `count` flat indices of `value` (sample_indices with `seed`) as
    key.index (int32) and the values there as key.values (f32)."""
    flat = value.reshape(-1)
    idx = sample_indices(flat.numel(), count, seed)
    tensors[f'{key}.index'] = torch.from_numpy(idx.astype(np.int32))
    tensors[f'{key}.values'] = flat[torch.from_numpy(idx)].float()


def sample_indices(n, count, seed):
    """`count` distinct flat indices of an n-element output (all of them when n <= count), sorted."""
    if n <= count:
        return np.arange(n, dtype=np.int64)
    g = np.random.default_rng(seed)
    return np.sort(g.choice(n, size=count, replace=False))
