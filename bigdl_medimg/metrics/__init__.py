"""Metrics: pure-numpy functions (``functional``, ``classification``) and Spark evaluators (``evaluators``).

The evaluators import pyspark; they load lazily.
"""
from __future__ import annotations

from ..lazy import lazy_getattr
from .classification import auroc, auroc_per_label, bootstrap_auroc, roc_curve, sensitivity_specificity
from .functional import confusion_matrix, dice_per_class, surface_distances

__all__ = ["dice_per_class", "confusion_matrix", "surface_distances", "auroc", "auroc_per_label",
           "bootstrap_auroc", "roc_curve", "sensitivity_specificity", "DiceEvaluator",
           "SurfaceDistanceEvaluator", "MultiLabelAUCEvaluator", "segmentation_scores"]

_LAZY = {name: ".evaluators" for name in ("DiceEvaluator", "SurfaceDistanceEvaluator", "MultiLabelAUCEvaluator",
                                          "segmentation_scores")}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
