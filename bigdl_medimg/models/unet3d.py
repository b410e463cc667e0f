"""A 3-D U-Net on BigDL's Keras-style (channels-first) API.

BigDL has no 5-D batch normalisation, so each convolution block is
conv-ReLU-conv-ReLU with optional spatial dropout (the original U-Net had no
normalisation either); inputs are intensity-normalised by the preprocessing
stages instead.  The output is per-voxel class scores laid out ``(voxels,
classes)`` for BigDL's ``TimeDistributedCriterion``; :func:`flat_model` wraps
it to one flat vector per sample, which is what ``NNModel.transform`` accepts.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError

__all__ = ["unet3d", "flat_model", "check_patch_shape"]


def check_patch_shape(patch_shape: Sequence[int], depth: int) -> tuple[int, int, int]:
    """Validate that every patch side is divisible by ``2**depth`` (pooling levels)."""
    p = tuple(int(s) for s in patch_shape)
    if len(p) != 3 or min(p) < 1:
        raise ConfigError(f"patch shape must be three positive sizes, got {list(patch_shape)}")
    if depth < 0 or depth > 5:
        raise ConfigError(f"depth must be 0..5, got {depth}")
    if any(s % (2 ** depth) for s in p):
        raise ConfigError(f"patch shape {list(p)} must be divisible by 2**depth = {2 ** depth} on every axis")
    return p


def unet3d(n_classes: int, patch_shape: Sequence[int], *, in_channels: int = 1, depth: int = 2,
           base_filters: int = 8, dropout: float = 0.0, kernel: int = 3):
    """Build the network.

    Parameters
    ----------
    n_classes : int
        Output classes (background included).
    patch_shape : (D, H, W)
        Input size; each side divisible by ``2**depth``.
    depth : int
        Pooling levels (0 gives a plain two-conv network).
    base_filters : int
        Filters at full resolution; doubled at each level.
    dropout : float
        Spatial dropout rate after each block (0 disables it).
    kernel : int
        Convolution size (1 makes the network pointwise, used by tests).

    Returns
    -------
    bigdl.dllib.keras.models.Model
        Input ``(in_channels, D, H, W)``, output ``(D*H*W, n_classes)`` scores.
    """
    from bigdl.dllib.keras.engine.topology import merge
    from bigdl.dllib.keras.layers import (Convolution3D, Input, MaxPooling3D, Permute, Reshape,
                                          SpatialDropout3D, UpSampling3D)
    from bigdl.dllib.keras.models import Model

    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    if base_filters < 1 or not 0 <= dropout < 1 or kernel < 1:
        raise ConfigError("base_filters must be >= 1, dropout in [0, 1), kernel >= 1")
    d, h, w = check_patch_shape(patch_shape, depth)

    def block(x, n):
        x = Convolution3D(n, kernel, kernel, kernel, activation="relu", border_mode="same")(x)
        x = Convolution3D(n, kernel, kernel, kernel, activation="relu", border_mode="same")(x)
        return SpatialDropout3D(dropout)(x) if dropout > 0 else x

    inp = Input(shape=(in_channels, d, h, w))
    skips, x = [], inp
    for level in range(depth):
        x = block(x, base_filters * 2 ** level)
        skips.append(x)
        x = MaxPooling3D((2, 2, 2))(x)
    x = block(x, base_filters * 2 ** depth)
    for level in reversed(range(depth)):
        x = merge([UpSampling3D((2, 2, 2))(x), skips[level]], mode="concat", concat_axis=1)
        x = block(x, base_filters * 2 ** level)
    logits = Convolution3D(n_classes, 1, 1, 1)(x)
    out = Reshape((d * h * w, n_classes))(Permute((2, 3, 4, 1))(logits))
    return Model(inp, out)


def flat_model(model, n_voxels: int, n_classes: int):
    """Wrap a ``(voxels, classes)``-output model so each sample's output is one flat vector."""
    from bigdl.dllib.keras.layers import Reshape
    from bigdl.dllib.keras.models import Sequential

    seq = Sequential()
    seq.add(model)
    seq.add(Reshape((n_voxels * n_classes,)))
    return seq
