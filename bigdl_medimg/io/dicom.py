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
    "frame_stack",
    "frame_groups",
    "frame_rescales",
]


def _str(v: Any) -> str | None:
    s = str(v).strip()
    return s or None


def _int(v: Any) -> int | None:
    return int(v)


def _float(v: Any) -> float | None:
    return float(v)


def _first_int(v: Any) -> int | None:
    """The first value of a possibly multi-valued IS (EchoNumbers may list several)."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return int(v)
    return int(list(v)[0]) if len(v) else None


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
    # what tells the stacks of one series apart (split by read_dicom_series)
    ("echo_numbers", "EchoNumbers", "int", _first_int),
    ("temporal_position_identifier", "TemporalPositionIdentifier", "int", _int),
    ("trigger_time", "TriggerTime", "double", _float),
    ("diffusion_b_value", "DiffusionBValue", "double", _float),
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


def frame_rescales(ds) -> list[tuple[float, float]] | None:
    """``(slope, intercept)`` per frame from the Pixel Value Transformation functional groups of an enhanced
    object (per-frame items over the shared one), or None when neither group carries one."""
    def pair(grp):
        item = _first_item(grp, "PixelValueTransformationSequence") if grp is not None else None
        if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
            return None
        return float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)

    shared = pair(_first_item(ds, "SharedFunctionalGroupsSequence"))
    per = list(ds.get("PerFrameFunctionalGroupsSequence") or []) if "PerFrameFunctionalGroupsSequence" in ds else []
    pairs = [pair(g) or shared for g in per] if per else [shared]
    if all(p is None for p in pairs):
        return None
    return [p or (1.0, 0.0) for p in pairs]


def _modality_lut(arr: np.ndarray, ds) -> np.ndarray:
    """Apply Rescale Slope/Intercept (or the Modality LUT, or RT Dose's DoseGridScaling) with a sensible dtype.

    Enhanced objects keep the rescale in their functional groups: one pair for
    every frame is applied like the top-level one; pairs that differ between
    frames (Enhanced CT may rescale each frame) give float32, frame by frame.
    """
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds))
    if _get(ds, "Modality", _str) == "RTDOSE" and "DoseGridScaling" in ds:
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


def _frame_planes(ds) -> tuple[list, list]:
    """Per-frame (ImagePositionPatient, ImageOrientationPatient) of an enhanced object, in storage order:
    each frame's Plane Position / Orientation item, else the shared one, else the top-level attribute."""
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or []) \
        if "PerFrameFunctionalGroupsSequence" in ds else []

    def plane(grp, seq, key):
        item = _first_item(grp, seq) if grp is not None else None
        return _get(item, key, _floats) if item is not None else None

    top_iop = _get(ds, "ImageOrientationPatient", _floats)
    shared_iop = plane(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    shared_ipp = plane(shared, "PlanePositionSequence", "ImagePositionPatient")
    positions, orientations = [], []
    for grp in per_frame:
        positions.append(plane(grp, "PlanePositionSequence", "ImagePositionPatient") or shared_ipp)
        orientations.append(plane(grp, "PlaneOrientationSequence", "ImageOrientationPatient") or shared_iop
                            or top_iop)
    return positions, orientations


def _frame_values(ds) -> list[dict]:
    """Per-frame STACK_FIELDS values of an enhanced object: Frame Content (StackID, TemporalPositionIndex),
    MR Echo (EffectiveEchoTime), MR Diffusion (DiffusionBValue), Cardiac Synchronization (NominalCardiacTrigger
    DelayTime), or the classic attributes a legacy-converted object keeps per frame."""
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or []) \
        if "PerFrameFunctionalGroupsSequence" in ds else []

    def first(grp, seq, key, conv):
        item = _first_item(grp, seq)
        return _get(item, key, conv) if item is not None else None

    out = []
    for grp in per_frame:
        legacy = "UnassignedPerFrameConvertedAttributesSequence"
        out.append({
            "stack_id": first(grp, "FrameContentSequence", "StackID", _float),
            "echo_numbers": first(grp, legacy, "EchoNumbers", _first_int)
            or first(grp, "MREchoSequence", "EffectiveEchoTime", _float),
            "temporal_position_identifier": first(grp, "FrameContentSequence", "TemporalPositionIndex", _int)
            or first(grp, legacy, "TemporalPositionIdentifier", _int),
            "trigger_time": first(grp, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", _float)
            or first(grp, legacy, "TriggerTime", _float),
            "diffusion_b_value": first(grp, "MRDiffusionSequence", "DiffusionBValue", _float)
            or first(grp, legacy, "DiffusionBValue", _float),
        })
    return out


def frame_groups(ds, n_frames: int) -> tuple[str, list[tuple[dict, np.ndarray]]] | None:
    """The stacks an enhanced object holds: ``(split reason, [(stack values, frame indices), ...])``, or None
    for one stack.  Frames split by orientation, then by the STACK_FIELDS that tell repeated positions apart
    (the same rule as a classic series)."""
    from .stack import STACK_FIELDS, cluster_orientations, split_fields, stack_value

    positions, orientations = _frame_planes(ds)
    if n_frames < 2 or len(positions) != n_frames or any(p is None or len(p) != 3 for p in positions) \
            or any(o is None or len(o) != 6 for o in orientations):
        return None
    recs = [dict(v, image_position_patient=p) for v, p in zip(_frame_values(ds), positions)]
    planes = cluster_orientations([np.asarray(o, float) for o in orientations])
    fields = split_fields(recs)
    keys = [(planes[k],) + tuple(stack_value(r, f) for f in fields) for k, r in enumerate(recs)]
    distinct = sorted(set(keys), key=lambda key: tuple((v is None, v or 0) for v in key))
    if len(distinct) < 2:
        return None
    names = ["orientation"] + fields
    reason = "+".join(n for i, n in enumerate(names) if len({key[i] for key in distinct}) > 1)
    column = dict(STACK_FIELDS)
    groups = []
    for key in distinct:
        idx = np.array([k for k, kk in enumerate(keys) if kk == key])
        values = {column[f]: recs[idx[0]].get(column[f]) for f in fields if f != "stack"}
        groups.append((values, idx))
    return reason, groups


def frame_stack(ds, path: str, n_frames: int, subset=None):
    """The frames of an enhanced multi-frame object ordered along their normal and checked as one stack
    (:func:`~bigdl_medimg.io.stack.order_stack`); None when the object has no per-frame plane positions.

    Raises
    ------
    DicomReadError
        Naming the file: frames with mixed orientations, duplicate positions (several stacks: echoes,
        temporal positions), missing frames or non-uniform spacing.
    """
    from .stack import StackError, order_stack

    positions, orientations = _frame_planes(ds)
    if n_frames < 2 or len(positions) != n_frames or any(p is None or len(p) != 3 for p in positions) \
            or any(o is None or len(o) != 6 for o in orientations):
        return None
    idx = np.arange(n_frames) if subset is None else np.asarray(subset)
    try:
        return order_stack([positions[k] for k in idx], [orientations[k] for k in idx],
                           [f"frame {k + 1}" for k in idx])
    except StackError as exc:
        raise DicomReadError(path, f"enhanced multi-frame object: {exc.reason}") from None


def _geometry(ds):
    """(ipp, iop, pixel_spacing, slice_step) from top level or functional groups."""
    ipp = _get(ds, "ImagePositionPatient", _floats)
    iop = _get(ds, "ImageOrientationPatient", _floats)
    ps = _get(ds, "PixelSpacing", _floats)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if "PerFrameFunctionalGroupsSequence" in ds else None
    for grp in [shared] + list(per_frame or []):
        if grp is None:
            continue
        meas = _first_item(grp, "PixelMeasuresSequence")
        if meas is not None and ps is None:
            ps = _get(meas, "PixelSpacing", _floats)
    positions, orientations = _frame_planes(ds)
    if iop is None:
        iop = next((o for o in orientations if o is not None), None)
    if iop is None:
        iop = _get(_first_item(shared, "PlaneOrientationSequence"), "ImageOrientationPatient", _floats) \
            if _first_item(shared, "PlaneOrientationSequence") is not None else None
    positions = [p for p in positions if p is not None]
    if ipp is None and positions:
        ipp = positions[0]
    if ipp is None and shared is not None and _first_item(shared, "PlanePositionSequence") is not None:
        ipp = _get(_first_item(shared, "PlanePositionSequence"), "ImagePositionPatient", _floats)
    step = None
    if len(positions) >= 2:
        step = (np.asarray(positions[-1]) - np.asarray(positions[0])) / (len(positions) - 1)
    offsets = _get(ds, "GridFrameOffsetVector", _floats)
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
            enhanced = frames > 1 and _get(ds, "Modality", _str) != "SEG"
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
