"""Params of the classification stages, with their setters and getters."""
from __future__ import annotations

from typing import Self

from pyspark.ml.param import TypeConverters

from ..params import param
from .training_params import EngineParams, TrainingParams

__all__ = ["ClassifierParams", "ClassificationEstimatorParams"]


class ClassifierParams(EngineParams):
    """Params of both ClassificationModel and ClassificationEstimator."""

    inputCol = param("inputCol", "image tensor column", TypeConverters.toString)
    outputCol = param("outputCol", "probability column (array<double>, one per label/class)", TypeConverters.toString)
    predictionCol = param("predictionCol", "prediction column: 0/1 per label (multilabel) or class index ('' for none)",
                          TypeConverters.toString)
    mode = param("mode", "'multilabel' (sigmoid) or 'multiclass' (softmax)", TypeConverters.toString)
    labelNames = param("labelNames", "names of the labels (multilabel) or classes (multiclass)",
                       TypeConverters.toListString)
    inputShape = param("inputShape", "network input (channels, *spatial)", TypeConverters.toListInt)
    batchSize = param("batchSize", "images per batch (training: across all executors)", TypeConverters.toInt)

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: image tensor column."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): image tensor column."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: probability column (array<double>, one per label/class)."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): probability column (array<double>, one per label/class).
        """
        return self.getOrDefault(self.outputCol)

    def setPredictionCol(self, value: str) -> Self:
        """Set :py:attr:`predictionCol`: prediction column: 0/1 per label (multilabel) or class index ('' for none).
        """
        return self._set(predictionCol=value)

    def getPredictionCol(self) -> str:
        """The value of :py:attr:`predictionCol` (set or default): prediction column: 0/1 per label (multilabel) or class
        index ('' for none).
        """
        return self.getOrDefault(self.predictionCol)

    def setMode(self, value: str) -> Self:
        """Set :py:attr:`mode`: 'multilabel' (sigmoid) or 'multiclass' (softmax)."""
        return self._set(mode=value)

    def getMode(self) -> str:
        """The value of :py:attr:`mode` (set or default): 'multilabel' (sigmoid) or 'multiclass' (softmax)."""
        return self.getOrDefault(self.mode)

    def setLabelNames(self, value: list[str]) -> Self:
        """Set :py:attr:`labelNames`: names of the labels (multilabel) or classes (multiclass)."""
        return self._set(labelNames=value)

    def getLabelNames(self) -> list[str]:
        """The value of :py:attr:`labelNames` (set or default): names of the labels (multilabel) or classes (multiclass).
        """
        return self.getOrDefault(self.labelNames)

    def setInputShape(self, value: list[int]) -> Self:
        """Set :py:attr:`inputShape`: network input (channels, *spatial)."""
        return self._set(inputShape=value)

    def getInputShape(self) -> list[int]:
        """The value of :py:attr:`inputShape` (set or default): network input (channels, *spatial)."""
        return self.getOrDefault(self.inputShape)

    def setBatchSize(self, value: int) -> Self:
        """Set :py:attr:`batchSize`: images per batch (training: across all executors)."""
        return self._set(batchSize=value)

    def getBatchSize(self) -> int:
        """The value of :py:attr:`batchSize` (set or default): images per batch (training: across all executors)."""
        return self.getOrDefault(self.batchSize)


class ClassificationEstimatorParams(ClassifierParams, TrainingParams):
    """Params of ClassificationEstimator (training, network, optimiser, engine)."""

    labelCol = param("labelCol", "labels: array of 0/1 per label (multilabel) or class index (multiclass)",
                     TypeConverters.toString)
    topology = param("topology", "network: densenet121, densenet_small, densenet_tiny, resnet50, resnet_small, "
                                 "cnn3d, cnn3d_small", TypeConverters.toString)
    growthRate = param("growthRate", "DenseNet growth rate (0 = the topology's)", TypeConverters.toInt)
    blockConfig = param("blockConfig", "DenseNet layers per dense block ([] = the topology's)",
                        TypeConverters.toListInt)
    filters = param("filters", "3-D CNN filters per level ([] = the topology's)", TypeConverters.toListInt)
    dropout = param("dropout", "dropout before the output layer", TypeConverters.toFloat)
    labelWeighting = param("labelWeighting", "multilabel BCE weights: 'chexnet' (from label frequencies) or 'none'",
                           TypeConverters.toString)
    classBalancing = param("classBalancing", "multiclass: weight classes by inverse frequency",
                           TypeConverters.toBoolean)
    initModelPath = param("initModelPath", "BigDL model file to start from instead of a new network ('' for none; "
                                           "engine 'bigdl' only)", TypeConverters.toString)

    def setLabelCol(self, value: str) -> Self:
        """Set :py:attr:`labelCol`: labels: array of 0/1 per label (multilabel) or class index (multiclass)."""
        return self._set(labelCol=value)

    def getLabelCol(self) -> str:
        """The value of :py:attr:`labelCol` (set or default): labels: array of 0/1 per label (multilabel) or class index
        (multiclass).
        """
        return self.getOrDefault(self.labelCol)

    def setTopology(self, value: str) -> Self:
        """Set :py:attr:`topology`: network: densenet121, densenet_small, densenet_tiny, resnet50, resnet_small, cnn3d,
        cnn3d_small.
        """
        return self._set(topology=value)

    def getTopology(self) -> str:
        """The value of :py:attr:`topology` (set or default): network: densenet121, densenet_small, densenet_tiny,
        resnet50, resnet_small, cnn3d, cnn3d_small.
        """
        return self.getOrDefault(self.topology)

    def setGrowthRate(self, value: int) -> Self:
        """Set :py:attr:`growthRate`: DenseNet growth rate (0 = the topology's)."""
        return self._set(growthRate=value)

    def getGrowthRate(self) -> int:
        """The value of :py:attr:`growthRate` (set or default): DenseNet growth rate (0 = the topology's)."""
        return self.getOrDefault(self.growthRate)

    def setBlockConfig(self, value: list[int]) -> Self:
        """Set :py:attr:`blockConfig`: DenseNet layers per dense block ([] = the topology's)."""
        return self._set(blockConfig=value)

    def getBlockConfig(self) -> list[int]:
        """The value of :py:attr:`blockConfig` (set or default): DenseNet layers per dense block ([] = the topology's).
        """
        return self.getOrDefault(self.blockConfig)

    def setFilters(self, value: list[int]) -> Self:
        """Set :py:attr:`filters`: 3-D CNN filters per level ([] = the topology's)."""
        return self._set(filters=value)

    def getFilters(self) -> list[int]:
        """The value of :py:attr:`filters` (set or default): 3-D CNN filters per level ([] = the topology's)."""
        return self.getOrDefault(self.filters)

    def setDropout(self, value: float) -> Self:
        """Set :py:attr:`dropout`: dropout before the output layer."""
        return self._set(dropout=value)

    def getDropout(self) -> float:
        """The value of :py:attr:`dropout` (set or default): dropout before the output layer."""
        return self.getOrDefault(self.dropout)

    def setLabelWeighting(self, value: str) -> Self:
        """Set :py:attr:`labelWeighting`: multilabel BCE weights: 'chexnet' (from label frequencies) or 'none'."""
        return self._set(labelWeighting=value)

    def getLabelWeighting(self) -> str:
        """The value of :py:attr:`labelWeighting` (set or default): multilabel BCE weights: 'chexnet' (from label
        frequencies) or 'none'.
        """
        return self.getOrDefault(self.labelWeighting)

    def setClassBalancing(self, value: bool) -> Self:
        """Set :py:attr:`classBalancing`: multiclass: weight classes by inverse frequency."""
        return self._set(classBalancing=value)

    def getClassBalancing(self) -> bool:
        """The value of :py:attr:`classBalancing` (set or default): multiclass: weight classes by inverse frequency.
        """
        return self.getOrDefault(self.classBalancing)

    def setInitModelPath(self, value: str) -> Self:
        """Set :py:attr:`initModelPath`: BigDL model file to start from instead of a new network ('' for none; engine
        'bigdl' only).
        """
        return self._set(initModelPath=value)

    def getInitModelPath(self) -> str:
        """The value of :py:attr:`initModelPath` (set or default): BigDL model file to start from instead of a new
        network ('' for none; engine 'bigdl' only).
        """
        return self.getOrDefault(self.initModelPath)
