"""Sliding-window inference: tile a volume, predict the tiles, blend them back (pure numpy).

The Spark model stages cut volumes into tiles on executors, let BigDL's
``NNModel`` predict them, and blend each volume with :class:`TileBlender` on an
executor; :func:`sliding_window_predict` runs the same algorithm in one
process (used as the reference in tests).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["window_starts", "blend_weights", "pad_to_patch", "TileBlender", "stitch", "sliding_window_predict"]


def _axis_starts(size: int, patch: int, step: int) -> list[int]:
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def window_starts(shape: Sequence[int], patch: Sequence[int], overlap: float) -> list[tuple[int, ...]]:
    """Tile origins covering ``shape`` with windows of ``patch`` overlapping by ``overlap`` (0 <= overlap < 1)."""
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if len(shape) != len(patch):
        raise ConfigError(f"patch {list(patch)} and volume {list(shape)} have different ranks")
    per_axis = [_axis_starts(int(s), int(p), max(1, int(round(p * (1 - overlap))))) for s, p in zip(shape, patch)]
    grids = np.meshgrid(*per_axis, indexing="ij")
    return [tuple(int(g.flat[i]) for g in grids) for i in range(grids[0].size)]


def blend_weights(patch: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Per-voxel weights of a tile: ``"constant"`` or a ``"gaussian"`` centred on the tile."""
    if mode == "constant":
        return np.ones(tuple(patch), np.float32)
    if mode != "gaussian":
        raise ConfigError(f"blend mode must be 'gaussian' or 'constant', got {mode!r}")
    w = np.ones((), np.float64)
    for p in patch:
        x = np.arange(p) - (p - 1) / 2
        g = np.exp(-0.5 * (x / max(p * sigma_scale, 1e-6)) ** 2)
        w = np.multiply.outer(w, g)
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


def pad_to_patch(volume: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Pad the last ``len(patch)`` axes at their end so each is at least the patch size."""
    nd = len(patch)
    sp = volume.shape[volume.ndim - nd:]
    pads = [(0, 0)] * (volume.ndim - nd) + [(0, max(0, int(p) - int(s))) for s, p in zip(sp, patch)]
    if all(b == 0 for _, b in pads):
        return volume, tuple(sp)
    return np.pad(volume, pads, mode="edge"), tuple(sp)


class TileBlender:
    """Weighted-mean blending of per-tile scores into one volume, one tile at a time.

    Holds the ``(classes, *shape)`` sums and the weights, never the tiles: the
    Spark model streams a volume's tiles through it on an executor, and
    :func:`stitch` runs it over a list.
    """

    def __init__(self, n_classes: int, shape: Sequence[int], weights: np.ndarray):
        self.weights = weights
        self.acc = np.zeros((int(n_classes),) + tuple(int(v) for v in shape), np.float32)
        self.norm = np.zeros(tuple(int(v) for v in shape), np.float32)

    def add(self, start: Sequence[int], tile: np.ndarray) -> None:
        """Add one tile's scores ``(classes, *patch)`` whose origin is ``start``."""
        sl = tuple(slice(int(s), int(s) + p) for s, p in zip(start, tile.shape[1:]))
        self.acc[(slice(None),) + sl] += tile * self.weights
        self.norm[sl] += self.weights

    def result(self) -> np.ndarray:
        """The blended ``(classes, *shape)`` scores (the sums are divided in place)."""
        self.acc /= self.norm
        return self.acc


def stitch(shape: Sequence[int], starts: Sequence[Sequence[int]], tiles: Sequence[np.ndarray],
           weights: np.ndarray) -> np.ndarray:
    """Blend per-tile scores ``(classes, *patch)`` into ``(classes, *shape)`` (weighted mean)."""
    if not tiles:
        raise ConfigError("no tiles to stitch")
    blender = TileBlender(tiles[0].shape[0], shape, weights)
    for start, tile in zip(starts, tiles):
        blender.add(start, tile)
    return blender.result()


def sliding_window_predict(volume: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], patch: Sequence[int],
                           overlap: float = 0.5, mode: str = "gaussian", batch: int = 8) -> np.ndarray:
    """Class scores ``(classes, *shape)`` for a ``(channels, *shape)`` volume, tile by tile.

    ``predict`` maps a batch ``(N, channels, *patch)`` to scores ``(N, classes, *patch)``.
    """
    padded, orig = pad_to_patch(volume, patch)
    shape = padded.shape[1:]
    starts = window_starts(shape, patch, overlap)
    tiles = []
    for i in range(0, len(starts), batch):
        chunk = starts[i:i + batch]
        x = np.stack([padded[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(st, patch))] for st in chunk])
        tiles.extend(list(predict(x)))
    out = stitch(shape, starts, tiles, blend_weights(patch, mode))
    return out[(slice(None),) + tuple(slice(0, s) for s in orig)]
