"""Experiment tracking with MLflow (optional: ``pip install 'bigdl-medimg[mlflow]'``, which ``make`` installs).

Estimators with a ``trackingUri`` (and the command line with ``--mlflow
URI``) log each fit: its Params, one value per epoch of the training loss,
the validation Dice or AUROC and samples/s, the training stats, and the
fitted model saved as a ``PipelineModel`` (an artifact folder: our stages are
Python stages, which ``mlflow.spark``'s MLeap/Spark flavours do not cover).
``evaluate`` adds the test metrics and the HTML report to the training run.

With no URI nothing is logged and MLflow is never imported.  ``file:`` URIs
give a local store that needs no server; ``http://`` URIs reach an
``mlflow server``.

Nothing of a patient is logged: Params and stats are settings and counts,
metric names are fixed, artifacts are models, reports and metric tables
(the test suite scans them like every other output).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from .errors import ConfigError

__all__ = ["require_mlflow", "check_tracking", "tracked_run", "flatten", "log_params", "log_history", "log_stats", "log_fit",
           "epoch_metrics", "DEFAULT_EXPERIMENT"]

DEFAULT_EXPERIMENT = "bigdl-medimg"


def require_mlflow():
    """The ``mlflow`` module, or a ConfigError that says how to install it."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("experiment tracking needs MLflow: pip install 'bigdl-medimg[mlflow]' "
                          "(`make venv` installs it)") from None
    from .console import is_verbose

    if not is_verbose():  # "Creating a new experiment", "View run ... at": the console says what we log
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    return mlflow


@contextlib.contextmanager
def tracked_run(uri: str, experiment: str = DEFAULT_EXPERIMENT, *, run_id: str | None = None,
                run_name: str | None = None) -> Iterator:
    """An MLflow run on ``uri``: a new one, ``run_id`` resumed, or a child of the active run.

    A fit inside a run the command line started (the meniscus task fits two
    models) becomes a nested run of it.  The run ends as FAILED when the
    block raises.
    """
    mlflow = require_mlflow()
    mlflow.set_tracking_uri(uri)
    active = mlflow.active_run()
    if run_id is None and active is None:
        mlflow.set_experiment(experiment or DEFAULT_EXPERIMENT)
    nested = active is not None and run_id is None
    run = mlflow.start_run(run_id=run_id, run_name=run_name, nested=nested)
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()


def _param_value(v) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    return text[:6000]  # MLflow's limit on a param value


def flatten(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(a.b.c, leaf)`` for every leaf of nested mappings (an empty mapping is a leaf)."""
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            yield from flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def log_params(params: Mapping, prefix: str = "") -> None:
    """Flat Params (nested mappings as ``a.b``), values as text."""
    import mlflow

    items = [(k, _param_value(v)) for k, v in flatten(params, prefix)]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
        mlflow.log_params(dict(items[i:i + 100]))


def epoch_metrics(history: list[dict], losses: list[tuple] | None = None,
                  batch_size: int | None = None) -> list[tuple[int, dict]]:
    """``[(epoch, {metric: value})]`` from a fit's history records and its per-iteration losses.

    The epoch's loss is the mean over its iterations (``losses`` are the
    TensorBoard ``Loss`` points, ``(iteration, value, wall time)``; an epoch's
    iterations follow from its sample count and the batch size);
    ``samples_per_s`` is samples over the epoch's seconds.
    """
    out = []
    first = 1
    for rec in history:
        m: dict = {}
        n = rec.get("patches", rec.get("images"))
        if n is not None and rec.get("seconds"):
            m["samples_per_s"] = float(n) / float(rec["seconds"])
        if rec.get("seconds") is not None:
            m["epoch_seconds"] = float(rec["seconds"])
        for key in ("val_dice", "val_auroc", "driver_heap_mb"):
            if rec.get(key) is not None and math.isfinite(float(rec[key])):
                m[key] = float(rec[key])
        per_class = rec.get("val_dice_per_class") or {}
        for name, v in (per_class.items() if isinstance(per_class, dict) else enumerate(per_class)):
            if v is not None and math.isfinite(float(v)):
                m[f"val_dice_{name}"] = float(v)
        if losses and n is not None and batch_size:
            last = first + -(-int(n) // int(batch_size)) - 1
            vals = [p[1] for p in losses if first <= p[0] <= last]
            if vals:
                m["loss"] = sum(vals) / len(vals)
            first = last + 1
        out.append((int(rec["epoch"]), m))
    return out


def log_history(history: list[dict], summary_train_dir: str | None = None, batch_size: int | None = None) -> None:
    """Per-epoch metrics (step = epoch) from a fit's history and, when kept, its TensorBoard losses."""
    import mlflow

    losses = None
    if summary_train_dir and Path(summary_train_dir).is_dir():
        from .ml.tfevents import read_scalars

        losses = read_scalars(summary_train_dir).get("Loss")
    for epoch, metrics in epoch_metrics(history, losses, batch_size):
        if metrics:
            mlflow.log_metrics(metrics, step=epoch)


def log_stats(stats: Mapping, name: str = "training_stats.json") -> None:
    """The stats as a JSON artifact, their numbers also as metrics."""
    import mlflow

    mlflow.log_dict(json.loads(json.dumps(dict(stats), default=str)), name)
    nums = {k: float(v) for k, v in stats.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    if nums:
        mlflow.log_metrics(nums)


def log_fit(estimator, model, app: str) -> str | None:
    """Log a finished fit when the estimator has a ``trackingUri``; returns the run id (None: not tracked).

    ``app`` is the summary sub-folder of the estimator (``segmentation`` or
    ``classification``), where the per-iteration losses are.
    """
    uri = estimator.getOrDefault("trackingUri")
    if not uri:
        return None
    from pyspark.ml import PipelineModel

    from .ml.training import BOOKKEEPING_PARAMS

    params = {p.name: estimator.getOrDefault(p) for p in estimator.params
              if estimator.isDefined(p) and p.name not in ("trackingUri", "experimentName")}
    summary = estimator.getOrDefault("summaryDir")
    with tracked_run(uri, estimator.getOrDefault("experimentName"),
                     run_name=f"{type(estimator).__name__}") as run:
        import mlflow

        log_params(params)
        mlflow.set_tags({"engine": estimator.getOrDefault("engine"), "estimator": type(estimator).__name__,
                         "bookkeeping_params": ",".join(sorted(BOOKKEEPING_PARAMS & set(params)))})
        log_history(list(model.history), str(Path(summary) / app / "train") if summary else None,
                    estimator.getOrDefault("batchSize"))
        log_stats(model.training_stats)
        with tempfile.TemporaryDirectory(prefix="bigdl-medimg-mlflow-") as tmp:
            PipelineModel(stages=[model]).save(str(Path(tmp) / "model"))
            mlflow.log_artifacts(str(Path(tmp) / "model"), "model")
    model.training_stats = {**model.training_stats, "mlflow_run_id": run.info.run_id}
    return run.info.run_id


def check_tracking(estimator) -> None:
    """Before a fit: MLflow must be importable when the estimator has a ``trackingUri`` (not after hours of training)."""
    if estimator.getOrDefault("trackingUri"):
        require_mlflow()
