"""Pure-Python DICOM series planning and assembly (no Spark).

Planning works on header records only (no pixels): it groups files into
series, splits a SeriesInstanceUID further when frame of reference or image
plane differ, sorts slices by their position along the slice normal (never by
file name or InstanceNumber), and checks the stack is regular: same size and
orientation, no duplicate positions, no missing slices, uniform spacing.
Assembly then decodes the planned slices of one series into a volume.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DicomReadError, SeriesAssemblyError
from ..tensor import LPS_TO_RAS
from .stack import (ORIENTATION_SPLIT_TOL, ORIENTATION_TOL, STACK_FIELDS, StackError,  # noqa: F401
                    cluster_orientations, order_stack, split_fields, stack_value)

__all__ = ["SeriesPlan", "plan_series", "assemble_volume", "ORIENTATION_SPLIT_TOL", "ORIENTATION_TOL",
           "STACK_FIELDS"]



@dataclass
class SeriesPlan:
    """One output row's worth of planning: a series (or sub-series) and its files."""

    series_key: str | None
    series_instance_uid: str | None
    paths: list[str]
    error: str | None = None
    affine: np.ndarray | None = None
    shape: tuple[int, int, int] | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _name(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or path


def plan_series(records: Sequence[dict[str, Any]]) -> list[SeriesPlan]:
    """Plan the series of one SeriesInstanceUID (or of unassignable files).

    Parameters
    ----------
    records : sequence of dict
        Header records with keys ``path``, ``error``, ``series_instance_uid``,
        ``frame_of_reference_uid``, ``image_orientation_patient``,
        ``image_position_patient``, ``pixel_spacing``, ``rows``, ``columns``,
        ``number_of_frames``, ``has_pixels``, plus any metadata to carry.

    Returns
    -------
    list of SeriesPlan
        One per output row.  Files that failed to parse, or have no
        SeriesInstanceUID, become one-file plans with an error: nothing is
        dropped.
    """
    out: list[SeriesPlan] = []
    good = []
    for r in records:
        if r.get("error"):
            out.append(SeriesPlan(None, r.get("series_instance_uid"), [r["path"]], error=r["error"]))
        elif not r.get("series_instance_uid"):
            err = SeriesAssemblyError(r["path"], "file has no SeriesInstanceUID").column_text()
            out.append(SeriesPlan(None, None, [r["path"]], error=err))
        else:
            good.append(r)
    if not good:
        return out
    uid = good[0]["series_instance_uid"]
    # split by frame of reference, image plane and the stack fields (echo, temporal position, b-value)
    groups: dict[tuple, list[dict]] = {}
    no_geom = [r for r in good if not _has_geometry(r)]
    with_geom = [r for r in good if _has_geometry(r)]
    stack_keys = split_fields(with_geom)
    if with_geom:
        labels = cluster_orientations([np.asarray(r["image_orientation_patient"], float) for r in with_geom])
        for r, lab in zip(with_geom, labels):
            key = (r.get("frame_of_reference_uid") or "", lab) + tuple(stack_value(r, k) for k in stack_keys)
            groups.setdefault(key, []).append(r)
    split = None
    if len(groups) > 1:
        names = ["frame_of_reference", "orientation"] + list(stack_keys)
        split = "+".join(n for i, n in enumerate(names) if len({k[i] for k in groups}) > 1)
    def order(kv):  # stacks by echo / temporal position / b-value, then by their first file
        return tuple((v is None, v or 0) for v in kv[0][2:]), min(m["path"] for m in kv[1])

    for i, (key, members) in enumerate(sorted(groups.items(), key=order)):
        skey = uid if len(groups) == 1 and not no_geom else f"{uid}#{i + 1}"
        out.append(_plan_stack(skey, uid, members, split))
    if no_geom:
        paths = sorted(r["path"] for r in no_geom)
        reason = "slices lack ImagePositionPatient/ImageOrientationPatient, so they cannot be ordered"
        if len(no_geom) == 1 and not with_geom:
            plan = _plan_single_no_geometry(uid, no_geom[0])
            if plan is not None:
                out.append(plan)
                return out
        key = uid if not with_geom else f"{uid}#nogeom"
        out.append(SeriesPlan(key, uid, paths, error=SeriesAssemblyError(
            _name(paths[0]), reason).column_text(), meta=_carry(no_geom[0])))
    return out


_CARRY = ("study_instance_uid", "frame_of_reference_uid", "modality", "manufacturer",
          "manufacturer_model_name", "body_part_examined", "series_number", "mr_acquisition_type",
          "magnetic_field_strength", "echo_time", "repetition_time", "echo_numbers",
          "temporal_position_identifier", "trigger_time", "diffusion_b_value")


def _carry(r: dict) -> dict:
    return {k: r.get(k) for k in _CARRY}


def _has_geometry(r: dict) -> bool:
    ipp, iop = r.get("image_position_patient"), r.get("image_orientation_patient")
    return ipp is not None and len(ipp) == 3 and iop is not None and len(iop) == 6


def _plan_single_no_geometry(uid: str, r: dict) -> SeriesPlan | None:
    if not r.get("has_pixels"):
        return None
    rows, cols = int(r.get("rows") or 0), int(r.get("columns") or 0)
    frames = int(r.get("number_of_frames") or 1)
    return SeriesPlan(uid, uid, [r["path"]], affine=None, shape=(frames, rows, cols), meta=_carry(r))


def _plan_stack(skey: str, uid: str, members: list[dict], split: str | None) -> SeriesPlan:
    meta = _carry(members[0])
    paths = [m["path"] for m in members]

    def fail(reason: str, where: str | None = None) -> SeriesPlan:
        err = SeriesAssemblyError(where or _name(sorted(paths)[0]), reason).column_text()
        return SeriesPlan(skey, uid, sorted(paths), error=err, split=split, meta=meta)

    if not all(m.get("has_pixels") for m in members):
        bad = sorted(_name(m["path"]) for m in members if not m.get("has_pixels"))
        return fail(f"{len(bad)} file(s) have no pixel data: {', '.join(bad[:5])}")
    frames = [int(m.get("number_of_frames") or 1) for m in members]
    if max(frames) > 1:
        if len(members) == 1:
            m = members[0]
            return SeriesPlan(skey, uid, paths, shape=(frames[0], int(m["rows"]), int(m["columns"])),
                              split=split, meta=meta)
        return fail("series mixes multi-frame files; read them one by one with read_dicom")
    sizes = {(int(m.get("rows") or 0), int(m.get("columns") or 0)) for m in members}
    if len(sizes) > 1:
        return fail(f"slices have different sizes: {sorted(sizes)}")
    rows, cols = sizes.pop()
    ps = members[0].get("pixel_spacing")
    spacings = {tuple(np.round(m.get("pixel_spacing") or (0, 0), 6)) for m in members}
    iops = [m["image_orientation_patient"] for m in members]
    try:
        # orientation first: a mixed stack is reported as such, not by its spacing
        stack = order_stack([m["image_position_patient"] for m in members], iops,
                            [_name(m["path"]) for m in members])
    except StackError as exc:
        if not exc.reason.startswith("mixed orientations") and len(spacings) > 1:
            return fail(f"slices have different PixelSpacing: {sorted(spacings)}")
        return fail(exc.reason)
    if len(spacings) > 1:
        return fail(f"slices have different PixelSpacing: {sorted(spacings)}")
    if not ps or len(ps) != 2 or not np.all(np.isfinite(ps)) or min(ps) <= 0:
        # never a 1 mm placeholder reported as the patient geometry of a volume
        return fail(f"PixelSpacing is missing or invalid ({ps!r}): the in-plane spacing is unknown")
    dr, dc = float(ps[0]), float(ps[1])
    row_cos, col_cos = np.asarray(iops[0][:3], float), np.asarray(iops[0][3:], float)
    paths = [members[i]["path"] for i in stack.order]
    n = len(paths)
    lps = np.eye(4)
    lps[:3, 1] = col_cos * dr
    lps[:3, 2] = row_cos * dc
    lps[:3, 3] = stack.origin
    if stack.step is None:
        m = members[0]
        thick = m.get("spacing_between_slices") or m.get("slice_thickness") or 1.0
        lps[:3, 0] = stack.normal * float(thick)
    else:
        lps[:3, 0] = stack.step
    return SeriesPlan(skey, uid, paths, affine=LPS_TO_RAS @ lps, shape=(n, rows, cols), split=split,
                      meta=meta)


class VolumeBuilder:
    """Decode the slices of one planned series straight into a preallocated volume.

    Slices may arrive one at a time (a streaming reader holds one slice's bytes
    and the volume, never a list of decoded slices).  The volume takes the first
    slice's dtype and is promoted when a later slice needs a wider one (float32
    once any slice carries a fractional rescale).
    """

    def __init__(self, n_slices: int, decode: Callable[[bytes, str], np.ndarray]):
        self.n, self.decode = int(n_slices), decode
        self.volume: np.ndarray | None = None
        self.filled = 0

    @property
    def complete(self) -> bool:
        return self.volume is not None and self.filled == self.n

    def add(self, index: int, content: bytes, path: str) -> None:
        """Decode slice ``index`` (0-based, plan order); raises :class:`SeriesAssemblyError` naming ``path``."""
        arr = _decode_one(self.decode, content, path)
        if self.n == 1:  # a multi-frame file is the whole series
            self.volume = arr if arr.ndim == 3 else arr[np.newaxis]
            self.filled = 1
            return
        if arr.ndim != 2:
            raise SeriesAssemblyError(path, f"{_name(path)}: slice has shape {arr.shape}; a series needs 2-D mono slices")
        if self.volume is None:
            dtype = np.dtype(np.float32) if arr.dtype.kind == "f" else arr.dtype
            self.volume = np.empty((self.n,) + arr.shape, dtype=dtype)
        elif arr.shape != self.volume.shape[1:]:
            raise SeriesAssemblyError(path, f"{_name(path)}: slice shape {arr.shape} differs from "
                                            f"{self.volume.shape[1:]}")
        dtype = np.result_type(self.volume.dtype, arr.dtype)
        if dtype.kind == "f":
            dtype = np.dtype(np.float32)
        if dtype != self.volume.dtype:
            self.volume = self.volume.astype(dtype)
        self.volume[index] = arr
        self.filled += 1


def assemble_volume(plan_paths: Sequence[str], contents: Sequence[bytes],
                    decode: Callable[[bytes, str], np.ndarray]) -> np.ndarray:
    """Decode the slices of one planned series, in plan order, into a volume.

    ``decode(content, path)`` returns one slice's array (it raises
    :class:`DicomReadError` on a bad file).  A multi-frame single file is
    returned as decoded.  All slices are cast to one common dtype (float32 if
    any slice carries a fractional rescale).

    Raises
    ------
    SeriesAssemblyError
        Naming the failing file: a corrupt slice, a colour slice, or a size
        that differs from the header.
    """
    builder = VolumeBuilder(len(plan_paths), decode)
    for i, (content, path) in enumerate(zip(contents, plan_paths)):
        builder.add(i, content, path)
    return builder.volume


def _decode_one(decode, content: bytes, path: str) -> np.ndarray:
    try:
        arr = decode(content, path)
    except DicomReadError as exc:
        raise SeriesAssemblyError(path, f"{_name(path)}: slice could not be decoded: {exc.reason}") from None
    if arr.ndim == 4:
        raise SeriesAssemblyError(path, f"{_name(path)}: colour series are not assembled; read them with read_dicom")
    return arr
