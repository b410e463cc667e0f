"""Pure-Python NIfTI-1/NIfTI-2 decoding from bytes (``.nii`` and ``.nii.gz``).

The array is nibabel's (scaling applied), channels-first: a 4-D ``(X, Y, Z, T)``
image becomes ``(T, X, Y, Z)`` so that the affine maps the last three axes.
The affine is the sform when its code is set, else the qform, else one built
from pixdim exactly as nibabel builds it (Analyze convention: x flipped, origin
at the centre), and which one was used is reported.
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np

from ..errors import CONTROL_FLOW, NiftiReadError, library_text, record_error

__all__ = ["looks_like_nifti", "decode_nifti_array", "decode_nifti", "MAX_DECOMPRESSED_BYTES"]

#: Refuse .nii.gz files that inflate beyond this many bytes.
MAX_DECOMPRESSED_BYTES = 8 << 30


def _gunzip(content: bytes, path: str, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(content, limit + 1)
    except zlib.error as exc:
        raise NiftiReadError(path, f"damaged gzip stream: {exc}") from None
    if len(out) > limit:
        raise NiftiReadError(path, f"decompresses to more than {limit} bytes (limit)")
    if not d.eof:
        raise NiftiReadError(path, "truncated gzip stream")
    return out


def _header_kind(raw: bytes) -> str | None:
    if len(raw) < 348:
        return None
    for endian in "<>":
        size = struct.unpack(endian + "i", raw[:4])[0]
        if size == 348 and raw[344:348] in (b"n+1\0", b"ni1\0"):
            return "nifti1-pair" if raw[344:347] == b"ni1" else "nifti1"
        if size == 540 and len(raw) >= 540 and raw[4:8] in (b"n+2\0", b"ni2\0"):
            return "nifti2-pair" if raw[4:7] == b"ni2" else "nifti2"
    return None


def looks_like_nifti(content: bytes) -> bool:
    """True for NIfTI bytes, gzipped or not (checks the header magic)."""
    if content[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(content[:65536], 600)
        except zlib.error:
            return False
        return _header_kind(head) is not None
    return _header_kind(content) is not None


def decode_nifti_array(content: bytes, path: str, *, max_bytes: int = MAX_DECOMPRESSED_BYTES):
    """Decode NIfTI bytes.

    Returns
    -------
    array : ndarray
        Channels-first, scaling applied (float32 when scaled from integers).
    affine : (4, 4) ndarray
    affine_source : str
        ``"sform"``, ``"qform"`` or ``"pixdim"``.
    """
    import nibabel as nib

    from ..limits import check_declared_size

    raw = _gunzip(content, path, max_bytes) if content[:2] == b"\x1f\x8b" else content
    kind = _header_kind(raw)
    if kind is None:
        raise NiftiReadError(path, "not a NIfTI file (no n+1/n+2 header magic)")
    if kind.endswith("pair"):
        raise NiftiReadError(path, "NIfTI header/image pairs (.hdr/.img) are not supported; convert to .nii")
    klass = nib.Nifti1Image if kind == "nifti1" else nib.Nifti2Image
    try:
        hdr = klass.header_class.from_fileobj(io.BytesIO(raw))
        shape = hdr.get_data_shape()
        check_declared_size(shape, max(hdr.get_data_dtype().itemsize, 4), NiftiReadError, path, "volume")
        need = int(hdr.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * hdr.get_data_dtype().itemsize
        if len(raw) < need:
            raise NiftiReadError(path, f"truncated: header declares {need} bytes, file has {len(raw)}")
        img = klass.from_bytes(raw)
        arr = np.asanyarray(img.dataobj)
    except NiftiReadError:
        raise
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        raise NiftiReadError(path, f"damaged NIfTI file: {library_text(exc)}") from None
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    scaled = slope != 1 or inter != 0
    if arr.dtype == np.float64 and scaled and hdr.get_data_dtype().kind in "iub":
        arr = arr.astype(np.float32)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    sform_code = int(hdr["sform_code"])
    qform_code = int(hdr["qform_code"])
    if sform_code > 0:
        affine, source = hdr.get_sform(), "sform"
    elif qform_code > 0:
        affine, source = hdr.get_qform(), "qform"
    else:
        affine, source = hdr.get_base_affine(), "pixdim"
    if arr.ndim > 3:
        rest = arr.shape[3:]
        arr = np.moveaxis(arr.reshape(arr.shape[:3] + (int(np.prod(rest)),)), -1, 0)
    return np.ascontiguousarray(arr), np.asarray(affine, dtype=np.float64), source


def decode_nifti(content: bytes, path: str) -> dict[str, Any]:
    """Decode one NIfTI file into a reader row; never raises for bad input."""
    from ..tensor import from_numpy

    row: dict[str, Any] = {"image": None, "error": None, "affine_source": None, "n_nonfinite": None}
    try:
        arr, affine, source = decode_nifti_array(content, path)
        row["image"] = from_numpy(arr, affine)
        row["affine_source"] = source
        row["n_nonfinite"] = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind in "fc" else 0
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, NiftiReadError, path)
    return row
