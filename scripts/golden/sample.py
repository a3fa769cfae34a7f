"""Token sampling: temperature, top-k, top-p and an inverse-CDF draw in index order."""
import torch

from common import rng

CONFIGS = [  # (temperature, top_k, top_p)
    (1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 50, 1.0), (1.0, 0, 0.9), (0.8, 40, 0.95), (1.0, 1, 1.0), (2.0, 7, 0.5),
]


def reference(logits, temperature, top_k, top_p, u):
    """Hugging Face's TopK then TopP warpers (ties at a cut-off kept), then inverse CDF in index order.
    Returns the token and how far the draw is from the nearest boundary (to avoid fragile cases)."""
    x = logits / temperature
    if 0 < top_k < x.numel():
        kth = torch.topk(x, top_k).values[-1]
        x = torch.where(x >= kth, x, torch.tensor(float('-inf'), dtype=x.dtype))
    probs = torch.softmax(x, -1)
    if top_p < 1.0:
        desc = torch.sort(probs, descending=True).values
        cum = torch.cumsum(desc, 0)
        cut = desc[int((cum < top_p).sum().clamp(max=desc.numel() - 1))]
        probs = torch.where(probs >= cut, probs, torch.zeros_like(probs))
    probs = probs / probs.sum()
    cdf = torch.cumsum(probs, 0)
    token = int((cdf <= u).sum().clamp(max=probs.numel() - 1))
    while probs[token] == 0:  # a zero-probability index inherits the boundary: move to the next kept one
        token += 1
    edges = cdf[probs > 0]
    margin = float((edges - u).abs().min())
    return token, margin


def generate():
    g = rng(5)
    vocab = 1003
    logits = torch.randn(6, vocab, generator=g, dtype=torch.float64) * 3.0
    logits[1, 17] = logits[1, 29] = logits[1].max() + 1.0  # a tie at the top
    ids, draws, cfgs = [], [], []
    for c, (t, k, p) in enumerate(CONFIGS):
        for row in range(logits.shape[0]):
            while True:
                u = float(torch.rand(1, generator=g, dtype=torch.float64))
                token, margin = reference(logits[row].float().double(), t, k, p, u)
                if margin > 1e-4:
                    break
            ids.append(token)
            draws.append(u)
            cfgs.append(c)
    return {'sample': ({
        'logits': logits.float(),
        'configs': torch.tensor(CONFIGS, dtype=torch.float32),
        'config_index': torch.tensor(cfgs, dtype=torch.int32),
        'draws': torch.tensor(draws, dtype=torch.float32),
        'expected': torch.tensor(ids, dtype=torch.int32),
    }, {})}
