"""Training-time stages: patch sampling and augmentation (seeded, reproducible per row)."""
from __future__ import annotations

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError, MedImgError, one_line
from . import array as A
from ._stage import TensorStage, param, row_seed, with_accessors
from .augment import AugmentConfig, augment

__all__ = ["PatchSampler", "Augment"]


@with_accessors
class PatchSampler(TensorStage):
    """Explode each volume (and its label mask) into ``patchesPerImage`` training patches.

    A ``posFraction`` share of the patches is centred on foreground voxels of
    ``labelCol`` (label > 0), the rest drawn uniformly.  Each output row keeps
    the input's other columns and adds ``patch_index``, ``patch_start``
    (spatial start index) and ``patch_foreground``; patch affines are true.
    Draws depend only on ``seed`` and the image bytes, so reruns and task
    retries give the same patches.
    """

    patchShape = param("patchShape", "spatial patch size", TypeConverters.toListInt)
    patchesPerImage = param("patchesPerImage", "patches drawn from each image", TypeConverters.toInt)
    posFraction = param("posFraction", "share of patches centred on foreground (0-1)", TypeConverters.toFloat)
    labelCol = param("labelCol", "label-mask column cropped with the image ('' for none)", TypeConverters.toString)
    seed = param("seed", "random seed", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, patchShape=None, patchesPerImage=4, posFraction=0.5, labelCol="mask", seed=0,
                 inputCol="image", outputCol="image", maskOutputCol="", errorCol="error"):
        super().__init__()
        self._setDefault(patchesPerImage=4, posFraction=0.5, labelCol="mask", seed=0)
        self._set(**self._input_kwargs)

    def _validate(self):
        shp = self.getOrDefault("patchShape") if self.isDefined("patchShape") else None
        if not shp or min(shp) < 1:
            raise ConfigError(f"PatchSampler: patchShape must be positive sizes, got {shp}")
        if self.getOrDefault("patchesPerImage") < 1:
            raise ConfigError("PatchSampler: patchesPerImage must be >= 1")
        if not 0 <= self.getOrDefault("posFraction") <= 1:
            raise ConfigError("PatchSampler: posFraction must be in [0, 1]")

    def _transform(self, df):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..tensor import from_numpy, tensor_type, to_numpy

        self._validate()
        in_col, out_col = self.getOrDefault("inputCol"), self.getOrDefault("outputCol")
        label = self.getOrDefault("labelCol")
        label_out = self.getOrDefault("maskOutputCol") or label
        for c in [in_col] + ([label] if label else []):
            if c not in df.columns:
                raise ConfigError(f"PatchSampler: column {c!r} not found; the DataFrame has {sorted(df.columns)}")
        patch = list(self.getOrDefault("patchShape"))
        n, frac, seed = self.getOrDefault("patchesPerImage"), self.getOrDefault("posFraction"), self.getOrDefault("seed")
        item = T.StructType([T.StructField("image", tensor_type()), T.StructField("mask", tensor_type()),
                             T.StructField("start", T.ArrayType(T.IntegerType())),
                             T.StructField("foreground", T.BooleanType())])
        schema = T.StructType([T.StructField("patches", T.ArrayType(item)), T.StructField("err", T.StringType())])

        def rec(frame, i):
            if frame is None:
                return None
            r = frame.iloc[i].to_dict()
            return r if isinstance(r.get("data"), (bytes, bytearray)) else None

        def run(img, mask=None):
            rows, errs = [], []
            for i in range(len(img)):
                v, mv = rec(img, i), rec(mask, i)
                if v is None:
                    rows.append(None), errs.append(None)
                    continue
                try:
                    arr, marr = to_numpy(v), (to_numpy(mv) if mv is not None else None)
                    aff = np.asarray(v["affine"], dtype=np.float64).reshape(4, 4)
                    nd = len(patch)
                    if nd != A.spatial_ndim(arr):
                        raise ConfigError(f"patchShape {patch} does not match the image's spatial shape {arr.shape}")
                    sp_shape = arr.shape[arr.ndim - nd:]
                    lab = None
                    if marr is not None:
                        if marr.shape[marr.ndim - nd:] != sp_shape:
                            raise ConfigError(f"mask grid {marr.shape} differs from image grid {arr.shape}")
                        lab = marr.reshape((-1,) + sp_shape).max(axis=0)
                    starts = A.patch_starts(sp_shape, patch, n, frac, lab, row_seed(seed, bytes(v["data"])))
                    out = []
                    for start, fg in starts:
                        paff = A.translate(aff, start)
                        out.append({"image": from_numpy(A.extract_patch(arr, start, patch), paff),
                                    "mask": None if marr is None else from_numpy(A.extract_patch(marr, start, patch), paff),
                                    "start": list(start), "foreground": fg})
                    rows.append(out), errs.append(None)
                except MedImgError as exc:
                    rows.append(None), errs.append(f"PatchSampler: {one_line(exc)}")
                except Exception as exc:
                    rows.append(None), errs.append(f"PatchSampler: {type(exc).__name__}: {one_line(exc)}")
            return pd.DataFrame({"patches": rows, "err": errs})

        if label:
            def with_mask(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
                return run(a, b)

            res = F.pandas_udf(with_mask, schema).asNondeterministic()(F.col(in_col), F.col(label))
        else:
            def image_only(a: pd.DataFrame) -> pd.DataFrame:
                return run(a)

            res = F.pandas_udf(image_only, schema).asNondeterministic()(F.col(in_col))
        tmp = f"__{self.uid}"
        err_col = self.getOrDefault("errorCol")
        keep = [c for c in df.columns if c not in {out_col, label_out, err_col}]
        staged = df.withColumn(tmp, res)
        err = F.coalesce(F.col(err_col), F.col(f"{tmp}.err")) if err_col in df.columns else F.col(f"{tmp}.err")
        staged = staged.select(*keep, err.alias(err_col), F.col(f"{tmp}.patches").alias(tmp))
        # rows that failed (null patches) are kept once, with their error
        exploded = staged.select(*keep, err_col, F.posexplode_outer(tmp).alias("patch_index", "_p"))
        cols = [*keep, F.col("_p.image").alias(out_col)]
        if label:
            cols.append(F.col("_p.mask").alias(label_out))
        cols += [F.when(F.col("_p").isNotNull(), F.col("patch_index")).alias("patch_index"),
                 F.col("_p.start").alias("patch_start"), F.col("_p.foreground").alias("patch_foreground"),
                 F.col(err_col)]
        return exploded.select(*cols)


@with_accessors
class Augment(TensorStage):
    """Random flips, 90-degree rotations, a small affine, intensity jitter and gamma (image and mask together).

    Reproducible: the draws depend only on ``seed`` and the image bytes.
    Change ``seed`` between epochs for fresh augmentations.
    """

    seed = param("seed", "random seed", TypeConverters.toInt)
    flipProb = param("flipProb", "probability of flipping each spatial axis", TypeConverters.toFloat)
    rot90Prob = param("rot90Prob", "probability of an in-plane 90-degree rotation", TypeConverters.toFloat)
    affineProb = param("affineProb", "probability of a small rotation/scaling", TypeConverters.toFloat)
    maxRotationDeg = param("maxRotationDeg", "largest rotation per plane (degrees)", TypeConverters.toFloat)
    scaleRange = param("scaleRange", "scaling drawn from 1 +- scaleRange", TypeConverters.toFloat)
    intensityProb = param("intensityProb", "probability of intensity scale/shift", TypeConverters.toFloat)
    intensityScale = param("intensityScale", "intensity scale drawn from 1 +- this", TypeConverters.toFloat)
    intensityShift = param("intensityShift", "shift drawn from +- this times the range", TypeConverters.toFloat)
    gammaProb = param("gammaProb", "probability of a gamma change", TypeConverters.toFloat)
    gammaRange = param("gammaRange", "gamma drawn log-uniformly in [1-r, 1/(1-r)]", TypeConverters.toFloat)

    _CFG = ("flipProb", "rot90Prob", "affineProb", "maxRotationDeg", "scaleRange", "intensityProb",
            "intensityScale", "intensityShift", "gammaProb", "gammaRange")

    @keyword_only
    def __init__(self, *, seed=0, flipProb=0.5, rot90Prob=0.5, affineProb=0.3, maxRotationDeg=10.0,
                 scaleRange=0.1, intensityProb=0.5, intensityScale=0.1, intensityShift=0.1, gammaProb=0.3,
                 gammaRange=0.3, inputCol="image", outputCol="image", maskCol="", maskOutputCol="",
                 errorCol="error"):
        super().__init__()
        d = AugmentConfig()
        self._setDefault(seed=0, flipProb=d.flip_prob, rot90Prob=d.rot90_prob, affineProb=d.affine_prob,
                         maxRotationDeg=d.max_rotation_deg, scaleRange=d.scale_range, intensityProb=d.intensity_prob,
                         intensityScale=d.intensity_scale, intensityShift=d.intensity_shift, gammaProb=d.gamma_prob,
                         gammaRange=d.gamma_range)
        self._set(**self._input_kwargs)

    def _config(self) -> AugmentConfig:
        v = [self.getOrDefault(n) for n in self._CFG]
        return AugmentConfig(*v).validate()

    def _validate(self):
        self._config()

    def _row_fn(self):
        cfg, seed = self._config(), self.getOrDefault("seed")

        def fn(arr, aff, marr, key):
            return augment(arr, aff, marr, row_seed(seed, key), cfg)
        return fn
