"""Embedding lookup (gather): rows of a table picked by ids, repeated and boundary ids included (f32, f16)."""
import torch

from common import randn, rng, stored


def generate():
    # The table is drawn from seed 4 after copy.py's inputs (the two families once shared a file):
    # drawing those first keeps the values the golden file has always held.
    g = rng(4)
    randn(g, 67, 129)
    randn(g, 3, 5, 7, 11)
    torch.randint(-2**31, 2**31 - 1, (3, 5, 7, 11), generator=g, dtype=torch.int64)
    for n in (5, 2, 9):
        randn(g, 3, n, 7)
    table = randn(g, 1000, 67)
    ids = torch.tensor([0, 999, 5, 5, 512, 77, 998, 1, 0, 345, 346], dtype=torch.int32)
    out = {'ids': ids}
    for dt in ('f32', 'f16'):
        out[f'table.{dt}'] = stored(table, dt)
        out[f'embedding.{dt}'] = stored(table, dt)[ids.long()].float()
    return {'gather': (out, {})}
