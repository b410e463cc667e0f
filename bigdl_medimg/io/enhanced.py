"""Enhanced (multi-frame) DICOM objects: their functional groups read frame by frame.

Per-frame plane positions and orientations, the values that tell stacks apart
(StackID, echo, temporal position, b-value), the frames grouped into stacks and
each stack ordered and checked (:mod:`bigdl_medimg.io.stack`), and the Pixel
Value Transformation (rescale) of each frame.
"""
from __future__ import annotations

import numpy as np

from ..errors import DicomReadError
from .dicom_values import as_first_int, as_float, as_floats, as_int, first_item, get_value

__all__ = ["frame_rescales", "frame_planes", "frame_groups", "frame_stack"]


def frame_rescales(ds) -> list[tuple[float, float]] | None:
    """``(slope, intercept)`` per frame from the Pixel Value Transformation functional groups of an enhanced
    object (per-frame items over the shared one), or None when neither group carries one."""
    def pair(grp):
        item = first_item(grp, "PixelValueTransformationSequence") if grp is not None else None
        if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
            return None
        return float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)

    shared = pair(first_item(ds, "SharedFunctionalGroupsSequence"))
    per = list(ds.get("PerFrameFunctionalGroupsSequence") or []) if "PerFrameFunctionalGroupsSequence" in ds else []
    pairs = [pair(g) or shared for g in per] if per else [shared]
    if all(p is None for p in pairs):
        return None
    return [p or (1.0, 0.0) for p in pairs]


def frame_planes(ds) -> tuple[list, list]:
    """Per-frame (ImagePositionPatient, ImageOrientationPatient) of an enhanced object, in storage order:
    each frame's Plane Position / Orientation item, else the shared one, else the top-level attribute."""
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or []) \
        if "PerFrameFunctionalGroupsSequence" in ds else []

    def plane(grp, seq, key):
        item = first_item(grp, seq) if grp is not None else None
        return get_value(item, key, as_floats) if item is not None else None

    top_iop = get_value(ds, "ImageOrientationPatient", as_floats)
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
    MR Echo (EffectiveEchoTime, as ``echo_time``), MR Diffusion (DiffusionBValue), Cardiac Synchronization (NominalCardiacTrigger
    DelayTime), or the classic attributes a legacy-converted object keeps per frame."""
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or []) \
        if "PerFrameFunctionalGroupsSequence" in ds else []

    def first(grp, seq, key, conv):
        item = first_item(grp, seq)
        return get_value(item, key, conv) if item is not None else None

    out = []
    for grp in per_frame:
        legacy = "UnassignedPerFrameConvertedAttributesSequence"
        out.append({
            "stack_id": first(grp, "FrameContentSequence", "StackID", as_float),
            "echo_numbers": first(grp, legacy, "EchoNumbers", as_first_int),
            "echo_time": first(grp, "MREchoSequence", "EffectiveEchoTime", as_float)
            or first(grp, legacy, "EchoTime", as_float),
            "temporal_position_identifier": first(grp, "FrameContentSequence", "TemporalPositionIndex", as_int)
            or first(grp, legacy, "TemporalPositionIdentifier", as_int),
            "trigger_time": first(grp, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", as_float)
            or first(grp, legacy, "TriggerTime", as_float),
            "diffusion_b_value": first(grp, "MRDiffusionSequence", "DiffusionBValue", as_float)
            or first(grp, legacy, "DiffusionBValue", as_float),
        })
    return out


def frame_groups(ds, n_frames: int) -> tuple[str, list[tuple[dict, np.ndarray]]] | None:
    """The stacks an enhanced object holds: ``(split reason, [(stack values, frame indices), ...])``, or None
    for one stack.  Frames split by orientation, then by the STACK_FIELDS that tell repeated positions apart
    (the same rule as a classic series)."""
    from .stack import STACK_FIELDS, cluster_orientations, split_fields, stack_value

    positions, orientations = frame_planes(ds)
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
    columns = [c for f in fields if f != "stack" for c in dict(STACK_FIELDS)[f]]  # reader columns to fill
    groups = []
    for key in distinct:
        idx = np.array([k for k, kk in enumerate(keys) if kk == key])
        groups.append(({c: recs[idx[0]].get(c) for c in columns}, idx))
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

    positions, orientations = frame_planes(ds)
    if n_frames < 2 or len(positions) != n_frames or any(p is None or len(p) != 3 for p in positions) \
            or any(o is None or len(o) != 6 for o in orientations):
        return None
    idx = np.arange(n_frames) if subset is None else np.asarray(subset)
    try:
        return order_stack([positions[k] for k in idx], [orientations[k] for k in idx],
                           [f"frame {k + 1}" for k in idx])
    except StackError as exc:
        raise DicomReadError(path, f"enhanced multi-frame object: {exc.reason}") from None
