"""Pure-Python decoding of 2-D X-ray images: DICOM (CR, DX, ...), PNG and JPEG.

Grey images come out as ``(rows, cols)`` in their stored dtype (``uint8`` or
``uint16`` for PNG/JPEG; after the Modality LUT for DICOM).  Colour PNG/JPEG
files are converted to grey (ITU-R 601 luma) unless ``keep_color`` is set, in
which case they come out as ``(3, 1, rows, cols)``.  The affine carries the
pixel spacing in mm (PixelSpacing, else ImagerPixelSpacing) along the image
axes; projection images have no patient frame, so it is a pure scaling.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from ..errors import CONTROL_FLOW, DicomReadError, ImageFileReadError, library_text, record_error
from .dicom import dicom_metadata, dicom_pixels, looks_like_dicom, parse_dicom

__all__ = ["XRAY_MODALITIES", "sniff_format", "decode_image"]

#: DICOM modalities accepted by read_images by default.
XRAY_MODALITIES = ("CR", "DX", "DR", "RG", "MG", "PX", "IO")

_PNG = b"\x89PNG\r\n\x1a\n"


def sniff_format(content: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"dicom"`` or None, from the bytes alone."""
    if content[:8] == _PNG:
        return "png"
    if content[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if looks_like_dicom(content):
        return "dicom"
    return None


def _pil_decode(content: bytes, path: str, keep_color: bool) -> np.ndarray:
    from PIL import Image

    from ..limits import check_declared_size, max_image_bytes

    # our limit decides (checked below from the header); PIL's own bomb guard only far above it
    Image.MAX_IMAGE_PIXELS = max_image_bytes() // 4
    try:
        with Image.open(io.BytesIO(content)) as im:
            # header only so far: refuse a declared size above the limit before decoding
            check_declared_size([im.size[1], im.size[0], len(im.getbands())], 4, ImageFileReadError, path)
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im, dtype=np.uint16)
            elif mode == "I":
                arr = np.asarray(im)
                arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr.astype(np.int32)
            elif mode == "L":
                arr = np.asarray(im, dtype=np.uint8)
            elif mode in ("1", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
                rgb = im.convert("RGB")
                if keep_color and mode not in ("1", "LA"):
                    arr = np.moveaxis(np.asarray(rgb, dtype=np.uint8), -1, 0)[:, np.newaxis]
                else:
                    arr = np.asarray(im.convert("L"), dtype=np.uint8)
            elif mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            else:
                raise ImageFileReadError(path, f"unsupported image mode {mode!r}")
    except ImageFileReadError:
        raise
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        raise ImageFileReadError(path, f"damaged image file: {library_text(exc)}") from None
    return np.ascontiguousarray(arr)


def _spacing(meta: dict) -> tuple[tuple[float, float], str]:
    for key in ("pixel_spacing", "imager_pixel_spacing"):
        ps = meta.get(key)
        if ps and len(ps) == 2 and min(ps) > 0 and all(np.isfinite(ps)):
            return (float(ps[0]), float(ps[1])), key
    return (1.0, 1.0), "none"


def decode_image(content: bytes, path: str, *, modalities: Sequence[str] | None = XRAY_MODALITIES,
                 keep_color: bool = False) -> dict[str, Any]:
    """Decode one 2-D image file into a reader row; never raises for bad input.

    Row keys: ``format``, ``modality``, ``view_position``, ``laterality``,
    ``body_part_examined``, ``rows``, ``columns``, ``photometric_interpretation``,
    ``spacing_source``, ``image``, ``error`` (and ``_exc`` on error).
    """
    from ..tensor import from_numpy

    row: dict[str, Any] = {"format": None, "modality": None, "view_position": None, "laterality": None,
                           "body_part_examined": None, "rows": None, "columns": None,
                           "photometric_interpretation": None, "spacing_source": None,
                           "image": None, "error": None}
    try:
        fmt = sniff_format(content)
        meta: dict[str, Any] = {}
        ds = None
        if fmt is None:
            try:  # DICOM without preamble?
                ds = parse_dicom(content, path)
                fmt = "dicom"
            except DicomReadError:
                raise ImageFileReadError(path, "not a PNG, JPEG or DICOM file") from None
        row["format"] = fmt
        if fmt == "dicom":
            if ds is None:
                ds = parse_dicom(content, path)
            meta = dicom_metadata(ds)
            for k in ("modality", "view_position", "laterality", "body_part_examined",
                      "photometric_interpretation"):
                row[k] = meta.get(k)
            mod = (meta.get("modality") or "").upper()
            if modalities is not None and mod not in {m.upper() for m in modalities}:
                raise ImageFileReadError(
                    path, f"DICOM modality {mod or 'missing'} is not an X-ray ({', '.join(modalities)}); "
                          "pass modalities=None to accept any 2-D DICOM")
            try:
                arr = dicom_pixels(ds, path)
            except DicomReadError as exc:
                raise ImageFileReadError(path, exc.reason) from None
            if arr.ndim == 3:
                if arr.shape[0] != 1:
                    raise ImageFileReadError(path, f"multi-frame image ({arr.shape[0]} frames) is not a 2-D X-ray")
                arr = arr[0]
            if arr.ndim == 4 and not keep_color:
                arr = np.rint(0.299 * arr[0, 0] + 0.587 * arr[1, 0] + 0.114 * arr[2, 0]).astype(arr.dtype)
        else:
            arr = _pil_decode(content, path, keep_color)
            row["photometric_interpretation"] = "RGB" if arr.ndim == 4 else "MONOCHROME2"
        (dr, dc), source = _spacing(meta)
        affine = np.diag([dr, dc, 1.0, 1.0])
        row["rows"], row["columns"] = int(arr.shape[-2]), int(arr.shape[-1])
        row["spacing_source"] = source
        row["image"] = from_numpy(arr, affine)
    except DicomReadError as exc:
        record_error(row, ImageFileReadError(path, exc.reason), ImageFileReadError, path)
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, ImageFileReadError, path)
    return row
