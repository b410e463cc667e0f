"""Estimators and models (Spark ML) over BigDL networks; imported lazily (they need pyspark)."""
from __future__ import annotations

import importlib

__all__ = ["SegmentationEstimator", "SegmentationModel", "load_preset", "volume_dice"]

_LAZY = {"SegmentationEstimator": "segmentation_estimator", "load_preset": "segmentation_estimator",
         "volume_dice": "segmentation_estimator", "SegmentationModel": "segmentation"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
