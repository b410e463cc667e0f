"""Classification metrics on small numeric arrays (scores and labels, never images)."""
from __future__ import annotations

import numpy as np

__all__ = ["auroc", "auroc_per_label", "sensitivity_specificity"]


def auroc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN when a class is absent."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_per_label(scores, labels) -> list[float]:
    """AUROC of each column of ``scores`` ``(n, labels)`` against binary ``labels`` ``(n, labels)``."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if s.ndim == 1:
        s, y = s[:, None], y[:, None]
    return [auroc(s[:, k], y[:, k]) for k in range(s.shape[1])]


def sensitivity_specificity(scores, labels, threshold: float = 0.5) -> tuple[float, float]:
    """Sensitivity and specificity of ``scores >= threshold`` (NaN where undefined)."""
    p = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    y = np.asarray(labels).ravel().astype(bool)
    sens = float((p & y).sum() / y.sum()) if y.any() else float("nan")
    spec = float((~p & ~y).sum() / (~y).sum()) if (~y).any() else float("nan")
    return sens, spec
