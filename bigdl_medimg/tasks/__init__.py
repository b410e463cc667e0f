"""The three tasks end to end (``bigdl-medimg train / evaluate / predict``): data layout, preprocessing,
training with BigDL, a saved ``PipelineModel`` plus ``task.json``, evaluation results and clinical outputs."""
from __future__ import annotations

from .common import TASK_NAMES, load_task, task_config

__all__ = ["TASK_NAMES", "task_config", "load_task", "train", "evaluate", "predict"]


def _module(task: str):
    from ..errors import ConfigError

    if task not in TASK_NAMES:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    from . import chest, knee, meniscus

    return {"knee_cartilage": knee, "meniscus_tear": meniscus, "chest_xray14": chest}[task]


def train(spark, task: str, data: str, out: str, cfg: dict, **kwargs) -> dict:
    """Train ``task`` on ``data``; the model lands in ``<out>/model`` (``kwargs``: ``seg_model`` for meniscus_tear)."""
    return _module(task).train(spark, data, out, cfg, **kwargs)


def evaluate(spark, model_dir: str, data: str, out: str, **kwargs) -> dict:
    """Score a split of ``data`` with a saved model; ``<out>/results`` feeds ``bigdl-medimg report``."""
    return _module(load_task(model_dir)["task"]).evaluate(spark, model_dir, data, out, **kwargs)


#: What a prediction's progress counts per task: the counter its final model adds to, and the unit.
_PREDICTED = {"knee_cartilage": ("segmented", "volumes"), "meniscus_tear": ("classified", "volumes"),
              "chest_xray14": ("classified", "images")}


def predict(spark, model_dir: str, data: str, out: str, **kwargs) -> dict:
    """Apply a saved model to new images and write the task's outputs under ``out``."""
    from ..console import track_job

    task = load_task(model_dir)["task"]
    count, unit = _PREDICTED[task]
    # the total is not known before the images are read (series are assembled on the executors)
    with track_job(spark, "predict", None, unit, count=count, errors="errors"):
        return _module(task).predict(spark, model_dir, data, out, **kwargs)
