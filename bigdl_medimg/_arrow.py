"""Zero-copy conversion between tensor struct values in Arrow batches and numpy arrays.

The Spark stages run with ``mapInArrow``: a batch's other columns pass through
untouched, an image is viewed straight from the Arrow buffer (no ``bytes``
copy), and a result array becomes the data buffer of a one-row output batch
without being copied.  The byte layout is the one of
:mod:`bigdl_medimg.tensor` (C order, little-endian).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["arrow_schema", "read_tensor", "tensor_array", "null_array", "replace_columns"]


def arrow_schema(spark_schema) -> pa.Schema:
    """The Arrow schema Spark expects for ``spark_schema`` (as mapInArrow batches)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(spark_schema)


def read_tensor(column: pa.Array, i: int):
    """``(array, affine, raw)`` of row ``i`` of a tensor struct column, or None when null.

    ``array`` is a read-only view on the Arrow buffer; ``raw`` is a memoryview
    of the row's bytes (for seeding per-row randomness).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not column.is_valid().to_numpy(zero_copy_only=False)[i]:
        return None
    data = column.field("data")
    if not data.is_valid().to_numpy(zero_copy_only=False)[i]:
        return None
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32, count=len(data) + 1, offset=data.offset * 4)
    start, stop = int(offsets[i]), int(offsets[i + 1])
    raw = memoryview(data.buffers()[2])[start:stop]
    dtype = np.dtype(column.field("dtype")[i].as_py())
    shape = tuple(int(s) for s in column.field("shape")[i].as_py())
    affine = np.asarray(column.field("affine")[i].as_py(), dtype=np.float64).reshape(4, 4)
    le = dtype.newbyteorder("<")
    arr = np.frombuffer(raw, dtype=le, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
    if arr.dtype.isnative:
        arr = arr.view(dtype.newbyteorder("="))
        arr.flags.writeable = False  # Arrow memory is immutable
    else:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr, affine, raw


def tensor_array(arr: np.ndarray, affine: np.ndarray, arrow_type: pa.DataType) -> pa.StructArray:
    """A one-row tensor struct array whose data buffer is ``arr``'s memory (no copy when C-contiguous LE)."""
    a = np.ascontiguousarray(arr, dtype=np.asarray(arr).dtype.newbyteorder("<"))
    nbytes = a.nbytes
    data_type = arrow_type.field("data").type
    data = pa.Array.from_buffers(data_type, 1, [None, pa.py_buffer(np.array([0, nbytes], dtype=np.int32)),
                                                pa.py_buffer(a.reshape(-1).view(np.uint8))])
    dtype = pa.array([np.dtype(a.dtype).newbyteorder("=").name], type=arrow_type.field("dtype").type)
    shape = pa.array([[int(s) for s in a.shape]], type=arrow_type.field("shape").type)
    aff = pa.array([[float(v) for v in np.asarray(affine, dtype=np.float64).ravel()]],
                   type=arrow_type.field("affine").type)
    return pa.StructArray.from_arrays([data, dtype, shape, aff], fields=list(arrow_type))


def null_array(arrow_type: pa.DataType) -> pa.Array:
    """A one-row null of ``arrow_type``."""
    return pa.nulls(1, type=arrow_type)


def replace_columns(row: pa.RecordBatch, schema: pa.Schema, new: dict[str, pa.Array]) -> pa.RecordBatch:
    """``row`` (one row) with columns in ``new`` replaced or appended, in ``schema``'s order."""
    cols = []
    for field in schema:
        if field.name in new:
            cols.append(new[field.name])
        else:
            cols.append(row.column(row.schema.get_field_index(field.name)))
    return pa.RecordBatch.from_arrays(cols, schema=schema)
