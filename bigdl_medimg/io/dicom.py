"""Pure-Python DICOM decoding: one file's bytes to metadata, pixels and affine.

No Spark here: these functions run inside executors (see ``readers.py``) and
are tested on their own.  Conventions (the tensor column contract):

* pixels as stored after the Modality LUT (Rescale Slope/Intercept or a
  Modality LUT Sequence), MONOCHROME1 inverted so that higher means brighter,
  colour as RGB (YBR converted, PALETTE COLOR expanded);
* mono single frame ``(rows, cols)``, multi-frame ``(frames, rows, cols)``,
  colour ``(3, frames, rows, cols)`` (``frames`` is 1 for one frame);
* affine from Image Position/Orientation (Patient) and Pixel Spacing,
  converted from DICOM's LPS+ to RAS+.

Only an allow-list of non-identifying attributes becomes metadata.
"""
from __future__ import annotations

import io
import warnings
from typing import Any, Callable

import numpy as np

from ..errors import CONTROL_FLOW, DicomReadError, library_text, record_error
from ..tensor import LPS_TO_RAS

__all__ = [
    "METADATA_FIELDS",
    "looks_like_dicom",
    "parse_dicom",
    "dicom_metadata",
    "has_pixel_data",
    "dicom_pixels",
    "dicom_affine",
    "decode_dicom",
]


def _str(v: Any) -> str | None:
    s = str(v).strip()
    return s or None


def _int(v: Any) -> int | None:
    return int(v)


def _float(v: Any) -> float | None:
    return float(v)


def _floats(v: Any) -> list[float] | None:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return [float(v)]
    return [float(x) for x in v]


# (column, DICOM keyword, Spark type name, converter).  An allow-list: nothing
# that identifies a patient (names, IDs, birth dates, accession numbers, free
# text) is read into columns.
METADATA_FIELDS: list[tuple[str, str, str, Callable[[Any], Any]]] = [
    ("modality", "Modality", "string", _str),
    ("sop_class_uid", "SOPClassUID", "string", _str),
    ("sop_instance_uid", "SOPInstanceUID", "string", _str),
    ("study_instance_uid", "StudyInstanceUID", "string", _str),
    ("series_instance_uid", "SeriesInstanceUID", "string", _str),
    ("frame_of_reference_uid", "FrameOfReferenceUID", "string", _str),
    ("series_number", "SeriesNumber", "int", _int),
    ("instance_number", "InstanceNumber", "int", _int),
    ("acquisition_number", "AcquisitionNumber", "int", _int),
    ("rows", "Rows", "int", _int),
    ("columns", "Columns", "int", _int),
    ("number_of_frames", "NumberOfFrames", "int", _int),
    ("samples_per_pixel", "SamplesPerPixel", "int", _int),
    ("bits_allocated", "BitsAllocated", "int", _int),
    ("bits_stored", "BitsStored", "int", _int),
    ("pixel_representation", "PixelRepresentation", "int", _int),
    ("photometric_interpretation", "PhotometricInterpretation", "string", _str),
    ("pixel_spacing", "PixelSpacing", "array<double>", _floats),
    ("imager_pixel_spacing", "ImagerPixelSpacing", "array<double>", _floats),
    ("slice_thickness", "SliceThickness", "double", _float),
    ("spacing_between_slices", "SpacingBetweenSlices", "double", _float),
    ("slice_location", "SliceLocation", "double", _float),
    ("image_position_patient", "ImagePositionPatient", "array<double>", _floats),
    ("image_orientation_patient", "ImageOrientationPatient", "array<double>", _floats),
    ("rescale_slope", "RescaleSlope", "double", _float),
    ("rescale_intercept", "RescaleIntercept", "double", _float),
    ("window_center", "WindowCenter", "array<double>", _floats),
    ("window_width", "WindowWidth", "array<double>", _floats),
    ("manufacturer", "Manufacturer", "string", _str),
    ("manufacturer_model_name", "ManufacturerModelName", "string", _str),
    ("body_part_examined", "BodyPartExamined", "string", _str),
    ("view_position", "ViewPosition", "string", _str),
    ("laterality", "ImageLaterality", "string", _str),
    ("mr_acquisition_type", "MRAcquisitionType", "string", _str),
    ("magnetic_field_strength", "MagneticFieldStrength", "double", _float),
    ("echo_time", "EchoTime", "double", _float),
    ("repetition_time", "RepetitionTime", "double", _float),
    ("burned_in_annotation", "BurnedInAnnotation", "string", _str),
]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def looks_like_dicom(content: bytes) -> bool:
    """True when ``content`` has the DICM marker after a 128-byte preamble."""
    return len(content) >= 132 and content[128:132] == b"DICM"


def _quiet_pydicom() -> None:
    """pydicom logs (and warns) invalid values verbatim (``Invalid value for VR CS: 'SMITH^JOHN'``): silence its
    logger below CRITICAL and skip read-time validation, so no element value reaches a log."""
    import logging

    from pydicom import config

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    config.settings.reading_validation_mode = config.IGNORE


def parse_dicom(content: bytes, path: str, *, stop_before_pixels: bool = False):
    """Parse DICOM bytes, recognised by content rather than by file name.

    Files with the 128-byte preamble and ``DICM`` marker are read directly;
    files without it are read when they parse as a data set starting in group
    0002 or 0008 (as files written without meta information do).

    Raises
    ------
    DicomReadError
        If the bytes are not DICOM or cannot be parsed.
    """
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    _quiet_pydicom()
    preamble = looks_like_dicom(content)
    if not preamble and len(content) < 8:
        raise DicomReadError(path, f"not a DICOM file ({len(content)} bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(content), force=not preamble,
                                 stop_before_pixels=stop_before_pixels)
            keys = list(ds.keys())
    except BaseException as exc:  # pydicom raises many types on damaged input
        if isinstance(exc, CONTROL_FLOW):
            raise
        if not preamble:
            raise DicomReadError(path, "not a DICOM file (no DICM marker and no parsable data set)") from None
        raise DicomReadError(path, f"damaged DICOM file: {library_text(exc)}") from None
    if not preamble:
        if len(keys) < 2 or keys[0].group not in (0x0002, 0x0008):
            raise DicomReadError(path, "not a DICOM file (no DICM marker and no parsable data set)")
        meta = ds.file_meta
        if "TransferSyntaxUID" not in meta:
            enc = getattr(ds, "original_encoding", (ds.is_implicit_VR, ds.is_little_endian))
            implicit, little = enc
            meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
    return ds


def _get(ds, keyword: str, conv: Callable[[Any], Any]):
    try:
        el = ds.get(keyword)
        if el is None or el == "":
            return None
        return conv(el)
    except Exception:
        return None


def dicom_metadata(ds) -> dict[str, Any]:
    """The allow-listed attributes of a data set, as plain Python values."""
    out = {col: _get(ds, kw, conv) for col, kw, _t, conv in METADATA_FIELDS}
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    out["transfer_syntax_uid"] = str(ts) if ts else None
    return out


def _stored_range(ds) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _modality_lut(arr: np.ndarray, ds) -> np.ndarray:
    """Apply Rescale Slope/Intercept (or the Modality LUT) with a sensible dtype."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == 0:
        return arr
    if arr.dtype.kind in "iu" and slope.is_integer() and intercept.is_integer():
        lo, hi = _stored_range(ds)
        ends = [slope * lo + intercept, slope * hi + intercept]
        for dt in (np.int16, np.int32, np.int64):
            info = np.iinfo(dt)
            if info.min <= min(ends) and max(ends) <= info.max:
                return (arr.astype(dt) * dt(slope) + dt(intercept)).astype(dt)
    return (arr.astype(np.float64) * slope + intercept).astype(np.float32)


def _invert_monochrome1(arr: np.ndarray, ds) -> np.ndarray:
    """MONOCHROME1 shows low values bright: map x to (min + max - x) of the output range."""
    if "ModalityLUTSequence" in ds:
        lo, hi = float(np.min(arr)), float(np.max(arr))
    else:
        slo, shi = _stored_range(ds)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        a, b = slope * slo + intercept, slope * shi + intercept
        lo, hi = min(a, b), max(a, b)
    if arr.dtype.kind in "iu":
        wide = arr.astype(np.int64)
        return (int(lo) + int(hi) - wide).astype(arr.dtype)
    return (lo + hi - arr).astype(arr.dtype)


def has_pixel_data(ds) -> bool:
    """Whether a parsed data set carries (integer or float) pixel data."""
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _check_pixel_size(ds, path: str) -> None:
    """Refuse pixel data whose declared size (rows x columns x frames x samples) is above the limit."""
    from ..limits import check_declared_size

    try:
        dims = [int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows") or 0), int(ds.get("Columns") or 0),
                int(ds.get("SamplesPerPixel", 1) or 1)]
        bits = int(ds.get("BitsAllocated") or 16)
    except (TypeError, ValueError):
        raise DicomReadError(path, "damaged image pixel module (non-numeric Rows, Columns, frames or bits)") from None
    # decoders may return up to 8 bytes per sample (float64 modality LUT output)
    check_declared_size(dims, max(bits / 8, 1) * (2 if bits <= 32 else 1), DicomReadError, path, "pixel array")


def dicom_pixels(ds, path: str) -> np.ndarray:
    """Decoded pixels of a parsed data set, per the module's conventions."""
    if not has_pixel_data(ds):
        what = _get(ds, "Modality", _str) or "unknown modality"
        raise DicomReadError(path, f"no pixel data in this DICOM object ({what})")
    _check_pixel_size(ds, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(ds.pixel_array)
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", None) or str(ts)
        raise DicomReadError(path, f"cannot decode pixel data ({name}): {library_text(exc)}") from None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = np.asarray(apply_color_lut(arr, ds))
        except BaseException as exc:
            if isinstance(exc, CONTROL_FLOW):
                raise
            raise DicomReadError(path, f"cannot apply the palette colour LUT: {library_text(exc)}") from None
        spp = 3
    if spp == 1:
        arr = _modality_lut(arr, ds)
        if pi == "MONOCHROME1":
            arr = _invert_monochrome1(arr, ds)
        return arr
    # colour: (rows, cols, 3) or (frames, rows, cols, 3) -> (3, frames, rows, cols)
    if frames == 1 and arr.ndim == 3:
        arr = arr[np.newaxis]
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _first_item(ds, seq: str):
    try:
        s = ds.get(seq)
        return s[0] if s else None
    except Exception:
        return None


def _geometry(ds):
    """(ipp, iop, pixel_spacing, slice_step) from top level or functional groups."""
    ipp = _get(ds, "ImagePositionPatient", _floats)
    iop = _get(ds, "ImageOrientationPatient", _floats)
    ps = _get(ds, "PixelSpacing", _floats)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if "PerFrameFunctionalGroupsSequence" in ds else None
    positions = []
    for grp in [shared] + list(per_frame or []):
        if grp is None:
            continue
        orient = _first_item(grp, "PlaneOrientationSequence")
        if orient is not None and iop is None:
            iop = _get(orient, "ImageOrientationPatient", _floats)
        meas = _first_item(grp, "PixelMeasuresSequence")
        if meas is not None and ps is None:
            ps = _get(meas, "PixelSpacing", _floats)
        pos = _first_item(grp, "PlanePositionSequence")
        if pos is not None:
            p = _get(pos, "ImagePositionPatient", _floats)
            if p is not None:
                positions.append(p)
    if ipp is None and positions:
        ipp = positions[0]
    step = None
    if len(positions) >= 2:
        step = (np.asarray(positions[-1]) - np.asarray(positions[0])) / (len(positions) - 1)
    offsets = _get(ds, "GridFrameOffsetVector", _floats)
    return ipp, iop, ps, step, offsets


def dicom_affine(ds, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """RAS+ affine for an array of ``shape`` decoded from ``ds``.

    Returns
    -------
    affine : (4, 4) ndarray
    source : str
        ``"patient"`` (position, orientation and spacing known),
        ``"pixel_spacing"`` (spacing only) or ``"none"`` (1 mm grid).
    """
    ipp, iop, ps, step, offsets = _geometry(ds)
    if ps is None or len(ps) != 2 or min(ps) <= 0:
        ps = _get(ds, "ImagerPixelSpacing", _floats)
    has_ps = ps is not None and len(ps) == 2 and min(ps) > 0 and np.all(np.isfinite(ps))
    dr, dc = (ps[0], ps[1]) if has_ps else (1.0, 1.0)
    thick = _get(ds, "SpacingBetweenSlices", _float) or _get(ds, "SliceThickness", _float) or 1.0
    ok_geom = (ipp is not None and len(ipp) == 3 and iop is not None and len(iop) == 6
               and np.all(np.isfinite(ipp)) and np.all(np.isfinite(iop)))
    if ok_geom:
        row_cos = np.asarray(iop[:3], float)
        col_cos = np.asarray(iop[3:], float)
        normal = np.cross(row_cos, col_cos)
        if np.linalg.norm(normal) < 1e-6:
            ok_geom = False
    lps = np.eye(4)
    if ok_geom:
        slice_vec = normal * thick
        if step is not None and np.linalg.norm(step) > 0:
            slice_vec = step
        elif offsets is not None and len(offsets) >= 2:
            slice_vec = normal * (offsets[1] - offsets[0])
        lps[:3, 0] = slice_vec
        lps[:3, 1] = col_cos * dr
        lps[:3, 2] = row_cos * dc
        lps[:3, 3] = ipp
        source = "patient"
    else:
        lps[:3, :3] = np.diag([thick, dr, dc])
        source = "pixel_spacing" if has_ps else "none"
    # lps maps (slice, row, col); reorder columns for arrays without a slice axis.
    spatial = shape[-3:] if len(shape) >= 3 else shape
    if len(spatial) == 2:
        lps = lps[:, [1, 2, 0, 3]]
    return LPS_TO_RAS @ lps, source


def decode_dicom(content: bytes, path: str, *, with_pixels: bool = True) -> dict[str, Any]:
    """Decode one DICOM file into a reader row (metadata, image, error).

    Never raises for bad input: the returned dict carries ``error`` (a
    one-line text) and a null ``image`` instead; ``failfast`` callers re-raise.
    """
    from ..tensor import from_numpy

    row: dict[str, Any] = {"image": None, "error": None, "affine_source": None}
    try:
        ds = parse_dicom(content, path, stop_before_pixels=not with_pixels)
        row.update(dicom_metadata(ds))
        if with_pixels:
            arr = dicom_pixels(ds, path)
            affine, source = dicom_affine(ds, arr.shape)
            row["image"] = from_numpy(arr, affine)
            row["affine_source"] = source
    except BaseException as exc:  # damaged input or an unexpected library failure: still one row
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, DicomReadError, path)
    return row
