"""Hugging Face transformers' CLIPTextModel (modeling_clip.py: CLIPTextEmbeddings, CLIPAttention,
CLIPMLP, CLIPEncoderLayer, CLIPTextTransformer), transcribed for the goldens (transformers is not installed
here). Eager attention, no padding mask (diffusers' encode_prompt passes none for SD-1.5's text encoder: its
config has no use_attention_mask), the causal mask of CLIPTextTransformer. The module names are the
checkpoint's: state_dict() gives `text_model.embeddings.token_embedding.weight`,
`text_model.encoder.layers.0.self_attn.q_proj.weight`, `text_model.final_layer_norm.bias`, ...
forward(ids) returns last_hidden_state (after final_layer_norm), the `prompt_embeds` of encode_prompt.
"""
import torch
from torch import nn


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


ACT = {'quick_gelu': quick_gelu, 'gelu': nn.functional.gelu}


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c['vocab_size'], c['hidden_size'])
        self.position_embedding = nn.Embedding(c['max_position_embeddings'], c['hidden_size'])

    def forward(self, ids):
        positions = torch.arange(ids.shape[-1])[None]
        return self.token_embedding(ids) + self.position_embedding(positions)


class CLIPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c['hidden_size']
        self.heads = c['num_attention_heads']
        self.head_dim = d // self.heads
        self.scale = self.head_dim ** -0.5
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.softmax(q @ k.transpose(-1, -2) * self.scale + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = ACT[c['hidden_act']]
        self.fc1 = nn.Linear(c['hidden_size'], c['intermediate_size'])
        self.fc2 = nn.Linear(c['intermediate_size'], c['hidden_size'])

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = CLIPAttention(c)
        self.layer_norm1 = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c) for _ in range(c['num_hidden_layers'])])


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])

    def forward(self, ids):
        x = self.embeddings(ids)
        n = ids.shape[-1]
        # _create_4d_causal_attention_mask: the dtype's minimum above the diagonal
        mask = torch.triu(torch.full((n, n), torch.finfo(x.dtype).min, dtype=x.dtype), 1)[None, None]
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


class CLIPTextModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config)

    def forward(self, ids):
        return self.text_model(ids)


def randomize(model, seed):
    """Seeded weights: embeddings N(0, 1), linears N(0, 1/fan_in), biases N(0, 0.1²), norms around (1, 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if 'layer_norm' in name:
                p.copy_((1.0 if name.endswith('weight') else 0.0) + 0.2 * r)
            elif 'embedding' in name:
                p.copy_(r)
            elif name.endswith('bias'):
                p.copy_(0.1 * r)
            else:
                p.copy_(r / p.shape[1] ** 0.5)
