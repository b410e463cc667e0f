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

from .tensor import decode_array, encode_array

__all__ = ["arrow_schema", "read_tensor", "tensor_array", "null_array", "replace_columns", "fold_by_key"]


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
    data = column.field("data")
    if not column[i].is_valid or not data[i].is_valid:
        return None
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32, count=len(data) + 1, offset=data.offset * 4)
    raw = memoryview(data.buffers()[2])[int(offsets[i]):int(offsets[i + 1])]
    arr = decode_array(raw, column.field("dtype")[i].as_py(), column.field("shape")[i].as_py())
    affine = np.asarray(column.field("affine")[i].as_py(), dtype=np.float64).reshape(4, 4)
    return arr, affine, raw


def tensor_array(arr: np.ndarray, affine: np.ndarray, arrow_type: pa.DataType) -> pa.StructArray:
    """A one-row tensor struct array whose data buffer is ``arr``'s memory (no copy when C-contiguous LE)."""
    a, dtype_name, shape_list, aff_list = encode_array(arr, affine)
    data_type = arrow_type.field("data").type
    data = pa.Array.from_buffers(data_type, 1, [None, pa.py_buffer(np.array([0, a.nbytes], dtype=np.int32)),
                                                pa.py_buffer(a.reshape(-1).view(np.uint8))])
    dtype = pa.array([dtype_name], type=arrow_type.field("dtype").type)
    shape = pa.array([shape_list], type=arrow_type.field("shape").type)
    aff = pa.array([aff_list], type=arrow_type.field("affine").type)
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


def fold_by_key(batches, key: str, start, add, finish):
    """Fold Arrow batches whose rows arrive grouped by column ``key`` (a partition sorted by it) into one
    output batch per key, streaming: a task holds one key's state and one input batch.

    ``start(cols, i) -> state`` at a key's first row, ``add(state, cols, i)``
    for each of its rows (the first included), ``finish(key, state) ->
    RecordBatch`` after its last; ``cols`` maps column names to the batch's
    Arrow arrays.
    """
    current, state, open_ = None, None, False
    for batch in batches:
        cols = {name: batch.column(j) for j, name in enumerate(batch.schema.names)}
        for i in range(batch.num_rows):
            k = cols[key][i].as_py()
            if not open_ or k != current:
                if open_:
                    done, state = finish(current, state), None  # the state goes before the next one is built
                    yield done
                    done = None
                current, state, open_ = k, start(cols, i), True
            add(state, cols, i)
    if open_:
        yield finish(current, state)
