"""Image transforms: pure-numpy functions (``array``, ``augment``, ``orientation``) and
Spark ML stages over tensor columns (``stages``, ``sampling``, ``features``).

Importing this package does not start a JVM; the stages import pyspark only.
"""
from __future__ import annotations

from ..lazy import lazy_getattr
from .orientation import axcodes_of, reorient

__all__ = ["reorient", "axcodes_of", "Reorient", "Resample", "IntensityWindow", "ZScoreNormalize",
           "PercentileScale", "CropOrPad", "CropForeground", "CropAroundLabel", "ResizeImage", "PatchSampler", "Augment",
           "ToFeatures", "FromFeatures", "MapLabels",
           "KeepLargestComponent"]

_LAZY = {n: ".stages" for n in ("Reorient", "Resample", "IntensityWindow", "ZScoreNormalize", "PercentileScale",
                               "CropOrPad", "CropForeground", "CropAroundLabel", "ResizeImage")}
_LAZY.update({"PatchSampler": ".sampling", "Augment": ".sampling", "ToFeatures": ".features",
              "FromFeatures": ".features", "MapLabels": ".labels",
              "KeepLargestComponent": ".labels"})

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
