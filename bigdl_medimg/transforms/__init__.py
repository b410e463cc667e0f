"""Pure-numpy image transforms (Spark stages over them arrive with the preprocessing issue)."""
from __future__ import annotations

from .orientation import axcodes_of, reorient

__all__ = ["reorient", "axcodes_of"]
