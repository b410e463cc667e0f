"""The BigDL engine: each epoch is one ``NNEstimator`` fit (BigDL's synchronous distributed optimiser).

The loop (:func:`~bigdl_medimg.ml.training.train_epochs`) runs on the driver;
:class:`BigDLEngine` trains an epoch by handing the epoch's feature DataFrame
to ``NNEstimator`` with the same optimiser object, so Adam state and the
iteration count carry on, and frees the training-set cache BigDL keeps per fit.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading

try:  # pip cannot install BigDL's wheels with ours (they pin pyspark 3.1.3): say the command that does
    import bigdl.dllib  # noqa: F401
except ImportError:
    from ...errors import ConfigError
    from ...version import bigdl_install_command

    raise ConfigError(f"the BigDL engine needs BigDL: {bigdl_install_command()} completes the install "
                      "(or use engine='torch')") from None

from ...io import files
from ..progress import EpochProgress
from ..training import EpochEngine

__all__ = ["BigDLEngine", "ReplicasLost", "fit_one_epoch", "make_optim", "driver_heap_mb", "bigdl_path"]

log = logging.getLogger(__name__)


#: Names BigDL gives the RDDs it caches for one fit (FeatureSet.scala, DistriOptimizer.scala): after an epoch's
#: fit these, and only these, are released, so the DataFrames other fits have cached (parallel tuning) stay.
BIGDL_RDD_NAMES = ("cached feature set", "Thread Model RDD")

# One BigDL epoch at a time per driver: BigDL's optimiser uses every executor core for each iteration, and
# two at once would compete for the same replicas.  Parallel tuning still runs the rest of each fit (data
# preparation, validation, checkpoints) concurrently; the torch engine needs no lock (Spark schedules a
# barrier stage only when all of its tasks can start).
_EPOCH_LOCK = threading.Lock()


def bigdl_path(uri: str) -> str:
    """A checkpoint path as BigDL's file utilities take it: a plain local path for local files and ``file:``
    URIs (BigDL opens anything without an ``hdfs://`` / ``s3a://`` prefix as a local file), the URI otherwise."""
    return files.local_path(uri) or str(uri)


def make_optim(optimizer: str, lr: float, schedule: str, decay: float, momentum: float, total_iterations: int):
    """A BigDL OptimMethod with the schedule :func:`~bigdl_medimg.ml.training.lr_factor` describes."""
    from bigdl.dllib.optim.optimizer import SGD, Adam, Exponential, Poly

    if optimizer == "adam":  # under poly the engine sets its rate every epoch (set_learning_rate)
        return Adam(learningrate=lr, learningrate_decay=decay if schedule == "inverse" else 0.0)
    sched = None
    if schedule == "poly":
        sched = Poly(decay, max(1, total_iterations))
    elif schedule == "exponential":
        sched = Exponential(max(1, total_iterations // 10), decay)
    kwargs = {"leaningrate_schedule": sched} if sched is not None else {}
    return SGD(learningrate=lr, learningrate_decay=decay if schedule == "inverse" else 0.0,
               momentum=momentum, dampening=0.0, nesterov=momentum > 0, **kwargs)


def set_learning_rate(optim, lr: float) -> None:
    """Set the learning rate of a BigDL Adam or SGD (Scala ``var learningRate``) for the iterations to come."""
    getattr(optim.value, "learningRate_$eq")(float(lr))


class ReplicasLost(RuntimeError):
    """Executors were lost while BigDL trained an epoch and Spark re-ran their tasks elsewhere.

    BigDL rebuilds a lost replica (its slice of the weights and of the
    optimiser state) from the values the fit started with, so the epoch
    finishes with part of the model rolled back: with checkpoints the
    estimator re-runs the epoch from the last one.
    """

    job_failure = True


def _executors(sc) -> set[str]:
    """``host:port`` of the application's live block managers (the driver's included)."""
    return {f"{e.host()}:{e.port()}" for e in sc._jsc.sc().statusTracker().getExecutorInfos()}


def fit_one_epoch(df, estimator, data, progress=None, strict: bool = True) -> None:
    """``estimator.fit(data)`` (a BigDL NNEstimator), then release the training-set cache BigDL keeps per fit.

    ``progress``: an :class:`~bigdl_medimg.ml.progress.EpochProgress` to run
    while BigDL trains (it logs iteration, loss, throughput and time left).

    An executor lost during the fit does not always fail BigDL's job: Spark
    may re-run the lost tasks on another executor, where BigDL rebuilds the
    replica from the fit's starting weights.  ``strict`` (the estimators pass
    "checkpoints are kept") raises :class:`ReplicasLost` then, so the epoch is
    re-run from the last checkpoint; otherwise a warning is logged.
    """
    sc = df.sparkSession.sparkContext
    with _EPOCH_LOCK:
        before = set(sc._jsc.getPersistentRDDs().keySet())
        alive = _executors(sc)
        with progress if progress is not None else contextlib.nullcontext():
            estimator.fit(data)
        for rdd_id, rdd in dict(sc._jsc.getPersistentRDDs()).items():
            # BigDL's caches of this fit: otherwise the driver heap grows by the training set every epoch
            if rdd_id not in before and any(n in str(rdd.name() or "") for n in BIGDL_RDD_NAMES):
                rdd.unpersist(False)
        lost = sorted(alive - _executors(sc))
    sc._jvm.System.gc()
    if lost:
        text = (f"{len(lost)} executor(s) lost while BigDL trained ({', '.join(lost)}); Spark re-ran their tasks, "
                f"which rebuilds those replicas from the weights and optimiser state the epoch started with")
        if strict:
            raise ReplicasLost(text)
        log.warning("%s: the epoch's result mixes them with the trained ones (set a checkpoint folder to have "
                    "the epoch re-run instead)", text)


def driver_heap_mb(sc) -> int:
    rt = sc._jvm.java.lang.Runtime.getRuntime()
    return int((rt.totalMemory() - rt.freeMemory()) / 2 ** 20)


class BigDLEngine(EpochEngine):
    """One BigDL network trained epoch by epoch on the driver's Spark session.

    Parameters
    ----------
    df : DataFrame
        The fit's input (its session runs the jobs).
    build_network : callable
        ``() -> BigDL model`` (a fresh network).
    training_network : callable
        ``network -> what BigDL optimises`` (the network with its output activation; shares the weights).
    criterion : BigDL criterion
    feature_shape, label_shape : list of int
    epoch_data : callable
        ``epoch -> (features DataFrame, rows, release)``: the epoch's training rows
        (``features``, ``label``) and a function that frees them.
    validate : callable or None
        ``network -> record entries`` (``None``: no validation rows).
    make_optim : callable
        ``iterations_per_epoch -> OptimMethod``.
    epoch_lr : callable or None
        ``(epoch, iterations_per_epoch) -> learning rate or None``: a rate to
        set at the start of each epoch (Adam under ``poly``).
    batch_size, max_epoch : int
    count_key : str
        The record's name for the epoch's training rows (``patches``, ``images``).
    app, summary_dir, checkpoint_dir : str
        TensorBoard app name and folders ('' for none).
    """

    def __init__(self, df, *, build_network, training_network, criterion, feature_shape, label_shape, epoch_data,
                 validate, make_optim, batch_size: int, max_epoch: int, count_key: str, app: str, summary_dir: str = "",
                 checkpoint_dir: str = "", epoch_lr=None):
        self.df, self._build, self._wrap, self.criterion = df, build_network, training_network, criterion
        self.feature_shape, self.label_shape = list(feature_shape), list(label_shape)
        self._epoch_data, self._validate, self._make_optim, self._epoch_lr = epoch_data, validate, make_optim, epoch_lr
        self.batch_size, self.max_epoch, self.app, self.count_key = int(batch_size), int(max_epoch), app, count_key
        self.summary_dir, self.checkpoint_dir = summary_dir, checkpoint_dir
        self.validating = validate is not None
        self.network = self.optim = None
        self._train_net = self._summary = None
        # the best validation epoch's network (weights and batch-norm statistics) is kept as a saved model
        self._tmp = None if checkpoint_dir else tempfile.mkdtemp(prefix="bigdl-medimg-best-")
        self.best_path = files.join(checkpoint_dir or self._tmp, "best_model")

    # ------------------------------------------------------------ EpochEngine ---
    def build(self) -> None:
        self.network, self.optim, self._train_net = self._build(), None, None

    def load(self, checkpoint: str, state: dict) -> None:
        from bigdl.dllib.keras.models import load_model
        from bigdl.dllib.optim.optimizer import OptimMethod

        self.network = load_model(bigdl_path(files.join(checkpoint, "model")))
        self.optim = OptimMethod(OptimMethod.load(bigdl_path(files.join(checkpoint, "optim"))), "float")
        self._train_net = None

    def fit_epoch(self, epoch: int, history: list[dict]) -> dict:
        from bigdl.dllib.nnframes import NNEstimator

        data, n, release = self._epoch_data(epoch)
        try:
            if self.optim is None:
                self.optim = self._make_optim(max(1, n // self.batch_size))
            lr = self._epoch_lr(epoch, max(1, n // self.batch_size)) if self._epoch_lr else None
            if lr is not None:
                set_learning_rate(self.optim, lr)
            if self._train_net is None:
                self._train_net = self._wrap(self.network)
            est = NNEstimator(self._train_net, self.criterion, self.feature_shape, self.label_shape) \
                .setBatchSize(self.batch_size).setOptimMethod(self.optim).setMaxEpoch(epoch)
            if self.summary_dir:
                est.setTrainSummary(self._train_summary())
            train_dir = os.path.join(self.summary_dir, self.app, "train") if self.summary_dir else None
            fit_one_epoch(self.df, est, data, EpochProgress(train_dir, epoch, self.max_epoch, n, self.batch_size,
                                                           [r["seconds"] for r in history]),
                          strict=bool(self.checkpoint_dir))
        finally:
            release()
        return {self.count_key: n}

    def _train_summary(self):
        """The fit's one ``TrainSummary``, made at its first epoch and given to every epoch's estimator.

        BigDL names a summary's event file by the second the summary is made
        and truncates a file of that name, so a summary per epoch lost the
        records of an epoch that began in the same second as the next.
        """
        from bigdl.dllib.optim.optimizer import SeveralIteration, TrainSummary

        if self._summary is None:
            self._summary = TrainSummary(self.summary_dir, self.app)
            self._summary.set_summary_trigger("LearningRate", SeveralIteration(1))  # as the torch engine writes it
        return self._summary

    def validate(self) -> dict:
        return self._validate(self.network)

    def save(self, folder: str) -> None:
        self.network.saveModel(bigdl_path(files.join(folder, "model")), over_write=True)
        self.optim.save(bigdl_path(files.join(folder, "optim")), True)

    def keep_best(self) -> None:
        self.network.saveModel(bigdl_path(self.best_path), over_write=True)

    def restore_best(self) -> None:
        from bigdl.dllib.keras.models import load_model

        if files.exists(self.best_path):
            self.network = load_model(bigdl_path(self.best_path))

    def extras(self) -> dict:
        return {"driver_heap_mb": driver_heap_mb(self.df.sparkSession.sparkContext)}

    def close(self) -> None:
        """Flush and close the training summary (BigDL writes it from a thread of its own, once a second, and
        never closes it), and remove the temporary best-model folder (fits without a checkpoint folder)."""
        if self._summary is not None:
            self._summary.value.close()
            self._summary = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
