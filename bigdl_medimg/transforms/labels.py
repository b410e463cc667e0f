"""Label-mask stages: relabelling a dataset's classes into a task's (pure-numpy core, Spark stage over it)."""
from __future__ import annotations

from typing import Self, Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError
from ..params import param
from ._stage import TensorStage

__all__ = ["map_labels", "MapLabels"]


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
