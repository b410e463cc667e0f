"""Training-time stages: patch sampling and augmentation (seeded, reproducible per row)."""
from __future__ import annotations

from typing import Self

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError
from ..params import param
from . import array as A
from ._stage import TensorStage, row_error, row_seed
from .augment import AugmentConfig, augment

__all__ = ["augment_config", "epoch_seed", "PatchSampler", "Augment", "sample_patches"]


def sample_patches(image: np.ndarray, mask: np.ndarray | None, patch, n: int, pos_fraction: float,
                   rng: np.random.Generator) -> list[tuple[tuple[int, ...], bool]]:
    """Start indices of ``n`` training patches of ``image`` (``[(start, centred_on_foreground), ...]``).

    The one sampler of the library: :class:`PatchSampler` runs it per row, and
    the torch engine on its ranks, with the same generator (``row_seed`` of the
    stage seed and the image bytes), so both draw the same patches.
    """
    nd = len(patch)
    if nd != A.spatial_ndim(image):
        raise ConfigError(f"patchShape {list(patch)} does not match the image's spatial shape {image.shape}")
    sp_shape = image.shape[image.ndim - nd:]
    lab = None
    if mask is not None:
        if mask.shape[mask.ndim - nd:] != sp_shape:
            raise ConfigError(f"mask grid {mask.shape} differs from image grid {image.shape}")
        lab = mask.reshape((-1,) + sp_shape).max(axis=0)
    return A.patch_starts(sp_shape, list(patch), n, pos_fraction, lab, rng)


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
        from pyspark.sql import types as T

        from ..arrow import arrow_schema, null_array, read_tensor, replace_columns, tensor_array
        from ..tensor import tensor_type

        self._validate()
        in_col, out_col = self.getOrDefault("inputCol"), self.getOrDefault("outputCol")
        label = self.getOrDefault("labelCol")
        label_out = self.getOrDefault("maskOutputCol") or label
        for c in [in_col] + ([label] if label else []):
            if c not in df.columns:
                raise ConfigError(f"PatchSampler: column {c!r} not found; the DataFrame has {sorted(df.columns)}")
        patch = list(self.getOrDefault("patchShape"))
        n, frac, seed = self.getOrDefault("patchesPerImage"), self.getOrDefault("posFraction"), self.getOrDefault("seed")
        err_col = self.getOrDefault("errorCol")
        extra = [(out_col, tensor_type())] + ([(label_out, tensor_type())] if label else [])
        extra += [("patch_index", T.IntegerType()), ("patch_start", T.ArrayType(T.IntegerType())),
                  ("patch_foreground", T.BooleanType()), (err_col, T.StringType())]
        schema = self._output_schema(df, extra)
        a_schema = arrow_schema(schema)
        t_type = a_schema.field(out_col).type
        has_err = err_col in df.columns

        def patches_of(arr, aff, marr, raw):
            return sample_patches(arr, marr, patch, n, frac, row_seed(seed, raw))

        def run(batches):
            import pyarrow as pa

            for batch in batches:
                for i in range(batch.num_rows):
                    row = batch.slice(i, 1)
                    old_err = row.column(row.schema.get_field_index(err_col))[0].as_py() if has_err else None
                    img = read_tensor(row.column(row.schema.get_field_index(in_col)), 0)
                    m = read_tensor(row.column(row.schema.get_field_index(label)), 0) if label and img else None
                    err, starts = None, []
                    if img is not None:
                        try:
                            starts = patches_of(img[0], img[1], None if m is None else m[0], img[2])
                        except Exception as exc:
                            err = row_error("PatchSampler", exc)
                    if not starts:  # a null or failed row is kept once, with its error
                        new = {out_col: null_array(t_type), "patch_index": pa.nulls(1, pa.int32()),
                               "patch_start": pa.nulls(1, a_schema.field("patch_start").type),
                               "patch_foreground": pa.nulls(1, pa.bool_()),
                               err_col: pa.array([old_err or err], type=pa.string())}
                        if label:
                            new[label_out] = null_array(t_type)
                        yield replace_columns(row, a_schema, new)
                        continue
                    arr, aff, _raw = img
                    for k, (start, fg) in enumerate(starts):
                        paff = A.translate(aff, start)
                        new = {out_col: tensor_array(A.extract_patch(arr, start, patch), paff, t_type),
                               "patch_index": pa.array([k], pa.int32()),
                               "patch_start": pa.array([list(start)], a_schema.field("patch_start").type),
                               "patch_foreground": pa.array([fg], pa.bool_()),
                               err_col: pa.array([old_err], type=pa.string())}
                        if label:
                            new[label_out] = (null_array(t_type) if m is None
                                              else tensor_array(A.extract_patch(m[0], start, patch), paff, t_type))
                        yield replace_columns(row, a_schema, new)

        return df.mapInArrow(run, schema)

    def setPatchShape(self, value: list[int]) -> Self:
        """Set :py:attr:`patchShape`: spatial patch size."""
        return self._set(patchShape=value)

    def getPatchShape(self) -> list[int]:
        """The value of :py:attr:`patchShape` (set or default): spatial patch size."""
        return self.getOrDefault(self.patchShape)

    def setPatchesPerImage(self, value: int) -> Self:
        """Set :py:attr:`patchesPerImage`: patches drawn from each image."""
        return self._set(patchesPerImage=value)

    def getPatchesPerImage(self) -> int:
        """The value of :py:attr:`patchesPerImage` (set or default): patches drawn from each image."""
        return self.getOrDefault(self.patchesPerImage)

    def setPosFraction(self, value: float) -> Self:
        """Set :py:attr:`posFraction`: share of patches centred on foreground (0-1)."""
        return self._set(posFraction=value)

    def getPosFraction(self) -> float:
        """The value of :py:attr:`posFraction` (set or default): share of patches centred on foreground (0-1)."""
        return self.getOrDefault(self.posFraction)

    def setLabelCol(self, value: str) -> Self:
        """Set :py:attr:`labelCol`: label-mask column cropped with the image ('' for none)."""
        return self._set(labelCol=value)

    def getLabelCol(self) -> str:
        """The value of :py:attr:`labelCol` (set or default): label-mask column cropped with the image ('' for none).
        """
        return self.getOrDefault(self.labelCol)

    def setSeed(self, value: int) -> Self:
        """Set :py:attr:`seed`: random seed."""
        return self._set(seed=value)

    def getSeed(self) -> int:
        """The value of :py:attr:`seed` (set or default): random seed."""
        return self.getOrDefault(self.seed)


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
    flipAxes = param("flipAxes", "anatomical axes a flip may mirror: 'LR', 'AP', 'SI' (by the affine)",
                     TypeConverters.toListString)
    biasProb = param("biasProb", "probability of a smooth multiplicative bias field (MR coil shading)",
                     TypeConverters.toFloat)
    biasStrength = param("biasStrength", "bias field: coefficients of its log-polynomial drawn from +- this",
                         TypeConverters.toFloat)
    spatialDims = param("spatialDims", "spatial axes of the images: 0 = from the array (3 for three or more axes), "
                                       "2 for (channels, H, W) images", TypeConverters.toInt)

    # Param -> AugmentConfig field: the settings an estimator's ``augment`` Param may hold
    _CFG = {"flipProb": "flip_prob", "rot90Prob": "rot90_prob", "affineProb": "affine_prob",
            "maxRotationDeg": "max_rotation_deg", "scaleRange": "scale_range", "intensityProb": "intensity_prob",
            "intensityScale": "intensity_scale", "intensityShift": "intensity_shift", "gammaProb": "gamma_prob",
            "gammaRange": "gamma_range", "flipAxes": "flip_axes", "biasProb": "bias_prob",
            "biasStrength": "bias_strength", "spatialDims": "spatial_dims"}

    @keyword_only
    def __init__(self, *, seed=0, flipProb=0.5, rot90Prob=0.5, affineProb=0.3, maxRotationDeg=10.0,
                 scaleRange=0.1, intensityProb=0.5, intensityScale=0.1, intensityShift=0.1, gammaProb=0.3,
                 gammaRange=0.3, flipAxes=None, biasProb=0.0, biasStrength=0.1, spatialDims=0, inputCol="image",
                 outputCol="image", maskCol="", maskOutputCol="", errorCol="error"):
        super().__init__()
        d = AugmentConfig()
        self._setDefault(seed=0, flipProb=d.flip_prob, rot90Prob=d.rot90_prob, affineProb=d.affine_prob,
                         maxRotationDeg=d.max_rotation_deg, scaleRange=d.scale_range, intensityProb=d.intensity_prob,
                         intensityScale=d.intensity_scale, intensityShift=d.intensity_shift, gammaProb=d.gamma_prob,
                         gammaRange=d.gamma_range, flipAxes=list(d.flip_axes), biasProb=d.bias_prob,
                         biasStrength=d.bias_strength, spatialDims=d.spatial_dims)
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _config(self) -> AugmentConfig:
        v = {field: self.getOrDefault(name) for name, field in self._CFG.items()}
        v["flip_axes"] = tuple(v["flip_axes"])
        return AugmentConfig(**v).validate()

    def _validate(self):
        self._config()

    def _row_fn(self):
        cfg, seed = self._config(), self.getOrDefault("seed")

        def fn(arr, aff, marr, key):
            return augment(arr, aff, marr, row_seed(seed, key), cfg)
        return fn

    def setSeed(self, value: int) -> Self:
        """Set :py:attr:`seed`: random seed."""
        return self._set(seed=value)

    def getSeed(self) -> int:
        """The value of :py:attr:`seed` (set or default): random seed."""
        return self.getOrDefault(self.seed)

    def setFlipProb(self, value: float) -> Self:
        """Set :py:attr:`flipProb`: probability of flipping each spatial axis."""
        return self._set(flipProb=value)

    def getFlipProb(self) -> float:
        """The value of :py:attr:`flipProb` (set or default): probability of flipping each spatial axis."""
        return self.getOrDefault(self.flipProb)

    def setRot90Prob(self, value: float) -> Self:
        """Set :py:attr:`rot90Prob`: probability of an in-plane 90-degree rotation."""
        return self._set(rot90Prob=value)

    def getRot90Prob(self) -> float:
        """The value of :py:attr:`rot90Prob` (set or default): probability of an in-plane 90-degree rotation."""
        return self.getOrDefault(self.rot90Prob)

    def setAffineProb(self, value: float) -> Self:
        """Set :py:attr:`affineProb`: probability of a small rotation/scaling."""
        return self._set(affineProb=value)

    def getAffineProb(self) -> float:
        """The value of :py:attr:`affineProb` (set or default): probability of a small rotation/scaling."""
        return self.getOrDefault(self.affineProb)

    def setMaxRotationDeg(self, value: float) -> Self:
        """Set :py:attr:`maxRotationDeg`: largest rotation per plane (degrees)."""
        return self._set(maxRotationDeg=value)

    def getMaxRotationDeg(self) -> float:
        """The value of :py:attr:`maxRotationDeg` (set or default): largest rotation per plane (degrees)."""
        return self.getOrDefault(self.maxRotationDeg)

    def setScaleRange(self, value: float) -> Self:
        """Set :py:attr:`scaleRange`: scaling drawn from 1 +- scaleRange."""
        return self._set(scaleRange=value)

    def getScaleRange(self) -> float:
        """The value of :py:attr:`scaleRange` (set or default): scaling drawn from 1 +- scaleRange."""
        return self.getOrDefault(self.scaleRange)

    def setIntensityProb(self, value: float) -> Self:
        """Set :py:attr:`intensityProb`: probability of intensity scale/shift."""
        return self._set(intensityProb=value)

    def getIntensityProb(self) -> float:
        """The value of :py:attr:`intensityProb` (set or default): probability of intensity scale/shift."""
        return self.getOrDefault(self.intensityProb)

    def setIntensityScale(self, value: float) -> Self:
        """Set :py:attr:`intensityScale`: intensity scale drawn from 1 +- this."""
        return self._set(intensityScale=value)

    def getIntensityScale(self) -> float:
        """The value of :py:attr:`intensityScale` (set or default): intensity scale drawn from 1 +- this."""
        return self.getOrDefault(self.intensityScale)

    def setIntensityShift(self, value: float) -> Self:
        """Set :py:attr:`intensityShift`: shift drawn from +- this times the range."""
        return self._set(intensityShift=value)

    def getIntensityShift(self) -> float:
        """The value of :py:attr:`intensityShift` (set or default): shift drawn from +- this times the range."""
        return self.getOrDefault(self.intensityShift)

    def setGammaProb(self, value: float) -> Self:
        """Set :py:attr:`gammaProb`: probability of a gamma change."""
        return self._set(gammaProb=value)

    def getGammaProb(self) -> float:
        """The value of :py:attr:`gammaProb` (set or default): probability of a gamma change."""
        return self.getOrDefault(self.gammaProb)

    def setGammaRange(self, value: float) -> Self:
        """Set :py:attr:`gammaRange`: gamma drawn log-uniformly in [1-r, 1/(1-r)]."""
        return self._set(gammaRange=value)

    def getGammaRange(self) -> float:
        """The value of :py:attr:`gammaRange` (set or default): gamma drawn log-uniformly in [1-r, 1/(1-r)]."""
        return self.getOrDefault(self.gammaRange)

    def setFlipAxes(self, value: list[str]) -> Self:
        """Set :py:attr:`flipAxes`: anatomical axes a flip may mirror: 'LR', 'AP', 'SI' (by the affine)."""
        return self._set(flipAxes=value)

    def getFlipAxes(self) -> list[str]:
        """The value of :py:attr:`flipAxes` (set or default): anatomical axes a flip may mirror: 'LR', 'AP', 'SI'
        (by the affine).
        """
        return self.getOrDefault(self.flipAxes)

    def setBiasProb(self, value: float) -> Self:
        """Set :py:attr:`biasProb`: probability of a smooth multiplicative bias field (MR coil shading)."""
        return self._set(biasProb=value)

    def getBiasProb(self) -> float:
        """The value of :py:attr:`biasProb` (set or default): probability of a smooth multiplicative bias field (MR
        coil shading).
        """
        return self.getOrDefault(self.biasProb)

    def setBiasStrength(self, value: float) -> Self:
        """Set :py:attr:`biasStrength`: bias field: coefficients of its log-polynomial drawn from +- this."""
        return self._set(biasStrength=value)

    def getBiasStrength(self) -> float:
        """The value of :py:attr:`biasStrength` (set or default): bias field: coefficients of its log-polynomial
        drawn from +- this.
        """
        return self.getOrDefault(self.biasStrength)

    def setSpatialDims(self, value: int) -> Self:
        """Set :py:attr:`spatialDims`: spatial axes of the images: 0 = from the array (3 for three or more axes), 2
        for (channels, H, W) images.
        """
        return self._set(spatialDims=value)

    def getSpatialDims(self) -> int:
        """The value of :py:attr:`spatialDims` (set or default): spatial axes of the images (0 = from the array)."""
        return self.getOrDefault(self.spatialDims)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of one epoch's draws of a fit: ``stream`` 0 samples patches, 1 augments (both engines)."""
    return int(seed) * 100003 + int(epoch) + int(stream) * 1000003


def augment_config(settings) -> AugmentConfig | None:
    """The :class:`~bigdl_medimg.transforms.augment.AugmentConfig` of an estimator's ``augment`` Param: a dict of
    :class:`Augment` Params (``flipProb``, ``flipAxes``, ...; the others at their defaults), or None for ``{}``.

    Raises ConfigError naming unknown settings or bad values.
    """
    if not settings:
        return None
    unknown = sorted(set(settings) - set(Augment._CFG))
    if unknown:
        raise ConfigError(f"augment: unknown setting(s) {unknown}; known: {sorted(Augment._CFG)}")
    return Augment(**dict(settings))._config()

