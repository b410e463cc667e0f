"""Exact, lossless reorientation of channels-first arrays using their affine."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["reorient", "axcodes_of"]


def axcodes_of(affine: np.ndarray) -> tuple[str, str, str]:
    """The closest anatomical axis codes (e.g. ``("R", "A", "S")``) of an affine."""
    from nibabel.orientations import aff2axcodes

    return tuple(aff2axcodes(np.asarray(affine, dtype=np.float64)))


def reorient(array: np.ndarray, affine: np.ndarray, axcodes: str = "RAS") -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip the last three axes of ``array`` so they point along ``axcodes``.

    Only axis permutations and flips are applied (no interpolation), and the
    affine is updated so that every voxel keeps its world position.

    Parameters
    ----------
    array : ndarray
        ``(..., X, Y, Z)``: the spatial axes are the last three.
    affine : (4, 4) array_like
        RAS+ affine of the spatial axes.
    axcodes : str
        Three letters, one of L/R, P/A, I/S each.

    Returns
    -------
    array, affine
    """
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    codes = tuple(axcodes.upper())
    if len(codes) != 3 or {c for c in codes} - set("LRAPIS") or len({_pair(c) for c in codes}) != 3:
        raise ConfigError(f"axcodes must be three letters from L/R, A/P, I/S on distinct axes, got {axcodes!r}")
    arr = np.asarray(array)
    if arr.ndim < 3:
        raise ConfigError(f"reorient needs at least 3 dimensions, got shape {arr.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    start = io_orientation(aff)
    target = axcodes2ornt(codes)
    xform = ornt_transform(start, target)
    lead = arr.ndim - 3
    spatial = arr.shape[lead:]
    out = arr
    # flips first (in the original axis order), then the permutation
    for ax, (_, flip) in enumerate(xform):
        if flip == -1:
            out = np.flip(out, axis=lead + ax)
    order = np.argsort(xform[:, 0].astype(int))
    out = np.transpose(out, tuple(range(lead)) + tuple(lead + int(i) for i in order))
    new_aff = aff @ inv_ornt_aff(xform, spatial)
    return np.ascontiguousarray(out), new_aff


def _pair(c: str) -> int:
    return {"L": 0, "R": 0, "A": 1, "P": 1, "I": 2, "S": 2}[c]
