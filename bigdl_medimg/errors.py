"""The one exception tree of bigdl-medimg.

Every error raised on purpose by the library derives from :class:`MedImgError`.
Subclasses also derive from the built-in whose meaning fits (``ValueError`` for
bad data or settings), so ``except ValueError`` keeps working.

Messages say what was wrong, where (file, series, setting) and, where it helps,
what to do.  They never contain patient data: only paths, UIDs-free reasons and
numbers.
"""
from __future__ import annotations

import re

__all__ = [
    "MedImgError",
    "ConfigError",
    "TensorError",
    "ImageReadError",
    "ExportError",
    "DicomReadError",
    "SeriesAssemblyError",
    "NiftiReadError",
    "ImageFileReadError",
    "one_line",
    "record_error",
]


class MedImgError(Exception):
    """Root of every error raised by bigdl-medimg."""


class ConfigError(MedImgError, ValueError):
    """A setting, profile or argument is invalid."""


class TensorError(MedImgError, ValueError):
    """A tensor struct value is malformed (shape, dtype, byte length or affine)."""


class ImageReadError(MedImgError, ValueError):
    """A file could not be read as an image.

    Parameters
    ----------
    path : str
        The file (or, for a series, the series' first file or key) concerned.
    reason : str
        One line saying what was wrong.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = one_line(reason)
        super().__init__(f"{path}: {self.reason}")

    def __reduce__(self):  # keep pickling (Spark workers) working
        return (type(self), (self.path, self.reason))

    def column_text(self) -> str:
        """The text written into a DataFrame's ``error`` column."""
        return f"{type(self).__name__}: {self.reason}"


class ExportError(ImageReadError):
    """An output (NIfTI mask, DICOM SEG, report) could not be written for one volume or series."""


class DicomReadError(ImageReadError):
    """A DICOM file is not DICOM, is damaged, or its pixels cannot be decoded."""


class SeriesAssemblyError(ImageReadError):
    """The slices of a DICOM series do not form one regular 3D volume."""


class NiftiReadError(ImageReadError):
    """A NIfTI file is not NIfTI, is damaged, or its data cannot be read."""


class ImageFileReadError(ImageReadError):
    """A 2D image file (PNG, JPEG, DICOM X-ray) cannot be read."""


_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"')


def library_text(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of a third-party exception with quoted values blanked.

    Decoder libraries quote element values in their messages (``invalid value
    for VR DS: 'SMITH^JOHN'``); an error column or log line must never carry
    them, so anything in quotes becomes ``'…'``.
    """
    return one_line(f"{type(exc).__name__}: {_QUOTED.sub(chr(39) + chr(8230) + chr(39), str(exc))}", limit)


#: exceptions a decoder must never swallow; anything else a third-party decoder raises (including a
#: native decoder's panic, which pyo3 raises as a BaseException) becomes the row's error
CONTROL_FLOW = (KeyboardInterrupt, SystemExit, GeneratorExit)


def one_line(text: object, limit: int = 300) -> str:
    """Collapse ``text`` to a single line of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def record_error(row: dict, exc: BaseException, cls: type, path: str) -> dict:
    """Put ``exc`` into a reader row: ``error`` text and ``_exc`` (re-raised in failfast mode).

    An :class:`ImageReadError` is kept as is; anything else (a library failing
    on damaged input) is wrapped in ``cls`` naming ``path``.
    """
    err = exc if isinstance(exc, ImageReadError) else cls(path, library_text(exc))
    row["error"] = err.column_text()
    row["_exc"] = err
    return row
