"""Pieces the BigDL estimators share: optimisers, per-epoch fits, checkpoints with resume."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

SCHEDULES = {"adam": ("constant", "inverse"), "sgd": ("constant", "inverse", "poly", "exponential")}


def check_optim(owner: str, optimizer: str, schedule: str) -> None:
    """ConfigError unless ``schedule`` is available with ``optimizer``."""
    if optimizer not in SCHEDULES:
        raise ConfigError(f"{owner}: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in SCHEDULES[optimizer]:
        raise ConfigError(f"{owner}: lrSchedule {schedule!r} is not available with {optimizer} "
                          f"(adam: constant, inverse; sgd: also poly, exponential; poly needs sgd)")


def make_optim(optimizer: str, lr: float, schedule: str, decay: float, momentum: float, total_iterations: int):
    """A BigDL OptimMethod.

    ``inverse``: lr / (1 + decay * iteration); ``poly``: lr (1 - it/total)^decay;
    ``exponential``: lr * decay^(iteration / iterations-per-tenth of the run).
    """
    from bigdl.dllib.optim.optimizer import SGD, Adam, Exponential, Poly

    if optimizer == "adam":
        return Adam(learningrate=lr, learningrate_decay=decay if schedule == "inverse" else 0.0)
    sched = None
    if schedule == "poly":
        sched = Poly(decay, max(1, total_iterations))
    elif schedule == "exponential":
        sched = Exponential(max(1, total_iterations // 10), decay)
    kwargs = {"leaningrate_schedule": sched} if sched is not None else {}
    return SGD(learningrate=lr, learningrate_decay=decay if schedule == "inverse" else 0.0,
               momentum=momentum, dampening=0.0, nesterov=momentum > 0, **kwargs)


class ReplicasLost(RuntimeError):
    """Executors were lost while BigDL trained an epoch and Spark re-ran their tasks elsewhere.

    BigDL rebuilds a lost replica (its slice of the weights and of the
    optimiser state) from the values the fit started with, so the epoch
    finishes with part of the model rolled back: with checkpoints the
    estimator re-runs the epoch from the last one.
    """


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
    import contextlib

    sc = df.sparkSession.sparkContext
    before = set(sc._jsc.getPersistentRDDs().keySet())
    alive = _executors(sc)
    with progress if progress is not None else contextlib.nullcontext():
        estimator.fit(data)
    for rdd_id, rdd in dict(sc._jsc.getPersistentRDDs()).items():
        if rdd_id not in before:  # otherwise the driver heap grows by the training set every epoch
            rdd.unpersist(False)
    sc._jvm.System.gc()
    lost = sorted(alive - _executors(sc))
    if lost:
        text = (f"{len(lost)} executor(s) lost while BigDL trained ({', '.join(lost)}); Spark re-ran their tasks, "
                f"which rebuilds those replicas from the weights and optimiser state the epoch started with")
        if strict:
            raise ReplicasLost(text)
        log.warning("%s: the epoch's result mixes them with the trained ones (set a checkpoint folder to have "
                    "the epoch re-run instead)", text)


def is_job_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed Spark job (an executor lost, a task failing repeatedly), not a usage error."""
    if isinstance(exc, ConfigError):
        return False
    if isinstance(exc, ReplicasLost):
        return True
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors.exceptions.captured import CapturedException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (Py4JJavaError, CapturedException))


def fit_with_retries(owner: str, fit_once, df, checkpoint_dir: str, max_retries: int):
    """``fit_once(df)``; when a Spark job fails (an executor killed mid-epoch) or executors were lost while an
    epoch trained (:class:`ReplicasLost`), re-run it up to ``max_retries`` times: ``fit_once`` resumes from the
    newest checkpoint in ``checkpoint_dir``.

    What a retry loses: the iterations of the interrupted epoch (the epoch is
    re-run from the checkpoint written after the previous one).  What it keeps:
    the network weights, the optimiser's state (learning-rate schedule position
    and Adam moments, saved with each checkpoint) and the training history.
    Without ``checkpoint_dir`` there is nothing to resume from and the failure
    is raised.
    """
    attempt = 0
    while True:
        try:
            return fit_once(df)
        except Exception as exc:
            if not checkpoint_dir or attempt >= max_retries or not is_job_failure(exc):
                raise
            attempt += 1
            ck = latest_checkpoint(checkpoint_dir)
            first = " ".join(str(exc).split())[:300]
            log.warning("%s: training was interrupted (%s); retry %d of %d resumes from %s", owner, first,
                        attempt, max_retries, ck.name if ck else "the start (no checkpoint yet)")


def driver_heap_mb(sc) -> int:
    rt = sc._jvm.java.lang.Runtime.getRuntime()
    return int((rt.totalMemory() - rt.freeMemory()) / 2 ** 20)


def latest_checkpoint(folder: str) -> Path | None:
    """The newest complete ``epoch_NNNN`` checkpoint in ``folder`` (None when there is none)."""
    if not folder or not os.path.isdir(folder):
        return None
    done = sorted(p for p in Path(folder).glob("epoch_*") if (p / "state.json").is_file())
    return done[-1] if done else None


def save_checkpoint(folder: str, epoch: int, network, optim, state: dict, keep: int = 2) -> Path:
    """Write ``epoch_NNNN`` (network, optimiser, ``state.json``) atomically; keep the last ``keep``."""
    target = Path(folder) / f"epoch_{epoch:04d}"
    tmp = Path(folder) / f".epoch_{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    network.saveModel(str(tmp / "model"), over_write=True)
    optim.save(str(tmp / "optim"), True)
    (tmp / "state.json").write_text(json.dumps({"epoch": epoch, **state}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # a checkpoint exists whole or not at all
    for old in sorted(Path(folder).glob("epoch_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(folder: str):
    """``(network, optim, state)`` of the newest checkpoint in ``folder``, or None."""
    from bigdl.dllib.keras.models import load_model
    from bigdl.dllib.optim.optimizer import OptimMethod

    ck = latest_checkpoint(folder)
    if ck is None:
        return None
    state = json.loads((ck / "state.json").read_text())
    network = load_model(str(ck / "model"))
    optim = OptimMethod(OptimMethod.load(str(ck / "optim")), "float")
    log.info("resuming from %s (epoch %d)", ck, state["epoch"])
    return network, optim, state


def load_preset_section(name: str, section: str = "estimator") -> dict:
    """A section of ``conf/tasks/<name>.yaml``."""
    import yaml

    from ..session import conf_dir

    path = conf_dir() / "tasks" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (conf_dir() / "tasks").glob("*.yaml"))
        raise ConfigError(f"unknown task preset {name!r}; available: {', '.join(names)}")
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get(section, {}) or {})


def from_preset(cls, name: str, overrides: dict):
    params = load_preset_section(name)
    params.update(overrides)
    unknown = [k for k in params if not cls().hasParam(k)]
    if unknown:
        raise ConfigError(f"preset {name!r}: unknown Params {unknown}")
    return cls(**params)
