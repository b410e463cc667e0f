"""A minimal real Estimator (thresholding) for tuning tests of the evaluators."""
from __future__ import annotations

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.sql import functions as F

from bigdl_medimg.tensor import from_numpy, get_affine, tensor_type, to_numpy


class _Threshold(Params):
    threshold = Param(Params._dummy(), "threshold", "intensity threshold", TypeConverters.toFloat)

    def getThreshold(self):
        return self.getOrDefault("threshold")


class ThresholdModel(Model, _Threshold):
    def __init__(self, threshold=0.0):
        super().__init__()
        self._set(threshold=threshold)

    def _transform(self, df):
        t = self.getThreshold()

        @F.udf(tensor_type())
        def seg(image):
            return from_numpy((to_numpy(image) > t).astype(np.uint8), get_affine(image))

        return df.withColumn("segmentation", seg("image"))


class ThresholdSegmenter(Estimator, _Threshold):
    @keyword_only
    def __init__(self, *, threshold=0.0):
        super().__init__()
        self._set(**self._input_kwargs)

    def _fit(self, df):
        return ThresholdModel(self.getOrDefault("threshold"))
