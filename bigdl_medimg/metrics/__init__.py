"""Metrics: pure-numpy functions (``functional``)."""
from __future__ import annotations

from .functional import dice_per_class

__all__ = ["dice_per_class"]
