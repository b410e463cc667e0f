"""Network builders on BigDL's Keras-style API (imported lazily: they need a running BigDL engine)."""
from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = ["unet3d"]

__getattr__ = lazy_getattr(__name__, globals(), {"unet3d": ".unet3d"})
