"""SegmentationEstimator: train a 3-D U-Net with BigDL on Spark from image and mask columns.

Each epoch samples fresh training patches on executors (``PatchSampler``, a
``posFraction`` share centred on foreground), trains one epoch with BigDL's
``NNEstimator`` (synchronous SGD across the executors), then, when a
validation split is given, segments the held-out volumes by sliding window
and records their Dice.  Model and optimiser state are checkpointed after
every epoch; a fit pointed at a checkpoint folder resumes after its last
complete epoch with the optimiser's state (iteration count, Adam moments).

Loss: class-weighted cross-entropy per voxel (BigDL's
``TimeDistributedCriterion(CrossEntropyCriterion(weights))``).  BigDL's
``DiceCoefficientCriterion`` is binary and ``NNEstimator`` feeds one label
column, so a multi-class soft-Dice term cannot be combined with it without
one-hot targets that then lose the class weights; class weights (background
down-weighted) address the same imbalance that soft Dice targets.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..transforms._stage import param, with_accessors

__all__ = ["SegmentationEstimator", "load_preset", "volume_dice"]

log = logging.getLogger(__name__)


def load_preset(name: str) -> dict:
    """Params of a task preset in ``conf/tasks/<name>.yaml`` (``estimator`` section)."""
    import yaml

    from ..session import conf_dir

    path = conf_dir() / "tasks" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (conf_dir() / "tasks").glob("*.yaml"))
        raise ConfigError(f"unknown task preset {name!r}; available: {', '.join(names)}")
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("estimator", {}))


def volume_dice(df, pred_col: str, ref_col: str, n_classes: int) -> dict:
    """Mean Dice per foreground class over rows (computed on executors, only numbers reach the driver)."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from ..metrics.functional import dice_per_class
    from ..tensor import to_numpy

    schema = T.StructType([T.StructField(f"c{k}", T.DoubleType()) for k in range(1, n_classes)])

    def per_row(batches):
        for pdf in batches:
            rows = []
            for p, r in zip(pdf[pred_col], pdf[ref_col]):
                if p is None or r is None:
                    continue
                rows.append(dice_per_class(to_numpy(p), to_numpy(r), n_classes))
            yield pd.DataFrame(rows, columns=[f"c{k}" for k in range(1, n_classes)])

    agg = df.select(pred_col, ref_col).mapInPandas(per_row, schema).agg(
        *[F.avg(f"c{k}").alias(f"c{k}") for k in range(1, n_classes)]).first()
    per_class = [float("nan") if agg[f"c{k}"] is None else float(agg[f"c{k}"]) for k in range(1, n_classes)]
    return {"per_class": per_class, "mean": float(np.nanmean(per_class)) if per_class else float("nan")}


@with_accessors
class SegmentationEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """Fit a :class:`~bigdl_medimg.ml.segmentation.SegmentationModel` (3-D U-Net, BigDL, Spark)."""

    inputCol = param("inputCol", "image tensor column (intensity-normalised)", TypeConverters.toString)
    maskCol = param("maskCol", "label-mask tensor column (0 = background)", TypeConverters.toString)
    outputCol = param("outputCol", "mask column the fitted model writes", TypeConverters.toString)
    validationIndicatorCol = param("validationIndicatorCol", "boolean column marking validation rows ('' for none)",
                                   TypeConverters.toString)
    nClasses = param("nClasses", "classes, background included", TypeConverters.toInt)
    classNames = param("classNames", "class names, background first", TypeConverters.toListString)
    classWeights = param("classWeights", "cross-entropy weight per class ([] = all 1)", TypeConverters.toListFloat)
    patchShape = param("patchShape", "training patch (D, H, W), divisible by 2**depth", TypeConverters.toListInt)
    patchesPerImage = param("patchesPerImage", "patches per volume per epoch", TypeConverters.toInt)
    posFraction = param("posFraction", "share of patches centred on foreground", TypeConverters.toFloat)
    depth = param("depth", "U-Net pooling levels", TypeConverters.toInt)
    baseFilters = param("baseFilters", "filters at full resolution", TypeConverters.toInt)
    dropout = param("dropout", "spatial dropout after each block", TypeConverters.toFloat)
    batchNorm = param("batchNorm", "per-channel batch norm after each convolution (5-D via 4-D reshape)",
                      TypeConverters.toBoolean)
    optimizer = param("optimizer", "'adam' or 'sgd'", TypeConverters.toString)
    learningRate = param("learningRate", "initial learning rate", TypeConverters.toFloat)
    lrSchedule = param("lrSchedule", "'constant', 'inverse' (lr/(1+decay*iter)) or, with sgd, 'poly'",
                       TypeConverters.toString)
    lrDecay = param("lrDecay", "decay of the 'inverse' schedule or power of 'poly'", TypeConverters.toFloat)
    momentum = param("momentum", "SGD momentum", TypeConverters.toFloat)
    batchSize = param("batchSize", "patches per iteration across the cluster", TypeConverters.toInt)
    maxEpoch = param("maxEpoch", "epochs to train (counting resumed ones)", TypeConverters.toInt)
    overlap = param("overlap", "sliding-window overlap of the fitted model", TypeConverters.toFloat)
    checkpointDir = param("checkpointDir", "folder for per-epoch checkpoints; resumes from it ('' for none)",
                          TypeConverters.toString)
    summaryDir = param("summaryDir", "folder for TensorBoard train/validation summaries ('' for none)",
                       TypeConverters.toString)
    seed = param("seed", "seed of patch sampling", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, inputCol="image", maskCol="mask", outputCol="segmentation", validationIndicatorCol="",
                 nClasses=5, classNames=None, classWeights=None, patchShape=(16, 32, 32), patchesPerImage=8,
                 posFraction=0.7, depth=2, baseFilters=8, dropout=0.0, batchNorm=True, optimizer="adam",
                 learningRate=2e-3, lrSchedule="inverse", lrDecay=1e-4, momentum=0.9, batchSize=16, maxEpoch=10,
                 overlap=0.5, checkpointDir="", summaryDir="", seed=0):
        super().__init__()
        self._setDefault(inputCol="image", maskCol="mask", outputCol="segmentation", validationIndicatorCol="",
                         nClasses=5, classNames=[], classWeights=[], patchShape=[16, 32, 32], patchesPerImage=8,
                         posFraction=0.7, depth=2, baseFilters=8, dropout=0.0, batchNorm=True, optimizer="adam",
                         learningRate=2e-3,
                         lrSchedule="inverse", lrDecay=1e-4, momentum=0.9, batchSize=16, maxEpoch=10, overlap=0.5,
                         checkpointDir="", summaryDir="", seed=0)
        self._set(**self._input_kwargs)
        self.history: list[dict] = []

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SegmentationEstimator":
        """An estimator with the Params of ``conf/tasks/<name>.yaml``, updated by ``overrides``."""
        params = load_preset(name)
        params.update(overrides)
        unknown = [k for k in params if not cls().hasParam(k)]
        if unknown:
            raise ConfigError(f"preset {name!r}: unknown Params {unknown}")
        return cls(**params)

    def _get(self, name):
        return self.getOrDefault(name)

    def _validate(self) -> None:
        from ..models.unet3d import check_patch_shape

        n = self._get("nClasses")
        if n < 2:
            raise ConfigError(f"SegmentationEstimator: nClasses must be >= 2, got {n}")
        w = self._get("classWeights")
        if w and (len(w) != n or min(w) < 0):
            raise ConfigError(f"SegmentationEstimator: classWeights needs {n} non-negative values, got {w}")
        names = self._get("classNames")
        if names and len(names) != n:
            raise ConfigError(f"SegmentationEstimator: classNames needs {n} names, got {names}")
        check_patch_shape(self._get("patchShape"), self._get("depth"))
        if self._get("optimizer") not in ("adam", "sgd"):
            raise ConfigError(f"SegmentationEstimator: optimizer must be 'adam' or 'sgd', got {self._get('optimizer')!r}")
        sched = self._get("lrSchedule")
        if sched not in ("constant", "inverse", "poly") or (sched == "poly" and self._get("optimizer") != "sgd"):
            raise ConfigError(f"SegmentationEstimator: lrSchedule {sched!r} is not available with "
                              f"{self._get('optimizer')} (constant, inverse; poly needs sgd)")
        for name in ("learningRate", "batchSize", "maxEpoch", "patchesPerImage"):
            if self._get(name) <= 0:
                raise ConfigError(f"SegmentationEstimator: {name} must be positive, got {self._get(name)}")

    # -------------------------------------------------------------- pieces ---
    def _optim(self, iterations_per_epoch: int):
        from bigdl.dllib.optim.optimizer import SGD, Adam, Poly

        lr, sched, decay = self._get("learningRate"), self._get("lrSchedule"), self._get("lrDecay")
        if self._get("optimizer") == "adam":
            return Adam(learningrate=lr, learningrate_decay=decay if sched == "inverse" else 0.0)
        schedule = Poly(decay, iterations_per_epoch * self._get("maxEpoch")) if sched == "poly" else None
        kwargs = {"leaningrate_schedule": schedule} if schedule is not None else {}
        return SGD(learningrate=lr, learningrate_decay=decay if sched == "inverse" else 0.0,
                   momentum=self._get("momentum"), dampening=0.0, nesterov=True, **kwargs)

    def _criterion(self):
        from bigdl.dllib.nn.criterion import CrossEntropyCriterion, TimeDistributedCriterion

        w = self._get("classWeights")
        weights = np.asarray(w, dtype=np.float32) if w else None
        return TimeDistributedCriterion(CrossEntropyCriterion(weights), size_average=True)

    def _patches(self, df, epoch: int):
        from pyspark.sql import functions as F

        from ..transforms.features import ToFeatures
        from ..transforms.sampling import PatchSampler

        sampler = PatchSampler(patchShape=self._get("patchShape"), patchesPerImage=self._get("patchesPerImage"),
                               posFraction=self._get("posFraction"), labelCol="__mask", inputCol="__image",
                               outputCol="__image", seed=self._get("seed") * 100003 + epoch, errorCol="__error")
        base = df.select(F.col(self._get("inputCol")).alias("__image"), F.col(self._get("maskCol")).alias("__mask"))
        p = sampler.transform(base).filter(F.col("__image").isNotNull() & F.col("__mask").isNotNull())
        p = ToFeatures(inputCol="__image", outputCol="features").transform(p)
        p = ToFeatures(inputCol="__mask", outputCol="__labels").transform(p)
        return p.select("features", F.transform("__labels", lambda x: x + F.lit(1.0)).alias("label"))

    def _model(self, network):
        from .segmentation import SegmentationModel

        return SegmentationModel(network=network, inputCol=self._get("inputCol"), outputCol=self._get("outputCol"),
                                 patchShape=self._get("patchShape"), nClasses=self._get("nClasses"),
                                 overlap=self._get("overlap"), batchSize=self._get("batchSize"))

    # ---------------------------------------------------------- checkpoints ---
    @staticmethod
    def latest_checkpoint(folder: str) -> Path | None:
        """The newest complete ``epoch_NNNN`` checkpoint in ``folder`` (None when there is none)."""
        if not folder or not os.path.isdir(folder):
            return None
        done = sorted(p for p in Path(folder).glob("epoch_*") if (p / "state.json").is_file())
        return done[-1] if done else None

    def _save_checkpoint(self, folder: str, epoch: int, network, optim, record: dict) -> None:
        target = Path(folder) / f"epoch_{epoch:04d}"
        tmp = Path(folder) / f".epoch_{epoch:04d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        network.saveModel(str(tmp / "model"), over_write=True)
        optim.save(str(tmp / "optim"), True)
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "history": self.history + [record]}))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # a checkpoint exists whole or not at all
        for old in sorted(Path(folder).glob("epoch_*"))[:-2]:  # keep the last two
            shutil.rmtree(old, ignore_errors=True)

    def _resume(self, folder: str):
        from bigdl.dllib.keras.models import load_model
        from bigdl.dllib.optim.optimizer import OptimMethod

        ck = self.latest_checkpoint(folder)
        if ck is None:
            return None
        state = json.loads((ck / "state.json").read_text())
        network = load_model(str(ck / "model"))
        optim = OptimMethod(OptimMethod.load(str(ck / "optim")), "float")
        log.info("resuming from %s (epoch %d)", ck, state["epoch"])
        return network, optim, int(state["epoch"]), list(state.get("history", []))

    # ------------------------------------------------------------------ fit ---
    def _fit(self, df):
        from bigdl.dllib.nnframes import NNEstimator
        from bigdl.dllib.optim.optimizer import TrainSummary
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from ..models.unet3d import unet3d
        from .tfevents import ScalarWriter

        self._validate()
        for c in (self._get("inputCol"), self._get("maskCol")):
            if c not in df.columns:
                raise ConfigError(f"SegmentationEstimator: column {c!r} not found; the DataFrame has {sorted(df.columns)}")
        vcol = self._get("validationIndicatorCol")
        if vcol and vcol not in df.columns:
            raise ConfigError(f"SegmentationEstimator: validation column {vcol!r} not found")
        # preprocessing upstream runs once, not once per epoch
        df = df.select(*[c for c in (self._get("inputCol"), self._get("maskCol"), vcol) if c]) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        train, val = df, None
        if vcol:
            train, val = df.filter(~F.col(vcol)), df.filter(F.col(vcol))
        patch, n_classes = tuple(self._get("patchShape")), self._get("nClasses")
        ckdir, sumdir = self._get("checkpointDir"), self._get("summaryDir")
        resumed = self._resume(ckdir) if ckdir else None
        if resumed:
            network, optim, start, self.history = resumed
        else:
            network = unet3d(n_classes, patch, depth=self._get("depth"), base_filters=self._get("baseFilters"),
                             dropout=self._get("dropout"), batch_norm=self._get("batchNorm"))
            optim, start, self.history = None, 0, []
        writer = ScalarWriter(os.path.join(sumdir, "segmentation", "validation")) if sumdir and val is not None else None
        for epoch in range(start + 1, self._get("maxEpoch") + 1):
            t0 = time.time()
            data = self._patches(train, epoch).persist(StorageLevel.MEMORY_AND_DISK)
            n = data.count()
            if n == 0:
                raise ConfigError("SegmentationEstimator: no training patches (no rows with both image and mask)")
            if optim is None:
                optim = self._optim(max(1, n // self._get("batchSize")))
            est = NNEstimator(network, self._criterion(), [1, *patch], [int(np.prod(patch))]) \
                .setBatchSize(self._get("batchSize")).setOptimMethod(optim).setMaxEpoch(epoch)
            if sumdir:
                est.setTrainSummary(TrainSummary(sumdir, "segmentation"))
            sc = df.sparkSession.sparkContext
            before = set(sc._jsc.getPersistentRDDs().keySet())
            est.fit(data)
            data.unpersist()
            for rdd_id, rdd in dict(sc._jsc.getPersistentRDDs()).items():
                if rdd_id not in before:  # BigDL caches its training set per fit: release it
                    rdd.unpersist(False)
            sc._jvm.System.gc()
            record = {"epoch": epoch, "patches": n, "seconds": round(time.time() - t0, 1)}
            if val is not None:
                scored = self._model(network).setOutputCol("__pred").transform(val)
                dice = volume_dice(scored, "__pred", self._get("maskCol"), n_classes)
                record.update(val_dice=dice["mean"], val_dice_per_class=dice["per_class"])
                if writer:
                    writer.add_scalar("Dice", dice["mean"], epoch)
            rt = sc._jvm.java.lang.Runtime.getRuntime()
            record["driver_heap_mb"] = int((rt.totalMemory() - rt.freeMemory()) / 2 ** 20)
            log.info("epoch %d: %s", epoch, record)
            if ckdir:
                self._save_checkpoint(ckdir, epoch, network, optim, record)
            self.history.append(record)
        df.unpersist()
        model = self._model(network)
        model.history = list(self.history)
        return model
