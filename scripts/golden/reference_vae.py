"""diffusers 0.28.2's AutoencoderKL (SD-1.5's VAE), transcribed for the goldens (diffusers itself is not
installed here): models/autoencoders/autoencoder_kl.py (quant_conv, post_quant_conv, the mean of the
latent distribution), autoencoders/vae.py (Encoder, Decoder), unets/unet_2d_blocks.py (DownEncoderBlock2D,
UpDecoderBlock2D, UNetMidBlock2D), resnet.py (ResnetBlock2D without a time embedding), downsampling.py
(Downsample2D with padding 0: F.pad (0, 1, 0, 1) then a stride-2 3x3 conv), upsampling.py (Upsample2D:
nearest x2 then a 3x3 conv) and attention_processor.py (Attention with group_norm, one head of all the
channels, residual_connection, rescale_output_factor 1). The module names are the checkpoint's, so
state_dict() gives `encoder.down_blocks.0.resnets.0.norm1.weight`, `decoder.mid_block.attentions.0.to_q.weight`, ...
Only the inference path (no tiling, slicing, dropout or gradient checkpointing).

CLI:
  python3 -P scripts/golden/reference_vae.py --time [--threads 2 --repeat 1 --size 512]
      one decode of a [1, 4, size/8, size/8] latent and one encodeMean of a [1, 3, size, size] image at SD-1.5's
      config with random f32 weights; prints one JSON line {decode_ms, encode_ms, ...}
"""
import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

def release_config():
    """SD-1.5 vae/config.json (runwayml/stable-diffusion-v1-5), the keys AutoencoderKL reads."""
    return dict(in_channels=3, out_channels=3, down_block_types=['DownEncoderBlock2D'] * 4, up_block_types=['UpDecoderBlock2D'] * 4,
                block_out_channels=[128, 256, 512, 512], layers_per_block=2, act_fn='silu', latent_channels=4,
                norm_num_groups=32, sample_size=512, scaling_factor=0.18215)


EPS = 1e-6  # every GroupNorm of the VAE (Encoder/Decoder pass resnet_eps=1e-6; conv_norm_out eps=1e-6)


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (shortcut + h) / 1.0  # output_scale_factor 1


class Attention(nn.Module):
    """Attention(query_dim=C, heads=1, dim_head=C, norm_num_groups, residual_connection=True, bias=True)."""

    def __init__(self, channels, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS, affine=True)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.scale = channels ** -0.5

    def forward(self, x):
        residual = x
        b, c, h, w = x.shape
        hs = x.view(b, c, h * w).transpose(1, 2)
        hs = self.group_norm(hs.transpose(1, 2)).transpose(1, 2)
        q, k, v = self.to_q(hs), self.to_k(hs), self.to_v(hs)
        probs = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        hs = self.to_out[0](probs @ v)
        hs = hs.transpose(-1, -2).reshape(b, c, h, w)
        return (hs + residual) / 1.0  # rescale_output_factor 1


class Downsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode='constant', value=0))


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class DownEncoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if downsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        for d in self.downsamplers or []:
            x = d(x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, upsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        for u in self.upsamplers or []:
            x = u(x)
        return x


class UNetMidBlock2D(nn.Module):
    """resnet, attention, resnet (num_layers 1, add_attention True, temb None)."""

    def __init__(self, channels, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(channels, groups)])

    def forward(self, x):
        x = self.resnets[0](x)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attn(x))
        return x


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, groups = c['block_out_channels'], c['norm_num_groups']
        self.conv_in = nn.Conv2d(c['in_channels'], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        out = boc[0]
        for i, ch in enumerate(boc):
            cin, out = out, ch
            self.down_blocks.append(DownEncoderBlock2D(cin, out, c['layers_per_block'], groups, i != len(boc) - 1))
        self.mid_block = UNetMidBlock2D(boc[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, boc[-1], eps=EPS)
        self.conv_out = nn.Conv2d(boc[-1], 2 * c['latent_channels'], 3, padding=1)  # double_z

    def forward(self, x, trace=None):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        if trace is not None:
            trace['encoder_mid'] = x
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, groups = c['block_out_channels'], c['norm_num_groups']
        self.conv_in = nn.Conv2d(c['latent_channels'], boc[-1], 3, padding=1)
        self.mid_block = UNetMidBlock2D(boc[-1], groups)
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(boc))
        out = rev[0]
        for i, ch in enumerate(rev):
            prev, out = out, ch
            self.up_blocks.append(UpDecoderBlock2D(prev, out, c['layers_per_block'] + 1, groups, i != len(boc) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=EPS)
        self.conv_out = nn.Conv2d(boc[0], c['out_channels'], 3, padding=1)

    def forward(self, z, trace=None):
        x = self.mid_block(self.conv_in(z))
        if trace is not None:
            trace['decoder_mid'] = x
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        lc = config['latent_channels']
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode_mean(self, image, trace=None):
        """vae.encode(image).latent_dist.mode() (= .mean): the first latent_channels of the moments."""
        moments = self.quant_conv(self.encoder(image, trace))
        return torch.chunk(moments, 2, dim=1)[0]

    def decode(self, z, trace=None):
        """vae.decode(z).sample (no scaling: the pipeline divides by scaling_factor first)."""
        return self.decoder(self.post_quant_conv(z), trace)


def randomize(model, seed):
    """Seeded weights with unit-ish activations: convs and linears ~ N(0, 1/fan_in), norms around (1, 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.norm' in name or 'group_norm' in name or name.startswith(('encoder.conv_norm_out', 'decoder.conv_norm_out')):
                base = 1.0 if name.endswith('weight') else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / fan_in ** 0.5)


# ---------------------------------------------------------------- CLI: timing

def time_release(threads, repeat=1, size=512, seed=0):
    """decode of a [1, 4, size/8, size/8] N(0, 1) latent and encode_mean of a [1, 3, size, size] image in [-1, 1) at the
    release config, random f32 weights; the fastest of `repeat` after a warm-up of each."""
    torch.set_num_threads(threads)
    model = AutoencoderKL(release_config())
    randomize(model, seed)
    model = model.float().eval()
    factor = 2 ** (len(model.config['block_out_channels']) - 1)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, model.config['latent_channels'], size // factor, size // factor, generator=g)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    best = {}
    with torch.no_grad():
        for name, fn, x in (('decode', model.decode, z), ('encode', model.encode_mean, image)):
            fn(x)  # warm-up
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                out = fn(x)
                runs.append(time.perf_counter() - start)
                assert torch.isfinite(out).all()
            best[name] = round(min(runs) * 1000, 1)
    return dict(decode_ms=best['decode'], encode_ms=best['encode'], config='SD-1.5 VAE', dtype='f32', image=[size, size],
                latent=[size // factor, size // factor], threads=threads, torch=torch.__version__,
                params=sum(p.numel() for p in model.parameters()), repeat=repeat,
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--time', action='store_true', help='time one decode and one encode at the release config (random f32 weights)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--size', type=int, default=512)
    args = parser.parse_args(argv)
    if args.time:
        print(json.dumps(time_release(args.threads, args.repeat, args.size)))
    else:
        parser.print_help()


if __name__ == '__main__':
    main(sys.argv[1:])
