"""De-identification: DICOM PS3.15 Annex E, Table E.1-1 (as data, :mod:`bigdl_medimg.deid.table`) and its options.

* :class:`Deidentify` - a Spark ML Transformer over reader DataFrames
  (pseudonyms, UID remapping, date shifts, path hashing, quarantine flag); also
  ``deidentify=`` on :func:`~bigdl_medimg.read_dicom` and the other readers;
* :func:`deidentify_files` - writes de-identified DICOM files (executors);
* :class:`Pseudonymizer`, :func:`deidentify_dataset` - the pure-Python core.
"""
from .files import deidentify_files
from .profile import Pseudonymizer, deidentify_dataset, quarantine_reason
from .stage import KEY_ENV, Deidentify

__all__ = ["Deidentify", "deidentify_files", "Pseudonymizer", "deidentify_dataset", "quarantine_reason", "KEY_ENV"]
