"""Hugging Face's ResNetBackbone as Grounding DINO runs it, for the goldens of src/nn/resnet.ts.

GroundingDinoConfig's own default backbone is a ResNet (the release's configuration_grounding_dino.py:
`CONFIG_MAPPING["resnet"](out_features=[...])`), built by AutoBackbone from `backbone_config` with
`model_type: resnet`; GroundingDinoConvEncoder then replaces every BatchNorm2d by a frozen one
(running statistics, eps 1e-5). Written from transformers 4.34.0's modeling_resnet.py with its module
and parameter names, so a state_dict of this module (less `num_batches_tracked`) is
`gdino.model.backbone.conv_encoder.model.*`.

Behaviour:
- Embedder: conv 7x7 stride 2 padding 3 (no bias), norm, activation; max-pool 3x3 stride 2 padding 1.
- Stages: the first keeps the stride (`downsample_in_first_stage` false), each later one halves it in its
  first layer. A basic layer: conv 3x3 (stride) + norm + activation, conv 3x3 + norm, plus the shortcut
  (1x1 conv with the stride and a norm, when the channels or the stride change), then the activation.
  A bottleneck layer: 1x1 reducing to out/4, 3x3 (stride), 1x1 back, norms, the same shortcut.
- The backbone returns the out_features stages' maps (stage1 at stride 4 ... stage4 at stride 32).

`frozen=True` (the default, as Grounding DINO runs it) applies the norms as GroundingDinoFrozenBatchNorm2d;
`frozen=False` leaves them nn.BatchNorm2d, which training uses to gather the statistics.

Cross-check against torchvision 0.14's resnet18/resnet50 (an independent implementation, its own names):
`python3 -P scripts/golden/reference_gdino_resnet.py` prints the largest difference of the stage maps.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FROZEN_EPS = 1e-5   # GroundingDinoFrozenBatchNorm2d's epsilon


class ResNetConfig:
    """The ResNetConfig keys ResNetBackbone reads (HF names), with HF's defaults (ResNet-50)."""

    def __init__(self, embedding_size=64, hidden_sizes=(256, 512, 1024, 2048), depths=(3, 4, 6, 3), layer_type='bottleneck',
                 hidden_act='relu', num_channels=3, downsample_in_first_stage=False, out_features=None):
        self.embedding_size = embedding_size
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.layer_type = layer_type
        self.hidden_act = hidden_act
        self.num_channels = num_channels
        self.downsample_in_first_stage = downsample_in_first_stage
        self.out_features = out_features or [f'stage{i + 1}' for i in range(len(self.depths))]

    def to_json(self):
        return {
            'model_type': 'resnet', 'embedding_size': self.embedding_size, 'hidden_sizes': self.hidden_sizes,
            'depths': self.depths, 'layer_type': self.layer_type, 'hidden_act': self.hidden_act,
            'num_channels': self.num_channels, 'downsample_in_first_stage': self.downsample_in_first_stage,
            'out_features': self.out_features,
        }

    @staticmethod
    def from_json(b):
        return ResNetConfig(embedding_size=b.get('embedding_size', 64), hidden_sizes=b.get('hidden_sizes', (256, 512, 1024, 2048)),
                            depths=b.get('depths', (3, 4, 6, 3)), layer_type=b.get('layer_type', 'bottleneck'),
                            hidden_act=b.get('hidden_act', 'relu'), num_channels=b.get('num_channels', 3),
                            downsample_in_first_stage=b.get('downsample_in_first_stage', False), out_features=b.get('out_features'))


def frozen_norm(norm, x):
    """GroundingDinoFrozenBatchNorm2d: the running statistics, as one scale and shift a channel."""
    scale = norm.weight * (norm.running_var + FROZEN_EPS).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


class ResNetConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, activation=True):
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)
        self.activation = activation

    def forward(self, x, frozen):
        x = self.convolution(x)
        x = frozen_norm(self.normalization, x) if frozen else self.normalization(x)
        return F.relu(x) if self.activation else x


class ResNetShortCut(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)

    def forward(self, x, frozen):
        x = self.convolution(x)
        return frozen_norm(self.normalization, x) if frozen else self.normalization(x)


class ResNetLayer(nn.Module):
    """ResNetBasicLayer (two 3x3 convs) or ResNetBottleNeckLayer (1x1, 3x3, 1x1 at a quarter of the width)."""

    def __init__(self, in_channels, out_channels, stride, bottleneck):
        super().__init__()
        self.shortcut = ResNetShortCut(in_channels, out_channels, stride) if in_channels != out_channels or stride != 1 else None
        if bottleneck:
            reduced = out_channels // 4
            self.layer = nn.ModuleList([ResNetConvLayer(in_channels, reduced, 1), ResNetConvLayer(reduced, reduced, stride=stride),
                                        ResNetConvLayer(reduced, out_channels, 1, activation=False)])
        else:
            self.layer = nn.ModuleList([ResNetConvLayer(in_channels, out_channels, stride=stride),
                                        ResNetConvLayer(out_channels, out_channels, activation=False)])

    def forward(self, x, frozen):
        residual = x if self.shortcut is None else self.shortcut(x, frozen)
        for conv in self.layer:
            x = conv(x, frozen)
        return F.relu(x + residual)


class ResNetStage(nn.Module):
    def __init__(self, config, in_channels, out_channels, stride, depth):
        super().__init__()
        bottleneck = config.layer_type == 'bottleneck'
        self.layers = nn.ModuleList([ResNetLayer(in_channels, out_channels, stride, bottleneck)] +
                                    [ResNetLayer(out_channels, out_channels, 1, bottleneck) for _ in range(depth - 1)])


class ResNetEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embedder = ResNetConvLayer(config.num_channels, config.embedding_size, kernel_size=7, stride=2)

    def forward(self, x, frozen):
        return F.max_pool2d(self.embedder(x, frozen), kernel_size=3, stride=2, padding=1)


class ResNetEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        widths = [config.embedding_size] + config.hidden_sizes
        strides = [2 if config.downsample_in_first_stage else 1] + [2] * (len(config.depths) - 1)
        self.stages = nn.ModuleList(ResNetStage(config, widths[i], widths[i + 1], strides[i], depth) for i, depth in enumerate(config.depths))


class ResNetBackbone(nn.Module):
    def __init__(self, config, frozen=True):
        super().__init__()
        assert config.hidden_act == 'relu', 'only relu is written here'
        self.config = config
        self.frozen = frozen
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)

    @property
    def channels(self):
        """Channels of each returned map."""
        return [self.config.hidden_sizes[int(name[5:]) - 1] for name in self.config.out_features]

    def forward(self, pixel_values):
        """The out_features stages' maps [B, C, h, w]."""
        x = self.embedder(pixel_values, self.frozen)
        maps = {}
        for i, stage in enumerate(self.encoder.stages):
            for layer in stage.layers:
                x = layer(x, self.frozen)
            maps[f'stage{i + 1}'] = x
        return [maps[name] for name in self.config.out_features]

    def release_state(self):
        """The state_dict as the release stores it: GroundingDinoFrozenBatchNorm2d keeps no num_batches_tracked."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith('num_batches_tracked')}


def randomize(model, seed):
    """Seeded weights that exercise every path: conv weights of unit gain, norms with varied scales, shifts and
    running statistics (a variance far from one, so a missing eps or rsqrt shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if 'running' in n]:
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if p.dim() == 4:
                v = r / math.sqrt(p[0].numel())
            elif name.endswith('running_var'):
                v = 0.5 + r.abs()
            elif name.endswith('weight'):
                v = 1 + 0.2 * r
            else:
                v = 0.1 * r
            p.copy_(v.to(p.dtype))


# ---- cross-check against torchvision ----

def torchvision_state(hf):
    """HF names -> torchvision ResNet names (conv1/bn1, layerN.M.convK/bnK, layerN.M.downsample.0/1)."""
    out = {}
    for k, v in hf.release_state().items():
        t = k.replace('embedder.embedder.convolution', 'conv1').replace('embedder.embedder.normalization', 'bn1')
        parts = t.split('.')
        if parts[0] == 'encoder':   # encoder.stages.i.layers.j.(layer.n|shortcut).(convolution|normalization).leaf
            i, j = int(parts[2]), int(parts[4])
            rest = parts[5:]
            if rest[0] == 'shortcut':
                sub = ['downsample', '0' if rest[1] == 'convolution' else '1', rest[2]]
            else:
                n = int(rest[1]) + 1
                sub = [('conv' if rest[2] == 'convolution' else 'bn') + str(n), rest[3]]
            t = '.'.join([f'layer{i + 1}', str(j)] + sub)
        out[t] = v
    return out


def crosscheck_torchvision(sizes=((224, 224), (97, 131), (160, 256)), seed=5):
    """Max |HF - torchvision| over the four stage maps of resnet18 and resnet50, per size, in float64."""
    from torchvision.models import resnet18, resnet50

    results = []
    for name, make, config in (('resnet18', resnet18, ResNetConfig(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type='basic')),
                               ('resnet50', resnet50, ResNetConfig())):
        hf = ResNetBackbone(config).double().eval()
        randomize(hf, seed)
        tv = make().double().eval()
        missing, unexpected = tv.load_state_dict(torchvision_state(hf), strict=False)
        missing = [m for m in missing if not m.startswith('fc.') and not m.endswith('num_batches_tracked')]
        assert not missing and not unexpected, (missing, unexpected)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for h, w in sizes:
                x = torch.randn(1, 3, h, w, generator=g, dtype=torch.float64)
                y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
                theirs = []
                for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
                    y = layer(y)
                    theirs.append(y)
                ours = hf(x)
                diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
                scale = max(float(a.abs().max()) for a in ours)
                results.append((name, (h, w), [tuple(a.shape[-2:]) for a in ours], diff, scale))
    return results


if __name__ == '__main__':
    for name, size, shapes, diff, scale in crosscheck_torchvision():
        print(f'{name} {size}: stage maps {shapes}, max |HF - torchvision| {diff:.1e} (maps up to {scale:.2f})')
