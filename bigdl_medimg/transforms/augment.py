"""Random augmentation of an image and its mask together (pure numpy, seeded).

Geometry (flips, 90-degree rotations, a small rotation/scaling about the
centre) is applied identically to image and mask, with linear interpolation
for the image and nearest for the mask, and the affine is updated so it stays
true.  Intensity changes (scale, shift, gamma, a smooth multiplicative bias
field as MRI coils cause) touch the image only.

Flips are named by the anatomical axis they mirror (``"LR"``, ``"AP"``,
``"SI"``), found from the affine (the world axis an array axis runs along
most), so a preset can allow a left-right flip of a knee and forbid an
upside-down one whatever the array's orientation.  For images without a
patient frame (plain radiographs) the affine is a pixel scaling: array axis 0
counts as LR, axis 1 as AP.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .array import index_map_affine, spatial_ndim

__all__ = ["AugmentConfig", "augment", "ANATOMICAL_AXES", "anatomical_axis"]

#: flip axes by the world (RAS) axis they mirror
ANATOMICAL_AXES = ("LR", "AP", "SI")


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each augmentation (0 turns one off)."""

    flip_prob: float = 0.5
    rot90_prob: float = 0.5
    affine_prob: float = 0.3
    max_rotation_deg: float = 10.0
    scale_range: float = 0.1
    intensity_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    gamma_prob: float = 0.3
    gamma_range: float = 0.3
    flip_axes: tuple = ANATOMICAL_AXES
    bias_prob: float = 0.0
    bias_strength: float = 0.1
    spatial_dims: int = 0  # 0: from the array (3 for arrays of three or more axes); 2 for (channels, H, W) images

    def validate(self) -> "AugmentConfig":
        for name in ("flip_prob", "rot90_prob", "affine_prob", "intensity_prob", "gamma_prob", "bias_prob"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {v}")
        for name in ("max_rotation_deg", "scale_range", "intensity_scale", "intensity_shift", "gamma_range",
                     "bias_strength"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scale_range >= 1 or self.gamma_range >= 1:
            raise ConfigError("scale_range and gamma_range must be < 1")
        if self.spatial_dims not in (0, 2, 3):
            raise ConfigError(f"spatial_dims must be 0 (from the array), 2 or 3, got {self.spatial_dims}")
        bad = [a for a in self.flip_axes if a not in ANATOMICAL_AXES]
        if bad:
            raise ConfigError(f"flip_axes {bad}: each must be one of {list(ANATOMICAL_AXES)}")
        return self


def anatomical_axis(affine: np.ndarray, axis: int) -> str:
    """``"LR"``, ``"AP"`` or ``"SI"``: the world axis array axis ``axis`` runs along most (by the affine)."""
    return ANATOMICAL_AXES[int(np.argmax(np.abs(np.asarray(affine, float)[:3, axis])))]


def _bias_field(shape, rng, strength: float) -> np.ndarray:
    """``exp`` of a random polynomial of degree 2 over the grid scaled to [-1, 1] (MONAI's RandBiasField idea)."""
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    terms = list(grids) + [grids[i] * grids[j] for i in range(len(grids)) for j in range(i, len(grids))]
    log_field = np.zeros(shape, np.float32)
    for t in terms:
        log_field += np.float32(rng.uniform(-strength, strength)) * t
    return np.exp(log_field, out=log_field)


def _apply_index_op(arrays, affine, op, nd):
    """Apply a flip/rot90 to the spatial axes of every array, as views (no copy)."""
    spatial = arrays[0].shape[arrays[0].ndim - nd:]
    m = index_map_affine(op, spatial)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        lead = a.ndim - nd
        out.append(op(a, lead))
    return out, affine @ m


def _rotation(nd: int, rng, max_deg: float) -> np.ndarray:
    if nd == 2:
        t = np.deg2rad(rng.uniform(-max_deg, max_deg))
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    r = np.eye(3)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        t = np.deg2rad(rng.uniform(-max_deg, max_deg))
        g = np.eye(3)
        g[a, a] = g[b, b] = np.cos(t)
        g[a, b], g[b, a] = -np.sin(t), np.sin(t)
        r = r @ g
    return r


def augment(image: np.ndarray, affine: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig()):
    """Augment ``image`` (and ``mask`` on the same grid) with ``rng``.

    Returns
    -------
    image : ndarray (float32)
    affine : (4, 4) ndarray
    mask : ndarray or None (dtype kept)
    """
    nd = cfg.spatial_dims or spatial_ndim(image)
    if mask is not None and mask.shape[mask.ndim - nd:] != image.shape[image.ndim - nd:]:
        raise ConfigError(f"mask grid {mask.shape} differs from image grid {image.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    arrays = [image, mask]
    for ax in range(nd):
        # a draw for every axis, allowed or not, so the other draws do not depend on flip_axes
        if rng.random() < cfg.flip_prob and anatomical_axis(aff, ax) in cfg.flip_axes:
            arrays, aff = _apply_index_op(arrays, aff, lambda a, lead=0, ax=ax: np.flip(a, lead + ax), nd)
    if rng.random() < cfg.rot90_prob:
        plane = (nd - 2, nd - 1)  # the in-plane axes (rows, cols)
        shp = arrays[0].shape[-2:]
        k = int(rng.integers(1, 4)) if shp[0] == shp[1] else 2  # keep the grid shape
        arrays, aff = _apply_index_op(
            arrays, aff, lambda a, lead=0, k=k: np.rot90(a, k, axes=(lead + plane[0], lead + plane[1])), nd)
    img, msk = arrays
    if rng.random() < cfg.affine_prob:
        spatial = np.asarray(img.shape[img.ndim - nd:], float)
        r = _rotation(nd, rng, cfg.max_rotation_deg) * rng.uniform(1 - cfg.scale_range, 1 + cfg.scale_range)
        centre = (spatial - 1) / 2
        offset = centre - r @ centre          # old_index = r @ new_index + offset
        img = _warp(img, r, offset, nd, order=1)
        if msk is not None:
            msk = _warp(msk, r, offset, nd, order=0)
        m = np.eye(4)
        m[:nd, :nd] = r
        m[:nd, 3] = offset
        aff = aff @ m
    # one float32 copy; every later step works in place
    img = np.array(img, dtype=np.float32, order="C", copy=True) if not (
        img.dtype == np.float32 and img.flags.c_contiguous and img.flags.writeable) else img
    if rng.random() < cfg.intensity_prob:
        span = float(img.max() - img.min()) or 1.0
        img *= np.float32(1 + rng.uniform(-cfg.intensity_scale, cfg.intensity_scale))
        img += np.float32(rng.uniform(-cfg.intensity_shift, cfg.intensity_shift) * span)
    if rng.random() < cfg.gamma_prob:
        lo, hi = float(img.min()), float(img.max())
        if hi > lo:
            g = float(np.exp(rng.uniform(np.log(1 - cfg.gamma_range), -np.log(1 - cfg.gamma_range))))
            img -= np.float32(lo)
            img /= np.float32(hi - lo)
            np.power(img, np.float32(g), out=img)
            img *= np.float32(hi - lo)
            img += np.float32(lo)
    if cfg.bias_prob and rng.random() < cfg.bias_prob:
        img *= _bias_field(img.shape[img.ndim - nd:], rng, cfg.bias_strength)
    if msk is not None:
        msk = np.ascontiguousarray(msk)
    return img, aff, msk


def _warp(a: np.ndarray, r: np.ndarray, offset: np.ndarray, nd: int, order: int) -> np.ndarray:
    """Resample every channel of ``a`` through ``old = r @ new + offset`` into one new array."""
    from scipy import ndimage as ndi

    lead = a.shape[: a.ndim - nd]
    spatial = a.shape[a.ndim - nd:]
    out = np.empty(lead + spatial, dtype=np.float32 if order else a.dtype)
    for idx in np.ndindex(*lead):  # channel by channel, straight from the (possibly strided) view
        ndi.affine_transform(a[idx], r, offset=offset, output=out[idx], order=order, mode="nearest")
    return out
