"""Shared machinery of the Spark ML stages over tensor columns.

A stage subclasses :class:`TensorStage` and implements ``_row_fn()``, which
returns a picklable function ``(image, affine, mask, seed_key) -> (image,
affine, mask)`` over numpy arrays; the base class runs it on executors in a
pandas UDF (Arrow batches of ``spark.sql.execution.arrow.maxRecordsPerBatch``
rows), transforms the image and the optional mask column together, passes
null images through, and turns a failure on one row into a null output and
an ``error`` text instead of a failed job.
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only  # noqa: F401  (re-exported for the stage modules)
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError, MedImgError, one_line

__all__ = ["TensorStage", "param", "with_accessors", "row_seed"]


def param(name: str, doc: str, conv) -> Param:
    """A class-level Param (pyspark.ml convention)."""
    return Param(Params._dummy(), name, doc, typeConverter=conv)


def with_accessors(cls):
    """Add camelCase ``setX``/``getX`` for every Param declared on ``cls`` (as pyspark.ml classes have)."""
    for name, value in list(vars(cls).items()):
        if isinstance(value, Param):
            cap = name[0].upper() + name[1:]
            if not hasattr(cls, "set" + cap):
                setattr(cls, "set" + cap, lambda self, v, _n=name: self._set(**{_n: v}))
            if not hasattr(cls, "get" + cap):
                setattr(cls, "get" + cap, lambda self, _n=name: self.getOrDefault(_n))
    return cls


def row_seed(seed: int, data: bytes) -> np.random.Generator:
    """A generator determined by the stage seed and the row's own bytes (stable across retries)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(data)])


@with_accessors
class TensorStage(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Base of the transforms: ``inputCol`` -> ``outputCol`` (and ``maskCol`` -> ``maskOutputCol``)."""

    inputCol = param("inputCol", "tensor column to transform", TypeConverters.toString)
    outputCol = param("outputCol", "tensor column to write (may equal inputCol)", TypeConverters.toString)
    maskCol = param("maskCol", "optional label-mask tensor column transformed with the image ('' for none)",
                    TypeConverters.toString)
    maskOutputCol = param("maskOutputCol", "column for the transformed mask ('' = maskCol)", TypeConverters.toString)
    errorCol = param("errorCol", "string column receiving row errors (created when missing)", TypeConverters.toString)

    #: whether the stage changes geometry (then a mask column is transformed too)
    geometric = True

    def __init__(self):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="image", maskCol="", maskOutputCol="", errorCol="error")

    # subclasses -------------------------------------------------------------
    def _validate(self) -> None:
        """Raise ConfigError for invalid Params (called before any job runs)."""

    def _row_fn(self) -> Callable:
        raise NotImplementedError

    # machinery ----------------------------------------------------------------
    def _mask_cols(self) -> tuple[str, str]:
        m = self.getOrDefault("maskCol")
        return m, (self.getOrDefault("maskOutputCol") or m)

    def _check_columns(self, df) -> None:
        cols = set(df.columns)
        need = [self.getOrDefault("inputCol")] + ([self._mask_cols()[0]] if self._mask_cols()[0] else [])
        for c in need:
            if c not in cols:
                raise ConfigError(f"{type(self).__name__}: column {c!r} not found; the DataFrame has {sorted(cols)}")

    def _transform(self, df):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..tensor import from_numpy, tensor_type, to_numpy

        self._validate()
        self._check_columns(df)
        fn = self._row_fn()
        name = type(self).__name__
        in_col = self.getOrDefault("inputCol")
        mask_in, mask_out = self._mask_cols() if self.geometric else ("", "")
        schema = T.StructType([T.StructField("image", tensor_type()), T.StructField("mask", tensor_type()),
                               T.StructField("err", T.StringType())])

        def value(frame, i):
            if frame is None:
                return None
            rec = frame.iloc[i].to_dict()
            if not isinstance(rec.get("data"), (bytes, bytearray)):
                return None  # a null struct arrives as a row of nulls
            return rec

        def run(img: pd.DataFrame, mask: pd.DataFrame | None = None) -> pd.DataFrame:
            out_img, out_mask, errs = [], [], []
            for i in range(len(img)):
                v, mv = value(img, i), value(mask, i)
                if v is None:
                    out_img.append(None), out_mask.append(None), errs.append(None)
                    continue
                try:
                    arr = to_numpy(v)
                    aff = np.asarray(v["affine"], dtype=np.float64).reshape(4, 4)
                    marr = to_numpy(mv) if mv is not None else None
                    a2, aff2, m2 = fn(arr, aff, marr, bytes(v["data"]))
                    out_img.append(from_numpy(a2, aff2))
                    out_mask.append(None if m2 is None else from_numpy(m2, aff2))
                    errs.append(None)
                except MedImgError as exc:
                    out_img.append(None), out_mask.append(None), errs.append(f"{name}: {one_line(exc)}")
                except Exception as exc:  # one bad row must not kill the job
                    out_img.append(None), out_mask.append(None)
                    errs.append(f"{name}: {type(exc).__name__}: {one_line(exc)}")
            return pd.DataFrame({"image": out_img, "mask": out_mask, "err": errs})

        if mask_in:
            def with_mask(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
                return run(a, b)

            res = F.pandas_udf(with_mask, schema).asNondeterministic()(F.col(in_col), F.col(mask_in))
        else:
            def image_only(a: pd.DataFrame) -> pd.DataFrame:
                return run(a)

            res = F.pandas_udf(image_only, schema).asNondeterministic()(F.col(in_col))
        tmp = f"__{self.uid}"
        out = df.withColumn(tmp, res)
        out = out.withColumn(self.getOrDefault("outputCol"), F.col(f"{tmp}.image"))
        if mask_in:
            out = out.withColumn(mask_out, F.col(f"{tmp}.mask"))
        err_col = self.getOrDefault("errorCol")
        if err_col in df.columns:
            out = out.withColumn(err_col, F.coalesce(F.col(err_col), F.col(f"{tmp}.err")))
        else:
            out = out.withColumn(err_col, F.col(f"{tmp}.err"))
        return out.drop(tmp)
