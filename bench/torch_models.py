"""The library's networks re-written in PyTorch, layer for layer, for the side-by-side benchmarks.

``UNet3d`` mirrors :func:`bigdl_medimg.models.unet3d` (batch-norm variant) and
``DenseNet2d`` mirrors :func:`bigdl_medimg.models.densenet2d`; the losses mirror
the estimators' (soft Dice + weighted cross-entropy on softmax; weighted BCE on
sigmoid).  PyTorch is a benchmark-only dependency.
"""
from __future__ import annotations

import torch
from torch import nn


class UNet3d(nn.Module):
    def __init__(self, n_classes=5, in_channels=1, depth=2, base_filters=8, batch_norm=True):
        super().__init__()

        def block(cin, cout):
            layers = []
            for i in range(2):
                layers.append(nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01))
                layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        self.depth = depth
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


def dice_ce_loss(logits, onehot, class_weights, smooth=1.0):
    """The segmentation estimator's loss: weighted CE + 1 - mean foreground soft Dice, per sample, batch mean."""
    p = torch.softmax(logits, 1).flatten(2)  # (N, C, V)
    t = onehot.flatten(2)
    w = class_weights.view(1, -1, 1)
    wt = t * w
    ce = -(wt * torch.log(p.clamp(1e-7, 1.0))).sum((1, 2)) / (wt.sum((1, 2)) + 1e-7)
    inter = (p * t).sum(2)
    dice = (2 * inter + smooth) / (p.sum(2) + t.sum(2) + smooth + 1e-7)
    return (ce + 1.0 - dice[:, 1:].mean(1)).mean()


class _DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.f = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True),
            nn.Conv2d(cin, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True),
            nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


class DenseNet2d(nn.Module):
    def __init__(self, n_outputs=14, in_channels=1, growth_rate=32, block_config=(6, 12, 24, 16), init_features=64,
                 bn_size=4, compression=0.5):
        super().__init__()
        layers = [nn.Conv2d(in_channels, init_features, 7, stride=2, padding=3, bias=False),
                  nn.BatchNorm2d(init_features, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, 2, padding=1)]
        n = init_features
        for b, count in enumerate(block_config):
            for _ in range(count):
                layers.append(_DenseLayer(n, growth_rate, bn_size))
                n += growth_rate
            if b < len(block_config) - 1:
                out = max(1, int(n * compression))
                layers += [nn.BatchNorm2d(n, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True),
                           nn.Conv2d(n, out, 1, bias=False), nn.AvgPool2d(2, 2)]
                n = out
        layers += [nn.BatchNorm2d(n, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                   nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(n, n_outputs)

    def forward(self, x):
        return self.fc(self.features(x))


def weighted_bce_loss(logits, y, wp, wn):
    """The classification estimator's multi-label loss on sigmoid outputs."""
    p = torch.sigmoid(logits).clamp(1e-7, 1 - 1e-7)
    return -(y * wp * torch.log(p) + (1 - y) * wn * torch.log(1 - p)).mean(1).mean()
