"""Image classification with BigDL on Spark: ClassificationEstimator and ClassificationModel.

Two modes:

* ``multilabel`` - independent findings (ChestX-ray14's 14 labels, a meniscus
  tear as one label): sigmoid outputs, binary cross-entropy with per-label
  positive/negative weights.  ``labelWeighting="chexnet"`` uses CheXNet's
  weights ``w+ = N/(P+N)``, ``w- = P/(P+N)`` from the training labels.
* ``multiclass`` - one class per image (a severity grade): softmax outputs,
  cross-entropy, optional inverse-frequency class balancing.

Images come from a tensor column whose shape equals ``inputShape``
(``(channels, *spatial)``; a channel-less image counts as one channel);
resize or crop them upstream (``ResizeImage``, ``CropOrPad``,
``CropAroundLabel``).  Training runs epoch by epoch with BigDL's NNEstimator
(synchronous SGD on the executors); after each epoch the validation rows are
scored and AUROC per label recorded, the best epoch's weights kept, and
training stops early after ``earlyStoppingPatience`` epochs without
improvement.  Checkpoints and TensorBoard summaries work as in
:class:`~bigdl_medimg.ml.SegmentationEstimator`.

``topology`` and ``optimizer`` are Params, so ``ParamGridBuilder`` with
``TrainValidationSplit`` / ``CrossValidator`` and :class:`AUCEvaluator`
selects among them, each candidate trained by BigDL on the cluster.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..metrics.evaluators import MultiLabelAUCEvaluator
from ..transforms._stage import param, with_accessors
from ._persist import NetworkModelPersistence
from ._training import (check_optim, driver_heap_mb, fit_one_epoch, fit_with_retries, from_preset, latest_checkpoint, load_checkpoint,
                        make_optim, save_checkpoint)
from .progress import EpochProgress, epoch_line

__all__ = ["ClassificationEstimator", "ClassificationModel", "AUCEvaluator", "weighted_bce_loss"]

log = logging.getLogger(__name__)

MODES = ("multilabel", "multiclass")


def weighted_bce_loss(n_labels: int, pos_weights, neg_weights):
    """BigDL criterion on sigmoid outputs: ``-mean_k(w+_k y log p + w-_k (1-y) log(1-p))`` per sample."""
    from bigdl.dllib.keras import autograd as A

    wp = A.Constant(np.asarray(pos_weights, dtype=np.float32).reshape(1, n_labels))
    wn = A.Constant(np.asarray(neg_weights, dtype=np.float32).reshape(1, n_labels))

    def loss(y_true, y_pred):
        p = A.clip(y_pred, 1e-7, 1.0 - 1e-7)
        ll = y_true * wp * A.log(p) + (1.0 - y_true) * wn * A.log(1.0 - p)
        return A.neg(A.mean(ll, axis=1, keepDims=True))

    return A.CustomLoss(loss, [n_labels])


def chexnet_weights(positives, total) -> tuple[np.ndarray, np.ndarray]:
    """CheXNet's per-label weights: ``w+ = N/(P+N)``, ``w- = P/(P+N)`` (labels with no positives keep 1, 1)."""
    p = np.asarray(positives, dtype=np.float64)
    n = float(total) - p
    ok = (p > 0) & (n > 0)
    wp = np.where(ok, n / max(float(total), 1.0), 1.0)
    wn = np.where(ok, p / max(float(total), 1.0), 1.0)
    return wp.astype(np.float32), wn.astype(np.float32)


class _ClassifierParams:
    inputCol = param("inputCol", "image tensor column", TypeConverters.toString)
    outputCol = param("outputCol", "probability column (array<double>, one per label/class)", TypeConverters.toString)
    predictionCol = param("predictionCol", "prediction column: 0/1 per label (multilabel) or class index ('' for none)",
                          TypeConverters.toString)
    mode = param("mode", "'multilabel' (sigmoid) or 'multiclass' (softmax)", TypeConverters.toString)
    labelNames = param("labelNames", "names of the labels (multilabel) or classes (multiclass)",
                       TypeConverters.toListString)
    inputShape = param("inputShape", "network input (channels, *spatial)", TypeConverters.toListInt)
    batchSize = param("batchSize", "images per BigDL batch", TypeConverters.toInt)


@with_accessors
class ClassificationModel(NetworkModelPersistence, Model, _ClassifierParams):
    """Scores images with a BigDL network: probabilities, predictions and optional per-label columns.

    ``thresholds`` (multilabel, one per label or one for all) turn
    probabilities into 0/1 predictions; ``labelColumns`` adds one
    ``<outputCol>_<label>`` column per label.
    """

    thresholds = param("thresholds", "decision threshold per label (or one for all); multilabel",
                       TypeConverters.toListFloat)
    labelColumns = param("labelColumns", "also write one probability column per label", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, network=None, inputCol="image", outputCol="probability", predictionCol="prediction",
                 mode="multilabel", labelNames=None, inputShape=None, batchSize=16, thresholds=None,
                 labelColumns=False):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="probability", predictionCol="prediction", mode="multilabel",
                         labelNames=[], batchSize=16, thresholds=[0.5], labelColumns=False)
        kwargs = dict(self._input_kwargs)
        self._network = kwargs.pop("network", None)
        self._set(**kwargs)
        self.history: list[dict] = []

    @classmethod
    def from_bigdl_file(cls, path: str, **params) -> "ClassificationModel":
        """Wrap a saved BigDL model (``saveModel`` / Keras-API file) for inference."""
        from bigdl.dllib.keras.models import load_model

        return cls(network=load_model(path), **params)

    def _validate(self) -> None:
        if self._network is None:
            raise ConfigError("ClassificationModel has no network; train it with ClassificationEstimator or load it")
        if self.getOrDefault("mode") not in MODES:
            raise ConfigError(f"ClassificationModel: mode must be one of {MODES}, got {self.getOrDefault('mode')!r}")
        if not self.isDefined("inputShape") or not self.getOrDefault("inputShape"):
            raise ConfigError("ClassificationModel: inputShape is required")
        n = len(self.getOrDefault("labelNames"))
        th = self.getOrDefault("thresholds")
        if n == 0:
            raise ConfigError("ClassificationModel: labelNames is required")
        if len(th) not in (1, n):
            raise ConfigError(f"ClassificationModel: thresholds needs 1 or {n} values, got {th}")

    def _transform(self, df):
        from bigdl.dllib.nnframes import NNModel
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..transforms.features import ToFeatures

        self._validate()
        in_col = self.getOrDefault("inputCol")
        if in_col not in df.columns:
            raise ConfigError(f"ClassificationModel: column {in_col!r} not found; the DataFrame has {sorted(df.columns)}")
        names = list(self.getOrDefault("labelNames"))
        mode, out_col, pred_col = self.getOrDefault("mode"), self.getOrDefault("outputCol"), \
            self.getOrDefault("predictionCol")
        shape = list(self.getOrDefault("inputShape"))
        th = np.asarray(self.getOrDefault("thresholds"), dtype=np.float64)
        th = np.repeat(th, len(names)) if th.size == 1 else th
        feats = "__features"
        x = ToFeatures(inputCol=in_col, outputCol=feats).transform(df.filter(F.col(in_col).isNotNull()))
        x = _sized_features(x, feats, shape, "ClassificationModel")
        nn = NNModel(self._network, shape).setFeaturesCol(feats).setPredictionCol("__scores") \
            .setBatchSize(self.getOrDefault("batchSize"))
        scored = nn.transform(x).drop(feats)
        # rows without an image (a reader's error rows) pass through with null outputs: nothing vanishes
        unscored = df.filter(F.col(in_col).isNull()).withColumn(
            "__scores", F.lit(None).cast(scored.schema["__scores"].dataType))
        scored = scored.unionByName(unscored)

        @F.pandas_udf(T.ArrayType(T.DoubleType()))
        def probs(scores: pd.Series) -> pd.Series:
            return pd.Series([None if s is None else _probabilities(np.asarray(s, np.float64), mode).tolist()
                              for s in scores])

        scored = scored.withColumn(out_col, probs("__scores")).drop("__scores")
        if pred_col:
            if mode == "multilabel":
                scored = scored.withColumn(pred_col, F.transform(
                    out_col, lambda p, i: (p >= F.element_at(F.array(*[F.lit(float(t)) for t in th]), i + 1))
                    .cast("int")))
            else:
                scored = scored.withColumn(pred_col, F.expr(
                    f"array_position({out_col}, array_max({out_col})) - 1").cast("int"))
        if self.getOrDefault("labelColumns"):
            for k, name in enumerate(names):
                scored = scored.withColumn(f"{out_col}_{name}", F.col(out_col)[k])
        return scored


def _probabilities(scores: np.ndarray, mode: str) -> np.ndarray:
    if mode == "multilabel":
        return 1.0 / (1.0 + np.exp(-scores))
    e = np.exp(scores - scores.max())
    return e / e.sum()


def _size_message(owner: str, shape) -> tuple[str, str]:
    want = int(np.prod(shape))
    return (f"{owner}: an image has ", f" values, the network takes {list(shape)} ({want} values); "
            "resize or crop the images upstream (ResizeImage, CropOrPad)")


def _check_feature_size(df, col: str, shape, owner: str) -> None:
    """ConfigError if a row of ``df`` (already computed, e.g. persisted) has features of another size."""
    from pyspark.sql import functions as F

    bad = df.filter(F.col(col).isNotNull() & (F.size(col) != int(np.prod(shape)))).limit(1) \
        .select(F.size(col).alias("n")).collect()
    if bad:
        head, tail = _size_message(owner, shape)
        raise ConfigError(f"{head}{bad[0]['n']}{tail}")


def _sized_features(df, col: str, shape, owner: str):
    """Rows with features; a row of another size fails its task with the same message (no extra job)."""
    from pyspark.sql import functions as F

    head, tail = _size_message(owner, shape)
    wrong = F.size(col) != int(np.prod(shape))
    checked = F.when(wrong, F.raise_error(F.concat(F.lit(head), F.size(col).cast("string"), F.lit(tail)))) \
        .otherwise(F.col(col))
    return df.filter(F.col(col).isNotNull()).withColumn(col, checked)


@with_accessors
class ClassificationEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable, _ClassifierParams):
    """Fit a :class:`ClassificationModel` with BigDL (see the module notes)."""

    labelCol = param("labelCol", "labels: array of 0/1 per label (multilabel) or class index (multiclass)",
                     TypeConverters.toString)
    validationIndicatorCol = param("validationIndicatorCol", "boolean column marking validation rows ('' for none)",
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
    optimizer = param("optimizer", "'adam' or 'sgd'", TypeConverters.toString)
    learningRate = param("learningRate", "initial learning rate", TypeConverters.toFloat)
    lrSchedule = param("lrSchedule", "'constant', 'inverse'; with sgd also 'poly', 'exponential'",
                       TypeConverters.toString)
    lrDecay = param("lrDecay", "decay of the schedule (inverse: rate; poly: power; exponential: factor per tenth)",
                    TypeConverters.toFloat)
    momentum = param("momentum", "SGD momentum", TypeConverters.toFloat)
    maxEpoch = param("maxEpoch", "epochs to train (counting resumed ones)", TypeConverters.toInt)
    earlyStoppingPatience = param("earlyStoppingPatience",
                                  "stop after this many epochs without a better validation AUROC (0 = never)",
                                  TypeConverters.toInt)
    maxRetries = param("maxRetries", "re-runs from the last checkpoint after a failed Spark job (needs checkpointDir)",
                       TypeConverters.toInt)
    checkpointDir = param("checkpointDir", "folder for per-epoch checkpoints; resumes from it ('' for none)",
                          TypeConverters.toString)
    summaryDir = param("summaryDir", "folder for TensorBoard train/validation summaries ('' for none)",
                       TypeConverters.toString)
    initModelPath = param("initModelPath", "BigDL model file to start from instead of a new network ('' for none)",
                          TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol="image", labelCol="label", outputCol="probability", predictionCol="prediction",
                 mode="multilabel", labelNames=None, inputShape=None, batchSize=16, validationIndicatorCol="",
                 topology="densenet121", growthRate=0, blockConfig=None, filters=None, dropout=0.0,
                 labelWeighting="chexnet", classBalancing=False, optimizer="adam", learningRate=1e-3,
                 lrSchedule="constant", lrDecay=0.0, momentum=0.9, maxEpoch=10, earlyStoppingPatience=0,
                 checkpointDir="", summaryDir="", initModelPath="", maxRetries=2):
        super().__init__()
        self._setDefault(inputCol="image", labelCol="label", outputCol="probability", predictionCol="prediction",
                         mode="multilabel", labelNames=[], inputShape=[1, 224, 224], batchSize=16,
                         validationIndicatorCol="", topology="densenet121", growthRate=0, blockConfig=[], filters=[],
                         dropout=0.0, labelWeighting="chexnet", classBalancing=False, optimizer="adam",
                         learningRate=1e-3, lrSchedule="constant", lrDecay=0.0, momentum=0.9, maxEpoch=10,
                         earlyStoppingPatience=0, checkpointDir="", summaryDir="", initModelPath="", maxRetries=2)
        self._set(**self._input_kwargs)
        self.history: list[dict] = []

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ClassificationEstimator":
        """An estimator with the Params of ``conf/tasks/<name>.yaml``, updated by ``overrides``."""
        return from_preset(cls, name, overrides)

    def _get(self, name):
        return self.getOrDefault(name)

    def _validate(self) -> None:
        from ..models.classifiers import TOPOLOGIES

        if self._get("mode") not in MODES:
            raise ConfigError(f"ClassificationEstimator: mode must be one of {MODES}, got {self._get('mode')!r}")
        n = len(self._get("labelNames"))
        if n < 1 or (self._get("mode") == "multiclass" and n < 2):
            raise ConfigError("ClassificationEstimator: labelNames needs the label names (>= 2 classes for multiclass)")
        if self._get("topology") not in TOPOLOGIES and not self._get("initModelPath"):
            raise ConfigError(f"ClassificationEstimator: unknown topology {self._get('topology')!r}; "
                              f"available: {', '.join(sorted(TOPOLOGIES))}")
        if self._get("labelWeighting") not in ("chexnet", "none"):
            raise ConfigError("ClassificationEstimator: labelWeighting must be 'chexnet' or 'none'")
        check_optim("ClassificationEstimator", self._get("optimizer"), self._get("lrSchedule"))
        for name in ("learningRate", "batchSize", "maxEpoch"):
            if self._get(name) <= 0:
                raise ConfigError(f"ClassificationEstimator: {name} must be positive, got {self._get(name)}")
        if self._get("earlyStoppingPatience") < 0:
            raise ConfigError("ClassificationEstimator: earlyStoppingPatience must be >= 0")

    # -------------------------------------------------------------- pieces ---
    def _build_network(self):
        from ..models.classifiers import TOPOLOGIES, build_topology

        path = self._get("initModelPath")
        if path:
            from bigdl.dllib.keras.models import load_model

            return load_model(path)
        name = self._get("topology")
        builder = TOPOLOGIES[name][0].__name__
        over = {}
        if builder == "densenet2d":
            if self._get("growthRate"):
                over["growth_rate"] = self._get("growthRate")
            if self._get("blockConfig"):
                over["block_config"] = tuple(self._get("blockConfig"))
        if builder == "cnn3d" and self._get("filters"):
            over["filters"] = tuple(self._get("filters"))
        if builder in ("densenet2d", "cnn3d"):
            over["dropout"] = self._get("dropout")
        return build_topology(name, len(self._get("labelNames")), self._get("inputShape"), **over)

    def _labels(self, df, label_col: str):
        """``df`` with a float ``label`` column in BigDL's form, checked."""
        from pyspark.sql import functions as F

        n = len(self._get("labelNames"))
        if self._get("mode") == "multilabel":
            lab = F.transform(F.col(label_col), lambda v: v.cast("float"))
            bad = df.filter(F.col(label_col).isNull() | (F.size(label_col) != n)).limit(1).count()
            if bad:
                raise ConfigError(f"ClassificationEstimator: every {label_col!r} must be an array of {n} 0/1 values")
        else:
            lab = (F.col(label_col).cast("float") + F.lit(1.0))  # BigDL classes are 1-based
            bad = df.filter(F.col(label_col).isNull() | (F.col(label_col) < 0) | (F.col(label_col) >= n)) \
                .limit(1).count()
            if bad:
                raise ConfigError(f"ClassificationEstimator: every {label_col!r} must be a class index in 0..{n - 1}")
        return df.withColumn("label", lab)

    def _criterion(self, train, total: int):
        from pyspark.sql import functions as F

        n = len(self._get("labelNames"))
        if self._get("mode") == "multilabel":
            sums = train.select([F.sum(F.col("label")[k]).alias(f"p{k}") for k in range(n)]).first()
            positives = [float(sums[f"p{k}"] or 0.0) for k in range(n)]
            if self._get("labelWeighting") == "chexnet":
                wp, wn = chexnet_weights(positives, total)
            else:
                wp, wn = np.ones(n, np.float32), np.ones(n, np.float32)
            return weighted_bce_loss(n, wp, wn), {"positives": positives, "pos_weights": wp.tolist(),
                                                  "neg_weights": wn.tolist()}
        from bigdl.dllib.nn.criterion import CrossEntropyCriterion

        counts = {int(r["label"]) - 1: r["count"] for r in train.groupBy("label").count().collect()}
        freq = np.array([counts.get(k, 0) for k in range(n)], dtype=np.float64)
        w = None
        if self._get("classBalancing"):
            w = np.where(freq > 0, total / (n * np.maximum(freq, 1)), 0.0).astype(np.float32)
        return CrossEntropyCriterion(w), {"class_counts": freq.tolist(),
                                          "class_weights": None if w is None else w.tolist()}

    def _training_network(self, network):
        if self._get("mode") == "multiclass":
            return network
        from bigdl.dllib.keras.layers import Activation
        from bigdl.dllib.keras.models import Sequential

        seq = Sequential()
        seq.add(network)
        seq.add(Activation("sigmoid"))
        return seq

    def _model(self, network) -> ClassificationModel:
        return ClassificationModel(network=network, inputCol=self._get("inputCol"), outputCol=self._get("outputCol"),
                                   predictionCol=self._get("predictionCol"), mode=self._get("mode"),
                                   labelNames=self._get("labelNames"), inputShape=self._get("inputShape"),
                                   batchSize=self._get("batchSize"))

    def _validation_auroc(self, network, val) -> dict:
        from pyspark.sql import functions as F

        from ..metrics.classification import auroc_per_label
        from ..metrics.evaluators import label_matrix

        scored = self._model(network).setPredictionCol("").setOutputCol("__p").transform(val)
        # numbers only; rows without an image come back unscored and do not count
        rows = scored.select("__p", "__y").filter(F.col("__p").isNotNull()).collect()
        n = len(self._get("labelNames"))
        if rows:
            per = auroc_per_label(*label_matrix([r["__p"] for r in rows], [r["__y"] for r in rows]))
        else:  # binary multiclass: one AUROC
            per = [float("nan")] * (1 if self._get("mode") == "multiclass" and n == 2 else n)
        finite = [v for v in per if np.isfinite(v)]
        return {"val_auroc": float(np.mean(finite)) if finite else float("nan"), "val_auroc_per_label": per}

    # ------------------------------------------------------------------ fit ---
    def _fit(self, df):
        return fit_with_retries("ClassificationEstimator", self._fit_once, df, self._get("checkpointDir"), self._get("maxRetries"))

    def _fit_once(self, df):
        from bigdl.dllib.nnframes import NNEstimator
        from bigdl.dllib.optim.optimizer import TrainSummary
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from ..transforms.features import ToFeatures
        from .tfevents import ScalarWriter

        self._validate()
        in_col, label_col, vcol = self._get("inputCol"), self._get("labelCol"), self._get("validationIndicatorCol")
        for c in (in_col, label_col) + ((vcol,) if vcol else ()):
            if c not in df.columns:
                raise ConfigError(f"ClassificationEstimator: column {c!r} not found; "
                                  f"the DataFrame has {sorted(df.columns)}")
        shape = list(self._get("inputShape"))
        base = self._labels(df.select(*[c for c in (in_col, label_col, vcol) if c]), label_col)
        feats = ToFeatures(inputCol=in_col, outputCol="features").transform(base) \
            .filter(F.col("features").isNotNull())
        train = feats.filter(~F.col(vcol)) if vcol else feats
        train = train.select("features", "label").persist(StorageLevel.MEMORY_AND_DISK)
        val = None
        if vcol:
            # rows without an input would score null and be skipped each epoch: left out once, counted
            val = base.filter(F.col(vcol) & F.col(in_col).isNotNull()).select(in_col, F.col(label_col).alias("__y")) \
                .persist(StorageLevel.MEMORY_AND_DISK)
        n_train = train.count()
        n_val = val.count() if val is not None else 0  # materialises the persisted validation rows once
        if n_train == 0:
            raise ConfigError("ClassificationEstimator: no training rows")
        if n_train < self._get("batchSize"):  # BigDL fails on a mini-batch larger than the data
            raise ConfigError(f"ClassificationEstimator: {n_train} training rows but batchSize "
                              f"{self._get('batchSize')}; lower batchSize or add data")
        _check_feature_size(train, "features", shape, "ClassificationEstimator")  # on the persisted rows
        if vcol:
            _check_feature_size(feats.filter(F.col(vcol)), "features", shape, "ClassificationEstimator")
        criterion, stats = self._criterion(train, n_train)
        ckdir, sumdir = self._get("checkpointDir"), self._get("summaryDir")
        got = load_checkpoint(ckdir) if ckdir else None
        # the best validation epoch's network (weights and batch-norm statistics) is kept as a saved model
        tmpdir = None if ckdir else tempfile.mkdtemp(prefix="bigdl-medimg-best-")
        best_path = os.path.join(ckdir or tmpdir, "best_model")
        best = {"epoch": 0, "val_auroc": -np.inf}
        if got:
            network, optim, state = got
            start, self.history = int(state["epoch"]), list(state.get("history", []))
            best = state.get("best", best)
        else:
            network, optim, start, self.history = self._build_network(), None, 0, []
        if optim is None:
            iters = max(1, n_train // self._get("batchSize"))
            optim = make_optim(self._get("optimizer"), self._get("learningRate"), self._get("lrSchedule"),
                               self._get("lrDecay"), self._get("momentum"), iters * self._get("maxEpoch"))
        writer = ScalarWriter(os.path.join(sumdir, "classification", "validation")) if sumdir and val else None
        patience, stale = self._get("earlyStoppingPatience"), 0
        if self.history and val is not None:
            stale = self.history[-1]["epoch"] - int(best.get("epoch", 0))
        train_net = self._training_network(network)
        for epoch in range(start + 1, self._get("maxEpoch") + 1):
            if patience and stale >= patience:
                break
            t0 = time.time()
            est = NNEstimator(train_net, criterion, shape, self._label_size()) \
                .setBatchSize(self._get("batchSize")).setOptimMethod(optim).setMaxEpoch(epoch)
            if sumdir:
                est.setTrainSummary(TrainSummary(sumdir, "classification"))
            fit_one_epoch(df, est, train, EpochProgress(
                os.path.join(sumdir, "classification", "train") if sumdir else None, epoch, self._get("maxEpoch"),
                n_train, self._get("batchSize"), [r["seconds"] for r in self.history]), strict=bool(ckdir))
            record = {"epoch": epoch, "images": n_train, "seconds": round(time.time() - t0, 1)}
            if val is not None:
                record.update(self._validation_auroc(network, val))
                if writer:
                    writer.add_scalar("AUC", record["val_auroc"], epoch)
                if record["val_auroc"] > best["val_auroc"]:
                    best, stale = {"epoch": epoch, "val_auroc": record["val_auroc"]}, 0
                    network.saveModel(best_path, over_write=True)
                else:
                    stale += 1
            record["driver_heap_mb"] = driver_heap_mb(df.sparkSession.sparkContext)
            log.info(epoch_line(record, self._get("maxEpoch")))
            if ckdir:
                save_checkpoint(ckdir, epoch, network, optim, {"history": self.history + [record], "best": best})
            self.history.append(record)
        train.unpersist()
        if val is not None:
            val.unpersist()
        last = self.history[-1]["epoch"] if self.history else 0
        if best["epoch"] and best["epoch"] != last and os.path.exists(best_path):
            from bigdl.dllib.keras.models import load_model

            network = load_model(best_path)  # the best validation epoch, not the last
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        model = self._model(network)
        model.history = list(self.history)
        model.training_stats = {**stats, "best_epoch": best.get("epoch"), "train_images": n_train,
                                "val_images": n_val}
        return model

    def _label_size(self) -> list[int]:
        return [len(self._get("labelNames"))] if self._get("mode") == "multilabel" else [1]

    latest_checkpoint = staticmethod(latest_checkpoint)


# The evaluator for these models, under its first name.
AUCEvaluator = MultiLabelAUCEvaluator
