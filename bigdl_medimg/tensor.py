"""The tensor column: one struct type for every image in a DataFrame.

``image: struct<data: binary, dtype: string, shape: array<int>, affine: array<double>>``

* ``data``: C-order little-endian bytes of the array.
* ``dtype``: a numpy dtype name (``"int16"``, ``"float32"``, ``"uint8"``, ...).
* ``shape``: the array's axes.  The *spatial* axes are the last three (the last
  two for a 2-D array); any axis before them is a channel axis (colour, time,
  classes), so arrays are channels-first.  A 2-D colour image is
  ``(3, 1, rows, cols)``: three channels of a one-slice grid.
* ``affine``: 16 doubles, row-major 4x4, mapping the spatial indices
  ``(i0, i1, i2, 1)`` (for a 2-D array ``i2`` is 0) to RAS+ world millimetres.
  Spacing and orientation are derived from it, never stored twice.

:func:`decode_array` and :func:`encode_array` are the only code that knows the
byte layout; :func:`to_numpy` / :func:`from_numpy` (row values) and the Arrow
path of the Spark stages (:mod:`bigdl_medimg.arrow`) go through them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import TensorError

__all__ = [
    "TENSOR_FIELDS",
    "tensor_type",
    "to_numpy",
    "from_numpy",
    "decode_array",
    "encode_array",
    "get_affine",
    "spatial_shape",
    "spacing_from_affine",
    "LPS_TO_RAS",
]

TENSOR_FIELDS = ("data", "dtype", "shape", "affine")

#: Multiply a DICOM (LPS+) affine on the left by this to get RAS+.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def tensor_type():
    """The Spark ``StructType`` of a tensor column (imports pyspark lazily)."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("data", T.BinaryType(), True),
            T.StructField("dtype", T.StringType(), True),
            T.StructField("shape", T.ArrayType(T.IntegerType(), False), True),
            T.StructField("affine", T.ArrayType(T.DoubleType(), False), True),
        ]
    )


def _field(value: Any, name: str):
    if isinstance(value, Mapping):
        return value[name]
    return getattr(value, name) if hasattr(value, name) else value[name]


def to_numpy(value: Any) -> np.ndarray:
    """Decode a tensor struct value (a ``Row``, a dict or a pandas record).

    Parameters
    ----------
    value : Row or Mapping
        A value of a tensor column.

    Returns
    -------
    numpy.ndarray
        A read-only view on the value's bytes in native byte order; call
        ``.copy()`` to modify it.

    Raises
    ------
    TensorError
        If the value is null or its fields do not agree with each other.
    """
    if value is None:
        raise TensorError("tensor value is null (the row probably has an error)")
    try:
        data = _field(value, "data")
        dtype_name = _field(value, "dtype")
        shape = tuple(int(s) for s in _field(value, "shape"))
    except (KeyError, AttributeError, TypeError) as exc:
        raise TensorError(f"not a tensor struct: missing field {exc}") from None
    return decode_array(data, dtype_name, shape)


def decode_array(data, dtype_name: str, shape) -> np.ndarray:
    """The array stored in ``data`` (bytes or any buffer) as ``dtype_name`` of ``shape``.

    Returns a read-only view in native byte order (a copy only on big-endian
    machines).  Raises :class:`TensorError` when the fields disagree.
    """
    shape = tuple(int(s) for s in shape)
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        raise TensorError(f"unknown dtype {dtype_name!r}") from None
    if any(s < 0 for s in shape):
        raise TensorError(f"negative dimension in shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = None if data is None else memoryview(data).nbytes
    if got != expected:
        raise TensorError(
            f"tensor data has {got} bytes but shape {shape} of {dtype.name} needs {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=expected // max(dtype.itemsize, 1))
    arr = arr.reshape(shape)
    native = dtype.newbyteorder("=")
    if not arr.dtype.isnative:
        return arr.astype(native)
    arr = arr.view(native)
    arr.flags.writeable = False  # a view on someone else's memory (bytes, an Arrow buffer)
    return arr


def get_affine(value: Any) -> np.ndarray:
    """The 4x4 affine of a tensor struct value as a float64 array."""
    if value is None:
        raise TensorError("tensor value is null (the row probably has an error)")
    aff = _field(value, "affine")
    if aff is None or len(aff) != 16:
        raise TensorError(f"affine must have 16 values, got {None if aff is None else len(aff)}")
    out = np.asarray(aff, dtype=np.float64).reshape(4, 4)
    if not np.all(np.isfinite(out)):
        raise TensorError("affine has non-finite values")
    return out


def from_numpy(array: np.ndarray, affine: np.ndarray | None = None) -> dict:
    """Encode an array (and its affine) as a tensor struct value.

    Parameters
    ----------
    array : numpy.ndarray
        Any numeric or boolean array; stored little-endian, C order.
    affine : array_like, optional
        4x4 matrix mapping spatial indices to RAS+ mm; identity when omitted.

    Returns
    -------
    dict
        ``{"data", "dtype", "shape", "affine"}``, usable as a row value of a
        tensor column (Spark accepts dicts for structs).
    """
    arr, dtype_name, shape, aff = encode_array(array, affine)
    return {"data": arr.tobytes(order="C"), "dtype": dtype_name, "shape": shape, "affine": aff}


def encode_array(array: np.ndarray, affine: np.ndarray | None = None):
    """The pieces of a tensor value: ``(C-contiguous little-endian array, dtype name, shape, affine values)``.

    The array is ``array`` itself when it is already laid out that way (no copy),
    so callers can hand its memory on (``bytes`` for :func:`from_numpy`, an Arrow
    buffer for the Spark stages).
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "biufc":
        raise TensorError(f"cannot store arrays of dtype {arr.dtype} in a tensor column")
    le = arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr, dtype=le)
    if affine is None:
        aff = np.eye(4)
    else:
        aff = np.asarray(affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise TensorError(f"affine must be 4x4, got shape {aff.shape}")
        if not np.all(np.isfinite(aff)):
            raise TensorError("affine has non-finite values")
    return arr, np.dtype(le).name, [int(s) for s in arr.shape], [float(v) for v in aff.ravel()]


def spatial_shape(shape) -> tuple[int, ...]:
    """The spatial part of ``shape``: its last three axes (two for 2-D arrays)."""
    shape = tuple(int(s) for s in shape)
    return shape[-3:] if len(shape) >= 3 else shape


def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing (mm) along each of the three spatial index axes."""
    aff = np.asarray(affine, dtype=np.float64).reshape(4, 4)
    return np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
