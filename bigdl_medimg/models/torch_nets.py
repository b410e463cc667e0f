"""The library's networks in PyTorch, layer for layer the BigDL builders (the ``engine="torch"`` networks).

* :class:`UNet3d` mirrors :func:`~bigdl_medimg.models.unet3d.unet3d`; its batch
  norm is torch's real ``BatchNorm3d`` (BigDL's 5-D substitute computes the same
  per-channel statistics).  Output: ``(N, classes, D, H, W)`` scores.
* :class:`DenseNet2d`, :class:`ResNet2d`, :class:`CNN3d` mirror
  :mod:`~bigdl_medimg.models.classifiers`; output: ``(N, outputs)`` logits.

Where the architecture is the same the parameter counts equal the BigDL
builders' (tested).  Batch-norm settings are BigDL's Keras defaults as BigDL
runs them: epsilon 1e-3 and momentum 0.99, which BigDL (like Torch7) applies as
``running = 0.01 running + 0.99 batch``, torch's own convention for the same
number, so inference uses statistics close to the last training batches'.  Importing
this module imports torch: the library imports it only when
``engine="torch"`` is asked for.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .classifiers import check_densenet
from .unet3d import check_patch_shape

__all__ = ["UNet3d", "DenseNet2d", "ResNet2d", "CNN3d", "keras_init"]

BN_EPS, BN_MOMENTUM = 1e-3, 0.99


def keras_init(module: nn.Module) -> None:
    """BigDL's Keras-layer initialisation: Glorot-uniform weights and zero biases for every convolution and
    dense layer (torch's default is about 1.7x narrower), so both engines start from the same distribution."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _bn(dims: int, n: int) -> nn.Module:
    return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(n, eps=BN_EPS, momentum=BN_MOMENTUM)


class UNet3d(nn.Module):
    """3-D U-Net: per level two 3x3x3 conv(-BN)-ReLU blocks, max pooling, nearest up-sampling, skip concat."""

    def __init__(self, n_classes: int, patch_shape: Sequence[int], *, in_channels: int = 1, depth: int = 2,
                 base_filters: int = 8, dropout: float = 0.0, kernel: int = 3, batch_norm: bool = False):
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        if base_filters < 1 or not 0 <= dropout < 1 or kernel < 1:
            raise ConfigError("base_filters must be >= 1, dropout in [0, 1), kernel >= 1")
        check_patch_shape(patch_shape, depth)

        def block(cin, cout):
            layers = []
            for i in range(2):
                layers.append(nn.Conv3d(cin if i == 0 else cout, cout, kernel, padding=kernel // 2))
                if batch_norm:
                    layers.append(_bn(3, cout))
                layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout3d(dropout))
            return nn.Sequential(*layers)

        self.down = nn.ModuleList()
        c = in_channels
        for level in range(depth):
            self.down.append(block(c, base_filters * 2 ** level))
            c = base_filters * 2 ** level
        self.bottom = block(c, base_filters * 2 ** depth)
        c = base_filters * 2 ** depth
        self.up = nn.ModuleList()
        for level in reversed(range(depth)):
            n = base_filters * 2 ** level
            self.up.append(block(c + n, n))
            c = n
        self.head = nn.Conv3d(c, n_classes, 1)
        self.pool = nn.MaxPool3d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        keras_init(self)

    def forward(self, x):
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for blk, skip in zip(self.up, reversed(skips)):
            x = blk(torch.cat([self.upsample(x), skip], 1))
        return self.head(x)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), _bn(2, cout), nn.ReLU(inplace=True)]


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.f = nn.Sequential(_bn(2, cin), nn.ReLU(inplace=True), nn.Conv2d(cin, bn_size * growth, 1, bias=False),
                               _bn(2, bn_size * growth), nn.ReLU(inplace=True),
                               nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


class DenseNet2d(nn.Module):
    """DenseNet-BC; the defaults are DenseNet-121."""

    def __init__(self, n_outputs: int, input_shape: Sequence[int] = (1, 224, 224), *, growth_rate: int = 32,
                 block_config: Sequence[int] = (6, 12, 24, 16), init_features: int = 64, bn_size: int = 4,
                 compression: float = 0.5, dropout: float = 0.0):
        super().__init__()
        c, _h, _w = check_densenet(n_outputs, input_shape, growth_rate, block_config, init_features, compression)
        layers = _conv_bn_relu(c, init_features, 7, 2) + [nn.MaxPool2d(3, 2, padding=1)]
        n = init_features
        for b, count in enumerate(block_config):
            for _ in range(int(count)):
                layers.append(_DenseLayer(n, growth_rate, bn_size))
                n += growth_rate
            if b < len(block_config) - 1:
                out = max(1, int(n * compression))
                layers += [_bn(2, n), nn.ReLU(inplace=True), nn.Conv2d(n, out, 1, bias=False), nn.AvgPool2d(2, 2)]
                n = out
        layers += [_bn(2, n), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(n, n_outputs)
        keras_init(self)

    def forward(self, x):
        return self.fc(self.features(x))


class _ResBlock(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool):
        super().__init__()
        out = width * 4 if bottleneck else width
        if bottleneck:  # v1.5: the stride sits on the 3x3 convolution
            f = _conv_bn_relu(cin, width, 1) + _conv_bn_relu(width, width, 3, stride) + \
                [nn.Conv2d(width, out, 1, bias=False)]
        else:
            f = _conv_bn_relu(cin, width, 3, stride) + [nn.Conv2d(width, out, 3, padding=1, bias=False)]
        self.f = nn.Sequential(*f, _bn(2, out))
        self.short = nn.Identity() if stride == 1 and cin == out else \
            nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False), _bn(2, out))
        self.out_channels = out

    def forward(self, x):
        return torch.relu(self.f(x) + self.short(x))


class ResNet2d(nn.Module):
    """ResNet v1.5; the defaults are ResNet-50."""

    def __init__(self, n_outputs: int, input_shape: Sequence[int] = (1, 224, 224), *,
                 layers: Sequence[int] = (3, 4, 6, 3), base_filters: int = 64, bottleneck: bool = True):
        super().__init__()
        c = int(input_shape[0])
        if n_outputs < 1 or base_filters < 1 or not layers:
            raise ConfigError("resnet2d: n_outputs and base_filters >= 1, layers non-empty")
        mods = _conv_bn_relu(c, base_filters, 7, 2) + [nn.MaxPool2d(3, 2, padding=1)]
        cin = base_filters
        for stage, blocks in enumerate(layers):
            for i in range(int(blocks)):
                blk = _ResBlock(cin, base_filters * 2 ** stage, 2 if (i == 0 and stage > 0) else 1, bottleneck)
                mods.append(blk)
                cin = blk.out_channels
        mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*mods)
        self.fc = nn.Linear(cin, n_outputs)
        keras_init(self)

    def forward(self, x):
        return self.fc(self.features(x))


class CNN3d(nn.Module):
    """3-D CNN: per level two 3x3x3 conv(-BN)-ReLU and a 2x2x2 max pool; global max + average pooled head."""

    def __init__(self, n_outputs: int, input_shape: Sequence[int] = (1, 32, 64, 64), *,
                 filters: Sequence[int] = (8, 16, 32), batch_norm: bool = True, dropout: float = 0.2):
        super().__init__()
        c, d, h, w = (int(v) for v in input_shape)
        if n_outputs < 1 or not filters or min(filters) < 1:
            raise ConfigError("cnn3d: n_outputs >= 1 and positive filters")
        if any(s % 2 ** (len(filters) - 1) for s in (d, h, w)):
            raise ConfigError(f"cnn3d: input {d}x{h}x{w} must be divisible by {2 ** (len(filters) - 1)}")
        mods, cin = [], c
        for level, n in enumerate(filters):
            for _ in range(2):
                mods.append(nn.Conv3d(cin, int(n), 3, padding=1))
                if batch_norm:
                    mods.append(_bn(3, int(n)))
                mods.append(nn.ReLU(inplace=True))
                cin = int(n)
            if level < len(filters) - 1:
                mods.append(nn.MaxPool3d(2))
        self.features = nn.Sequential(*mods)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(2 * cin, n_outputs)
        keras_init(self)

    def forward(self, x):
        x = self.features(x)
        x = torch.cat([torch.amax(x, dim=(2, 3, 4)), torch.mean(x, dim=(2, 3, 4))], 1)
        return self.fc(self.drop(x))
