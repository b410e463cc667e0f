"""Network builders on BigDL's Keras-style API (imported lazily: they need a running BigDL engine)."""
from __future__ import annotations

__all__ = ["unet3d"]


def __getattr__(name: str):
    if name == "unet3d":
        from .unet3d import unet3d

        return unet3d
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
