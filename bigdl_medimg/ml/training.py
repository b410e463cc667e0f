"""Pieces every estimator and engine shares: optimiser settings, retries, checkpoints, presets."""
from __future__ import annotations

import json
import logging
import os
import time

from ..errors import ConfigError

log = logging.getLogger(__name__)

SCHEDULES = {"adam": ("constant", "inverse", "poly"), "sgd": ("constant", "inverse", "poly", "exponential")}


def check_optim(owner: str, optimizer: str, schedule: str) -> None:
    """ConfigError unless ``schedule`` is available with ``optimizer``."""
    if optimizer not in SCHEDULES:
        raise ConfigError(f"{owner}: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in SCHEDULES[optimizer]:
        raise ConfigError(f"{owner}: lrSchedule {schedule!r} is not available with {optimizer} "
                          f"(adam: constant, inverse, poly; sgd: also exponential)")


def is_job_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed Spark job (an executor lost, a task failing repeatedly), not a usage error."""
    if isinstance(exc, ConfigError):
        return False
    if getattr(exc, "job_failure", False):  # engines mark their own interruptions (lost replicas)
        return True
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors.exceptions.captured import CapturedException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (Py4JJavaError, CapturedException))


def fit_with_retries(owner: str, fit_once, df, checkpoint_dir: str, max_retries: int):
    """``fit_once(df)``; when a Spark job fails (an executor killed mid-epoch) or executors were lost while an
    epoch trained (:class:`~bigdl_medimg.ml.engines.bigdl.ReplicasLost`), re-run it up to ``max_retries`` times: ``fit_once`` resumes from the
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
                        attempt, max_retries, ck.rsplit("/", 1)[-1] if ck else "the start (no checkpoint yet)")


#: Params that do not change what a fit learns (where it writes, how it retries, how torch ranks hold their rows,
#: what output columns are called).  Every other Param is part of a fit's fingerprint.
BOOKKEEPING_PARAMS = frozenset({"checkpointDir", "summaryDir", "maxRetries", "resume", "numRanks", "cacheMemoryMB",
                                "outputCol", "predictionCol", "trackingUri", "experimentName"})
#: Params a fit may be continued with other values of: more epochs, another patience (not part of the fingerprint,
#: except maxEpoch under the schedules that depend on the total: poly and exponential)
CONTINUABLE_PARAMS = frozenset({"maxEpoch", "earlyStoppingPatience"})
RESUME_MODES = ("auto", "never", "require")


def fit_fingerprint(estimator, df, columns) -> dict:
    """What makes two fits the same fit: the Params that shape training (the engine among them) and the data.

    A fit run again with a larger ``maxEpoch`` (or another patience) is the
    same fit continued, unless the learning-rate schedule depends on the total
    (``poly``, ``exponential``).

    The data part is the number of rows a fit can train on (input and target
    not null: ``columns[0]`` and ``columns[1]``) and an order-independent sum
    of a 64-bit hash of each such row's ``columns`` (image, mask or label,
    validation flag): numbers only, nothing of a patient.  It costs one pass
    over the input, so estimators take it only when they keep checkpoints.
    """
    from pyspark.sql import functions as F

    skip = BOOKKEEPING_PARAMS | CONTINUABLE_PARAMS
    if estimator.getOrDefault("lrSchedule") in ("poly", "exponential"):
        skip = skip - {"maxEpoch"}  # the schedule is spread over all epochs: another total is another fit
    params = {p.name: estimator.getOrDefault(p) for p in estimator.params
              if p.name not in skip and estimator.isDefined(p)}
    usable = df.filter(F.col(columns[0]).isNotNull() & F.col(columns[1]).isNotNull())
    row = usable.select(F.count(F.lit(1)).alias("n"),
                    F.sum(F.pmod(F.xxhash64(*[F.col(c) for c in columns]), F.lit(2 ** 31 - 1))).alias("h")).first()
    return {"params": json.loads(json.dumps(params, default=str)), "rows": int(row["n"]), "keys": int(row["h"] or 0)}


def _differences(mine: dict, other: dict) -> list[str]:
    out = [f"{k} ({other['params'].get(k)!r} there, {mine['params'].get(k)!r} here)"
           for k in sorted(set(mine["params"]) | set(other.get("params", {})))
           if mine["params"].get(k) != other.get("params", {}).get(k)]
    if mine["rows"] != other.get("rows"):
        out.append(f"training rows ({other.get('rows')} there, {mine['rows']} here)")
    elif mine["keys"] != other.get("keys"):
        out.append("the training rows' content (same count, other images, labels or validation flags)")
    return out


def fit_folder(owner: str, checkpoint_dir: str, fingerprint: dict, resume: str = "auto") -> str:
    """The checkpoint folder of one fit: ``<checkpoint_dir>/fit-<hash of its fingerprint>``.

    A fit resumes only its own checkpoints: a fit with other Params or other
    data (a changed config, another candidate or fold of a tuning run, the
    final refit) gets a folder of its own and trains from scratch; the same
    fit run again (or retried after a lost executor) resumes.  ``resume``:

    - ``"auto"``: resume this fit's newest checkpoint if there is one, else start fresh
      (other fits' checkpoints are left alone; the log says how they differ);
    - ``"never"``: start fresh, deleting this fit's earlier checkpoints;
    - ``"require"``: a :class:`~bigdl_medimg.errors.ConfigError` unless this fit has a checkpoint to resume;
      it names the folder and what differs from the fits found there.

    Returns ``""`` when ``checkpoint_dir`` is ``""`` (no checkpoints).
    """
    import hashlib

    from ..io import files

    if resume not in RESUME_MODES:
        raise ConfigError(f"{owner}: resume must be one of {RESUME_MODES}, got {resume!r}")
    if not checkpoint_dir:
        if resume == "require":
            raise ConfigError(f"{owner}: resume='require' needs a checkpointDir")
        return ""
    blob = json.dumps(fingerprint, sort_keys=True)
    name = "fit-" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    folder = files.join(checkpoint_dir, name)
    if resume == "never":
        files.remove(folder)
    if latest_checkpoint(folder) is None:
        others, names = [], files.list_names(checkpoint_dir)
        for other in names:
            meta = files.join(files.join(checkpoint_dir, other), "fit.json")
            if other.startswith("fit-") and other != name and files.is_file(meta):
                trained = latest_checkpoint(files.join(checkpoint_dir, other)) is not None
                others.append((other, _differences(fingerprint, json.loads(files.read_bytes(meta))), trained))
        legacy = [n for n in names if n.startswith("epoch_")]
        # the fit nearest to this one, among those that trained first: what a user expected to resume
        closest = min(others, key=lambda o: (len(o[1]), not o[2])) if others else None
        why = (f"; the closest fit there, {closest[0]}, differs in: {'; '.join(closest[1])}" if closest else "") + \
              (f"; {len(legacy)} checkpoint(s) of an earlier layout (epoch_NNNN directly in it) are not resumed"
               if legacy else "")
        if resume == "require":
            raise ConfigError(f"{owner}: resume='require' but {checkpoint_dir} holds no checkpoint of this fit "
                              f"({name}){why or ' (it holds no fit at all)'}")
        if why:  # a changed config must not look like a resumed run
            log.warning("%s: %s holds no checkpoint of this fit; it trains from scratch in %s%s", owner,
                        checkpoint_dir, name, why)
    if not files.is_file(files.join(folder, "fit.json")):
        files.make_dirs(folder)
        files.write_bytes(files.join(folder, "fit.json"), blob.encode())
    return folder


def checkpoint_folder(owner: str, estimator, df, columns) -> str:
    """:func:`fit_folder` of ``estimator``'s fit on ``df`` (its ``checkpointDir`` and ``resume`` Params)."""
    ck, resume = estimator.getOrDefault("checkpointDir"), estimator.getOrDefault("resume")
    return fit_folder(owner, ck, fit_fingerprint(estimator, df, [c for c in columns if c]) if ck else {}, resume)


def latest_checkpoint(folder: str) -> str | None:
    """The newest complete ``epoch_NNNN`` checkpoint in ``folder`` (a path or Hadoop URI; None when there is none)."""
    from ..io import files

    if not folder:
        return None
    done = [n for n in files.list_names(folder) if n.startswith("epoch_")
            and files.is_file(files.join(files.join(folder, n), "state.json"))]
    return files.join(folder, done[-1]) if done else None


def save_checkpoint(folder: str, epoch: int, save_fn, state: dict, keep: int = 2) -> str:
    """Write ``folder/epoch_NNNN`` whole or not at all: ``save_fn(tmp_folder)`` writes the engine's network and
    optimiser into a temporary folder, then ``state.json``, then the folder is renamed; the last ``keep``
    checkpoints are kept.

    ``folder`` is a local path or a URI of any file system pyarrow reaches (``file:``, ``hdfs://``, ``s3a://``):
    the driver (BigDL engine) and a torch rank on an executor write through the same code.
    """
    from ..io import files

    target = files.join(folder, f"epoch_{epoch:04d}")
    tmp = files.join(folder, f".epoch_{epoch:04d}.tmp")
    files.remove(tmp)
    files.make_dirs(tmp)
    save_fn(tmp)
    files.write_bytes(files.join(tmp, "state.json"), json.dumps({"epoch": epoch, **state}).encode())
    files.remove(target)
    files.move(tmp, target)
    for old in [n for n in files.list_names(folder) if n.startswith("epoch_")][:-keep]:
        files.remove(files.join(folder, old))
    return target


def read_checkpoint(folder: str) -> tuple[str, dict] | None:
    """``(checkpoint folder, state)`` of the newest checkpoint in ``folder``, or None."""
    from ..io import files

    ck = latest_checkpoint(folder)
    if ck is None:
        return None
    return ck, json.loads(files.read_bytes(files.join(ck, "state.json")))


def lr_factor(schedule: str, decay: float, iteration: int, total_iterations: int, held: int = 1) -> float:
    """The learning-rate multiplier after ``iteration`` iterations, as BigDL's schedules compute it.

    ``inverse``: 1 / (1 + decay * iteration); ``poly``: (1 - it/total)^decay;
    ``exponential``: decay^(iteration / (total/10)); ``constant``: 1.
    ``held``: the factor is held over blocks of that many iterations (the
    value at each block's first one): Adam takes ``poly`` one epoch at a time
    (see :func:`poly_held`).
    """
    iteration = iteration // max(1, held) * max(1, held)
    if schedule == "inverse":
        return 1.0 / (1.0 + decay * iteration)
    if schedule == "poly":
        total = max(1, total_iterations)
        return max(0.0, 1.0 - min(iteration, total) / total) ** decay
    if schedule == "exponential":
        return decay ** (iteration / max(1, total_iterations // 10))
    return 1.0


def poly_held(optimizer: str, schedule: str) -> bool:
    """Whether the schedule steps once per epoch instead of per iteration: Adam under ``poly``.

    BigDL's Adam has no per-iteration schedule, so the engines set its rate
    at the start of each epoch, as nnU-Net's ``PolyLRScheduler`` steps (once
    per epoch); SGD's ``poly`` is BigDL's ``Poly``, per iteration.
    """
    return optimizer == "adam" and schedule == "poly"


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


# ------------------------------------------------------------------ the loop ---
class EpochEngine:
    """What the training loop needs of an engine (BigDL on the driver, or torch inside a rank).

    ``validating`` says whether :meth:`validate` has rows to score.
    """

    validating = False

    def build(self) -> None:
        """Create a fresh network and optimiser."""
        raise NotImplementedError

    def load(self, checkpoint: str, state: dict) -> None:
        """Restore the network and optimiser from a checkpoint folder."""
        raise NotImplementedError

    def fit_epoch(self, epoch: int, history: list[dict]) -> dict:
        """Train one epoch; the history record's counts (``patches`` or ``images``)."""
        raise NotImplementedError

    def validate(self) -> dict:
        """Score the validation rows with the current network: the record's metric entries."""
        raise NotImplementedError

    def save(self, folder: str) -> None:
        """Write the network and optimiser into ``folder`` (a checkpoint being written)."""
        raise NotImplementedError

    def keep_best(self) -> None:
        """Remember the current network as the best one so far."""
        raise NotImplementedError

    def restore_best(self) -> None:
        """Make the remembered best network the current one."""
        raise NotImplementedError

    def extras(self) -> dict:
        """More entries for an epoch's record (driver heap, ...)."""
        return {}


def train_epochs(engine: EpochEngine, *, max_epoch: int, metric: str, tag: str, checkpoint_dir: str = "",
                 summary_dir: str = "", app: str = "", patience: int = 0, select_best: bool = False,
                 writer: bool = True, report=None) -> tuple[list[dict], dict]:
    """Train ``engine`` epoch by epoch: the one loop of every estimator and engine.

    Resumes after the newest complete checkpoint in ``checkpoint_dir`` (network,
    optimiser, history and best epoch); each epoch trains, then scores the
    validation rows (``metric``, larger is better, also written as TensorBoard
    scalar ``tag`` under ``<summary_dir>/<app>/validation``), writes a
    checkpoint and a history record.  ``patience`` > 0 stops after that many
    epochs without a better validation score; ``select_best`` returns the best
    validation epoch's network rather than the last.  ``writer`` is False on
    the ranks that must not write files (all but rank 0 of a torch fit).
    ``report(record)`` is told each finished epoch.

    Returns
    -------
    (history, best) : list of dict, dict
        ``best`` is ``{"epoch": e, metric: value}`` (epoch 0 when nothing was validated).
    """
    from .tfevents import ScalarWriter

    best = {"epoch": 0, metric: float("-inf")}
    got = read_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if got:
        ck, state = got
        engine.load(ck, state)
        start, history = int(state["epoch"]), list(state.get("history", []))
        best = state.get("best", best)
        log.info("resuming from %s (epoch %d)", ck, start)
    else:
        engine.build()
        start, history = 0, []
    validating = engine.validating
    scalars = ScalarWriter(os.path.join(summary_dir, app, "validation")) \
        if summary_dir and validating and writer else None
    stale = history[-1]["epoch"] - int(best.get("epoch", 0)) if history and validating else 0
    for epoch in range(start + 1, int(max_epoch) + 1):
        if patience and stale >= patience:
            break
        t0 = time.time()
        record = {"epoch": epoch, **engine.fit_epoch(epoch, history)}
        record["seconds"] = round(time.time() - t0, 1)
        if validating:
            record.update(engine.validate())
            if scalars:
                scalars.add_scalar(tag, record[metric], epoch)
            if record[metric] > best[metric]:
                best, stale = {"epoch": epoch, metric: record[metric]}, 0
                if select_best:
                    engine.keep_best()
            else:
                stale += 1
        record.update(engine.extras())
        if report is not None:
            report(record)
        if checkpoint_dir and writer:
            save_checkpoint(checkpoint_dir, epoch, engine.save, {"history": history + [record], "best": best})
        history.append(record)
    last = history[-1]["epoch"] if history else 0
    if select_best and best.get("epoch") and best["epoch"] != last:
        engine.restore_best()  # the best validation epoch, not the last
    return history, best
