"""Between tensor columns and the flat float arrays BigDL consumes and produces."""
from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..params import param

__all__ = ["ToFeatures", "FromFeatures"]


class ToFeatures(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Tensor column -> flat ``array<float>`` (C order, channels first), the input of BigDL's NNEstimator.

    With ``addChannel`` a channel-less volume is treated as one channel; the
    flat values are the same, so this only matters for :func:`feature_shape`.
    """

    inputCol = param("inputCol", "tensor column", TypeConverters.toString)
    outputCol = param("outputCol", "array<float> output column", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol="image", outputCol="features"):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="features")
        self._set(**self._input_kwargs)

    def _transform(self, df):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..tensor import to_numpy

        col = self.getOrDefault("inputCol")
        if col not in df.columns:
            raise ConfigError(f"ToFeatures: column {col!r} not found; the DataFrame has {sorted(df.columns)}")

        def flat(img: pd.DataFrame) -> pd.Series:
            out = []
            for i in range(len(img)):
                r = img.iloc[i].to_dict()
                out.append(None if not isinstance(r.get("data"), (bytes, bytearray))
                           else to_numpy(r).astype(np.float32, copy=False).ravel())
            return pd.Series(out)

        udf = F.pandas_udf(flat, T.ArrayType(T.FloatType()))
        return df.withColumn(self.getOrDefault("outputCol"), udf(F.col(col)))

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: tensor column."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): tensor column."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: array<float> output column."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): array<float> output column."""
        return self.getOrDefault(self.outputCol)


class FromFeatures(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Flat model output -> tensor column on the grid (shape and affine) of ``referenceCol``.

    The output's channel count is inferred from its length.  With ``argmax``,
    per-class scores ``(classes, *spatial)`` become a ``uint8`` label map.
    """

    inputCol = param("inputCol", "array of floats (a model's prediction)", TypeConverters.toString)
    outputCol = param("outputCol", "tensor column to write", TypeConverters.toString)
    referenceCol = param("referenceCol", "tensor column whose grid the output lies on", TypeConverters.toString)
    argmax = param("argmax", "turn per-class scores into a label map", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, inputCol="prediction", outputCol="prediction_image", referenceCol="image", argmax=False):
        super().__init__()
        self._setDefault(inputCol="prediction", outputCol="prediction_image", referenceCol="image", argmax=False)
        self._set(**self._input_kwargs)

    def _transform(self, df):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..tensor import from_numpy, spatial_shape, tensor_type

        for c in (self.getOrDefault("inputCol"), self.getOrDefault("referenceCol")):
            if c not in df.columns:
                raise ConfigError(f"FromFeatures: column {c!r} not found; the DataFrame has {sorted(df.columns)}")
        use_argmax = self.getOrDefault("argmax")

        def unflat(values: pd.Series, ref: pd.DataFrame) -> pd.DataFrame:
            out = []
            for v, i in zip(values, range(len(ref))):
                r = ref.iloc[i].to_dict()
                if v is None or not isinstance(r.get("data"), (bytes, bytearray)):
                    out.append(None)
                    continue
                sp = spatial_shape(r["shape"])
                vox = int(np.prod(sp))
                vals = np.asarray(v, dtype=np.float32)
                if vals.size % vox:
                    raise ConfigError(f"FromFeatures: {vals.size} values do not fill a grid of {sp}")
                arr = vals.reshape((vals.size // vox,) + tuple(sp))
                if use_argmax:
                    arr = np.argmax(arr, axis=0).astype(np.uint8)
                elif arr.shape[0] == 1:
                    arr = arr[0]
                out.append(from_numpy(arr, np.asarray(r["affine"], dtype=np.float64).reshape(4, 4)))
            return pd.DataFrame({"t": out})  # nested, so that a None becomes a null struct

        schema = T.StructType([T.StructField("t", tensor_type())])
        udf = F.pandas_udf(unflat, schema)
        res = udf(F.col(self.getOrDefault("inputCol")), F.col(self.getOrDefault("referenceCol")))
        return df.withColumn(self.getOrDefault("outputCol"), res.getField("t"))

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: array of floats (a model's prediction)."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): array of floats (a model's prediction)."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: tensor column to write."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): tensor column to write."""
        return self.getOrDefault(self.outputCol)

    def setReferenceCol(self, value: str) -> Self:
        """Set :py:attr:`referenceCol`: tensor column whose grid the output lies on."""
        return self._set(referenceCol=value)

    def getReferenceCol(self) -> str:
        """The value of :py:attr:`referenceCol` (set or default): tensor column whose grid the output lies on."""
        return self.getOrDefault(self.referenceCol)

    def setArgmax(self, value: bool) -> Self:
        """Set :py:attr:`argmax`: turn per-class scores into a label map."""
        return self._set(argmax=value)

    def getArgmax(self) -> bool:
        """The value of :py:attr:`argmax` (set or default): turn per-class scores into a label map."""
        return self.getOrDefault(self.argmax)
