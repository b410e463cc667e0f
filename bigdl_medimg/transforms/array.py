"""Pure-numpy image transforms on ``(array, affine)`` pairs (no Spark).

Every function follows the tensor contract: the spatial axes are the last three
(two for 2-D arrays), leading axes are channels, and the RAS+ affine is updated
so that it stays true: a voxel of the output maps to the world position its
value came from.  Intensity functions return float32; geometry functions keep
the dtype for nearest-neighbour (label) resampling and return float32 when
they interpolate.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..tensor import spacing_from_affine

__all__ = ["row_seed", "spatial_ndim", "resample", "crop_or_pad", "crop_foreground", "foreground_box", "resize_image",
           "intensity_window", "zscore_normalize", "percentile_scale", "patch_starts", "extract_patch",
           "translate", "index_map_affine"]


def spatial_ndim(arr: np.ndarray) -> int:
    """3 for arrays with at least three axes, else the array's own rank."""
    return 3 if arr.ndim >= 3 else arr.ndim


def _channels(arr: np.ndarray):
    """``(lead_shape, flat)`` where ``flat`` is ``(C, *spatial)``."""
    nd = spatial_ndim(arr)
    lead = arr.shape[: arr.ndim - nd]
    return lead, arr.reshape((-1,) + arr.shape[arr.ndim - nd:])


def translate(affine: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """Affine of a sub-grid whose index 0 sits at old index ``offset``."""
    m = np.eye(4)
    m[: len(offset), 3] = offset
    return np.asarray(affine, dtype=np.float64) @ m


def index_map_affine(op, spatial_shape: Sequence[int]) -> np.ndarray:
    """4x4 matrix ``M`` with ``old_index = M @ new_index`` for an index-permuting ``op`` (flip, rot90)."""
    nd = len(spatial_shape)
    # zero-memory coordinate grids (broadcast views): flips and rot90 stay views, we read a few elements
    grids = [np.broadcast_to(np.arange(n).reshape([-1 if k == ax else 1 for k in range(nd)]), tuple(spatial_shape))
             for ax, n in enumerate(spatial_shape)]
    moved = [op(g) for g in grids]
    new_shape = moved[0].shape
    origin = np.array([m[(0,) * nd] for m in moved], float)
    m = np.eye(4)
    for k in range(nd):
        idx = [0] * nd
        if new_shape[k] > 1:
            idx[k] = 1
            m[:nd, k] = np.array([mv[tuple(idx)] for mv in moved], float) - origin
        else:  # a singleton axis: its direction is whichever old axis is left over
            m[:nd, k] = 0
    m[:nd, 3] = origin
    # fill singleton axes so the matrix stays a permutation
    used = {int(np.flatnonzero(m[:nd, k])[0]) for k in range(nd) if np.any(m[:nd, k])}
    for k in range(nd):
        if not np.any(m[:nd, k]):
            free = sorted(set(range(nd)) - used)[0]
            m[free, k] = 1
            used.add(free)
    return m


# -------------------------------------------------------------- geometry ---

def resample(arr: np.ndarray, affine: np.ndarray, spacing: Sequence[float], order: int = 1,
             mode: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Resample to a new voxel spacing (mm), keeping the first voxel centre in place.

    Parameters
    ----------
    spacing : sequence of float
        One value per spatial axis (two for 2-D arrays).
    order : int
        Spline order: 0 (nearest; label masks keep their dtype), 1 (linear), 3.
    """
    from scipy import ndimage as ndi

    nd = spatial_ndim(arr)
    new_sp = np.asarray(spacing, dtype=np.float64)
    if new_sp.shape != (nd,) or not np.all(np.isfinite(new_sp)) or np.any(new_sp <= 0):
        raise ConfigError(f"spacing must be {nd} positive numbers, got {list(spacing)}")
    if order not in (0, 1, 2, 3, 4, 5):
        raise ConfigError(f"order must be 0..5, got {order}")
    old_sp = spacing_from_affine(affine)[:nd]
    ratio = new_sp / old_sp
    old_shape = np.asarray(arr.shape[arr.ndim - nd:])
    new_shape = tuple(int(max(1, round(s))) for s in old_shape * old_sp / new_sp)
    lead, flat = _channels(arr)
    out_dtype = arr.dtype if order == 0 else np.float32
    out = np.empty((flat.shape[0],) + new_shape, dtype=out_dtype)
    for c in range(flat.shape[0]):  # interpolation runs in double inside scipy: no float copy of the input
        ndi.affine_transform(flat[c], ratio, offset=0.0, output_shape=new_shape, output=out[c], order=order,
                             mode=mode, prefilter=order > 1)
    new_aff = np.asarray(affine, dtype=np.float64).copy()
    new_aff[:3, :nd] = new_aff[:3, :nd] * ratio
    return out.reshape(lead + new_shape), new_aff


def crop_or_pad(arr: np.ndarray, affine: np.ndarray, shape: Sequence[int], value: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop or pad the spatial axes to ``shape``."""
    nd = spatial_ndim(arr)
    target = [int(s) for s in shape]
    if len(target) != nd or min(target) < 1:
        raise ConfigError(f"shape must be {nd} positive sizes, got {list(shape)}")
    cur = arr.shape[arr.ndim - nd:]
    lead_axes = arr.ndim - nd
    slices = [slice(None)] * lead_axes
    pads = [(0, 0)] * lead_axes
    offset = []
    for c, t in zip(cur, target):
        if t <= c:
            start = (c - t) // 2
            slices.append(slice(start, start + t))
            pads.append((0, 0))
            offset.append(start)
        else:
            before = (t - c) // 2
            slices.append(slice(None))
            pads.append((before, t - c - before))
            offset.append(-before)
    out = arr[tuple(slices)]
    if any(p != (0, 0) for p in pads):
        out = np.pad(out, pads, mode="constant", constant_values=value)
    return np.ascontiguousarray(out), translate(affine, offset)


def foreground_box(source: np.ndarray, threshold: float = 0.0, margin: int = 0):
    """``(start, stop)`` of the box around ``source > threshold`` (spatial axes), or None."""
    nd = spatial_ndim(source)
    fg = source > threshold
    if source.ndim > nd:
        fg = fg.reshape((-1,) + source.shape[source.ndim - nd:]).any(axis=0)
    if not fg.any():
        return None
    idx = np.nonzero(fg)
    shape = fg.shape
    start = [max(0, int(i.min()) - margin) for i in idx]
    stop = [min(s, int(i.max()) + 1 + margin) for i, s in zip(idx, shape)]
    return start, stop


def crop_foreground(arr: np.ndarray, affine: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """Crop the spatial axes to ``box`` (from :func:`foreground_box`); None leaves the image as is."""
    if box is None:
        return arr, np.asarray(affine, dtype=np.float64)
    start, stop = box
    nd = spatial_ndim(arr)
    sl = (slice(None),) * (arr.ndim - nd) + tuple(slice(a, b) for a, b in zip(start, stop))
    return np.ascontiguousarray(arr[sl]), translate(affine, start)


def label_region(label: np.ndarray, labels: Sequence[int], closing: int = 0) -> np.ndarray:
    """Boolean map of ``label`` in ``labels``, optionally closed in-plane (last two axes) ``closing`` times."""
    region = np.isin(label, np.asarray(list(labels)))
    if closing > 0 and region.any():
        from scipy import ndimage as ndi

        st = np.zeros((3,) * region.ndim, bool)
        st[(1,) * (region.ndim - 2) + (slice(None), slice(None))] = True  # 3x3 in the last two axes
        region = ndi.binary_closing(region, structure=st, iterations=int(closing), border_value=0) | region
    return region


def crop_around_label(arr: np.ndarray, affine: np.ndarray, label: np.ndarray | None, labels: Sequence[int],
                      size: Sequence[int], value: float = 0) -> tuple[np.ndarray, np.ndarray, bool]:
    """A ``size`` window centred on the box around ``label`` voxels in ``labels`` (padded with ``value``).

    Returns ``(window, affine, found)``; without such voxels the window is
    centred on the image and ``found`` is False.
    """
    nd = spatial_ndim(arr)
    target = [int(s) for s in size]
    if len(target) != nd or min(target) < 1:
        raise ConfigError(f"size must be {nd} positive sizes, got {list(size)}")
    shape = arr.shape[arr.ndim - nd:]
    box = None
    if label is not None:
        box = foreground_box(np.isin(label, np.asarray(list(labels))).astype(np.uint8), 0)
    found = box is not None
    centre = [(a + b) / 2.0 for a, b in zip(*box)] if found else [s / 2.0 for s in shape]
    start = [int(round(c - t / 2.0)) for c, t in zip(centre, target)]
    out = np.full(arr.shape[:arr.ndim - nd] + tuple(target), value, dtype=arr.dtype)
    src, dst = [], []
    for st, t, n in zip(start, target, shape):
        a, b = max(st, 0), min(st + t, n)
        if b <= a:  # window entirely outside (cannot happen for a centred window, kept for safety)
            a = b = 0
        src.append(slice(a, b))
        dst.append(slice(a - st, a - st + (b - a)))
    lead = (slice(None),) * (arr.ndim - nd)
    out[lead + tuple(dst)] = arr[lead + tuple(src)]
    return out, translate(affine, start), found


def resize_image(arr: np.ndarray, affine: np.ndarray, size: Sequence[int], order: int = 1,
                 anti_aliasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Resize the two in-plane axes of a 2-D image (or of each slice) to ``size``.

    Pixel areas are aligned (scikit-image's convention), so the new pixel
    ``j`` is centred at old index ``(j + 0.5) * s - 0.5``; the affine says so.
    """
    from skimage.transform import resize

    size = [int(s) for s in size]
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"size must be two positive sizes, got {size}")
    if order not in (0, 1, 3):
        raise ConfigError(f"order must be 0, 1 or 3, got {order}")
    rows, cols = arr.shape[-2:]
    lead = arr.shape[:-2]
    flat = arr.reshape((-1, rows, cols))
    out_dtype = arr.dtype if order == 0 else np.float32
    out = np.empty((flat.shape[0], size[0], size[1]), dtype=out_dtype)
    for c in range(flat.shape[0]):
        res = resize(flat[c], size, order=order, mode="edge", preserve_range=True,
                     anti_aliasing=bool(anti_aliasing and order > 0))
        out[c] = res if order > 0 else np.rint(res).astype(out_dtype)
    s = np.array([rows / size[0], cols / size[1]])
    nd = spatial_ndim(arr)
    axes = (0, 1) if nd == 2 else (1, 2)
    m = np.eye(4)
    for k, ax in enumerate(axes):
        m[ax, ax] = s[k]
        m[ax, 3] = (s[k] - 1) / 2
    return out.reshape(lead + tuple(size)), np.asarray(affine, dtype=np.float64) @ m


# ------------------------------------------------------------- intensity ---

def _as_float32(arr: np.ndarray) -> np.ndarray:
    """A float32 copy (never a view of the input, which may be read-only)."""
    return np.array(arr, dtype=np.float32, copy=True)


def intensity_window(arr: np.ndarray, low: float, high: float, clip: bool = True) -> np.ndarray:
    """Map ``[low, high]`` to ``[0, 1]`` (float32), clipping outside when ``clip``."""
    if not high > low:
        raise ConfigError(f"window needs high > low, got low={low}, high={high}")
    out = _as_float32(arr)
    out -= np.float32(low)
    out /= np.float32(high - low)
    return np.clip(out, 0, 1, out=out) if clip else out


def _channel_views(out: np.ndarray, channel_wise: bool):
    nd = spatial_ndim(out)
    flat = out.reshape((-1,) + out.shape[out.ndim - nd:])
    return list(flat) if channel_wise else [out.reshape(-1)]


def _moments(x: np.ndarray, nonzero: bool) -> tuple[int, float, float]:
    """(count, mean, std) of ``x`` (or of its non-zero values), one slab at a time: no full-size temporaries."""
    n, s1, s2 = 0, 0.0, 0.0
    slabs = x.reshape((x.shape[0], -1)) if x.ndim > 1 else x.reshape((1, -1))
    for slab in slabs:
        v = slab.astype(np.float64)
        if nonzero:
            v = v[v != 0]
        n += v.size
        s1 += float(v.sum())
        s2 += float(np.dot(v, v))
    if n == 0:
        return 0, 0.0, 1.0
    mean = s1 / n
    return n, mean, float(np.sqrt(max(s2 / n - mean * mean, 0.0))) or 1.0


def zscore_normalize(arr: np.ndarray, nonzero: bool = False, channel_wise: bool = True) -> np.ndarray:
    """Zero mean, unit variance (float32); with ``nonzero`` only non-zero voxels count and zeros stay 0."""
    stats = [_moments(x, nonzero) for x in _channel_views(np.asarray(arr), channel_wise)]
    out = _as_float32(arr)
    for x, (n, mu, sd) in zip(_channel_views(out, channel_wise), stats):
        if n == 0:
            continue
        if nonzero:
            zero = x == 0
            x -= np.float32(mu)
            x /= np.float32(sd)
            x[zero] = 0
        else:
            x -= np.float32(mu)
            x /= np.float32(sd)
    return out


def _percentiles(x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.percentile(x, qs)`` (linear method); for integers from a slab-wise histogram, without a full copy."""
    if x.dtype.kind not in "iub" or x.size == 0:
        return np.percentile(x, qs)
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > (1 << 22):
        return np.percentile(x, qs)
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    slabs = x.reshape((x.shape[0], -1)) if x.ndim > 1 else x.reshape((1, -1))
    for slab in slabs:
        counts += np.bincount((slab.astype(np.int64) - lo), minlength=counts.size)
    cum = np.cumsum(counts)
    out = []
    for q in qs:
        pos = q / 100.0 * (x.size - 1)
        k = int(np.floor(pos))
        frac = pos - k
        v0 = lo + int(np.searchsorted(cum, k + 1))
        v1 = lo + int(np.searchsorted(cum, min(k + 2, x.size)))
        out.append(v0 + frac * (v1 - v0))
    return np.asarray(out, dtype=np.float64)


def percentile_scale(arr: np.ndarray, lower: float = 1.0, upper: float = 99.0, clip: bool = True,
                     channel_wise: bool = True) -> np.ndarray:
    """Map the ``lower``/``upper`` percentiles to 0/1 (float32), clipping when ``clip``."""
    if not 0 <= lower < upper <= 100:
        raise ConfigError(f"percentiles need 0 <= lower < upper <= 100, got {lower}, {upper}")
    bounds = [_percentiles(x, (lower, upper)) for x in _channel_views(np.asarray(arr), channel_wise)]
    out = _as_float32(arr)
    for x, (lo, hi) in zip(_channel_views(out, channel_wise), bounds):
        x -= np.float32(lo)
        if hi > lo:
            x /= np.float32(hi - lo)
    if clip:
        np.clip(out, 0, 1, out=out)
    return out


# --------------------------------------------------------------- patches ---

def patch_starts(spatial_shape: Sequence[int], patch: Sequence[int], n: int, pos_fraction: float,
                 label: np.ndarray | None, rng: np.random.Generator) -> list[tuple[tuple[int, ...], bool]]:
    """Start indices of ``n`` patches: a ``pos_fraction`` share centred on foreground voxels of ``label``.

    Returns ``[(start, centred_on_foreground), ...]``.  Without foreground (or
    label) every patch is drawn uniformly.
    """
    shape = np.asarray(spatial_shape)
    p = np.asarray(patch)
    if p.shape != shape.shape or np.any(p < 1):
        raise ConfigError(f"patch shape {list(patch)} must have {len(shape)} positive sizes")
    if np.any(p > shape):
        raise ConfigError(f"patch {list(patch)} is larger than the image {list(spatial_shape)}; "
                          "pad first (CropOrPad) or use a smaller patch")
    hi = shape - p
    fg = None
    if label is not None:
        fg = np.argwhere(label > 0)
        if len(fg) == 0:
            fg = None
    n_pos = int(round(n * pos_fraction)) if fg is not None else 0
    out = []
    for i in range(n):
        if i < n_pos:
            c = fg[rng.integers(0, len(fg))]
            start = np.clip(c - p // 2, 0, hi)
            out.append((tuple(int(v) for v in start), True))
        else:
            start = [int(rng.integers(0, h + 1)) for h in hi]
            out.append((tuple(start), False))
    return out


def extract_patch(arr: np.ndarray, start: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """The spatial block ``[start, start + patch)`` of ``arr`` (channels kept)."""
    nd = len(start)
    sl = (slice(None),) * (arr.ndim - nd) + tuple(slice(s, s + p) for s, p in zip(start, patch))
    return np.ascontiguousarray(arr[sl])


def row_seed(seed: int, data: bytes | None = None, crc: int | None = None) -> np.random.Generator:
    """A generator determined by the stage seed and the row's own bytes (stable across retries).

    ``crc`` (``zlib.crc32`` of the bytes) stands in for ``data`` where the bytes are no longer kept.
    """
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(data) if crc is None else int(crc)])
