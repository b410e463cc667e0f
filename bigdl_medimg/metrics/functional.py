"""Pure-numpy evaluation metrics."""
from __future__ import annotations

import numpy as np

__all__ = ["dice_per_class"]


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Dice of each foreground class ``1..n_classes-1`` between two label maps.

    A class absent from both maps scores NaN (undefined), so averages can skip it.
    """
    pred = np.asarray(pred).ravel()
    ref = np.asarray(ref).ravel()
    if pred.shape != ref.shape:
        raise ValueError(f"label maps differ in size: {pred.size} vs {ref.size}")
    out = np.full(n_classes - 1, np.nan)
    for k in range(1, n_classes):
        p, r = pred == k, ref == k
        denom = int(p.sum()) + int(r.sum())
        if denom:
            out[k - 1] = 2.0 * int(np.logical_and(p, r).sum()) / denom
    return out
