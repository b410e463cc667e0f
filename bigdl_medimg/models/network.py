"""One builder for every topology and both engines: :func:`build_network`."""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError

__all__ = ["build_network", "check_engine", "ENGINES", "NETWORK_TOPOLOGIES", "require_torch", "torch_parameter_count"]

ENGINES = ("bigdl", "torch")

#: every topology name (``unet3d`` segments, the others classify; see :data:`.classifiers.TOPOLOGIES`)
NETWORK_TOPOLOGIES = ("unet3d", "cnn3d", "cnn3d_small", "densenet121", "densenet_small", "densenet_tiny",
                      "resnet50", "resnet_small")

TORCH_PIP = "pip install 'bigdl-medimg[torch]'"


def require_torch(owner: str = 'engine="torch"'):
    """The ``torch`` module, or a ConfigError that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(f"{owner} needs PyTorch, which is not installed here: {TORCH_PIP} "
                          f"(the CPU build, torch==2.13.0)") from exc
    return torch


def check_engine(owner: str, engine: str) -> None:
    """ConfigError unless ``engine`` is one of :data:`ENGINES` (and torch is importable for ``"torch"``)."""
    if engine not in ENGINES:
        raise ConfigError(f"{owner}: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        require_torch(f"{owner} with engine='torch'")


def build_network(topology: str, engine: str = "bigdl", *, n_outputs: int, input_shape: Sequence[int], **params):
    """Build ``topology`` for ``engine``.

    Parameters
    ----------
    topology : str
        One of :data:`NETWORK_TOPOLOGIES`.
    engine : {"bigdl", "torch"}
        ``"bigdl"`` gives a BigDL Keras-style model (needs a running BigDL
        engine), ``"torch"`` a ``torch.nn.Module``.
    n_outputs : int
        Classes (``unet3d``: background included) or labels.
    input_shape : sequence of int
        ``(channels, *spatial)``; ``unet3d`` takes ``(channels, D, H, W)`` patches.
    **params
        The builder's keyword arguments (``depth``, ``base_filters``,
        ``growth_rate``, ``filters``, ``dropout``, ...), overriding the topology's.

    Returns
    -------
    bigdl.dllib.keras.models.Model or torch.nn.Module
        BigDL U-Net output: ``(D*H*W, classes)`` scores; torch U-Net output:
        ``(N, classes, D, H, W)``; classifiers: one logit per output.
    """
    check_engine("build_network", engine)
    shape = [int(v) for v in input_shape]
    if topology == "unet3d":
        if len(shape) != 4:
            raise ConfigError(f"unet3d takes (channels, D, H, W) patches, got {shape}")
        if engine == "torch":
            from .torch_nets import UNet3d

            return UNet3d(n_outputs, shape[1:], in_channels=shape[0], **params)
        from .unet3d import unet3d

        return unet3d(n_outputs, shape[1:], in_channels=shape[0], **params)
    from .classifiers import TOPOLOGIES, build_topology

    if topology not in TOPOLOGIES:
        raise ConfigError(f"unknown topology {topology!r}; available: {', '.join(NETWORK_TOPOLOGIES)}")
    if engine == "bigdl":
        return build_topology(topology, n_outputs, shape, **params)
    from . import torch_nets

    builder, kwargs, dims = TOPOLOGIES[topology]
    if len(shape) != dims + 1:
        raise ConfigError(f"topology {topology!r} takes {dims}-D images: input shape (channels, {dims} sizes), "
                          f"got {shape}")
    cls = {"densenet2d": torch_nets.DenseNet2d, "resnet2d": torch_nets.ResNet2d,
           "cnn3d": torch_nets.CNN3d}[builder.__name__]
    return cls(n_outputs, shape, **{**kwargs, **params})


def torch_parameter_count(module) -> int:
    """Trainable parameters of a torch module (what BigDL's ``parameters()`` counts)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
