"""What the three tasks share: configuration, splits, the saved task folder, progress output."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["TASK_NAMES", "task_config", "assign_split", "save_task", "load_task", "as_uri", "write_json",
           "score_split", "tally_outputs"]

TASK_NAMES = ("knee_cartilage", "meniscus_tear", "chest_xray14")

#: Defaults merged under every preset (a preset or --config may override them).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "split": {"val": 0.1, "test": 0.2, "seed": 0},
}


def _merge(base: dict, extra: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def task_config(task: str, config: str | None = None, overrides: Mapping | None = None) -> dict:
    """The preset ``conf/tasks/<task>.yaml`` with ``config`` (a YAML file of the same shape) and ``overrides`` on top."""
    import yaml

    from ..session import conf_dir

    if task not in TASK_NAMES:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    cfg = _merge(_DEFAULTS, yaml.safe_load((conf_dir() / "tasks" / f"{task}.yaml").read_text()) or {})
    if config:
        if not os.path.isfile(config):
            raise ConfigError(f"--config {config}: no such file")
        extra = yaml.safe_load(Path(config).read_text()) or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"--config {config}: expected a YAML mapping of sections")
        if extra.get("task", task) != task:
            raise ConfigError(f"--config {config} is for task {extra['task']!r}, not {task!r}")
        cfg = _merge(cfg, extra)
    cfg = _merge(cfg, overrides or {})
    cfg["task"] = task
    return cfg


def assign_split(df, key: str, split: Mapping):
    """Add ``split`` (``train``/``val``/``test``) from a hash of ``key``: stable across runs and machines."""
    from pyspark.sql import functions as F

    val, test = float(split.get("val", 0.1)), float(split.get("test", 0.2))
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} must be in [0, 1) and leave training data")
    u = (F.abs(F.xxhash64(F.col(key).cast("string"), F.lit(int(split.get("seed", 0))))) % 10000) / 10000.0
    return df.withColumn("split", F.when(u < test, "test").when(u < test + val, "val").otherwise("train"))


def as_uri(path: str) -> str:
    """A local path as a ``file://`` URI; URIs (``hdfs://``, ``s3a://``, ``file:``) unchanged."""
    from ..io.hfs import to_uri

    return to_uri(path)


def write_json(path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=float))


def save_task(model_dir: str, task: str, cfg: dict, extra: Mapping | None = None) -> None:
    """``<model_dir>/task.json``: what ``evaluate`` and ``predict`` need to use the saved pipeline.

    Where the fit was tracked (``trackingUri``, ``experimentName``) is left
    out: it says nothing about how to use the model, and a URI may name a
    private server.
    """
    est = {k: v for k, v in (cfg.get("estimator") or {}).items() if k not in ("trackingUri", "experimentName")}
    write_json(Path(model_dir) / "task.json", {"task": task, "config": {**cfg, "estimator": est}, **(extra or {})})


def load_task(model_dir: str) -> dict:
    path = Path(model_dir) / "task.json"
    if not path.is_file():
        raise ConfigError(f"{model_dir} is not a model folder written by `bigdl-medimg train` (no task.json)")
    return json.loads(path.read_text())


def score_split(model_dir: str, df, split: str):
    """The saved pipeline applied to one split of ``df`` (``"all"`` for every row), cached for several uses."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    if split != "all":
        df = df.filter(F.col("split") == split)
    return PipelineModel.load(str(Path(model_dir) / "pipeline")).transform(df).cache()


def tally_outputs(table) -> dict:
    """Written / failed counts and the five commonest errors of an export's per-row table (``error`` column)."""
    errors = table["error"].dropna()
    return {"written": int(len(table) - len(errors)), "failed": int(len(errors)),
            "errors": errors.value_counts().head(5).to_dict()}


def check_pacs_evaluation(split: str, labels: str | None, what: str) -> None:
    """``evaluate`` on a ``dicomweb:`` source: every matched series or image is evaluated (``split`` must be
    ``"all"``) against references in ``labels`` (``what`` says which kind)."""
    if split != "all":
        raise ConfigError(f"--split {split}: a dicomweb: source has no splits (its query chooses the cases); "
                          "use --split all")
    if not labels:
        raise ConfigError(f"evaluating images from a PACS needs --labels: {what}")


def labelled_pacs_cases(df, label_col: str, labels: str, unit: str):
    """``(rows with a reference, counts)`` of a PACS evaluation: rows without a reference are not scored but
    counted, apart: ``unlabelled`` (readable, no reference in ``labels``) and ``unlabelled_unreadable`` (an
    error row without a reference: an instance that is no image of the task, such as an SR stored beside it,
    or one that cannot be read). Both are logged; the counts go into ``metrics.json``."""
    import logging

    from pyspark.sql import functions as F

    df = df.cache()
    # one job for both counts
    row = df.filter(F.col(label_col).isNull()).agg(
        F.count(F.when(F.col("error").isNull(), 1)).alias("unlabelled"),
        F.count(F.when(F.col("error").isNotNull(), 1)).alias("unlabelled_unreadable")).first()
    counts = {"unlabelled": int(row["unlabelled"]), "unlabelled_unreadable": int(row["unlabelled_unreadable"])}
    if any(counts.values()):
        logging.getLogger(__name__).warning(
            "%d %s from the PACS have no reference in %s and %d more are unreadable or not images of this task "
            "(and have none): not scored", counts["unlabelled"], unit, labels, counts["unlabelled_unreadable"])
    return df.filter(F.col(label_col).isNotNull()).withColumn("split", F.lit("all")), counts
