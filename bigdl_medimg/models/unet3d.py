"""A 3-D U-Net on BigDL's Keras-style (channels-first) API.

BigDL has no 5-D batch normalisation.  With ``batch_norm=True`` each
convolution is followed by the exact equivalent: the ``(C, D, H, W)`` feature map
is reshaped to ``(C, D*H, W)``, normalised by BigDL's 4-D (per-channel)
``BatchNormalization`` (statistics over batch and every voxel, as 5-D batch
norm computes them) and reshaped back.  Without it, blocks are
conv-ReLU-conv-ReLU as in the original U-Net.  Optional spatial dropout follows
each block.  The output is per-voxel class scores laid out ``(voxels,
classes)`` for BigDL's ``TimeDistributedCriterion``; :func:`flat_model` wraps
it to one flat vector per sample, which is what ``NNModel.transform`` accepts.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError

__all__ = ["unet3d", "flat_model", "check_patch_shape", "batch_norm_5d"]


def batch_norm_5d(x, channels: int, spatial: Sequence[int]):
    """Per-channel batch norm of a ``(C, D, H, W)`` node: reshape to 4-D, BigDL's BatchNormalization, reshape back."""
    from bigdl.dllib.keras.layers import BatchNormalization, Reshape

    d, h, w = (int(v) for v in spatial)
    x = Reshape((channels, d * h, w))(x)
    x = BatchNormalization(dim_ordering="th")(x)
    return Reshape((channels, d, h, w))(x)


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
           base_filters: int = 8, dropout: float = 0.0, kernel: int = 3, batch_norm: bool = False):
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
    batch_norm : bool
        Per-channel batch normalisation after each convolution (see the module notes).

    Returns
    -------
    bigdl.dllib.keras.models.Model
        Input ``(in_channels, D, H, W)``, output ``(D*H*W, n_classes)`` scores.
    """
    from bigdl.dllib.keras.engine.topology import merge
    from bigdl.dllib.keras.layers import (Activation, Convolution3D, Input, MaxPooling3D, Permute, Reshape,
                                          SpatialDropout3D, UpSampling3D)
    from bigdl.dllib.keras.models import Model

    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    if base_filters < 1 or not 0 <= dropout < 1 or kernel < 1:
        raise ConfigError("base_filters must be >= 1, dropout in [0, 1), kernel >= 1")
    d, h, w = check_patch_shape(patch_shape, depth)

    def conv(x, n, level):
        if not batch_norm:
            return Convolution3D(n, kernel, kernel, kernel, activation="relu", border_mode="same")(x)
        x = Convolution3D(n, kernel, kernel, kernel, border_mode="same")(x)
        x = batch_norm_5d(x, n, (d >> level, h >> level, w >> level))
        return Activation("relu")(x)

    def block(x, n, level):
        x = conv(conv(x, n, level), n, level)
        return SpatialDropout3D(dropout)(x) if dropout > 0 else x

    inp = Input(shape=(in_channels, d, h, w))
    skips, x = [], inp
    for level in range(depth):
        x = block(x, base_filters * 2 ** level, level)
        skips.append(x)
        x = MaxPooling3D((2, 2, 2))(x)
    x = block(x, base_filters * 2 ** depth, depth)
    for level in reversed(range(depth)):
        x = merge([UpSampling3D((2, 2, 2))(x), skips[level]], mode="concat", concat_axis=1)
        x = block(x, base_filters * 2 ** level, level)
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
