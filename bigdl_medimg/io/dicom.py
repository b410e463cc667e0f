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
from .dicom_values import as_first_int, as_float, as_floats, as_int, as_str, first_item, get_value
from .enhanced import frame_groups, frame_planes, frame_rescales, frame_stack

__all__ = [
    "METADATA_FIELDS",
    "looks_like_dicom",
    "parse_dicom",
    "dicom_metadata",
    "has_pixel_data",
    "dicom_pixels",
    "dicom_affine",
    "decode_dicom",
    "frame_stack",
    "frame_groups",
    "frame_rescales",
    "single_stack",
    "ordered_pixels",
]


# (column, DICOM keyword, Spark type name, converter).  An allow-list: nothing
# that identifies a patient (names, IDs, birth dates, accession numbers, free
# text) is read into columns.
METADATA_FIELDS: list[tuple[str, str, str, Callable[[Any], Any]]] = [
    ("modality", "Modality", "string", as_str),
    ("sop_class_uid", "SOPClassUID", "string", as_str),
    ("sop_instance_uid", "SOPInstanceUID", "string", as_str),
    ("study_instance_uid", "StudyInstanceUID", "string", as_str),
    ("series_instance_uid", "SeriesInstanceUID", "string", as_str),
    ("frame_of_reference_uid", "FrameOfReferenceUID", "string", as_str),
    ("series_number", "SeriesNumber", "int", as_int),
    ("instance_number", "InstanceNumber", "int", as_int),
    ("acquisition_number", "AcquisitionNumber", "int", as_int),
    ("rows", "Rows", "int", as_int),
    ("columns", "Columns", "int", as_int),
    ("number_of_frames", "NumberOfFrames", "int", as_int),
    ("samples_per_pixel", "SamplesPerPixel", "int", as_int),
    ("bits_allocated", "BitsAllocated", "int", as_int),
    ("bits_stored", "BitsStored", "int", as_int),
    ("pixel_representation", "PixelRepresentation", "int", as_int),
    ("photometric_interpretation", "PhotometricInterpretation", "string", as_str),
    ("pixel_spacing", "PixelSpacing", "array<double>", as_floats),
    ("imager_pixel_spacing", "ImagerPixelSpacing", "array<double>", as_floats),
    ("slice_thickness", "SliceThickness", "double", as_float),
    ("spacing_between_slices", "SpacingBetweenSlices", "double", as_float),
    ("slice_location", "SliceLocation", "double", as_float),
    ("image_position_patient", "ImagePositionPatient", "array<double>", as_floats),
    ("image_orientation_patient", "ImageOrientationPatient", "array<double>", as_floats),
    ("rescale_slope", "RescaleSlope", "double", as_float),
    ("rescale_intercept", "RescaleIntercept", "double", as_float),
    ("window_center", "WindowCenter", "array<double>", as_floats),
    ("window_width", "WindowWidth", "array<double>", as_floats),
    ("manufacturer", "Manufacturer", "string", as_str),
    ("manufacturer_model_name", "ManufacturerModelName", "string", as_str),
    ("body_part_examined", "BodyPartExamined", "string", as_str),
    ("view_position", "ViewPosition", "string", as_str),
    ("laterality", "ImageLaterality", "string", as_str),
    ("mr_acquisition_type", "MRAcquisitionType", "string", as_str),
    ("magnetic_field_strength", "MagneticFieldStrength", "double", as_float),
    ("echo_time", "EchoTime", "double", as_float),
    ("repetition_time", "RepetitionTime", "double", as_float),
    # what tells the stacks of one series apart (split by read_dicom_series)
    ("echo_numbers", "EchoNumbers", "int", as_first_int),
    ("temporal_position_identifier", "TemporalPositionIdentifier", "int", as_int),
    ("trigger_time", "TriggerTime", "double", as_float),
    ("diffusion_b_value", "DiffusionBValue", "double", as_float),
    ("burned_in_annotation", "BurnedInAnnotation", "string", as_str),
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


def dicom_metadata(ds) -> dict[str, Any]:
    """The allow-listed attributes of a data set, as plain Python values."""
    out = {col: get_value(ds, kw, conv) for col, kw, _t, conv in METADATA_FIELDS}
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
    """Apply Rescale Slope/Intercept (or the Modality LUT, or RT Dose's DoseGridScaling) with a sensible dtype.

    Enhanced objects keep the rescale in their functional groups: one pair for
    every frame is applied like the top-level one; pairs that differ between
    frames (Enhanced CT may rescale each frame) give float32, frame by frame.
    """
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds))
    if get_value(ds, "Modality", as_str) == "RTDOSE" and "DoseGridScaling" in ds:
        # stored values times DoseGridScaling are the dose in DoseUnits (GY or RELATIVE)
        return (arr.astype(np.float64) * float(ds.DoseGridScaling)).astype(np.float32)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    else:
        pairs = frame_rescales(ds) or [(1.0, 0.0)]
        if len(set(pairs)) > 1 and arr.ndim >= 3 and arr.shape[0] == len(pairs):
            out = np.empty(arr.shape, np.float32)
            for f, (a, b) in enumerate(pairs):
                out[f] = arr[f].astype(np.float64) * a + b
            return out
        slope, intercept = pairs[0]
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
        what = get_value(ds, "Modality", as_str) or "unknown modality"
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


def _geometry(ds):
    """(ipp, iop, pixel_spacing, slice_step) from top level or functional groups."""
    ipp = get_value(ds, "ImagePositionPatient", as_floats)
    iop = get_value(ds, "ImageOrientationPatient", as_floats)
    ps = get_value(ds, "PixelSpacing", as_floats)
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if "PerFrameFunctionalGroupsSequence" in ds else None
    for grp in [shared] + list(per_frame or []):
        if grp is None:
            continue
        meas = first_item(grp, "PixelMeasuresSequence")
        if meas is not None and ps is None:
            ps = get_value(meas, "PixelSpacing", as_floats)
    positions, orientations = frame_planes(ds)
    if iop is None:
        iop = next((o for o in orientations if o is not None), None)
    if iop is None:
        iop = get_value(first_item(shared, "PlaneOrientationSequence"), "ImageOrientationPatient", as_floats) \
            if first_item(shared, "PlaneOrientationSequence") is not None else None
    positions = [p for p in positions if p is not None]
    if ipp is None and positions:
        ipp = positions[0]
    if ipp is None and shared is not None and first_item(shared, "PlanePositionSequence") is not None:
        ipp = get_value(first_item(shared, "PlanePositionSequence"), "ImagePositionPatient", as_floats)
    step = None
    if len(positions) >= 2:
        step = (np.asarray(positions[-1]) - np.asarray(positions[0])) / (len(positions) - 1)
    offsets = get_value(ds, "GridFrameOffsetVector", as_floats)
    return ipp, iop, ps, step, offsets


def dicom_affine(ds, shape: tuple[int, ...], stack=None) -> tuple[np.ndarray, str]:
    """RAS+ affine for an array of ``shape`` decoded from ``ds``.

    ``stack`` (from :func:`frame_stack`) gives the ordered frames' first
    position and step; without it an enhanced object's stored first frame and
    mean step are used.

    Returns
    -------
    affine : (4, 4) ndarray
    source : str
        ``"patient"`` (position, orientation and pixel spacing known: true
        millimetres in the patient frame); ``"patient_no_spacing"`` (position
        and orientation known, PixelSpacing missing or invalid: the in-plane
        steps are a 1 mm placeholder, not a measurement); ``"pixel_spacing"``
        (no patient frame, spacing known: a pure scaling, as projection images
        get from :func:`~bigdl_medimg.io.read_images`) or ``"none"`` (neither:
        a 1 mm grid).
    """
    ipp, iop, ps, step, offsets = _geometry(ds)
    if stack is not None:
        ipp, step = list(stack.origin), stack.step
    if ps is None or len(ps) != 2 or min(ps) <= 0:
        ps = get_value(ds, "ImagerPixelSpacing", as_floats)
    has_ps = ps is not None and len(ps) == 2 and min(ps) > 0 and np.all(np.isfinite(ps))
    dr, dc = (ps[0], ps[1]) if has_ps else (1.0, 1.0)
    thick = get_value(ds, "SpacingBetweenSlices", as_float) or get_value(ds, "SliceThickness", as_float) or 1.0
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
        source = "patient" if has_ps else "patient_no_spacing"
    else:
        # no patient frame (a projection radiograph, a secondary capture): a pure scaling of the array axes,
        # the affine read_images gives the same file; no LPS -> RAS flip, there is no patient axis to flip
        spatial = shape[-3:] if len(shape) >= 3 else shape
        diag = [dr, dc, 1.0, 1.0] if len(spatial) == 2 else [thick, dr, dc, 1.0]
        return np.diag(diag), "pixel_spacing" if has_ps else "none"
    # lps maps (slice, row, col); reorder columns for arrays without a slice axis.
    spatial = shape[-3:] if len(shape) >= 3 else shape
    if len(spatial) == 2:
        lps = lps[:, [1, 2, 0, 3]]
    return LPS_TO_RAS @ lps, source


def single_stack(ds, path: str):
    """The checked frame order of a multi-frame object read as one volume (a one-file series), or None for
    a single frame or a SEG.

    Raises
    ------
    DicomReadError
        When the object holds several stacks (read_dicom gives one row per stack) or its frames do not form
        a regular stack.
    """
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames < 2 or get_value(ds, "Modality", as_str) == "SEG":
        return None
    groups = frame_groups(ds, frames)
    if groups is not None:
        raise DicomReadError(path, f"enhanced multi-frame object holds {len(groups[1])} stacks "
                                   f"({groups[0]}); read_dicom gives one row per stack")
    return frame_stack(ds, path, frames)


def ordered_pixels(content: bytes, path: str) -> np.ndarray:
    """The pixels of one file with a multi-frame object's frames in :func:`single_stack` order."""
    ds = parse_dicom(content, path)
    arr = dicom_pixels(ds, path)
    stack = single_stack(ds, path)
    if stack is None:
        return arr
    return np.ascontiguousarray(np.take(arr, stack.order, axis=0 if arr.ndim == 3 else 1))


def _stack_image(ds, arr: np.ndarray, stack, subset):
    """(tensor, affine source) of the frames ``subset`` (all when None), in ``stack`` order when given."""
    from ..tensor import from_numpy

    frame_axis = 0 if arr.ndim == 3 else 1
    if subset is not None:
        arr = np.take(arr, np.asarray(subset), axis=frame_axis)
    if stack is not None and not np.array_equal(stack.order, np.arange(arr.shape[frame_axis])):
        # frames stored out of order: the array follows the positions, as a series would
        arr = np.take(arr, stack.order, axis=frame_axis)
    arr = np.ascontiguousarray(arr)
    affine, source = dicom_affine(ds, arr.shape, stack)
    return from_numpy(arr, affine), source


def decode_dicom(content: bytes, path: str, *, with_pixels: bool = True) -> dict[str, Any] | list[dict]:
    """Decode one DICOM file into a reader row (metadata, image, error).

    Never raises for bad input: the returned dict carries ``error`` (a
    one-line text) and a null ``image`` instead; ``failfast`` callers re-raise.
    An enhanced object holding several stacks gives a list of rows, one per
    stack (``split`` says what tells them apart, ``stack_index`` numbers them).
    """
    row: dict[str, Any] = {"image": None, "error": None, "affine_source": None, "split": None,
                           "stack_index": None}
    try:
        ds = parse_dicom(content, path, stop_before_pixels=not with_pixels)
        row.update(dicom_metadata(ds))
        if with_pixels:
            arr = dicom_pixels(ds, path)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            # SEG frames are per segment (several share a plane): highdicom reads them by segment number
            enhanced = frames > 1 and get_value(ds, "Modality", as_str) != "SEG"
            groups = frame_groups(ds, frames) if enhanced else None
            if groups is None:
                stack = frame_stack(ds, path, frames) if enhanced else None
                row["image"], row["affine_source"] = _stack_image(ds, arr, stack, None)
            else:  # one row per stack (orientation, echo, time point, b-value)
                reason, parts = groups
                rows = []
                for k, (values, idx) in enumerate(parts):
                    stack = frame_stack(ds, path, frames, idx)
                    image, source = _stack_image(ds, arr, stack, idx)
                    rows.append({**row, **values, "image": image, "affine_source": source, "split": reason,
                                 "stack_index": k + 1})
                return rows
    except BaseException as exc:  # damaged input or an unexpected library failure: still one row
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, DicomReadError, path)
    return row
