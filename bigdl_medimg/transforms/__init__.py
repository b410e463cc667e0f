"""Image transforms: pure-numpy functions (``array``, ``augment``, ``orientation``) and
Spark ML stages over tensor columns (``stages``, ``sampling``, ``features``).

Importing this package does not start a JVM; the stages import pyspark only.
"""
from __future__ import annotations

import importlib

from .orientation import axcodes_of, reorient

__all__ = ["reorient", "axcodes_of", "Reorient", "Resample", "IntensityWindow", "ZScoreNormalize",
           "PercentileScale", "CropOrPad", "CropForeground", "ResizeImage", "PatchSampler", "Augment",
           "ToFeatures", "FromFeatures"]

_LAZY = {n: "stages" for n in ("Reorient", "Resample", "IntensityWindow", "ZScoreNormalize", "PercentileScale",
                               "CropOrPad", "CropForeground", "ResizeImage")}
_LAZY.update({"PatchSampler": "sampling", "Augment": "sampling", "ToFeatures": "features", "FromFeatures": "features"})


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
