"""Classification metrics on small numeric arrays (scores and labels, never images)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["label_matrix", "validation_auroc", "auroc", "auroc_per_label", "sensitivity_specificity", "roc_curve",
           "bootstrap_auroc", "binary_confusion"]


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


def binary_confusion(scores, labels, threshold: float = 0.5) -> dict:
    """Counts ``tp, fp, tn, fn`` of ``scores >= threshold`` against 0/1 ``labels``."""
    p = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    y = np.asarray(labels).ravel().astype(bool)
    return {"tp": int((p & y).sum()), "fp": int((p & ~y).sum()), "tn": int((~p & ~y).sum()),
            "fn": int((~p & y).sum())}


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)`` at every distinct score, highest first.

    The first point is ``(0, 0)`` at threshold ``inf`` (as scikit-learn's
    ``roc_curve(drop_intermediate=False)``).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1 - tps).astype(np.float64)
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(last.size + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(last.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last]]


def _weighted_auroc(s: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC for each row of ``weights`` ``(B, n)`` (case multiplicities), ties counted half."""
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    wp = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)  # positive weight per distinct score
    wn = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    n_pos, n_neg = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (wp * (below + 0.5 * wn)).sum(axis=1) / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def bootstrap_auroc(scores, labels, n_boot: int = 1000, seed: int = 0, chunk: int = 200) -> np.ndarray:
    """AUROC of each label on ``n_boot`` bootstrap resamples of the cases: ``(n_boot, labels)``.

    Resample ``b`` draws ``n`` case indices with replacement,
    ``numpy.random.default_rng(seed).integers(0, n, size=(n_boot, n))`` in
    chunks of ``chunk`` rows, the same cases for every label (so a macro mean
    over labels per resample gives the mean's interval).  Replicates where a
    label has no positive or no negative case are NaN.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if s.ndim == 1:
        s, y = s[:, None], y[:, None]
    n = s.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, s.shape[1]))
    for a in range(0, n_boot, chunk):
        b = min(n_boot, a + chunk)
        idx = rng.integers(0, n, size=(b - a, n))
        w = np.zeros((b - a, n))
        np.add.at(w, (np.repeat(np.arange(b - a), n), idx.ravel()), 1.0)
        for k in range(s.shape[1]):
            out[a:b, k] = _weighted_auroc(s[:, k], y[:, k], w)
    return out


def label_matrix(probabilities, labels, what: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(n, L)`` and 0/1 labels ``(n, L)`` from probability rows and label rows.

    Labels are 0/1 arrays (multi-label) or class indices (multi-class: one-vs-rest
    columns; with two classes only the positive one is kept).
    """
    p = np.array(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if isinstance(labels[0], (list, tuple, np.ndarray)):
        y = np.array(labels, dtype=np.float64)
    else:
        idx = np.array([int(v) for v in labels])
        if idx.min() < 0 or idx.max() >= max(p.shape[1], 2):
            raise ConfigError(f"class index out of range 0..{p.shape[1] - 1} in {what!r}")
        y = np.eye(max(p.shape[1], 2))[idx][:, : p.shape[1]]
        if p.shape[1] == 2:
            p, y = p[:, 1:], y[:, 1:]
    if y.shape != p.shape:
        raise ConfigError(f"{what!r} has {y.shape[1]} labels but the probabilities have {p.shape[1]}")
    return p, y


def validation_auroc(probabilities, labels, mode: str, n_labels: int) -> dict:
    """An epoch's validation entries: ``val_auroc`` (mean over labels with both classes) and per label.

    ``probabilities``: one row per scored image; ``labels``: 0/1 rows
    (multilabel) or class indices (multiclass).  Both engines' estimators
    record this after every epoch.
    """
    if len(probabilities):
        per = auroc_per_label(*label_matrix(list(probabilities), list(labels)))
    else:  # binary multiclass: one AUROC
        per = [float("nan")] * (1 if mode == "multiclass" and n_labels == 2 else n_labels)
    finite = [v for v in per if np.isfinite(v)]
    return {"val_auroc": float(np.mean(finite)) if finite else float("nan"), "val_auroc_per_label": per}
