"""Pure-numpy segmentation metrics (one volume at a time; the Spark evaluators run them on executors)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["mean_dice_record", "dice_per_class", "confusion_matrix", "surface_points", "surface_distances"]


def _pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction and reference differ in shape: {pred.shape} vs {ref.shape}")
    return pred, ref


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Dice of each foreground class ``1..n_classes-1`` between two label maps.

    A class absent from both maps scores NaN (undefined), so averages can skip it.
    """
    pred, ref = _pair(pred, ref)
    cm = confusion_matrix(pred, ref, n_classes)
    out = np.full(n_classes - 1, np.nan)
    for k in range(1, n_classes):
        denom = cm[k, :].sum() + cm[:, k].sum()
        if denom:
            out[k - 1] = 2.0 * cm[k, k] / denom
    return out


def confusion_matrix(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Voxel counts ``cm[reference, predicted]`` (``n_classes x n_classes``, int64).

    Labels outside ``0..n_classes-1`` raise ``ValueError``.
    """
    pred, ref = _pair(pred, ref)
    p = pred.ravel().astype(np.int64)
    r = ref.ravel().astype(np.int64)
    for name, a in (("prediction", p), ("reference", r)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1} "
                             f"(found {int(a.min())}..{int(a.max())})")
    return np.bincount(r * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def surface_points(mask: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """World coordinates (mm, ``(n, 3)``) of the boundary voxels of a binary mask.

    A boundary voxel is a mask voxel with a face neighbour outside the mask (or
    outside the array): ``mask & ~erosion(mask)`` with the face-connected
    structuring element, as MONAI and the DeepMind surface-distance package
    define it.  ``affine`` maps the spatial indices (the last 2 or 3 axes) to
    world millimetres; identity when omitted.
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask, dtype=bool)
    if m.ndim not in (2, 3):
        raise ValueError(f"surface distances need a 2-D or 3-D mask, got shape {m.shape}")
    if not m.any():
        return np.zeros((0, 3))
    structure = ndi.generate_binary_structure(m.ndim, 1)
    edge = m & ~ndi.binary_erosion(m, structure=structure, border_value=0)
    idx = np.argwhere(edge).astype(np.float64)
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64).reshape(4, 4)
    return idx @ aff[:3, : m.ndim].T + aff[:3, 3]


def surface_distances(pred: np.ndarray, ref: np.ndarray, affine: np.ndarray | None, n_classes: int,
                      percentile: float = 95.0, classes: Sequence[int] | None = None) -> dict:
    """Hausdorff distance at ``percentile`` and mean surface distance per foreground class, in mm.

    Distances are Euclidean in world space between boundary voxel centres
    (:func:`surface_points`), so any affine (oblique, anisotropic, flipped) is
    handled exactly.  Per class ``k``:

    * ``hd``: ``max(P(d(pred->ref)), P(d(ref->pred)))`` with ``P`` the
      ``percentile``-th percentile of the directed distances (MONAI's
      ``compute_hausdorff_distance(percentile=95)``);
    * ``msd``: mean of all directed distances of both directions (MONAI's
      symmetric average surface distance).

    A class absent from both maps scores NaN; present in only one, ``inf``.

    Returns
    -------
    dict
        ``{"hd": array (classes,), "msd": array (classes,)}`` for ``classes``
        (default ``1..n_classes-1``).
    """
    from scipy.spatial import cKDTree

    pred, ref = _pair(pred, ref)
    ks = list(range(1, n_classes)) if classes is None else [int(k) for k in classes]
    hd, msd = np.full(len(ks), np.nan), np.full(len(ks), np.nan)
    for i, k in enumerate(ks):
        sp, sr = surface_points(pred == k, affine), surface_points(ref == k, affine)
        if not len(sp) and not len(sr):
            continue
        if not len(sp) or not len(sr):
            hd[i] = msd[i] = np.inf
            continue
        d_pr = cKDTree(sr).query(sp)[0]
        d_rp = cKDTree(sp).query(sr)[0]
        hd[i] = max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile))
        msd[i] = (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size)
    return {"hd": hd, "msd": msd}


def mean_dice_record(per_volume, n_classes: int) -> dict:
    """An epoch's validation entries from per-volume Dice rows (classes ``1..n-1``, NaN = absent in both).

    ``val_dice_per_class``: each class's mean over the volumes where it is
    defined; ``val_dice``: the mean of the defined class means.  What
    :class:`~bigdl_medimg.metrics.DiceEvaluator` averages, for both engines.
    """
    d = np.asarray(per_volume, dtype=np.float64).reshape(-1, n_classes - 1)
    per_class = []
    for k in range(n_classes - 1):
        col = d[:, k][~np.isnan(d[:, k])]
        per_class.append(float(col.mean()) if col.size else float("nan"))
    finite = [v for v in per_class if np.isfinite(v)]
    return {"val_dice": float(np.mean(finite)) if finite else float("nan"), "val_dice_per_class": per_class}
