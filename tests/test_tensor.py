"""The tensor column contract: to_numpy / from_numpy."""
from __future__ import annotations

import numpy as np
import pytest

from bigdl_medimg.errors import TensorError
from bigdl_medimg.tensor import from_numpy, get_affine, spacing_from_affine, spatial_shape, to_numpy


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64", "bool"])
def test_roundtrip(dtype):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    aff = np.array([[0, 0, 2.0, -10], [0, 1.5, 0, 3], [-1, 0, 0, 7], [0, 0, 0, 1]])
    v = from_numpy(a, aff)
    assert v["dtype"] == np.dtype(dtype).name and v["shape"] == [3, 4, 5] and len(v["affine"]) == 16
    b = to_numpy(v)
    assert b.dtype == a.dtype and np.array_equal(a, b)
    assert np.array_equal(get_affine(v), aff)
    assert np.allclose(spacing_from_affine(aff), [1.0, 1.5, 2.0])


def test_big_endian_and_fortran_input_stored_little_endian_c_order():
    a = np.arange(12, dtype=">i2").reshape(3, 4).T  # big-endian, non-contiguous
    v = from_numpy(a)
    assert v["data"] == np.ascontiguousarray(a, dtype="<i2").tobytes()
    assert np.array_equal(to_numpy(v), a)
    assert np.array_equal(get_affine(v), np.eye(4))


def test_works_with_spark_rows(spark):
    v = from_numpy(np.arange(6, dtype=np.int16).reshape(2, 3), np.eye(4) * 2)
    from pyspark.sql import types as T
    from bigdl_medimg.tensor import tensor_type

    df = spark.createDataFrame([(v,)], T.StructType([T.StructField("image", tensor_type())]))
    row = df.first()
    assert np.array_equal(to_numpy(row.image), np.arange(6).reshape(2, 3))
    assert get_affine(row.image)[0, 0] == 2


def test_errors():
    v = from_numpy(np.zeros((2, 2), np.float32))
    with pytest.raises(TensorError, match="null"):
        to_numpy(None)
    with pytest.raises(TensorError, match="16 bytes but shape .3, 2. of float32 needs 24"):
        to_numpy(dict(v, shape=[3, 2]))
    with pytest.raises(TensorError, match="unknown dtype"):
        to_numpy(dict(v, dtype="nonsense"))
    with pytest.raises(TensorError, match="4x4"):
        from_numpy(np.zeros(3), np.eye(3))
    with pytest.raises(TensorError, match="non-finite"):
        from_numpy(np.zeros(3), np.full((4, 4), np.nan))
    with pytest.raises(TensorError, match="cannot store"):
        from_numpy(np.array(["a"]))
    with pytest.raises(TensorError, match="16 values"):
        get_affine(dict(v, affine=[1.0]))
    assert spatial_shape((3, 1, 5, 6)) == (1, 5, 6) and spatial_shape((5, 6)) == (5, 6)
