"""Spark ML Transformers over tensor columns: geometry and intensity.

Each stage wraps a pure-numpy function of :mod:`bigdl_medimg.transforms.array`
(MONAI's array/dictionary split, with the Spark stage as the wrapper).  Stages
follow pyspark.ml: class-level typed Params, keyword-only constructors,
camelCase setters, ``save``/``load`` and use inside ``Pipeline``s.  Geometry
stages transform ``maskCol`` together with the image (nearest-neighbour) and
keep the affine true.
"""
from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError, TensorError
from . import array as A
from ..params import param
from ._stage import TensorStage
from .orientation import reorient

__all__ = ["Reorient", "Resample", "IntensityWindow", "ZScoreNormalize", "PercentileScale", "CropOrPad", "CropAroundLabel",
           "CropForeground", "ResizeImage"]


def _check_mask_grid(arr, marr):
    if marr is not None:
        nd = A.spatial_ndim(arr)
        if marr.shape[marr.ndim - nd:] != arr.shape[arr.ndim - nd:]:
            raise ConfigError(f"mask grid {marr.shape} differs from image grid {arr.shape}")


def _geometry_fn(image_op, mask_op):
    """Row function applying ``image_op`` to the image and ``mask_op`` to the mask on the same grid."""
    def fn(arr, aff, marr, _key):
        _check_mask_grid(arr, marr)
        out, aff2 = image_op(arr, aff)
        mout = mask_op(marr, aff)[0] if marr is not None else None
        return out, aff2, mout
    return fn


class Reorient(TensorStage):
    """Permute/flip axes so they point along ``axcodes`` (exact, lossless)."""

    axcodes = param("axcodes", "three axis codes such as RAS or LPS", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, axcodes="RAS", inputCol="image", outputCol="image", maskCol="", maskOutputCol="",
                 errorCol="error"):
        super().__init__()
        self._setDefault(axcodes="RAS")
        self._set(**self._input_kwargs)

    def _validate(self):
        codes = self.getOrDefault("axcodes").upper()
        reorient(np.zeros((1, 1, 1)), np.eye(4), codes)  # raises ConfigError for bad codes

    def _row_fn(self):
        codes = self.getOrDefault("axcodes").upper()

        def op(a, aff):
            if a.ndim < 3:
                raise ConfigError(f"Reorient needs a 3-D grid, got shape {a.shape}")
            return reorient(a, aff, codes)
        return _geometry_fn(op, op)

    def setAxcodes(self, value: str) -> Self:
        """Set :py:attr:`axcodes`: three axis codes such as RAS or LPS."""
        return self._set(axcodes=value)

    def getAxcodes(self) -> str:
        """The value of :py:attr:`axcodes` (set or default): three axis codes such as RAS or LPS."""
        return self.getOrDefault(self.axcodes)


class Resample(TensorStage):
    """Resample to a voxel ``spacing`` (mm): spline ``order`` for images, nearest for masks."""

    spacing = param("spacing", "target spacing in mm, one per spatial axis", TypeConverters.toListFloat)
    order = param("order", "spline order for the image: 0 nearest, 1 linear, 3 cubic", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, spacing=None, order=1, inputCol="image", outputCol="image", maskCol="", maskOutputCol="",
                 errorCol="error"):
        super().__init__()
        self._setDefault(order=1)
        self._set(**self._input_kwargs)

    def _validate(self):
        if not self.isDefined("spacing") or self.getOrDefault("spacing") is None:
            raise ConfigError("Resample: spacing is required, e.g. Resample(spacing=[1.0, 1.0, 1.0])")
        sp = self.getOrDefault("spacing")
        if not sp or any(not np.isfinite(v) or v <= 0 for v in sp):
            raise ConfigError(f"Resample: spacing must be positive numbers, got {sp}")
        if self.getOrDefault("order") not in range(6):
            raise ConfigError(f"Resample: order must be 0..5, got {self.getOrDefault('order')}")

    def _row_fn(self):
        sp, order = list(self.getOrDefault("spacing")), self.getOrDefault("order")
        return _geometry_fn(lambda a, f: A.resample(a, f, sp, order), lambda a, f: A.resample(a, f, sp, 0))

    def setSpacing(self, value: list[float]) -> Self:
        """Set :py:attr:`spacing`: target spacing in mm, one per spatial axis."""
        return self._set(spacing=value)

    def getSpacing(self) -> list[float]:
        """The value of :py:attr:`spacing` (set or default): target spacing in mm, one per spatial axis."""
        return self.getOrDefault(self.spacing)

    def setOrder(self, value: int) -> Self:
        """Set :py:attr:`order`: spline order for the image: 0 nearest, 1 linear, 3 cubic."""
        return self._set(order=value)

    def getOrder(self) -> int:
        """The value of :py:attr:`order` (set or default): spline order for the image: 0 nearest, 1 linear, 3 cubic.
        """
        return self.getOrDefault(self.order)


class _IntensityStage(TensorStage):
    geometric = False


class IntensityWindow(_IntensityStage):
    """Map ``[low, high]`` to ``[0, 1]`` (float32), clipping outside when ``clip``."""

    low = param("low", "value mapped to 0", TypeConverters.toFloat)
    high = param("high", "value mapped to 1", TypeConverters.toFloat)
    clip = param("clip", "clip the result to [0, 1]", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, low=None, high=None, clip=True, inputCol="image", outputCol="image", errorCol="error"):
        super().__init__()
        self._setDefault(clip=True)
        self._set(**self._input_kwargs)

    def _validate(self):
        lo = self.getOrDefault("low") if self.isDefined("low") else None
        hi = self.getOrDefault("high") if self.isDefined("high") else None
        if lo is None or hi is None or not hi > lo:
            raise ConfigError(f"IntensityWindow: needs low < high, got low={lo}, high={hi}")

    def _row_fn(self):
        lo, hi, clip = self.getOrDefault("low"), self.getOrDefault("high"), self.getOrDefault("clip")
        return lambda arr, aff, marr, _k: (A.intensity_window(arr, lo, hi, clip), aff, marr)

    def setLow(self, value: float) -> Self:
        """Set :py:attr:`low`: value mapped to 0."""
        return self._set(low=value)

    def getLow(self) -> float:
        """The value of :py:attr:`low` (set or default): value mapped to 0."""
        return self.getOrDefault(self.low)

    def setHigh(self, value: float) -> Self:
        """Set :py:attr:`high`: value mapped to 1."""
        return self._set(high=value)

    def getHigh(self) -> float:
        """The value of :py:attr:`high` (set or default): value mapped to 1."""
        return self.getOrDefault(self.high)

    def setClip(self, value: bool) -> Self:
        """Set :py:attr:`clip`: clip the result to [0, 1]."""
        return self._set(clip=value)

    def getClip(self) -> bool:
        """The value of :py:attr:`clip` (set or default): clip the result to [0, 1]."""
        return self.getOrDefault(self.clip)


class ZScoreNormalize(_IntensityStage):
    """Zero mean, unit variance per image (and channel); ``nonzero`` ignores background zeros."""

    nonzero = param("nonzero", "compute statistics over non-zero voxels only (zeros stay 0)", TypeConverters.toBoolean)
    channelWise = param("channelWise", "separate statistics per channel", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, nonzero=False, channelWise=True, inputCol="image", outputCol="image", errorCol="error"):
        super().__init__()
        self._setDefault(nonzero=False, channelWise=True)
        self._set(**self._input_kwargs)

    def _row_fn(self):
        nz, cw = self.getOrDefault("nonzero"), self.getOrDefault("channelWise")
        return lambda arr, aff, marr, _k: (A.zscore_normalize(arr, nz, cw), aff, marr)

    def setNonzero(self, value: bool) -> Self:
        """Set :py:attr:`nonzero`: compute statistics over non-zero voxels only (zeros stay 0)."""
        return self._set(nonzero=value)

    def getNonzero(self) -> bool:
        """The value of :py:attr:`nonzero` (set or default): compute statistics over non-zero voxels only (zeros stay 0).
        """
        return self.getOrDefault(self.nonzero)

    def setChannelWise(self, value: bool) -> Self:
        """Set :py:attr:`channelWise`: separate statistics per channel."""
        return self._set(channelWise=value)

    def getChannelWise(self) -> bool:
        """The value of :py:attr:`channelWise` (set or default): separate statistics per channel."""
        return self.getOrDefault(self.channelWise)


class PercentileScale(_IntensityStage):
    """Map the ``lower``/``upper`` percentiles of each image to 0/1 (float32)."""

    lower = param("lower", "lower percentile (0-100)", TypeConverters.toFloat)
    upper = param("upper", "upper percentile (0-100)", TypeConverters.toFloat)
    clip = param("clip", "clip the result to [0, 1]", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, lower=1.0, upper=99.0, clip=True, inputCol="image", outputCol="image", errorCol="error"):
        super().__init__()
        self._setDefault(lower=1.0, upper=99.0, clip=True)
        self._set(**self._input_kwargs)

    def _validate(self):
        lo, hi = self.getOrDefault("lower"), self.getOrDefault("upper")
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"PercentileScale: needs 0 <= lower < upper <= 100, got {lo}, {hi}")

    def _row_fn(self):
        lo, hi, clip = self.getOrDefault("lower"), self.getOrDefault("upper"), self.getOrDefault("clip")
        return lambda arr, aff, marr, _k: (A.percentile_scale(arr, lo, hi, clip), aff, marr)

    def setLower(self, value: float) -> Self:
        """Set :py:attr:`lower`: lower percentile (0-100)."""
        return self._set(lower=value)

    def getLower(self) -> float:
        """The value of :py:attr:`lower` (set or default): lower percentile (0-100)."""
        return self.getOrDefault(self.lower)

    def setUpper(self, value: float) -> Self:
        """Set :py:attr:`upper`: upper percentile (0-100)."""
        return self._set(upper=value)

    def getUpper(self) -> float:
        """The value of :py:attr:`upper` (set or default): upper percentile (0-100)."""
        return self.getOrDefault(self.upper)

    def setClip(self, value: bool) -> Self:
        """Set :py:attr:`clip`: clip the result to [0, 1]."""
        return self._set(clip=value)

    def getClip(self) -> bool:
        """The value of :py:attr:`clip` (set or default): clip the result to [0, 1]."""
        return self.getOrDefault(self.clip)


class CropOrPad(TensorStage):
    """Centre-crop or pad the spatial axes to ``shape`` (image padded with ``value``, mask with 0)."""

    shape = param("shape", "target spatial shape", TypeConverters.toListInt)
    value = param("value", "padding value for the image", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, shape=None, value=0.0, inputCol="image", outputCol="image", maskCol="", maskOutputCol="",
                 errorCol="error"):
        super().__init__()
        self._setDefault(value=0.0)
        self._set(**self._input_kwargs)

    def _validate(self):
        shp = self.getOrDefault("shape") if self.isDefined("shape") else None
        if not shp or min(shp) < 1:
            raise ConfigError(f"CropOrPad: shape must be positive sizes, got {shp}")

    def _row_fn(self):
        shp, val = list(self.getOrDefault("shape")), self.getOrDefault("value")
        return _geometry_fn(lambda a, f: A.crop_or_pad(a, f, shp, val), lambda a, f: A.crop_or_pad(a, f, shp, 0))

    def setShape(self, value: list[int]) -> Self:
        """Set :py:attr:`shape`: target spatial shape."""
        return self._set(shape=value)

    def getShape(self) -> list[int]:
        """The value of :py:attr:`shape` (set or default): target spatial shape."""
        return self.getOrDefault(self.shape)

    def setValue(self, value: float) -> Self:
        """Set :py:attr:`value`: padding value for the image."""
        return self._set(value=value)

    def getValue(self) -> float:
        """The value of :py:attr:`value` (set or default): padding value for the image."""
        return self.getOrDefault(self.value)


class CropForeground(TensorStage):
    """Crop to the box around ``source > threshold`` plus ``margin`` voxels (source: image or mask)."""

    threshold = param("threshold", "foreground is source > threshold", TypeConverters.toFloat)
    margin = param("margin", "voxels kept around the box", TypeConverters.toInt)
    source = param("source", "'image' or 'mask': which array defines the foreground", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, threshold=0.0, margin=0, source="image", inputCol="image", outputCol="image", maskCol="",
                 maskOutputCol="", errorCol="error"):
        super().__init__()
        self._setDefault(threshold=0.0, margin=0, source="image")
        self._set(**self._input_kwargs)

    def _validate(self):
        if self.getOrDefault("margin") < 0:
            raise ConfigError(f"CropForeground: margin must be >= 0, got {self.getOrDefault('margin')}")
        if self.getOrDefault("source") not in ("image", "mask"):
            raise ConfigError(f"CropForeground: source must be 'image' or 'mask', got {self.getOrDefault('source')!r}")
        if self.getOrDefault("source") == "mask" and not self.getOrDefault("maskCol"):
            raise ConfigError("CropForeground: source='mask' needs maskCol")

    def _row_fn(self):
        thr, margin, src = self.getOrDefault("threshold"), self.getOrDefault("margin"), self.getOrDefault("source")

        def fn(arr, aff, marr, _key):
            _check_mask_grid(arr, marr)
            box = A.foreground_box(marr if src == "mask" else arr, thr, margin)
            out, aff2 = A.crop_foreground(arr, aff, box)
            mout = A.crop_foreground(marr, aff, box)[0] if marr is not None else None
            return out, aff2, mout
        return fn

    def setThreshold(self, value: float) -> Self:
        """Set :py:attr:`threshold`: foreground is source > threshold."""
        return self._set(threshold=value)

    def getThreshold(self) -> float:
        """The value of :py:attr:`threshold` (set or default): foreground is source > threshold."""
        return self.getOrDefault(self.threshold)

    def setMargin(self, value: int) -> Self:
        """Set :py:attr:`margin`: voxels kept around the box."""
        return self._set(margin=value)

    def getMargin(self) -> int:
        """The value of :py:attr:`margin` (set or default): voxels kept around the box."""
        return self.getOrDefault(self.margin)

    def setSource(self, value: str) -> Self:
        """Set :py:attr:`source`: 'image' or 'mask': which array defines the foreground."""
        return self._set(source=value)

    def getSource(self) -> str:
        """The value of :py:attr:`source` (set or default): 'image' or 'mask': which array defines the foreground."""
        return self.getOrDefault(self.source)


class CropAroundLabel(TensorStage):
    """A fixed-size window centred on chosen labels of ``maskCol`` (e.g. the meniscus of a predicted segmentation).

    The mask (cropped the same way) is written to ``maskOutputCol`` when set.
    Rows without any of ``labels`` get, by ``missing``, a window centred on
    the image (``center``) or no window and a row ``error`` (``error``: a
    classifier then gives no score rather than one from an empty window);
    ``foundCol`` says ``false`` there either way.  With
    ``maskImage`` the image is zeroed outside the labels' region (closed
    in-plane ``closing`` times, so a thin cleft through the structure stays
    inside it): a classifier then sees the structure alone, as in UCSF's
    meniscus-tear pipeline.
    """

    labels = param("labels", "label values the window is centred on", TypeConverters.toListInt)
    size = param("size", "window size (spatial axes)", TypeConverters.toListInt)
    foundCol = param("foundCol", "boolean column: were the labels present ('' for none)", TypeConverters.toString)
    maskImage = param("maskImage", "zero the image outside the labels' region (the model sees only the structure)",
                      TypeConverters.toBoolean)
    closing = param("closing", "in-plane binary closing iterations of that region (fills thin clefts)",
                    TypeConverters.toInt)
    missing = param("missing", "rows without the labels: 'center' (a window centred on the image) or 'error' (no "
                               "window, a row error)", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, labels=(1,), size=(16, 32, 32), foundCol="", maskImage=False, closing=0, missing="center",
                 inputCol="image", outputCol="image", maskCol="mask", maskOutputCol="", errorCol="error"):
        super().__init__()
        self._setDefault(labels=[1], size=[16, 32, 32], foundCol="", maskImage=False, closing=0, missing="center")
        self._set(**self._input_kwargs)

    def _validate(self):
        if not self.getOrDefault("maskCol"):
            raise ConfigError("CropAroundLabel: maskCol is required (the label map that locates the window)")
        if not self.getOrDefault("labels"):
            raise ConfigError("CropAroundLabel: labels must name at least one label value")
        if not self.getOrDefault("size") or min(self.getOrDefault("size")) < 1:
            raise ConfigError(f"CropAroundLabel: size must be positive sizes, got {self.getOrDefault('size')}")
        if self.getOrDefault("closing") < 0:
            raise ConfigError(f"CropAroundLabel: closing must be >= 0, got {self.getOrDefault('closing')}")
        if self.getOrDefault("missing") not in ("center", "error"):
            raise ConfigError(f"CropAroundLabel: missing must be 'center' or 'error', got {self.getOrDefault('missing')!r}")

    def _row_fn(self):
        labels, size = list(self.getOrDefault("labels")), list(self.getOrDefault("size"))
        masked, closing = self.getOrDefault("maskImage"), self.getOrDefault("closing")
        strict = self.getOrDefault("missing") == "error"

        def fn(arr, aff, marr, _key):
            _check_mask_grid(arr, marr)
            if strict and (marr is None or not np.isin(marr, labels).any()):
                raise TensorError(f"none of the labels {labels} in the mask: no window to crop")
            if masked and marr is not None:
                arr = np.where(A.label_region(marr, labels, closing), arr, np.zeros((), arr.dtype))
            out, aff2, _found = A.crop_around_label(arr, aff, marr, labels, size)
            mout = A.crop_around_label(marr, aff, marr, labels, size)[0] if marr is not None else None
            return out, aff2, mout
        return fn

    def _transform(self, df):
        out = super()._transform(df)
        found = self.getOrDefault("foundCol")
        if not found:
            return out
        from pyspark.sql import functions as F

        labels = [float(v) for v in self.getOrDefault("labels")]
        mask_col = self.getOrDefault("maskCol")

        @F.pandas_udf("boolean")
        def has_labels(m: pd.DataFrame) -> pd.Series:
            from ..tensor import to_numpy

            res = []
            for i in range(len(m)):
                r = m.iloc[i].to_dict()
                ok = isinstance(r.get("data"), (bytes, bytearray))
                res.append(bool(np.isin(to_numpy(r), labels).any()) if ok else None)
            return pd.Series(res, dtype="object")

        return out.withColumn(found, has_labels(F.col(mask_col)))

    def setLabels(self, value: list[int]) -> Self:
        """Set :py:attr:`labels`: label values the window is centred on."""
        return self._set(labels=value)

    def getLabels(self) -> list[int]:
        """The value of :py:attr:`labels` (set or default): label values the window is centred on."""
        return self.getOrDefault(self.labels)

    def setSize(self, value: list[int]) -> Self:
        """Set :py:attr:`size`: window size (spatial axes)."""
        return self._set(size=value)

    def getSize(self) -> list[int]:
        """The value of :py:attr:`size` (set or default): window size (spatial axes)."""
        return self.getOrDefault(self.size)

    def setFoundCol(self, value: str) -> Self:
        """Set :py:attr:`foundCol`: boolean column: were the labels present ('' for none)."""
        return self._set(foundCol=value)

    def getFoundCol(self) -> str:
        """The value of :py:attr:`foundCol` (set or default): boolean column: were the labels present ('' for none).
        """
        return self.getOrDefault(self.foundCol)

    def setMaskImage(self, value: bool) -> Self:
        """Set :py:attr:`maskImage`: zero the image outside the labels' region (the model sees only the structure)."""
        return self._set(maskImage=value)

    def getMaskImage(self) -> bool:
        """The value of :py:attr:`maskImage` (set or default): zero the image outside the labels' region (the model sees
        only the structure).
        """
        return self.getOrDefault(self.maskImage)

    def setClosing(self, value: int) -> Self:
        """Set :py:attr:`closing`: in-plane binary closing iterations of that region (fills thin clefts)."""
        return self._set(closing=value)

    def getClosing(self) -> int:
        """The value of :py:attr:`closing` (set or default): in-plane binary closing iterations of that region (fills
        thin clefts).
        """
        return self.getOrDefault(self.closing)

    def setMissing(self, value: str) -> Self:
        """Set :py:attr:`missing`: rows without the labels: 'center' (a window centred on the image) or 'error' (no
        window, a row error)."""
        return self._set(missing=value)

    def getMissing(self) -> str:
        """The value of :py:attr:`missing` (set or default): rows without the labels: 'center' (a window centred on
        the image) or 'error' (no window, a row error).
        """
        return self.getOrDefault(self.missing)


class ResizeImage(TensorStage):
    """Resize the in-plane axes to ``size`` (anti-aliased for images, nearest for masks)."""

    size = param("size", "target (rows, cols)", TypeConverters.toListInt)
    order = param("order", "interpolation order for the image: 0, 1 or 3", TypeConverters.toInt)
    antiAliasing = param("antiAliasing", "Gaussian pre-filter when shrinking", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, size=(224, 224), order=1, antiAliasing=True, inputCol="image", outputCol="image",
                 maskCol="", maskOutputCol="", errorCol="error"):
        super().__init__()
        self._setDefault(size=[224, 224], order=1, antiAliasing=True)
        self._set(**self._input_kwargs)

    def _validate(self):
        size = self.getOrDefault("size")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"ResizeImage: size must be two positive sizes, got {size}")
        if self.getOrDefault("order") not in (0, 1, 3):
            raise ConfigError(f"ResizeImage: order must be 0, 1 or 3, got {self.getOrDefault('order')}")

    def _row_fn(self):
        size, order, aa = list(self.getOrDefault("size")), self.getOrDefault("order"), self.getOrDefault("antiAliasing")
        return _geometry_fn(lambda a, f: A.resize_image(a, f, size, order, aa),
                            lambda a, f: A.resize_image(a, f, size, 0, False))

    def setSize(self, value: list[int]) -> Self:
        """Set :py:attr:`size`: target (rows, cols)."""
        return self._set(size=value)

    def getSize(self) -> list[int]:
        """The value of :py:attr:`size` (set or default): target (rows, cols)."""
        return self.getOrDefault(self.size)

    def setOrder(self, value: int) -> Self:
        """Set :py:attr:`order`: interpolation order for the image: 0, 1 or 3."""
        return self._set(order=value)

    def getOrder(self) -> int:
        """The value of :py:attr:`order` (set or default): interpolation order for the image: 0, 1 or 3."""
        return self.getOrDefault(self.order)

    def setAntiAliasing(self, value: bool) -> Self:
        """Set :py:attr:`antiAliasing`: Gaussian pre-filter when shrinking."""
        return self._set(antiAliasing=value)

    def getAntiAliasing(self) -> bool:
        """The value of :py:attr:`antiAliasing` (set or default): Gaussian pre-filter when shrinking."""
        return self.getOrDefault(self.antiAliasing)
