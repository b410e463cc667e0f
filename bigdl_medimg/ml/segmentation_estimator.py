"""SegmentationEstimator: train a 3-D U-Net on Spark from image and mask columns, with BigDL or torch.

Each epoch samples fresh training patches (``PatchSampler``'s sampler and
seeds, a ``posFraction`` share centred on foreground), trains one epoch with
synchronous SGD across the executors, then, when a validation split is given,
segments the held-out volumes by sliding window and records their Dice.
``engine="bigdl"`` (default) trains each epoch with BigDL's ``NNEstimator`` on
patches sampled on the executors; ``engine="torch"`` runs the whole fit as
PyTorch DDP ranks on a Spark barrier stage, each rank re-sampling patches from
the volumes it holds (:mod:`bigdl_medimg.ml.engines.torch`).  Both run the one
loop of :func:`~bigdl_medimg.ml.training.train_epochs`: model and optimiser
state are checkpointed after every epoch, and a fit pointed at a checkpoint
folder resumes after its last complete epoch with the optimiser's state
(iteration count, Adam moments).

Loss (``loss`` Param): ``"dice_ce"`` (default) is class-weighted cross-entropy
plus soft Dice averaged over the foreground classes, as nnU-Net and MONAI's
``DiceCELoss`` train; it is written with BigDL's autograd (``CustomLoss``) on the
network's softmax output and one-hot labels, so it runs inside BigDL's
distributed optimiser like a built-in criterion.  ``"ce"`` is the weighted
cross-entropy alone (BigDL's ``TimeDistributedCriterion(CrossEntropyCriterion)``
on integer labels, a fifth of the label memory).  The torch engine computes the
same losses in torch (:func:`~bigdl_medimg.ml.engines.torch_tasks.dice_ce_loss`, tested
equal to the BigDL criterion; ``torch.nn.functional.cross_entropy`` with the
class weights).
"""
from __future__ import annotations

import logging

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..tracking import check_tracking, log_fit
from .progress import epoch_line
from .segmentation_params import SegmentationEstimatorParams
from ..transforms.sampling import augment_config
from .training import check_optim, checkpoint_folder, fit_with_retries, from_preset, latest_checkpoint, load_preset_section, train_epochs

__all__ = ["SegmentationEstimator", "dice_ce_loss", "load_preset", "volume_dice"]

log = logging.getLogger(__name__)


def load_preset(name: str) -> dict:
    """Params of a task preset in ``conf/tasks/<name>.yaml`` (``estimator`` section)."""
    return load_preset_section(name)


def volume_dice(df, pred_col: str, ref_col: str, n_classes: int) -> dict:
    """Mean Dice per foreground class over rows (computed on executors, only numbers reach the driver)."""
    from ..metrics.evaluators import DiceEvaluator

    per = DiceEvaluator(predictionCol=pred_col, labelCol=ref_col, numClasses=n_classes).per_class(df)
    per_class = [per[k] for k in range(1, n_classes)]
    finite = [v for v in per_class if np.isfinite(v)]
    return {"per_class": per_class, "mean": float(np.mean(finite)) if finite else float("nan")}


def dice_ce_loss(n_voxels: int, class_weights, smooth: float = 1.0):
    """BigDL criterion: weighted cross-entropy + (1 - mean foreground soft Dice), per sample, batch-averaged.

    Input: softmax probabilities ``(batch, voxels, classes)``; target: one-hot of
    the same shape.  Cross-entropy is the weighted mean over voxels
    ``-sum(w_y log p_y) / sum(w_y)`` (as ``torch.nn.CrossEntropyLoss(weight=w)``);
    Dice per class ``(2 sum(p t) + s) / (sum p + sum t + s)`` over a sample's voxels,
    averaged over classes 1..C-1.
    """
    from bigdl.dllib.keras import autograd as A

    w = np.asarray(class_weights, dtype=np.float32)
    n_classes = int(w.size)

    def loss(y_true, y_pred):
        p = A.clip(y_pred, 1e-7, 1.0)
        wt = y_true * A.Constant(w.reshape(1, n_classes))
        ce = A.neg(A.sum(A.sum(wt * A.log(p), axis=2), axis=1, keepDims=True)) \
            / (A.sum(A.sum(wt, axis=2), axis=1, keepDims=True) + 1e-7)
        inter = A.sum(y_pred * y_true, axis=1)  # (batch, classes)
        denom = A.sum(y_pred, axis=1) + A.sum(y_true, axis=1)
        dice = (inter * 2.0 + smooth) / (denom + (smooth + 1e-7))
        return ce + 1.0 - A.mean(dice.slice(1, 1, n_classes - 1), axis=1, keepDims=True)

    return A.CustomLoss(loss, [n_voxels, n_classes])


class SegmentationEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable,
                            SegmentationEstimatorParams):
    """Fit a :class:`~bigdl_medimg.ml.segmentation.SegmentationModel` (3-D U-Net on Spark; BigDL or torch engine)."""

    @keyword_only
    def __init__(self, *, inputCol="image", maskCol="mask", outputCol="segmentation", validationIndicatorCol="",
                 nClasses=5, classNames=None, classWeights=None, loss="dice_ce", diceSmooth=1.0,
                 patchShape=(16, 32, 32), patchesPerImage=8, posFraction=0.7, depth=2, baseFilters=8, dropout=0.0,
                 batchNorm=True, optimizer="adam", learningRate=2e-3, lrSchedule="inverse", lrDecay=1e-4, momentum=0.9,
                 batchSize=16, maxEpoch=10, overlap=0.5, checkpointDir="", summaryDir="", seed=0, maxRetries=2,
                 resume="auto", augment=None, engine="bigdl", numRanks=0, cacheMemoryMB=4096.0,
                 earlyStoppingPatience=0, trackingUri="", experimentName="bigdl-medimg"):
        super().__init__()
        self._setDefault(inputCol="image", maskCol="mask", outputCol="segmentation", validationIndicatorCol="",
                         nClasses=5, classNames=[], classWeights=[], loss="dice_ce", diceSmooth=1.0,
                         patchShape=[16, 32, 32], patchesPerImage=8, posFraction=0.7, depth=2, baseFilters=8,
                         dropout=0.0, batchNorm=True, optimizer="adam", learningRate=2e-3,
                         lrSchedule="inverse", lrDecay=1e-4, momentum=0.9, batchSize=16, maxEpoch=10, overlap=0.5,
                         checkpointDir="", summaryDir="", seed=0, maxRetries=2, resume="auto", engine="bigdl",
                         numRanks=0, cacheMemoryMB=4096.0, augment={}, earlyStoppingPatience=0,
                         trackingUri="", experimentName="bigdl-medimg")
        self._set(**self._input_kwargs)
        self.history: list[dict] = []

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SegmentationEstimator":
        """An estimator with the Params of ``conf/tasks/<name>.yaml``, updated by ``overrides``."""
        return from_preset(cls, name, overrides)

    def _get(self, name):
        return self.getOrDefault(name)

    def _validate(self) -> None:
        from ..models.network import check_engine
        from ..models.unet3d import check_patch_shape

        check_engine("SegmentationEstimator", self._get("engine"))
        if self._get("numRanks") < 0 or self._get("cacheMemoryMB") < 0:
            raise ConfigError("SegmentationEstimator: numRanks and cacheMemoryMB must be >= 0")

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
        augment_config(self._get("augment"))
        if self._get("earlyStoppingPatience") < 0:
            raise ConfigError("SegmentationEstimator: earlyStoppingPatience must be >= 0")
        if self._get("loss") not in ("dice_ce", "ce"):
            raise ConfigError(f"SegmentationEstimator: loss must be 'dice_ce' or 'ce', got {self._get('loss')!r}")
        if self._get("diceSmooth") < 0:
            raise ConfigError(f"SegmentationEstimator: diceSmooth must be >= 0, got {self._get('diceSmooth')}")
        check_optim("SegmentationEstimator", self._get("optimizer"), self._get("lrSchedule"))
        for name in ("learningRate", "batchSize", "maxEpoch", "patchesPerImage"):
            if self._get(name) <= 0:
                raise ConfigError(f"SegmentationEstimator: {name} must be positive, got {self._get(name)}")

    # -------------------------------------------------------------- pieces ---
    def _criterion(self):
        n = self._get("nClasses")
        w = self._get("classWeights")
        weights = np.asarray(w if w else [1.0] * n, dtype=np.float32)
        if self._get("loss") == "ce":
            from bigdl.dllib.nn.criterion import CrossEntropyCriterion, TimeDistributedCriterion

            return TimeDistributedCriterion(CrossEntropyCriterion(weights), size_average=True)
        return dice_ce_loss(int(np.prod(self._get("patchShape"))), weights, self._get("diceSmooth"))

    def _training_network(self, network):
        """What BigDL optimises: the U-Net itself ('ce', on scores) or U-Net + softmax ('dice_ce').

        The softmax wrapper shares the U-Net's weights, so training it trains ``network``.
        """
        if self._get("loss") == "ce":
            return network
        from bigdl.dllib.keras.layers import Activation
        from bigdl.dllib.keras.models import Sequential

        seq = Sequential()
        seq.add(network)
        seq.add(Activation("softmax"))
        return seq

    def _label_shape(self) -> list[int]:
        v = int(np.prod(self._get("patchShape")))
        return [v] if self._get("loss") == "ce" else [v, self._get("nClasses")]

    def _patches(self, df, epoch: int):
        from pyspark.sql import functions as F

        from ..transforms.features import ToFeatures
        from ..transforms.sampling import Augment, PatchSampler, epoch_seed

        sampler = PatchSampler(patchShape=self._get("patchShape"), patchesPerImage=self._get("patchesPerImage"),
                               posFraction=self._get("posFraction"), labelCol="__mask", inputCol="__image",
                               outputCol="__image", seed=epoch_seed(self._get("seed"), epoch), errorCol="__error")
        base = df.select(F.col(self._get("inputCol")).alias("__image"), F.col(self._get("maskCol")).alias("__mask"))
        p = sampler.transform(base).filter(F.col("__image").isNotNull() & F.col("__mask").isNotNull())
        if self._get("augment"):  # each patch, image and mask together, new draws every epoch
            p = Augment(seed=epoch_seed(self._get("seed"), epoch, 1), inputCol="__image", outputCol="__image",
                        maskCol="__mask", errorCol="__error", **self._get("augment")).transform(p)
        p = ToFeatures(inputCol="__image", outputCol="features").transform(p)
        p = ToFeatures(inputCol="__mask", outputCol="__labels").transform(p)
        if self._get("loss") == "ce":  # BigDL's class indices are 1-based
            return p.select("features", F.transform("__labels", lambda x: x + F.lit(1.0)).alias("label"))
        n = self._get("nClasses")  # one-hot, (voxels, classes) row-major
        one_hot = F.flatten(F.transform("__labels", lambda x: F.array(*[(x == F.lit(float(k))).cast("float")
                                                                         for k in range(n)])))
        return p.select("features", one_hot.alias("label"))

    def _model(self, network, network_spec=None):
        from .segmentation import SegmentationModel

        # the Params both share (SegmentationParams) pass on as pyspark.ml passes them: set values and defaults
        return self._copyValues(SegmentationModel(network=network, network_spec=network_spec))

    def _network_params(self) -> dict:
        """``build_network`` keywords of the U-Net (the same for both engines)."""
        return dict(depth=self._get("depth"), base_filters=self._get("baseFilters"), dropout=self._get("dropout"),
                    batch_norm=self._get("batchNorm"))

    latest_checkpoint = staticmethod(latest_checkpoint)

    # ------------------------------------------------------------------ fit ---
    def _fit(self, df):
        self._validate()
        check_tracking(self)
        for c in (self._get("inputCol"), self._get("maskCol")):
            if c not in df.columns:
                raise ConfigError(f"SegmentationEstimator: column {c!r} not found; the DataFrame has {sorted(df.columns)}")
        vcol = self._get("validationIndicatorCol")
        if vcol and vcol not in df.columns:
            raise ConfigError(f"SegmentationEstimator: validation column {vcol!r} not found")
        folder = checkpoint_folder("SegmentationEstimator", self, df,
                                   [self._get("inputCol"), self._get("maskCol"), vcol])
        return fit_with_retries("SegmentationEstimator", lambda d: self._fit_once(d, folder), df, folder,
                                self._get("maxRetries"))

    def _fit_once(self, df, folder: str):
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        vcol = self._get("validationIndicatorCol")
        # preprocessing upstream runs once, not once per epoch
        df = df.select(*[c for c in (self._get("inputCol"), self._get("maskCol"), vcol) if c]) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        # volumes without an image or a mask (unreadable files upstream) cannot train: counted, not silent
        missing = F.col(self._get("inputCol")).isNull() | F.col(self._get("maskCol")).isNull()
        tally = df.select(F.count(F.lit(1)).alias("n"), F.sum(missing.cast("int")).alias("skipped")).first()
        stats = {"volumes": int(tally["n"]), "skipped_volumes": int(tally["skipped"] or 0)}
        if stats["skipped_volumes"]:
            log.warning("SegmentationEstimator: %d of %d volume(s) have no image or no mask (unreadable upstream: "
                        "see the reader's error column) and are left out", stats["skipped_volumes"], stats["volumes"])
        spec = None
        try:
            if self._get("engine") == "torch":
                network, spec, self.history, extra = self._fit_torch(df.filter(~missing), vcol, folder)
                stats.update(extra)
            else:
                network, self.history, best = self._fit_bigdl(df.filter(~missing), vcol, folder)
                stats["best_epoch"] = best.get("epoch")
        finally:
            df.unpersist()
        model = self._model(network, spec)
        model.history = list(self.history)
        model.training_stats = stats
        log_fit(self, model, "segmentation")
        return model

    def _loop_args(self, folder: str) -> dict:
        # the network of the best validation epoch is returned, as the classifier does
        return dict(max_epoch=self._get("maxEpoch"), metric="val_dice", tag="Dice", app="segmentation",
                    checkpoint_dir=folder, summary_dir=self._get("summaryDir"),
                    patience=self._get("earlyStoppingPatience"), select_best=True)

    def _fit_bigdl(self, df, vcol: str, folder: str):
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from ..models.network import build_network
        from .engines.bigdl import BigDLEngine

        train, val = (df.filter(~F.col(vcol)), df.filter(F.col(vcol))) if vcol else (df, None)
        patch, n_classes = tuple(self._get("patchShape")), self._get("nClasses")

        def epoch_data(epoch):
            data = self._patches(train, epoch).persist(StorageLevel.MEMORY_AND_DISK)
            n = data.count()
            if n == 0:
                data.unpersist()
                raise ConfigError("SegmentationEstimator: no training patches (no rows with both image and mask)")
            if n < self._get("batchSize"):  # BigDL fails on a mini-batch larger than the data
                data.unpersist()
                raise ConfigError(f"SegmentationEstimator: {n} training patches but batchSize "
                                  f"{self._get('batchSize')}; lower batchSize or raise patchesPerImage")
            return data, n, data.unpersist

        def validate(network):
            scored = self._model(network).setEngine("bigdl").setOutputCol("__pred").transform(val)
            dice = volume_dice(scored, "__pred", self._get("maskCol"), n_classes)
            return {"val_dice": dice["mean"], "val_dice_per_class": dice["per_class"]}

        engine = BigDLEngine(
            df, build_network=lambda: build_network("unet3d", "bigdl", n_outputs=n_classes, input_shape=[1, *patch],
                                                    **self._network_params()),
            training_network=self._training_network, criterion=self._criterion(), feature_shape=[1, *patch],
            label_shape=self._label_shape(), epoch_data=epoch_data, validate=validate if val is not None else None,
            make_optim=self._bigdl_optim, epoch_lr=self._epoch_learning_rate, batch_size=self._get("batchSize"),
            max_epoch=self._get("maxEpoch"),
            count_key="patches", app="segmentation", summary_dir=self._get("summaryDir"),
            checkpoint_dir=folder)
        try:
            history, best = train_epochs(engine, report=lambda r: log.info(epoch_line(r, self._get("maxEpoch"))),
                                          **self._loop_args(folder))
        finally:
            engine.close()
        return engine.network, history, best

    def _fit_torch(self, rows, vcol: str, folder: str):
        import functools

        from pyspark.sql import functions as F

        from .engines.torch import build_torch_network, fit_on_ranks, load_state_bytes, network_spec
        from .engines.torch_tasks import SegmentationTask

        rows = rows.select(F.col(self._get("inputCol")).alias("__x"), F.col(self._get("maskCol")).alias("__y"),
                           (F.col(vcol) if vcol else F.lit(False)).alias("__val"))
        net_spec = network_spec("unet3d", self._get("nClasses"), [1, *self._get("patchShape")], self._network_params())
        spec = dict(owner="SegmentationEstimator", params={p.name: self.getOrDefault(p) for p in self.params},
                    network=net_spec,
                    count_key="patches", validating=bool(vcol),
                    epoch_line=functools.partial(epoch_line, max_epoch=self._get("maxEpoch")), **self._loop_args(folder))
        weights, info = fit_on_ranks(rows, spec, SegmentationTask, self._get("numRanks"))
        net = load_state_bytes(build_torch_network(net_spec), weights).eval()
        return net, net_spec, info["history"], {
            "best_epoch": info["best"].get("epoch"), "ranks": info["world"], "rank_weight_digests": info["digests"],
            "spilled_arrays": info["spilled"]}
