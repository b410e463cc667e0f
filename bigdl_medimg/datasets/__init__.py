"""Synthetic phantoms and loaders for public datasets' file layouts."""
from __future__ import annotations

from .phantoms import CHEST_LABELS, KNEE_CLASSES, chest_xray_phantom, knee_phantom

__all__ = ["knee_phantom", "chest_xray_phantom", "KNEE_CLASSES", "CHEST_LABELS"]
