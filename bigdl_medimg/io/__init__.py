"""Readers for DICOM, DICOM series, NIfTI and 2-D X-ray images.

The Spark readers live in :mod:`bigdl_medimg.io.readers` (and the DICOMweb
reader in :mod:`bigdl_medimg.io.dicomweb`); the pure-Python
decoders they run on executors in ``dicom``, ``series``, ``nifti`` and
``images``.
"""
from __future__ import annotations

from .dicomweb import read_dicomweb, write_dicomweb
from .readers import (binary_files, read_dicom, read_dicom_series, read_images, read_mhd, read_nifti,
                      read_tensors, write_tensors)

__all__ = ["read_dicom", "read_dicom_series", "read_dicomweb", "write_dicomweb", "read_nifti", "read_images", "read_mhd",
           "write_tensors", "read_tensors", "binary_files"]
