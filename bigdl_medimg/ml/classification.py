"""Image classification on Spark, BigDL or torch engine: ClassificationEstimator and ClassificationModel.

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
(synchronous SGD on the executors) or, with ``engine="torch"``, as PyTorch DDP
ranks on a Spark barrier stage; both engines run the one loop of
:func:`~bigdl_medimg.ml.training.train_epochs`: after each epoch the validation rows are
scored and AUROC per label recorded, the best epoch's weights kept, and
training stops early after ``earlyStoppingPatience`` epochs without
improvement.  Checkpoints and TensorBoard summaries work as in
:class:`~bigdl_medimg.ml.SegmentationEstimator`.

``topology`` and ``optimizer`` are Params, so ``ParamGridBuilder`` with
``TrainValidationSplit`` / ``CrossValidator`` and :class:`AUCEvaluator`
selects among them, each candidate trained by BigDL on the cluster.
"""
from __future__ import annotations

from typing import Self

import logging

import numpy as np
import pandas as pd  # module level: pandas_udf resolves the type hints in this namespace
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..console import counter
from ..errors import ConfigError
from ..metrics.evaluators import MultiLabelAUCEvaluator
from ..params import param
from ._persist import NetworkModelPersistence
from .classification_params import ClassificationEstimatorParams, ClassifierParams
from ..tracking import check_tracking, log_fit
from .progress import epoch_line
from ..transforms.sampling import augment_config
from .training import check_optim, checkpoint_folder, fit_with_retries, from_preset, latest_checkpoint, train_epochs

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


class ClassificationModel(NetworkModelPersistence, Model, ClassifierParams):
    """Scores images with a BigDL or torch network: probabilities, predictions and optional per-label columns.

    ``thresholds`` (multilabel, one per label or one for all) turn
    probabilities into 0/1 predictions; ``labelColumns`` adds one
    ``<outputCol>_<label>`` column per label.
    """

    thresholds = param("thresholds", "decision threshold per label (or one for all); multilabel",
                       TypeConverters.toListFloat)
    labelColumns = param("labelColumns", "also write one probability column per label", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, network=None, network_spec=None, inputCol="image", outputCol="probability",
                 predictionCol="prediction", mode="multilabel", labelNames=None, inputShape=None, batchSize=16,
                 thresholds=None, labelColumns=False, engine="bigdl"):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="probability", predictionCol="prediction", mode="multilabel",
                         labelNames=[], batchSize=16, thresholds=[0.5], labelColumns=False, engine="bigdl")
        kwargs = dict(self._input_kwargs)
        self._network = kwargs.pop("network", None)
        self._network_spec = kwargs.pop("network_spec", None)
        self._set(**kwargs)

    @classmethod
    def from_bigdl_file(cls, path: str, **params) -> "ClassificationModel":
        """Wrap a saved BigDL model (``saveModel`` / Keras-API file) for inference."""
        from bigdl.dllib.keras.models import load_model

        return cls(network=load_model(path), **params)

    def _validate(self) -> None:
        from ..models.network import check_engine

        if self._network is None:
            raise ConfigError("ClassificationModel has no network; train it with ClassificationEstimator or load it")
        check_engine("ClassificationModel", self.getOrDefault("engine"))
        if self.getOrDefault("engine") == "torch" and not self._network_spec:
            raise ConfigError("ClassificationModel: a torch network needs its network_spec (topology and Params)")
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
        from pyspark.sql import functions as F

        self._validate()
        in_col = self.getOrDefault("inputCol")
        if in_col not in df.columns:
            raise ConfigError(f"ClassificationModel: column {in_col!r} not found; the DataFrame has {sorted(df.columns)}")
        names = list(self.getOrDefault("labelNames"))
        mode, out_col, pred_col = self.getOrDefault("mode"), self.getOrDefault("outputCol"), \
            self.getOrDefault("predictionCol")
        th = np.asarray(self.getOrDefault("thresholds"), dtype=np.float64)
        th = np.repeat(th, len(names)) if th.size == 1 else th
        scored = self._score_torch(df) if self.getOrDefault("engine") == "torch" else self._score_bigdl(df)
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

    def _score_bigdl(self, df):
        """``df`` with the probability column: BigDL's NNModel in the executors' JVMs."""
        from bigdl.dllib.nnframes import NNModel
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..transforms.features import ToFeatures

        in_col, out_col, mode = self.getOrDefault("inputCol"), self.getOrDefault("outputCol"), \
            self.getOrDefault("mode")
        shape = list(self.getOrDefault("inputShape"))
        feats = "__features"
        x = ToFeatures(inputCol=in_col, outputCol=feats).transform(df)
        # one pass over the input: rows without an image (a reader's error rows) are scored on a dummy all-zero
        # input and get a null output, so nothing vanishes and the upstream stages run once (no filter + union)
        x = x.withColumn("__has", F.col(feats).isNotNull()).withColumn(
            feats, F.coalesce(F.col(feats), F.array_repeat(F.lit(0.0).cast("float"), int(np.prod(shape)))))
        x = _sized_features(x, feats, shape, "ClassificationModel")
        nn = NNModel(self._network, shape).setFeaturesCol(feats).setPredictionCol("__scores") \
            .setBatchSize(self.getOrDefault("batchSize"))
        scored = nn.transform(x).drop(feats)
        scored = scored.withColumn("__scores", F.when(F.col("__has"), F.col("__scores"))).drop("__has")

        done = counter("classified")  # a prediction's progress display, when one runs

        @F.pandas_udf(T.ArrayType(T.DoubleType()))
        def probs(scores: pd.Series) -> pd.Series:
            if done is not None:
                done.add(len(scores))
            return pd.Series([None if s is None else _probabilities(np.asarray(s, np.float64), mode).tolist()
                              for s in scores])

        return scored.withColumn(out_col, probs("__scores")).drop("__scores")

    def _score_torch(self, df):
        """``df`` with the probability column: batches scored in the Python workers, the network cached per worker."""
        from pyspark.sql import types as T

        from ..arrow import arrow_schema, read_tensor, replace_columns
        from .engines.torch import cached_network, state_bytes, weights_digest

        in_col, out_col, mode = self.getOrDefault("inputCol"), self.getOrDefault("outputCol"), \
            self.getOrDefault("mode")
        shape = tuple(self.getOrDefault("inputShape"))
        head, tail = _size_message("ClassificationModel", shape)
        schema = T.StructType([f for f in df.schema.fields if f.name != out_col]
                              + [T.StructField(out_col, T.ArrayType(T.DoubleType()), True)])
        a_schema = arrow_schema(schema)
        shipped = df.sparkSession.sparkContext.broadcast(
            (self._network_spec, state_bytes(self._network), weights_digest(self._network)))
        done = counter("classified")

        def run(batches):
            import pyarrow as pa
            import torch

            net = cached_network(*shipped.value)
            for b in batches:
                col = b.column(b.schema.get_field_index(in_col))
                rows, xs = [], []
                for i in range(b.num_rows):
                    t = read_tensor(col, i)
                    if t is None:  # rows without an image pass through with a null probability
                        continue
                    if t[0].size != int(np.prod(shape)):
                        raise ConfigError(f"{head}{t[0].size}{tail}")
                    rows.append(i)
                    xs.append(np.asarray(t[0], np.float32).reshape(shape))
                out = [None] * b.num_rows
                if xs:
                    with torch.no_grad():
                        logits = net(torch.from_numpy(np.stack(xs))).numpy().astype(np.float64)
                    for i, s in zip(rows, logits):
                        out[i] = _probabilities(s, mode).tolist()
                if done is not None:
                    done.add(b.num_rows)
                yield replace_columns(b, a_schema, {out_col: pa.array(out, pa.list_(pa.float64()))})

        return df.mapInArrow(run, schema)

    def setThresholds(self, value: list[float]) -> Self:
        """Set :py:attr:`thresholds`: decision threshold per label (or one for all); multilabel."""
        return self._set(thresholds=value)

    def getThresholds(self) -> list[float]:
        """The value of :py:attr:`thresholds` (set or default): decision threshold per label (or one for all);
        multilabel.
        """
        return self.getOrDefault(self.thresholds)

    def setLabelColumns(self, value: bool) -> Self:
        """Set :py:attr:`labelColumns`: also write one probability column per label."""
        return self._set(labelColumns=value)

    def getLabelColumns(self) -> bool:
        """The value of :py:attr:`labelColumns` (set or default): also write one probability column per label."""
        return self.getOrDefault(self.labelColumns)


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
    """``df`` with its features checked: a row of another size fails its task with the same message (no extra
    job).  Rows without features are left out."""
    from pyspark.sql import functions as F

    head, tail = _size_message(owner, shape)
    wrong = F.size(col) != int(np.prod(shape))
    checked = F.when(wrong, F.raise_error(F.concat(F.lit(head), F.size(col).cast("string"), F.lit(tail)))) \
        .otherwise(F.col(col))
    return df.filter(F.col(col).isNotNull()).withColumn(col, checked)


class ClassificationEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable, ClassificationEstimatorParams):
    """Fit a :class:`ClassificationModel` with BigDL or torch (see the module notes)."""

    @keyword_only
    def __init__(self, *, inputCol="image", labelCol="label", outputCol="probability", predictionCol="prediction",
                 mode="multilabel", labelNames=None, inputShape=None, batchSize=16, validationIndicatorCol="",
                 topology="densenet121", growthRate=0, blockConfig=None, filters=None, dropout=0.0,
                 labelWeighting="chexnet", classBalancing=False, optimizer="adam", learningRate=1e-3,
                 lrSchedule="constant", lrDecay=0.0, momentum=0.9, maxEpoch=10, earlyStoppingPatience=0,
                 checkpointDir="", summaryDir="", initModelPath="", maxRetries=2, resume="auto", engine="bigdl",
                 numRanks=0, cacheMemoryMB=4096.0, augment=None, seed=0, trackingUri="",
                 experimentName="bigdl-medimg"):
        super().__init__()
        self._setDefault(inputCol="image", labelCol="label", outputCol="probability", predictionCol="prediction",
                         mode="multilabel", labelNames=[], inputShape=[1, 224, 224], batchSize=16,
                         validationIndicatorCol="", topology="densenet121", growthRate=0, blockConfig=[], filters=[],
                         dropout=0.0, labelWeighting="chexnet", classBalancing=False, optimizer="adam",
                         learningRate=1e-3, lrSchedule="constant", lrDecay=0.0, momentum=0.9, maxEpoch=10,
                         earlyStoppingPatience=0, checkpointDir="", summaryDir="", initModelPath="", maxRetries=2,
                         resume="auto", engine="bigdl", numRanks=0, cacheMemoryMB=4096.0, augment={}, seed=0,
                         trackingUri="", experimentName="bigdl-medimg")
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
        from ..models.network import check_engine

        check_engine("ClassificationEstimator", self._get("engine"))
        if self._get("engine") == "torch" and self._get("initModelPath"):
            raise ConfigError("ClassificationEstimator: initModelPath is a BigDL model file; it needs engine='bigdl'")
        if self._get("numRanks") < 0 or self._get("cacheMemoryMB") < 0:
            raise ConfigError("ClassificationEstimator: numRanks and cacheMemoryMB must be >= 0")
        if self._get("mode") not in MODES:
            raise ConfigError(f"ClassificationEstimator: mode must be one of {MODES}, got {self._get('mode')!r}")
        n = len(self._get("labelNames"))
        if n < 1 or (self._get("mode") == "multiclass" and n < 2):
            raise ConfigError("ClassificationEstimator: labelNames needs the label names (>= 2 classes for multiclass)")
        augment_config(self._augment_settings())
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
    def _network_params(self) -> dict:
        """``build_network`` keywords beyond the topology's own (the same for both engines)."""
        from ..models.classifiers import TOPOLOGIES

        builder = TOPOLOGIES[self._get("topology")][0].__name__
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
        return over

    def _build_network(self):
        from ..models.network import build_network

        path = self._get("initModelPath")
        if path:
            from bigdl.dllib.keras.models import load_model

            return load_model(path)
        return build_network(self._get("topology"), "bigdl", n_outputs=len(self._get("labelNames")),
                             input_shape=self._get("inputShape"), **self._network_params())

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

    def _loss_weights(self, train, total: int) -> dict:
        """The loss's weights from the training rows' ``label`` column (BigDL's form), for either engine."""
        from pyspark.sql import functions as F

        n = len(self._get("labelNames"))
        if self._get("mode") == "multilabel":
            sums = train.select([F.sum(F.col("label")[k]).alias(f"p{k}") for k in range(n)]).first()
            positives = [float(sums[f"p{k}"] or 0.0) for k in range(n)]
            if self._get("labelWeighting") == "chexnet":
                wp, wn = chexnet_weights(positives, total)
            else:
                wp, wn = np.ones(n, np.float32), np.ones(n, np.float32)
            return {"positives": positives, "pos_weights": wp.tolist(), "neg_weights": wn.tolist()}
        counts = {int(r["label"]) - 1: r["count"] for r in train.groupBy("label").count().collect()}
        freq = np.array([counts.get(k, 0) for k in range(n)], dtype=np.float64)
        w = None
        if self._get("classBalancing"):
            w = np.where(freq > 0, total / (n * np.maximum(freq, 1)), 0.0).astype(np.float32)
        return {"class_counts": freq.tolist(), "class_weights": None if w is None else w.tolist()}

    def _criterion(self, weights: dict):
        """The BigDL criterion of :meth:`_loss_weights`' weights."""
        n = len(self._get("labelNames"))
        if self._get("mode") == "multilabel":
            return weighted_bce_loss(n, weights["pos_weights"], weights["neg_weights"])
        from bigdl.dllib.nn.criterion import CrossEntropyCriterion

        w = weights["class_weights"]
        return CrossEntropyCriterion(None if w is None else np.asarray(w, np.float32))

    def _training_network(self, network):
        if self._get("mode") == "multiclass":
            return network
        from bigdl.dllib.keras.layers import Activation
        from bigdl.dllib.keras.models import Sequential

        seq = Sequential()
        seq.add(network)
        seq.add(Activation("sigmoid"))
        return seq

    def _model(self, network, network_spec=None) -> ClassificationModel:
        # the Params both share (ClassifierParams) pass on as pyspark.ml passes them: set values and defaults
        return self._copyValues(ClassificationModel(network=network, network_spec=network_spec))

    def _validation_auroc(self, network, val) -> dict:
        from pyspark.sql import functions as F

        from ..metrics.classification import validation_auroc

        scored = self._model(network).setEngine("bigdl").setPredictionCol("").setOutputCol("__p").transform(val)
        # numbers only; rows without an image come back unscored and do not count
        rows = scored.select("__p", "__y").filter(F.col("__p").isNotNull()).collect()
        return validation_auroc([r["__p"] for r in rows], [r["__y"] for r in rows], self._get("mode"),
                                len(self._get("labelNames")))

    # ------------------------------------------------------------------ fit ---
    def _fit(self, df):
        self._validate()
        check_tracking(self)
        in_col, label_col, vcol = self._get("inputCol"), self._get("labelCol"), self._get("validationIndicatorCol")
        for c in (in_col, label_col) + ((vcol,) if vcol else ()):
            if c not in df.columns:
                raise ConfigError(f"ClassificationEstimator: column {c!r} not found; "
                                  f"the DataFrame has {sorted(df.columns)}")
        folder = checkpoint_folder("ClassificationEstimator", self, df, [in_col, label_col, vcol])
        return fit_with_retries("ClassificationEstimator", lambda d: self._fit_once(d, folder), df, folder,
                                self._get("maxRetries"))

    def _loop_args(self, folder: str) -> dict:
        return dict(max_epoch=self._get("maxEpoch"), metric="val_auroc", tag="AUC", app="classification",
                    checkpoint_dir=folder, summary_dir=self._get("summaryDir"),
                    patience=self._get("earlyStoppingPatience"), select_best=True)

    def _check_rows(self, n_train: int) -> None:
        if n_train == 0:
            raise ConfigError("ClassificationEstimator: no training rows")
        if n_train < self._get("batchSize"):  # BigDL fails on a mini-batch larger than the data
            raise ConfigError(f"ClassificationEstimator: {n_train} training rows but batchSize "
                              f"{self._get('batchSize')}; lower batchSize or add data")

    def _fit_once(self, df, folder: str):
        in_col, label_col, vcol = self._get("inputCol"), self._get("labelCol"), self._get("validationIndicatorCol")
        base = self._labels(df.select(*[c for c in (in_col, label_col, vcol) if c]), label_col)
        fit = self._fit_torch if self._get("engine") == "torch" else self._fit_bigdl
        network, spec, self.history, best, stats = fit(base, folder)
        model = self._model(network, spec)
        model.history = list(self.history)
        model.training_stats = {**stats, "best_epoch": best.get("epoch")}
        log_fit(self, model, "classification")
        return model

    def _fit_bigdl(self, base, folder: str):
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from ..transforms.features import ToFeatures
        from .engines.bigdl import BigDLEngine

        in_col, label_col, vcol = self._get("inputCol"), self._get("labelCol"), self._get("validationIndicatorCol")
        shape = list(self._get("inputShape"))
        feats = ToFeatures(inputCol=in_col, outputCol="features").transform(base) \
            .filter(F.col("features").isNotNull())
        if self._get("augment"):  # the images are kept; each epoch augments and flattens them afresh
            images, epoch_data = self._augmented_epochs(base)
            kept, train = images, ToFeatures(inputCol=in_col, outputCol="features").transform(images) \
                .filter(F.col("features").isNotNull()).select("features", "label")  # counts and label weights
        else:  # the same flattened rows every epoch
            train = (feats.filter(~F.col(vcol)) if vcol else feats).select("features", "label")
            kept = train = train.persist(StorageLevel.MEMORY_AND_DISK)
            epoch_data = lambda epoch: (train, n_train, lambda: None)  # noqa: E731
        val = None
        if vcol:
            # rows without an input would score null and be skipped each epoch: left out once, counted
            val = base.filter(F.col(vcol) & F.col(in_col).isNotNull()).select(in_col, F.col(label_col).alias("__y")) \
                .persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n_train = train.count()
            n_val = val.count() if val is not None else 0  # materialises the persisted validation rows once
            self._check_rows(n_train)
            _check_feature_size(train, "features", shape, "ClassificationEstimator")  # on the persisted rows
            if vcol:
                _check_feature_size(feats.filter(F.col(vcol)), "features", shape, "ClassificationEstimator")
            weights = self._loss_weights(train, n_train)
            engine = BigDLEngine(
                base, build_network=self._build_network, training_network=self._training_network,
                criterion=self._criterion(weights), feature_shape=shape, label_shape=self._label_size(),
                epoch_data=epoch_data,
                validate=(lambda net: self._validation_auroc(net, val)) if val is not None else None,
                make_optim=self._bigdl_optim, epoch_lr=self._epoch_learning_rate,
                batch_size=self._get("batchSize"), max_epoch=self._get("maxEpoch"), count_key="images",
                app="classification", summary_dir=self._get("summaryDir"), checkpoint_dir=folder)
            try:
                history, best = train_epochs(engine, report=lambda r: log.info(epoch_line(r, self._get("maxEpoch"))),
                                             **self._loop_args(folder))
            finally:
                engine.close()
        finally:
            kept.unpersist()
            if val is not None:
                val.unpersist()
        return engine.network, None, history, best, {**weights, "train_images": n_train, "val_images": n_val}

    def _augment_settings(self) -> dict:
        """The ``augment`` Param with ``spatialDims`` from ``inputShape`` (channels first) unless it says."""
        aug = dict(self._get("augment"))
        return {"spatialDims": len(self._get("inputShape")) - 1, **aug} if aug else {}

    def _augmented_epochs(self, base):
        """``(images, epoch_data)`` of a BigDL fit with ``augment``: the training images, cached (the upstream
        runs once), and ``epoch_data(epoch)``, which augments them afresh on the executors (seed and epoch),
        flattens them and caches them for that epoch only."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from ..transforms.features import ToFeatures
        from ..transforms.sampling import Augment, epoch_seed

        in_col, vcol = self._get("inputCol"), self._get("validationIndicatorCol")
        images = base.filter(F.col(in_col).isNotNull() & (~F.col(vcol) if vcol else F.lit(True))) \
            .select(in_col, "label").persist(StorageLevel.MEMORY_AND_DISK)

        def epoch_data(epoch):
            aug = Augment(seed=epoch_seed(self._get("seed"), epoch, 1), inputCol=in_col, outputCol=in_col,
                          errorCol="__aug_error", **self._augment_settings()).transform(images)
            data = ToFeatures(inputCol=in_col, outputCol="features").transform(aug) \
                .filter(F.col("features").isNotNull()).select("features", "label") \
                .persist(StorageLevel.MEMORY_AND_DISK)
            return data, data.count(), data.unpersist

        return images, epoch_data

    def _fit_torch(self, base, folder: str):
        import functools

        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from .engines.torch import build_torch_network, fit_on_ranks, load_state_bytes, network_spec
        from .engines.torch_tasks import ClassificationTask

        in_col, label_col, vcol = self._get("inputCol"), self._get("labelCol"), self._get("validationIndicatorCol")
        is_val = F.col(vcol) if vcol else F.lit(False)
        rows = base.filter(F.col(in_col).isNotNull()).select(
            F.col(in_col).alias("__x"), F.col(label_col).alias("__y"), is_val.alias("__val"), "label") \
            .persist(StorageLevel.MEMORY_AND_DISK)  # the upstream decode runs once; the ranks read these rows
        try:
            tally = rows.select(F.sum((~F.col("__val")).cast("int")).alias("t"),
                                F.sum(F.col("__val").cast("int")).alias("v")).first()
            n_train, n_val = int(tally["t"] or 0), int(tally["v"] or 0)
            self._check_rows(n_train)
            weights = self._loss_weights(rows.filter(~F.col("__val")), n_train)
            net_spec = network_spec(self._get("topology"), len(self._get("labelNames")), self._get("inputShape"),
                                    self._network_params())
            spec = dict(owner="ClassificationEstimator", params={p.name: self.getOrDefault(p) for p in self.params},
                        network=net_spec, loss_weights=weights, count_key="images", validating=n_val > 0,
                        augment=self._augment_settings(),
                        epoch_line=functools.partial(epoch_line, max_epoch=self._get("maxEpoch")), **self._loop_args(folder))
            weights_bytes, info = fit_on_ranks(rows.drop("label"), spec, ClassificationTask, self._get("numRanks"))
        finally:
            rows.unpersist()
        net = load_state_bytes(build_torch_network(net_spec), weights_bytes).eval()
        return net, net_spec, info["history"], info["best"], {
            **weights, "train_images": n_train, "val_images": n_val, "ranks": info["world"],
            "rank_weight_digests": info["digests"], "spilled_arrays": info["spilled"]}

    def _label_size(self) -> list[int]:
        return [len(self._get("labelNames"))] if self._get("mode") == "multilabel" else [1]

    latest_checkpoint = staticmethod(latest_checkpoint)


# The evaluator for these models, under its first name.
AUCEvaluator = MultiLabelAUCEvaluator
