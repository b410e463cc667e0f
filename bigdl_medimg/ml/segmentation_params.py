"""Params of SegmentationEstimator and SegmentationModel, with their setters and getters."""
from __future__ import annotations

from typing import Self

from pyspark.ml.param import TypeConverters

from ..params import param
from .training_params import EngineParams, TrainingParams

__all__ = ["SegmentationParams", "SegmentationEstimatorParams"]


class SegmentationParams(EngineParams):
    """Params a segmentation estimator and its model share; the estimator hands their values to the model
    (``_copyValues``, as pyspark.ml does)."""

    inputCol = param("inputCol", "image tensor column (intensity-normalised)", TypeConverters.toString)
    outputCol = param("outputCol", "label-mask tensor column the model writes", TypeConverters.toString)
    nClasses = param("nClasses", "classes, background included", TypeConverters.toInt)
    classNames = param("classNames", "class names, background first ([] = unnamed)", TypeConverters.toListString)
    patchShape = param("patchShape", "network input patch (D, H, W): training patches and sliding-window tiles, "
                                     "divisible by 2**depth", TypeConverters.toListInt)
    overlap = param("overlap", "overlap between neighbouring sliding-window tiles, in [0, 1)", TypeConverters.toFloat)
    batchSize = param("batchSize", "training: patches per iteration across the cluster; inference: tiles per batch",
                      TypeConverters.toInt)

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: image tensor column (intensity-normalised)."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): image tensor column (intensity-normalised)."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: label-mask tensor column the model writes."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): label-mask tensor column the model writes."""
        return self.getOrDefault(self.outputCol)

    def setNClasses(self, value: int) -> Self:
        """Set :py:attr:`nClasses`: classes, background included."""
        return self._set(nClasses=value)

    def getNClasses(self) -> int:
        """The value of :py:attr:`nClasses` (set or default): classes, background included."""
        return self.getOrDefault(self.nClasses)

    def setClassNames(self, value: list[str]) -> Self:
        """Set :py:attr:`classNames`: class names, background first ([] = unnamed)."""
        return self._set(classNames=value)

    def getClassNames(self) -> list[str]:
        """The value of :py:attr:`classNames` (set or default): class names, background first ([] = unnamed)."""
        return self.getOrDefault(self.classNames)

    def setPatchShape(self, value: list[int]) -> Self:
        """Set :py:attr:`patchShape`: network input patch (D, H, W): training patches and sliding-window tiles,
        divisible by 2**depth.
        """
        return self._set(patchShape=value)

    def getPatchShape(self) -> list[int]:
        """The value of :py:attr:`patchShape` (set or default): network input patch (D, H, W): training patches and
        sliding-window tiles, divisible by 2**depth.
        """
        return self.getOrDefault(self.patchShape)

    def setOverlap(self, value: float) -> Self:
        """Set :py:attr:`overlap`: overlap between neighbouring sliding-window tiles, in [0, 1)."""
        return self._set(overlap=value)

    def getOverlap(self) -> float:
        """The value of :py:attr:`overlap` (set or default): overlap between neighbouring sliding-window tiles, in [0,
        1).
        """
        return self.getOrDefault(self.overlap)

    def setBatchSize(self, value: int) -> Self:
        """Set :py:attr:`batchSize`: training: patches per iteration across the cluster; inference: tiles per batch."""
        return self._set(batchSize=value)

    def getBatchSize(self) -> int:
        """The value of :py:attr:`batchSize` (set or default): training: patches per iteration across the cluster;
        inference: tiles per batch.
        """
        return self.getOrDefault(self.batchSize)


class SegmentationEstimatorParams(SegmentationParams, TrainingParams):
    """Params of SegmentationEstimator (data, patches, network, optimiser, engine)."""

    maskCol = param("maskCol", "label-mask tensor column (0 = background)", TypeConverters.toString)
    classWeights = param("classWeights", "cross-entropy weight per class ([] = all 1)", TypeConverters.toListFloat)
    loss = param("loss", "'dice_ce' (weighted cross-entropy + foreground soft Dice) or 'ce'", TypeConverters.toString)
    diceSmooth = param("diceSmooth", "smoothing term of the soft Dice (numerator and denominator)",
                       TypeConverters.toFloat)
    patchesPerImage = param("patchesPerImage", "patches per volume per epoch", TypeConverters.toInt)
    posFraction = param("posFraction", "share of patches centred on foreground", TypeConverters.toFloat)
    depth = param("depth", "U-Net pooling levels", TypeConverters.toInt)
    baseFilters = param("baseFilters", "filters at full resolution", TypeConverters.toInt)
    dropout = param("dropout", "spatial dropout after each block", TypeConverters.toFloat)
    batchNorm = param("batchNorm", "per-channel batch norm after each convolution (5-D via 4-D reshape)",
                      TypeConverters.toBoolean)

    def setMaskCol(self, value: str) -> Self:
        """Set :py:attr:`maskCol`: label-mask tensor column (0 = background)."""
        return self._set(maskCol=value)

    def getMaskCol(self) -> str:
        """The value of :py:attr:`maskCol` (set or default): label-mask tensor column (0 = background)."""
        return self.getOrDefault(self.maskCol)

    def setClassWeights(self, value: list[float]) -> Self:
        """Set :py:attr:`classWeights`: cross-entropy weight per class ([] = all 1)."""
        return self._set(classWeights=value)

    def getClassWeights(self) -> list[float]:
        """The value of :py:attr:`classWeights` (set or default): cross-entropy weight per class ([] = all 1)."""
        return self.getOrDefault(self.classWeights)

    def setLoss(self, value: str) -> Self:
        """Set :py:attr:`loss`: 'dice_ce' (weighted cross-entropy + foreground soft Dice) or 'ce'."""
        return self._set(loss=value)

    def getLoss(self) -> str:
        """The value of :py:attr:`loss` (set or default): 'dice_ce' (weighted cross-entropy + foreground soft Dice) or
        'ce'.
        """
        return self.getOrDefault(self.loss)

    def setDiceSmooth(self, value: float) -> Self:
        """Set :py:attr:`diceSmooth`: smoothing term of the soft Dice (numerator and denominator)."""
        return self._set(diceSmooth=value)

    def getDiceSmooth(self) -> float:
        """The value of :py:attr:`diceSmooth` (set or default): smoothing term of the soft Dice (numerator and
        denominator).
        """
        return self.getOrDefault(self.diceSmooth)

    def setPatchesPerImage(self, value: int) -> Self:
        """Set :py:attr:`patchesPerImage`: patches per volume per epoch."""
        return self._set(patchesPerImage=value)

    def getPatchesPerImage(self) -> int:
        """The value of :py:attr:`patchesPerImage` (set or default): patches per volume per epoch."""
        return self.getOrDefault(self.patchesPerImage)

    def setPosFraction(self, value: float) -> Self:
        """Set :py:attr:`posFraction`: share of patches centred on foreground."""
        return self._set(posFraction=value)

    def getPosFraction(self) -> float:
        """The value of :py:attr:`posFraction` (set or default): share of patches centred on foreground."""
        return self.getOrDefault(self.posFraction)

    def setDepth(self, value: int) -> Self:
        """Set :py:attr:`depth`: U-Net pooling levels."""
        return self._set(depth=value)

    def getDepth(self) -> int:
        """The value of :py:attr:`depth` (set or default): U-Net pooling levels."""
        return self.getOrDefault(self.depth)

    def setBaseFilters(self, value: int) -> Self:
        """Set :py:attr:`baseFilters`: filters at full resolution."""
        return self._set(baseFilters=value)

    def getBaseFilters(self) -> int:
        """The value of :py:attr:`baseFilters` (set or default): filters at full resolution."""
        return self.getOrDefault(self.baseFilters)

    def setDropout(self, value: float) -> Self:
        """Set :py:attr:`dropout`: spatial dropout after each block."""
        return self._set(dropout=value)

    def getDropout(self) -> float:
        """The value of :py:attr:`dropout` (set or default): spatial dropout after each block."""
        return self.getOrDefault(self.dropout)

    def setBatchNorm(self, value: bool) -> Self:
        """Set :py:attr:`batchNorm`: per-channel batch norm after each convolution (5-D via 4-D reshape)."""
        return self._set(batchNorm=value)

    def getBatchNorm(self) -> bool:
        """The value of :py:attr:`batchNorm` (set or default): per-channel batch norm after each convolution (5-D via 4-D
        reshape).
        """
        return self.getOrDefault(self.batchNorm)

