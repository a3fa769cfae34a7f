"""Checkpoint fixtures written by PyTorch itself, and the values the readers must find in them.

files() writes test/golden/checkpoints/:
  state_dict.bin      torch.save of a module's state dict (OrderedDict with _metadata): every storage
                      type the reader supports, bf16, a scalar, an empty tensor, and views that share
                      storages (transposed, offset, stepped, expanded)
  zip64.bin           a torch.save file rewritten with zip64 records throughout (torch.load reads it)
  legacy.bin          the pre-zip torch.save format (must be refused clearly; its storage keys are
                      memory addresses, so it differs on every run)
  deflated-pickle.bin, deflated.bin   re-zipped with data.pkl (readable) or everything (refused) deflated
  evil.bin            a torch.save zip whose pickle calls os.system (must be refused, never run)
  complex.bin, quantized.bin   storage types the reader does not support (refused by name)
  official/           a miniature of the official release: two bf16 .bin shards, their index,
                      config.json and added_tokens.json
  safetensors/        a sharded safetensors checkpoint with BF16, F32, I64, U8 and BOOL tensors
generate() returns checkpoints.safetensors: each tensor's values as float32 / float16 / bfloat16 bits /
int64 (what .float(), .half(), .bfloat16() and .long() give in PyTorch).
"""
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from collections import OrderedDict

import torch
from torch import nn

VISIONLLM_ADDED_TOKENS = ['[PAD]', '<image>', '<im_patch>', '<region>', '<img>', '</img>', '<reg>', '</reg>',
                          '<det>', '</det>', '<grd>', '</grd>', '[DET]', '[GRD]', '[SEG]', '[POSE]', '[GEN]',
                          '[EDIT]', '[EMB]', '[EMB2]', '[EMB3]', '[EMB4]', '[EMB5]', '[EMB6]', '[EMB7]', '[EMB8]']


def pattern(*shape, scale=1.0, offset=0.0):
    """Deterministic, varied values (no RNG, so the fixture is stable across torch versions)."""
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.float64)
    return (torch.sin(i * 0.731 + 0.3) * scale + offset).reshape(shape)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(7, 5)
        self.norm = nn.LayerNorm(5)
        self.register_buffer('position_ids', torch.arange(11).unsqueeze(0))


def state_dict():
    sd = Tiny().state_dict()  # an OrderedDict carrying _metadata, as model.state_dict() does
    sd['proj.weight'] = pattern(5, 7, scale=3.0).to(torch.bfloat16)
    sd['proj.bias'] = pattern(5, scale=0.5).to(torch.bfloat16)
    sd['norm.weight'] = pattern(5, offset=1.0).float()
    sd['norm.bias'] = pattern(5, scale=0.1).half()
    sd['mask'] = pattern(3, 4) > 0
    sd['bytes'] = torch.tensor([0, 1, 127, 128, 200, 255], dtype=torch.uint8)
    sd['ints'] = torch.tensor([[-2**31, -1, 0], [1, 12345, 2**31 - 1]], dtype=torch.int32)
    sd['shorts'] = torch.tensor([-32768, -2, 3, 32767], dtype=torch.int16)
    sd['chars'] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd['doubles'] = torch.tensor([1.0 / 3.0, -2.5e-7, 1e10], dtype=torch.float64)
    sd['scalar'] = torch.tensor(3.25)
    sd['empty'] = torch.zeros(0, 3)
    sd['big_ids'] = torch.tensor([1, 2**40, -3], dtype=torch.int64)  # does not fit in i32
    # Views sharing one f32 storage of 48 elements.
    base = pattern(6, 8, scale=10.0).float()
    sd['shared.base'] = base
    sd['shared.t'] = base.t()
    sd['shared.rows'] = base[2:4]
    sd['shared.cols'] = base[1:5, 3:7]
    sd['shared.step'] = base[:, ::3]
    sd['shared.expand'] = base[0:1, 1:4].expand(4, 3)
    # A bf16 storage shared by a tensor and its transpose.
    bf = pattern(4, 6, scale=2.0).to(torch.bfloat16)
    sd['bf.base'] = bf
    sd['bf.t'] = bf.t()
    # bf16 values beyond f16's range (65504 itself rounds to 65536 in bf16) and below its normal range.
    sd['overflow'] = torch.tensor([1e5, -7e4, 65504.0, 1.0, -65280.0], dtype=torch.bfloat16)
    sd['tiny'] = torch.tensor([1e-5, 3e-8, -6e-6, 6.1e-5, 1e-9], dtype=torch.bfloat16)
    return sd


def official_shards():
    """Tensors named like the release, split over two shards as save_pretrained does."""
    g = [
        OrderedDict([
            ('llm.model.embed_tokens.weight', pattern(37, 16, scale=0.02).to(torch.bfloat16)),
            ('llm.model.layers.0.self_attn.q_proj.weight', pattern(16, 16, scale=0.1, offset=0.01).to(torch.bfloat16)),
            ('llm.model.layers.0.input_layernorm.weight', pattern(16, offset=1.0).to(torch.bfloat16)),
        ]),
        OrderedDict([
            ('llm.model.norm.weight', pattern(16, scale=0.3, offset=1.0).to(torch.bfloat16)),
            ('llm.lm_head.weight', pattern(37, 16, scale=0.05).to(torch.bfloat16)),
            ('vl_bridge.0.bias', pattern(16, scale=4.0).to(torch.bfloat16)),
            ('emb_embeddings_det.weight', pattern(4, 16, scale=0.7).to(torch.bfloat16)),
        ]),
    ]
    return g


def saved(obj, name, **kwargs):
    """torch.save to a real path (the archive's folder is named after the file, as for real checkpoints)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        torch.save(obj, path, **kwargs)
        with open(path, 'rb') as f:
            return f.read()


def to_zip64(data):
    """Rewrites a stored zip with zip64 sizes and offsets in every header, as torch does past 4 GB."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = bytearray()
    central = bytearray()
    for info in src.infolist():
        body = src.read(info.filename)
        name = info.filename.encode()
        offset = len(out)
        local_extra = struct.pack('<HHQQ', 1, 16, len(body), len(body))
        out += struct.pack('<IHHHHHIIIHH', 0x04034b50, 45, 0, 0, 0, 0, zlib.crc32(body), 0xffffffff, 0xffffffff, len(name), len(local_extra))
        out += name + local_extra + body
        extra = struct.pack('<HHQQQ', 1, 24, len(body), len(body), offset)
        central += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 45, 45, 0, 0, 0, 0, zlib.crc32(body), 0xffffffff, 0xffffffff,
                               len(name), len(extra), 0, 0, 0, 0, 0xffffffff)
        central += name + extra
    cd_offset = len(out)
    out += central
    eocd64 = len(out)
    count = len(src.infolist())
    out += struct.pack('<IQHHIIQQQQ', 0x06064b50, 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
    out += struct.pack('<IIQI', 0x07064b50, 0, eocd64, 1)
    out += struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, 0xffff, 0xffff, 0xffffffff, 0xffffffff, 0)
    return bytes(out)


def rezipped(data, deflate):
    """The archive rewritten by Python's zipfile, deflating the entries `deflate(name)` selects."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename), zipfile.ZIP_DEFLATED if deflate(info.filename) else zipfile.ZIP_STORED)
    return out.getvalue()


class Evil:
    def __reduce__(self):
        return (os.system, ('echo this must never run',))


def safetensors_bytes(tensors):
    """A safetensors file of any dtypes (numpy has no bfloat16, so bytes are taken from torch views)."""
    names = {torch.float32: 'F32', torch.bfloat16: 'BF16', torch.float16: 'F16', torch.int64: 'I64', torch.uint8: 'U8', torch.bool: 'BOOL'}
    header, blobs, offset = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    js = json.dumps(header).encode()
    js += b' ' * (-len(js) % 8)
    return struct.pack('<Q', len(js)) + js + b''.join(blobs)


def safetensors_shards():
    return [
        OrderedDict([('a.weight', pattern(9, 5, scale=1.5).to(torch.bfloat16)), ('a.bias', pattern(9).float())]),
        OrderedDict([('ids', torch.tensor([[5, -1, 70000]], dtype=torch.int64)), ('flags', torch.tensor([True, False, True])),
                     ('pixels', torch.tensor([3, 250, 0, 17], dtype=torch.uint8)), ('h', pattern(3, 3).half())]),
    ]


def index_json(shards, file_names):
    weight_map = {name: file_names[i] for i, shard in enumerate(shards) for name in shard}
    total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    return json.dumps({'metadata': {'total_size': total}, 'weight_map': weight_map}, indent=2).encode()


def files():
    out = {}
    sd = state_dict()
    out['checkpoints/state_dict.bin'] = saved(sd, 'state_dict.bin')
    small = OrderedDict([('w', pattern(3, 5).to(torch.bfloat16)), ('b', pattern(5).float()), ('i', torch.arange(4))])
    zip64 = to_zip64(saved(small, 'zip64.bin'))
    with tempfile.NamedTemporaryFile(suffix='.bin') as f:
        f.write(zip64)
        f.flush()
        back = torch.load(f.name)
        assert all(torch.equal(back[k], small[k]) for k in small), 'torch cannot read the zip64 rewrite'
    out['checkpoints/zip64.bin'] = zip64
    out['checkpoints/legacy.bin'] = saved(small, 'legacy.bin', _use_new_zipfile_serialization=False)
    out['checkpoints/deflated-pickle.bin'] = rezipped(saved(small, 'deflated-pickle.bin'), lambda n: n.endswith('data.pkl'))
    out['checkpoints/deflated.bin'] = rezipped(saved(small, 'deflated.bin'), lambda n: True)
    out['checkpoints/evil.bin'] = saved({'w': torch.ones(2), 'payload': Evil()}, 'evil.bin')
    out['checkpoints/complex.bin'] = saved({'w': torch.ones(2), 'z': torch.ones(3, dtype=torch.complex64)}, 'complex.bin')
    out['checkpoints/quantized.bin'] = saved({'q': torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.quint8)}, 'quantized.bin')

    shards = official_shards()
    names = [f'pytorch_model-0000{i + 1}-of-00002.bin' for i in range(len(shards))]
    for shard, name in zip(shards, names):
        out[f'checkpoints/official/{name}'] = saved(shard, name)
    out['checkpoints/official/pytorch_model.bin.index.json'] = index_json(shards, names)
    config = {'model_type': 'visionllmv2', 'architectures': ['VisionLLMv2Model'], 'torch_dtype': 'bfloat16',
              'llm_config': {'hidden_size': 16, 'vocab_size': 37}}
    out['checkpoints/official/config.json'] = json.dumps(config, indent=2).encode()
    out['checkpoints/official/added_tokens.json'] = json.dumps({t: 32000 + i for i, t in enumerate(VISIONLLM_ADDED_TOKENS)}, indent=2).encode()

    st = safetensors_shards()
    st_names = [f'model-0000{i + 1}-of-00002.safetensors' for i in range(len(st))]
    for shard, name in zip(st, st_names):
        out[f'checkpoints/safetensors/{name}'] = safetensors_bytes(shard)
    out['checkpoints/safetensors/model.safetensors.index.json'] = index_json(st, st_names)
    return out


def expected(prefix, tensors, out):
    for name, t in tensors.items():
        key = f'{prefix}{name}'
        if t.dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            out[f'{key}.f32'] = t.float().contiguous()
            out[f'{key}.f16'] = t.half().contiguous()
            # bf16 bits widened to int32 (numpy, and so the golden writer, has no bfloat16)
            out[f'{key}.bf16'] = t.bfloat16().contiguous().view(torch.int16).to(torch.int32) & 0xffff
        elif t.dtype == torch.bool:
            out[f'{key}.u8'] = t.to(torch.uint8).contiguous()
        elif name != 'big_ids':
            out[f'{key}.i64'] = t.long().contiguous()


def generate():
    out = {}
    expected('', state_dict(), out)
    for shard in official_shards():
        expected('official.', shard, out)
    for shard in safetensors_shards():
        expected('safetensors.', shard, out)
    return {'checkpoints': (out, {'note': 'values of test/golden/checkpoints/* as PyTorch reads them'})}
