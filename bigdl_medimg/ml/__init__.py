"""Estimators and models (Spark ML) over BigDL or torch networks; imported lazily (they need pyspark)."""
from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = ["SegmentationEstimator", "SegmentationModel", "ClassificationEstimator", "ClassificationModel",
           "AUCEvaluator", "dice_ce_loss", "load_preset", "volume_dice"]

_LAZY = {"SegmentationEstimator": ".segmentation_estimator", "load_preset": ".segmentation_estimator",
         "dice_ce_loss": ".segmentation_estimator",
         "volume_dice": ".segmentation_estimator", "SegmentationModel": ".segmentation",
         "ClassificationEstimator": ".classification", "ClassificationModel": ".classification",
         "AUCEvaluator": ".classification"}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
