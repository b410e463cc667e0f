"""Clinical outputs: NIfTI masks, DICOM SEG, DICOM SR measurement reports, prediction tables (Spark-side; imported lazily)."""
from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = ["write_nifti_masks", "to_reference_grid", "write_dicom_seg", "build_dicom_seg", "write_predictions",
           "prediction_table", "build_measurement_report", "write_measurement_reports", "write_finding_reports"]

_LAZY = {"write_nifti_masks": ".masks", "to_reference_grid": ".masks", "write_dicom_seg": ".dicom_seg",
         "build_dicom_seg": ".dicom_seg", "write_predictions": ".tables", "prediction_table": ".tables",
         "build_measurement_report": ".dicom_sr", "write_measurement_reports": ".dicom_sr",
         "write_finding_reports": ".dicom_sr"}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
