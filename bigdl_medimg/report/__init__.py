"""Evaluation results and the HTML report (``bigdl-medimg report``)."""
from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = ["ClassificationResults", "SegmentationResults", "load_results", "render_report", "write_report"]

_LAZY = {"ClassificationResults": ".results", "SegmentationResults": ".results", "load_results": ".results",
         "render_report": ".html", "write_report": ".html"}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
