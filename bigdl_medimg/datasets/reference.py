"""Published per-label AUROCs on the ChestX-ray14 official test split, for comparison tables.

``CHEXNET_AUROC``: Rajpurkar et al., "CheXNet" (2017), Table 1 (DenseNet-121; mean 0.841).
``WANG2017_AUROC``: Wang et al., "ChestX-ray8" (CVPR 2017), the dataset paper's baseline as quoted there.
"""
from __future__ import annotations

from .phantoms import CHEST_LABELS

__all__ = ["CHEXNET_AUROC", "WANG2017_AUROC"]

CHEXNET_AUROC = dict(zip(CHEST_LABELS, (0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901,
                                        0.8878, 0.9371, 0.8047, 0.8062, 0.9164)))
WANG2017_AUROC = dict(zip(CHEST_LABELS, (0.716, 0.807, 0.784, 0.609, 0.706, 0.671, 0.633, 0.806, 0.708, 0.835,
                                         0.815, 0.769, 0.708, 0.767)))
