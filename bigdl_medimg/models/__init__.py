"""Network builders: BigDL's Keras-style API and the same networks in PyTorch.

Imported lazily: the BigDL builders need a running BigDL engine, the torch
networks need torch (never imported by ``import bigdl_medimg``).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = ["build_network", "unet3d"]

__getattr__ = lazy_getattr(__name__, globals(), {"unet3d": ".unet3d", "build_network": ".network"})
