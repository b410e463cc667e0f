"""Label-mask stages (pure-numpy cores, Spark stages over them): relabelling a dataset's classes into a task's,
keeping the largest connected components of predicted classes."""
from __future__ import annotations

from typing import Self, Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError
from ..params import param
from ._stage import TensorStage

__all__ = ["map_labels", "MapLabels", "keep_largest_components", "KeepLargestComponent"]


def map_labels(mask: np.ndarray, label_map: Sequence[int]) -> np.ndarray:
    """``mask`` with each label ``k`` replaced by ``label_map[k]`` (uint8); a label beyond the map is an error."""
    lut = np.asarray(label_map, dtype=np.int64)
    m = np.asarray(mask)
    if m.size and (m.min() < 0 or m.max() >= len(lut)):
        raise ValueError(f"mask holds labels {int(m.min())}..{int(m.max())}, the map covers 0..{len(lut) - 1}")
    return lut.astype(np.uint8)[m.astype(np.int64)]


class MapLabels(TensorStage):
    """Relabel a label-mask column: ``labelMap[k]`` is the new label of old label ``k``.

    For example OAI-ZIB's (background, femoral bone, femoral cartilage, tibial
    bone, tibial cartilage) into the knee task's (background, femoral
    cartilage, tibial cartilage, ...) is ``labelMap=[0, 0, 1, 0, 2]``.  A row
    holding a label the map does not cover gets a row error, not a guess.
    """

    geometric = False
    labelMap = param("labelMap", "new label of each old label 0, 1, ...", TypeConverters.toListInt)

    @keyword_only
    def __init__(self, *, labelMap=None, inputCol="mask", outputCol="mask", errorCol="error"):
        super().__init__()
        self._setDefault(inputCol="mask", outputCol="mask")
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _validate(self) -> None:
        m = self.getOrDefault("labelMap") if self.isDefined("labelMap") else None
        if not m or min(m) < 0 or max(m) > 255:
            raise ConfigError(f"MapLabels: labelMap needs new labels 0..255 for the old labels 0, 1, ...; got {m}")

    def _row_fn(self):
        lut = list(self.getOrDefault("labelMap"))
        return lambda arr, aff, marr, _k: (map_labels(arr, lut), aff, marr)

    def setLabelMap(self, value: list[int]) -> Self:
        """Set :py:attr:`labelMap`: new label of each old label 0, 1, ..."""
        return self._set(labelMap=value)

    def getLabelMap(self) -> list[int]:
        """The value of :py:attr:`labelMap` (set or default): new label of each old label 0, 1, ..."""
        return self.getOrDefault(self.labelMap)


def keep_largest_components(mask: np.ndarray, labels: Sequence[int] = (), components: Sequence[int] | int = 1,
                            connectivity: int = 1) -> np.ndarray:
    """``mask`` with only the ``components`` largest connected components of each of ``labels`` kept.

    The other voxels of those labels become background (0), as MONAI's
    ``KeepLargestConnectedComponent`` does; other labels are untouched.
    ``labels`` empty means every foreground label present; ``components`` is
    one count for all labels or one per label (the knee's menisci are two);
    ``connectivity`` 1 joins voxels sharing a face, up to ``mask.ndim`` (a
    corner).  Ties in size keep the component found first in C order.
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask)
    labs = [int(v) for v in labels] or [int(v) for v in np.unique(m) if v != 0]
    counts = [int(components)] * len(labs) if np.ndim(components) == 0 else [int(c) for c in components]
    if len(counts) != len(labs):
        raise ConfigError(f"components needs one count or one per label ({len(labs)}), got {list(counts)}")
    if not 1 <= int(connectivity) <= max(1, m.ndim):
        raise ConfigError(f"connectivity must be 1..{m.ndim} for a {m.ndim}-D mask, got {connectivity}")
    structure = ndi.generate_binary_structure(m.ndim, int(connectivity))
    out = m.copy()
    for lab, keep in zip(labs, counts):
        comp, n = ndi.label(m == lab, structure=structure)
        if n <= keep:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        kept = np.argsort(-sizes, kind="stable")[:keep] + 1  # the largest, the earliest first among equals
        out[(comp > 0) & ~np.isin(comp, kept)] = 0
    return out


class KeepLargestComponent(TensorStage):
    """Post-processing of a predicted label mask: keep the largest connected components of each class.

    Islands of false positives far from the structure inflate the Hausdorff
    distance; nnU-Net and MONAI remove them this way.  See
    :func:`keep_largest_components`.
    """

    geometric = False
    labels = param("labels", "classes to clean ([] = every foreground class present)", TypeConverters.toListInt)
    components = param("components", "components kept per class: one count for all, or one per entry of labels",
                       TypeConverters.toListInt)
    connectivity = param("connectivity", "1 = voxels sharing a face, up to the mask's rank (sharing a corner)",
                         TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, labels=None, components=None, connectivity=1, inputCol="segmentation",
                 outputCol="segmentation", errorCol="error"):
        super().__init__()
        self._setDefault(labels=[], components=[1], connectivity=1, inputCol="segmentation",
                         outputCol="segmentation")
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _counts(self):
        c = list(self.getOrDefault("components"))
        return c[0] if len(c) == 1 else c

    def _validate(self) -> None:
        c, labs = list(self.getOrDefault("components")), list(self.getOrDefault("labels"))
        if not c or min(c) < 1 or (len(c) > 1 and len(c) != len(labs)):
            raise ConfigError(f"KeepLargestComponent: components needs one count >= 1, or one per label {labs}; "
                              f"got {c}")
        if not 1 <= self.getOrDefault("connectivity") <= 3:
            raise ConfigError(f"KeepLargestComponent: connectivity must be 1, 2 or 3, got "
                              f"{self.getOrDefault('connectivity')}")

    def _row_fn(self):
        labs, counts, conn = list(self.getOrDefault("labels")), self._counts(), self.getOrDefault("connectivity")
        return lambda arr, aff, marr, _k: (keep_largest_components(arr, labs, counts, min(conn, arr.ndim)), aff,
                                           marr)

    def setLabels(self, value: list[int]) -> Self:
        """Set :py:attr:`labels`: classes to clean ([] = every foreground class present)."""
        return self._set(labels=value)

    def getLabels(self) -> list[int]:
        """The value of :py:attr:`labels` (set or default): classes to clean ([] = every foreground class present)."""
        return self.getOrDefault(self.labels)

    def setComponents(self, value: list[int]) -> Self:
        """Set :py:attr:`components`: components kept per class: one count for all, or one per entry of labels."""
        return self._set(components=value)

    def getComponents(self) -> list[int]:
        """The value of :py:attr:`components` (set or default): components kept per class: one count for all, or
        one per entry of labels.
        """
        return self.getOrDefault(self.components)

    def setConnectivity(self, value: int) -> Self:
        """Set :py:attr:`connectivity`: 1 = voxels sharing a face, up to the mask's rank (sharing a corner)."""
        return self._set(connectivity=value)

    def getConnectivity(self) -> int:
        """The value of :py:attr:`connectivity` (set or default): 1 = voxels sharing a face, up to the mask's rank
        (sharing a corner).
        """
        return self.getOrDefault(self.connectivity)
