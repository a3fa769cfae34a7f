"""Shared helpers for the golden-reference generators.

Each generator module in this folder defines `generate()` returning {file_stem: (tensors, metadata)};
generate.py writes them to test/golden/<stem>.safetensors. References are computed in float64 from
the exact inputs the tests upload (f16 inputs are rounded first), then stored as float32.
"""
import json
import os
import struct

import numpy as np
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'golden')

_DTYPES = {
    np.dtype('float32'): 'F32',
    np.dtype('float16'): 'F16',
    np.dtype('int32'): 'I32',
    np.dtype('uint32'): 'U32',
    np.dtype('int64'): 'I64',
    np.dtype('uint8'): 'U8',
}


def to_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype == torch.float64:
            t = t.float()
        return t.contiguous().numpy()
    return np.ascontiguousarray(t)


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        arr = to_numpy(value)
        if arr.dtype not in _DTYPES:
            raise TypeError(f'{name}: unsupported dtype {arr.dtype}')
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': _DTYPES[arr.dtype], 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(',', ':')).encode()
    raw += b' ' * ((8 - len(raw) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


_NP_OF = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """{name: torch tensor} of a safetensors file (the dtypes write_safetensors writes)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        arr = np.frombuffer(data[a:b], dtype=_NP_OF[e['dtype']].newbyteorder('<')).reshape(e['shape'])
        out[name] = torch.from_numpy(arr.copy())
    return out


def rng(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def as_f16(x):
    """The values an f16 tensor actually holds, as float64 (for computing the reference)."""
    return x.to(torch.float16).to(torch.float64)


def stored(x, dtype):
    """The array to upload for dtype 'f32' or 'f16'."""
    return x.to(torch.float32) if dtype == 'f32' else x.to(torch.float16)


def exact(x, dtype):
    """Input values as the GPU sees them, in float64."""
    return x.to(torch.float32).to(torch.float64) if dtype == 'f32' else as_f16(x)


def f16_weights(model, prefix):
    """Rounds every parameter of `model` to f16 in place (the values the reference then computes with)
    and returns them as F16 tensors under `prefix` + name: f32 and f16 uploads then hold the same numbers."""
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))
            tensors[prefix + name] = p.to(torch.float16)
    return tensors
