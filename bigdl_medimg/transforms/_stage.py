"""Shared machinery of the Spark ML stages over tensor columns.

A stage subclasses :class:`TensorStage` and implements ``_row_fn()``, which
returns a picklable function ``(image, affine, mask, seed_key) -> (image,
affine, mask)`` over numpy arrays; the base class runs it on executors with
``mapInArrow``, one row at a time (input arrays are read-only views on the
Arrow buffers, results become output buffers without a copy, other columns
pass through untouched), transforms the image and the optional mask column
together, passes null images through, and turns a failure on one row into a
null output and an ``error`` text instead of a failed job.
"""
from __future__ import annotations

from typing import Self

from typing import Callable

from pyspark import keyword_only  # noqa: F401  (re-exported for the stage modules)
from pyspark.ml import Transformer
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError, MedImgError, one_line
from ..params import param
from .array import row_seed

__all__ = ["TensorStage", "row_seed", "row_error"]


def row_error(stage: str, exc: BaseException) -> str:
    """The ``error`` text of a row a stage could not process (library failures keep their class name)."""
    text = one_line(exc) if isinstance(exc, MedImgError) else f"{type(exc).__name__}: {one_line(exc)}"
    return f"{stage}: {text}"


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

    def _output_schema(self, df, extra: list[tuple[str, object]]):
        """``df``'s schema with the ``extra`` (name, type) columns replaced in place or appended."""
        from pyspark.sql import types as T

        fields = {f.name: f for f in df.schema.fields}
        out = [T.StructField(f.name, dict(extra).get(f.name, f.dataType), True) if f.name in dict(extra) else f
               for f in df.schema.fields]
        out += [T.StructField(n, t, True) for n, t in extra if n not in fields]
        return T.StructType(out)

    def _transform(self, df):
        from pyspark.sql import types as T

        from ..arrow import arrow_schema, null_array, read_tensor, replace_columns, tensor_array
        from ..tensor import tensor_type

        self._validate()
        self._check_columns(df)
        fn = self._row_fn()
        name = type(self).__name__
        in_col, out_col = self.getOrDefault("inputCol"), self.getOrDefault("outputCol")
        mask_in, mask_out = self._mask_cols() if self.geometric else ("", "")
        err_col = self.getOrDefault("errorCol")
        extra = [(out_col, tensor_type())] + ([(mask_out, tensor_type())] if mask_in else [])
        extra.append((err_col, T.StringType()))
        schema = self._output_schema(df, extra)
        a_schema = arrow_schema(schema)
        t_type = a_schema.field(out_col).type
        has_err = err_col in df.columns

        def run(batches):
            import pyarrow as pa

            for batch in batches:
                for i in range(batch.num_rows):
                    row = batch.slice(i, 1)  # zero-copy
                    img = read_tensor(row.column(row.schema.get_field_index(in_col)), 0)
                    old_err = row.column(row.schema.get_field_index(err_col))[0].as_py() if has_err else None
                    new = {}
                    err = None
                    if img is None:
                        new[out_col] = null_array(t_type)
                        if mask_in:
                            new[mask_out] = null_array(t_type)
                    else:
                        try:
                            arr, aff, raw = img
                            m = read_tensor(row.column(row.schema.get_field_index(mask_in)), 0) if mask_in else None
                            a2, aff2, m2 = fn(arr, aff, None if m is None else m[0], raw)
                            new[out_col] = tensor_array(a2, aff2, t_type)
                            if mask_in:
                                new[mask_out] = null_array(t_type) if m2 is None else tensor_array(m2, aff2, t_type)
                        except Exception as exc:  # one bad row must not kill the job
                            err = row_error(name, exc)
                            new[out_col] = null_array(t_type)
                            if mask_in:
                                new[mask_out] = null_array(t_type)
                    new[err_col] = pa.array([old_err if old_err is not None else err], type=pa.string())
                    yield replace_columns(row, a_schema, new)

        return df.mapInArrow(run, schema)

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: tensor column to transform."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): tensor column to transform."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: tensor column to write (may equal inputCol)."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): tensor column to write (may equal inputCol)."""
        return self.getOrDefault(self.outputCol)

    def setMaskCol(self, value: str) -> Self:
        """Set :py:attr:`maskCol`: optional label-mask tensor column transformed with the image ('' for none)."""
        return self._set(maskCol=value)

    def getMaskCol(self) -> str:
        """The value of :py:attr:`maskCol` (set or default): optional label-mask tensor column transformed with the image
        ('' for none).
        """
        return self.getOrDefault(self.maskCol)

    def setMaskOutputCol(self, value: str) -> Self:
        """Set :py:attr:`maskOutputCol`: column for the transformed mask ('' = maskCol)."""
        return self._set(maskOutputCol=value)

    def getMaskOutputCol(self) -> str:
        """The value of :py:attr:`maskOutputCol` (set or default): column for the transformed mask ('' = maskCol)."""
        return self.getOrDefault(self.maskOutputCol)

    def setErrorCol(self, value: str) -> Self:
        """Set :py:attr:`errorCol`: string column receiving row errors (created when missing)."""
        return self._set(errorCol=value)

    def getErrorCol(self) -> str:
        """The value of :py:attr:`errorCol` (set or default): string column receiving row errors (created when missing).
        """
        return self.getOrDefault(self.errorCol)
