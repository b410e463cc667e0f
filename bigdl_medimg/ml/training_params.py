"""Params every estimator trains with (optimiser, epochs, validation rows, checkpoints, retries, torch ranks),
with their setters and getters: one declaration for SegmentationEstimator and ClassificationEstimator."""
from __future__ import annotations

from typing import Self

from pyspark.ml.param import TypeConverters

from ..params import param, to_settings

__all__ = ["TrainingParams", "EngineParams"]


class EngineParams:
    """The ``engine`` Param every estimator and model has (one declaration for all four)."""

    engine = param("engine", "learning engine: 'bigdl' (BigDL's distributed optimiser) or 'torch' (PyTorch DDP on "
                             "a Spark barrier stage)", TypeConverters.toString)

    def setEngine(self, value: str) -> Self:
        """Set :py:attr:`engine`: learning engine: 'bigdl' (BigDL's distributed optimiser) or 'torch' (PyTorch DDP on a
        Spark barrier stage).
        """
        return self._set(engine=value)

    def getEngine(self) -> str:
        """The value of :py:attr:`engine` (set or default): learning engine: 'bigdl' (BigDL's distributed optimiser) or
        'torch' (PyTorch DDP on a Spark barrier stage).
        """
        return self.getOrDefault(self.engine)


class TrainingParams:
    """Params of the training loop both estimators share (:func:`~bigdl_medimg.ml.training.train_epochs`)."""

    validationIndicatorCol = param("validationIndicatorCol", "boolean column marking validation rows ('' for none)",
                                   TypeConverters.toString)
    optimizer = param("optimizer", "'adam' or 'sgd'", TypeConverters.toString)
    learningRate = param("learningRate", "initial learning rate", TypeConverters.toFloat)
    lrSchedule = param("lrSchedule", "'constant', 'inverse' (lr/(1+decay*iter)), 'poly' ((1-t/T)^decay; with adam "
                                     "stepped once per epoch as in nnU-Net); with sgd also 'exponential'",
                       TypeConverters.toString)
    lrDecay = param("lrDecay", "decay of the schedule (inverse: rate; poly: power; exponential: factor per tenth)", TypeConverters.toFloat)
    momentum = param("momentum", "SGD momentum", TypeConverters.toFloat)
    maxEpoch = param("maxEpoch", "epochs to train (counting resumed ones)", TypeConverters.toInt)
    earlyStoppingPatience = param("earlyStoppingPatience", "stop after this many epochs without a better validation "
                                                           "score (0 = never)", TypeConverters.toInt)
    maxRetries = param("maxRetries", "re-runs from the last checkpoint after a failed Spark job (needs checkpointDir)",
                       TypeConverters.toInt)
    checkpointDir = param("checkpointDir", "folder for per-epoch checkpoints, one subfolder per fit ('' for none)",
                          TypeConverters.toString)
    summaryDir = param("summaryDir", "folder for TensorBoard train/validation summaries ('' for none)",
                       TypeConverters.toString)
    resume = param("resume", "with checkpointDir: 'auto' resumes this very fit (same Params and data) if it has a "
                             "checkpoint, 'never' starts afresh, 'require' fails unless it can resume",
                   TypeConverters.toString)
    seed = param("seed", "seed of the fit's random draws (patch sampling, augmentation), combined with the epoch",
                 TypeConverters.toInt)
    augment = param("augment", "augmentation of the training rows, redrawn every epoch on the executors: Augment "
                               "Params such as flipProb, flipAxes, affineProb ({} = none)", to_settings)
    numRanks = param("numRanks", "torch engine: training processes (0 = one per Spark task slot)", TypeConverters.toInt)
    trackingUri = param("trackingUri", "MLflow tracking URI the fit is logged to (file:/folder or http://host:port; "
                                       "'' for none)", TypeConverters.toString)
    experimentName = param("experimentName", "MLflow experiment of the fit's run", TypeConverters.toString)
    cacheMemoryMB = param("cacheMemoryMB", "torch engine: memory per rank for its decoded rows before they spill "
                                           "to local disk", TypeConverters.toFloat)

    def setTrackingUri(self, value: str) -> Self:
        """Set :py:attr:`trackingUri`: MLflow tracking URI the fit is logged to (file:/folder or http://host:port;
        '' for none)."""
        return self._set(trackingUri=value)

    def getTrackingUri(self) -> str:
        """The value of :py:attr:`trackingUri` (set or default): MLflow tracking URI the fit is logged to
        (file:/folder or http://host:port; '' for none)."""
        return self.getOrDefault(self.trackingUri)

    def setExperimentName(self, value: str) -> Self:
        """Set :py:attr:`experimentName`: MLflow experiment of the fit's run."""
        return self._set(experimentName=value)

    def getExperimentName(self) -> str:
        """The value of :py:attr:`experimentName` (set or default): MLflow experiment of the fit's run."""
        return self.getOrDefault(self.experimentName)

    def setValidationIndicatorCol(self, value: str) -> Self:
        """Set :py:attr:`validationIndicatorCol`: boolean column marking validation rows ('' for none)."""
        return self._set(validationIndicatorCol=value)

    def getValidationIndicatorCol(self) -> str:
        """The value of :py:attr:`validationIndicatorCol` (set or default): boolean column marking validation rows (''
        for none).
        """
        return self.getOrDefault(self.validationIndicatorCol)

    def setOptimizer(self, value: str) -> Self:
        """Set :py:attr:`optimizer`: 'adam' or 'sgd'."""
        return self._set(optimizer=value)

    def getOptimizer(self) -> str:
        """The value of :py:attr:`optimizer` (set or default): 'adam' or 'sgd'."""
        return self.getOrDefault(self.optimizer)

    def setLearningRate(self, value: float) -> Self:
        """Set :py:attr:`learningRate`: initial learning rate."""
        return self._set(learningRate=value)

    def getLearningRate(self) -> float:
        """The value of :py:attr:`learningRate` (set or default): initial learning rate."""
        return self.getOrDefault(self.learningRate)

    def setLrSchedule(self, value: str) -> Self:
        """Set :py:attr:`lrSchedule`: 'constant', 'inverse' (lr/(1+decay*iter)), 'poly' ((1-t/T)^decay;
        with adam stepped once per epoch as in nnU-Net); with sgd also 'exponential'."""
        return self._set(lrSchedule=value)

    def getLrSchedule(self) -> str:
        """The value of :py:attr:`lrSchedule` (set or default): 'constant', 'inverse' (lr/(1+decay*iter)),
        'poly' ((1-t/T)^decay; with adam stepped once per epoch as in nnU-Net); with sgd also 'exponential'."""
        return self.getOrDefault(self.lrSchedule)

    def setLrDecay(self, value: float) -> Self:
        """Set :py:attr:`lrDecay`: decay of the schedule (inverse: rate; poly: power; exponential: factor per tenth)."""
        return self._set(lrDecay=value)

    def getLrDecay(self) -> float:
        """The value of :py:attr:`lrDecay` (set or default): decay of the schedule (inverse: rate; poly: power; exponential: factor per tenth)."""
        return self.getOrDefault(self.lrDecay)

    def setMomentum(self, value: float) -> Self:
        """Set :py:attr:`momentum`: SGD momentum."""
        return self._set(momentum=value)

    def getMomentum(self) -> float:
        """The value of :py:attr:`momentum` (set or default): SGD momentum."""
        return self.getOrDefault(self.momentum)

    def setMaxEpoch(self, value: int) -> Self:
        """Set :py:attr:`maxEpoch`: epochs to train (counting resumed ones)."""
        return self._set(maxEpoch=value)

    def getMaxEpoch(self) -> int:
        """The value of :py:attr:`maxEpoch` (set or default): epochs to train (counting resumed ones)."""
        return self.getOrDefault(self.maxEpoch)

    def setEarlyStoppingPatience(self, value: int) -> Self:
        """Set :py:attr:`earlyStoppingPatience`: stop after this many epochs without a better validation score (0 =
        never).

        The score is the validation AUROC (classification) or mean Dice
        (segmentation); either way the network of the best validation epoch
        (weights and normalisation statistics) is what the fit returns.
        """
        return self._set(earlyStoppingPatience=value)

    def getEarlyStoppingPatience(self) -> int:
        """The value of :py:attr:`earlyStoppingPatience` (set or default): stop after this many epochs without a
        better validation score (0 = never).
        """
        return self.getOrDefault(self.earlyStoppingPatience)

    def setMaxRetries(self, value: int) -> Self:
        """Set :py:attr:`maxRetries`: re-runs from the last checkpoint after a failed Spark job (needs checkpointDir).
        """
        return self._set(maxRetries=value)

    def getMaxRetries(self) -> int:
        """The value of :py:attr:`maxRetries` (set or default): re-runs from the last checkpoint after a failed Spark job
        (needs checkpointDir).
        """
        return self.getOrDefault(self.maxRetries)

    def setCheckpointDir(self, value: str) -> Self:
        """Set :py:attr:`checkpointDir`: folder for per-epoch checkpoints, one subfolder per fit ('' for none)."""
        return self._set(checkpointDir=value)

    def getCheckpointDir(self) -> str:
        """The value of :py:attr:`checkpointDir` (set or default): folder for per-epoch checkpoints, one subfolder per
        fit ('' for none).
        """
        return self.getOrDefault(self.checkpointDir)

    def setSummaryDir(self, value: str) -> Self:
        """Set :py:attr:`summaryDir`: folder for TensorBoard train/validation summaries ('' for none)."""
        return self._set(summaryDir=value)

    def getSummaryDir(self) -> str:
        """The value of :py:attr:`summaryDir` (set or default): folder for TensorBoard train/validation summaries ('' for
        none).
        """
        return self.getOrDefault(self.summaryDir)

    def setResume(self, value: str) -> Self:
        """Set :py:attr:`resume`: with checkpointDir, 'auto' resumes this very fit (same Params and data) if it has a
        checkpoint, 'never' starts afresh, 'require' fails unless it can resume.

        Each fit keeps its checkpoints in ``checkpointDir/fit-<fingerprint>``
        (:func:`~bigdl_medimg.ml.training.fit_folder`): a fit never resumes
        another one's weights, whatever ``resume`` says.
        """
        return self._set(resume=value)

    def getResume(self) -> str:
        """The value of :py:attr:`resume` (set or default): 'auto', 'never' or 'require'."""
        return self.getOrDefault(self.resume)

    def setSeed(self, value: int) -> Self:
        """Set :py:attr:`seed`: seed of the fit's random draws (patch sampling, augmentation), combined with the
        epoch (:func:`~bigdl_medimg.transforms.sampling.epoch_seed`).
        """
        return self._set(seed=value)

    def getSeed(self) -> int:
        """The value of :py:attr:`seed` (set or default): seed of the fit's random draws (patch sampling,
        augmentation).
        """
        return self.getOrDefault(self.seed)

    def setAugment(self, value: dict) -> Self:
        """Set :py:attr:`augment`: augmentation of the training rows, redrawn every epoch on the executors.

        A dict of :class:`~bigdl_medimg.transforms.Augment` Params (``flipProb``,
        ``flipAxes``, ``rot90Prob``, ``affineProb``, ``maxRotationDeg``,
        ``scaleRange``, ``intensityProb``, ``intensityScale``,
        ``intensityShift``, ``gammaProb``, ``gammaRange``, ``biasProb``,
        ``biasStrength``; the ones left out take Augment's defaults), ``{}``
        for none.  Both engines apply it with the estimator's seed and the
        epoch, so a fit is reproducible and each epoch sees new draws.
        Segmentation augments each sampled patch (image and mask together);
        classification each image.  Validation rows are never augmented.
        """
        return self._set(augment=value)

    def getAugment(self) -> dict:
        """The value of :py:attr:`augment` (set or default): the augmentation settings ({} = none)."""
        return self.getOrDefault(self.augment)

    def setNumRanks(self, value: int) -> Self:
        """Set :py:attr:`numRanks`: torch engine: training processes (0 = one per Spark task slot)."""
        return self._set(numRanks=value)

    def getNumRanks(self) -> int:
        """The value of :py:attr:`numRanks` (set or default): torch engine: training processes (0 = one per Spark task
        slot).
        """
        return self.getOrDefault(self.numRanks)

    def setCacheMemoryMB(self, value: float) -> Self:
        """Set :py:attr:`cacheMemoryMB`: torch engine: memory per rank for its decoded rows before they spill to local
        disk.
        """
        return self._set(cacheMemoryMB=value)

    def getCacheMemoryMB(self) -> float:
        """The value of :py:attr:`cacheMemoryMB` (set or default): torch engine: memory per rank for its decoded rows
        before they spill to local disk.
        """
        return self.getOrDefault(self.cacheMemoryMB)

    # ------------------------------------------------ optimiser, both fits ---
    def _bigdl_optim(self, iterations_per_epoch: int):
        """The BigDL OptimMethod these Params describe (``iterations_per_epoch`` sizes poly/exponential)."""
        from .engines.bigdl import make_optim

        g = self.getOrDefault
        return make_optim(g("optimizer"), g("learningRate"), g("lrSchedule"), g("lrDecay"), g("momentum"),
                          iterations_per_epoch * g("maxEpoch"))

    def _epoch_learning_rate(self, epoch: int, iterations_per_epoch: int) -> float | None:
        """The rate to set at the start of ``epoch`` when the schedule steps per epoch (Adam under poly)."""
        from .training import lr_factor, poly_held

        g = self.getOrDefault
        if not poly_held(g("optimizer"), g("lrSchedule")):
            return None
        ipe = max(1, iterations_per_epoch)
        return g("learningRate") * lr_factor("poly", g("lrDecay"), (epoch - 1) * ipe, ipe * g("maxEpoch"))
