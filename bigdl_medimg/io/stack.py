"""Slice-stack geometry: order 2-D planes along their normal and check they form a regular volume.

One checker for the two places stacks come from: the files of a classic
series (:mod:`bigdl_medimg.io.series`) and the frames of an enhanced
multi-frame object (:mod:`bigdl_medimg.io.dicom`).  Planes are ordered by
their position along the slice normal (never by file name, InstanceNumber or
storage order) and must share one orientation, have no duplicate positions,
no missing planes, uniform spacing and collinear positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["StackError", "Stack", "order_stack", "split_fields", "stack_value", "STACK_FIELDS",
           "ORIENTATION_TOL", "ORIENTATION_SPLIT_TOL", "SPACING_RTOL", "cluster_orientations"]

#: Image planes whose direction cosines differ by more than this are different stacks.
ORIENTATION_SPLIT_TOL = 0.05
#: Within one stack, direction cosines must agree to this (else "mixed orientations").
ORIENTATION_TOL = 1e-3
#: Relative tolerance on plane spacing.
SPACING_RTOL = 0.05


class StackError(ValueError):
    """The planes do not form one regular stack; ``reason`` says why, naming the planes involved."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Stack:
    """An ordered stack: ``order`` indexes the input planes; ``step`` is the LPS vector between neighbours
    (None for a single plane); ``normal`` the unit slice normal; ``origin`` the first plane's position."""

    order: np.ndarray
    normal: np.ndarray
    origin: np.ndarray
    step: np.ndarray | None


def order_stack(positions: Sequence[Sequence[float]], orientations: Sequence[Sequence[float]],
                labels: Sequence[str]) -> Stack:
    """Order planes along their normal and check the stack (see the module notes).

    Parameters
    ----------
    positions : (n, 3) ImagePositionPatient of each plane (LPS mm)
    orientations : (n, 6) ImageOrientationPatient of each plane (row then column cosines)
    labels : a name per plane for the error texts (a file name, ``"frame 7"``)

    Raises
    ------
    StackError
    """
    iops = np.asarray(orientations, float).reshape(-1, 6)
    ipps = np.asarray(positions, float).reshape(-1, 3)
    dev = float(np.max(np.abs(iops - iops[0])))
    if dev > ORIENTATION_TOL:
        raise StackError(f"mixed orientations: direction cosines differ by up to {dev:.4f}")
    row_cos, col_cos = iops[0, :3], iops[0, 3:]
    normal = np.cross(row_cos, col_cos)
    nn = np.linalg.norm(normal)
    if nn < 1e-6:
        raise StackError("ImageOrientationPatient is degenerate (row and column cosines are parallel)")
    normal = normal / nn
    d = ipps @ normal
    order = np.argsort(d, kind="stable")
    d, ipps = d[order], ipps[order]
    names = [labels[i] for i in order]
    n = len(order)
    if n == 1:
        return Stack(order, normal, ipps[0], None)
    gaps = np.diff(d)
    dup = np.flatnonzero(gaps < 1e-3 * max(float(np.median(np.abs(gaps))), 1e-3))
    if dup.size:
        i = int(dup[0])
        raise StackError(f"duplicate slice positions: {dup.size + 1} slices share positions "
                         f"(e.g. {names[i]} and {names[i + 1]} at {d[i]:.3f} mm)")
    step = float(np.median(gaps))
    rel = np.abs(gaps - step) / step
    if np.any(rel > SPACING_RTOL):
        ratios = gaps / step
        near_int = np.abs(ratios - np.round(ratios)) < SPACING_RTOL
        if np.all(near_int) and np.any(np.round(ratios) >= 2):
            k = int(np.flatnonzero(np.round(ratios) >= 2)[0])
            missing = int(np.sum(np.round(ratios) - 1))
            raise StackError(f"missing slice(s): {missing} position(s) absent, first gap of "
                             f"{gaps[k]:.3f} mm after {names[k]} (spacing {step:.3f} mm)")
        raise StackError(f"non-uniform slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm")
    mean_step = (ipps[-1] - ipps[0]) / (n - 1)
    if np.max(np.linalg.norm(np.diff(ipps, axis=0) - mean_step, axis=1)) > SPACING_RTOL * step + 1e-3:
        raise StackError("slice positions are not collinear (in-plane offsets vary between slices)")
    return Stack(order, normal, ipps[0], mean_step)


#: Header fields that tell the stacks of one series (or one enhanced object) apart, in split order; the
#: ``split`` column names them: ``stack`` (an enhanced object's StackID), ``echo``, ``temporal_position``,
#: ``trigger_time``, ``diffusion_b_value``.
#: Each entry names the record keys that carry it, the first present one counts (an enhanced MR object
#: states its echoes by EffectiveEchoTime, a classic series by EchoNumbers).
STACK_FIELDS = (("stack", ("stack_id",)), ("echo", ("echo_numbers", "echo_time")),
                ("temporal_position", ("temporal_position_identifier",)), ("trigger_time", ("trigger_time",)),
                ("diffusion_b_value", ("diffusion_b_value",)))


def stack_value(r: dict, name: str):
    """The value of STACK_FIELDS entry ``name`` in record ``r`` (rounded; None when absent)."""
    v = next((r.get(k) for k in dict(STACK_FIELDS)[name] if r.get(k) is not None), None)
    return None if v is None else round(float(v), 3)


def split_fields(records: list[dict]) -> list[str]:
    """The STACK_FIELDS planes are split by: those with several values, when plane positions repeat.

    The repeat guard keeps a regular stack whole whose slices merely carry
    different values (a trigger time per slice); TriggerTime is used only
    without TemporalPositionIdentifier.
    """
    if len(records) < 2:
        return []
    pos = [tuple(np.round(np.asarray(r["image_position_patient"], float), 2)) for r in records]
    if len(set(pos)) == len(pos):
        return []
    keys = [name for name, _ in STACK_FIELDS if len({stack_value(r, name) for r in records}) > 1]
    if "temporal_position" in keys and "trigger_time" in keys:
        keys.remove("trigger_time")
    return keys


def cluster_orientations(iops: list[np.ndarray]) -> list[int]:
    """A label per plane: planes whose direction cosines agree within ORIENTATION_SPLIT_TOL share one."""
    centres: list[np.ndarray] = []
    labels = []
    for v in iops:
        for i, c in enumerate(centres):
            if np.max(np.abs(v - c)) <= ORIENTATION_SPLIT_TOL:
                labels.append(i)
                break
        else:
            centres.append(v)
            labels.append(len(centres) - 1)
    return labels
