"""Task ``meniscus_tear``: segment the knee, crop around the menisci, classify tear vs none in 3-D.

Data: a labelled knee folder (``synth --kind knee``: ``nifti/`` image/mask pairs,
``dicom/case_NNNN/`` series, ``labels.csv`` with ``tear``).  Stage 1 is a
``knee_cartilage`` model (``--seg-model``, or trained first on the same
training split).  The classifier is trained as it is served: its training and
validation windows are cut around stage 1's *predicted* menisci, by the same
stages the saved ``PipelineModel`` runs (stage-1 pipeline ->
``CropAroundLabel`` on the predicted mask -> ``ClassificationModel``), on
DICOM series or NIfTI images end to end.  A case where stage 1 finds no
meniscus gets no window and no probability; it is counted (``train.json``,
``metrics.json``, ``predict.json``), never scored from an empty window.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import ConfigError
from . import knee
from .common import assign_split, load_task, save_task, score_split, tally_outputs, task_config, write_json

__all__ = ["load", "labelled_series", "roi_stage", "served_windows", "window_counts", "train", "evaluate", "predict"]

LABELS = ["tear"]

log = logging.getLogger(__name__)


def load(spark, data: str, cfg: dict):
    from ..io import hfs

    if not hfs.exists(spark, hfs.join(hfs.to_uri(data), "labels.csv")):
        raise ConfigError(f"{data}: no labels.csv (case,tear) next to nifti/; meniscus_tear needs tear labels")
    return knee.load(spark, data, cfg)


def roi_stage(cfg: dict, mask_col: str = "segmentation", found: str = "meniscus_found", input_col: str = "model_input"):
    """The ``CropAroundLabel`` of the preset's ``roi`` section: the classifier's window around the menisci.

    The window's mask goes to ``roi_mask``, so ``mask_col`` (stage 1's whole
    segmentation, written as DICOM SEG) stays as it was.

    ``roi.missing: error`` (the preset) gives a case without a meniscus in the
    mask no window and a row error, so it is counted, never scored from an
    empty window.
    """
    from ..transforms import CropAroundLabel

    roi = cfg["roi"]
    return CropAroundLabel(labels=roi["labels"], size=roi["size"], maskImage=roi.get("maskImage", False),
                           closing=roi.get("closing", 0), missing=roi.get("missing", "center"), inputCol=input_col,
                           maskCol=mask_col, maskOutputCol="roi_mask", outputCol="roi", foundCol=found)


def served_windows(stage1: list, cfg: dict, df, input_col: str = "model_input"):
    """Stage 1 (``stage1``: the segmentation pipeline's stages) and the ROI crop on ``df``, exactly as the saved
    pipeline runs them: the classifier trains and validates on the windows it is served.

    Returns ``(stages, frame)``: the stages to put before the classifier, and
    ``df`` through them, cached (``roi``, ``meniscus_found``, ``error``).
    """
    from pyspark.ml import PipelineModel

    stages = list(stage1) + [roi_stage(cfg, "segmentation", "meniscus_found", input_col)]
    return stages, PipelineModel(stages=stages).transform(df).cache()


def window_counts(windows) -> dict:
    """Cases with a window, and cases without one by reason: no meniscus found by stage 1, or an unreadable input."""
    from pyspark.sql import functions as F

    reason = F.when(F.col("roi").isNotNull(), F.lit("window")) \
        .when(F.col("meniscus_found") == F.lit(False), F.lit("no_meniscus")).otherwise(F.lit("unreadable"))
    rows = windows.select(reason.alias("r")).groupBy("r").count().collect()
    got = {r["r"]: r["count"] for r in rows}
    return {"with_window": got.get("window", 0), "no_meniscus": got.get("no_meniscus", 0),
            "unreadable": got.get("unreadable", 0)}


def check_stage1_split(spark, data: str, cfg: dict, seg_model: str, seg_info: dict) -> None:
    """Refuse a ``--seg-model`` that trained on any of this run's test cases (patient leakage); warn when that
    cannot be checked (a model trained on other data, or saved before ``task.json`` named its data)."""
    from ..datasets.synth import synth_knee_labels
    from ..io import hfs

    seg_data, seg_split = seg_info.get("data"), (seg_info.get("config") or {}).get("split")
    here = hfs.to_uri(data)
    if seg_data != here or not seg_split:
        log.warning("meniscus_tear: --seg-model %s was trained on %s, this run uses %s: whether its training "
                    "cases overlap this run's test cases cannot be checked (test scores may be inflated)",
                    seg_model, seg_data or "data it does not name", here)
        return
    cases = synth_knee_labels(spark, hfs.join(here, "labels.csv")).select("case")
    both = assign_split(cases, "case", seg_split).withColumnRenamed("split", "stage1") \
        .join(assign_split(cases, "case", cfg["split"]), "case")
    leaked = both.filter("stage1 = 'train' AND split = 'test'").count()
    if leaked:
        raise ConfigError(f"--seg-model {seg_model}: {leaked} of this run's test cases were training cases of that "
                          f"segmentation model (its split {seg_split} differs from this run's {cfg['split']}), so the "
                          "test scores would be inflated; leave --seg-model out (stage 1 then trains on this run's "
                          "split) or give both the same split")


def train(spark, data: str, out: str, cfg: dict, seg_model: str | None = None) -> dict:
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from ..ml import ClassificationEstimator

    out_p = Path(out)
    t0 = time.time()
    given = seg_model is not None
    if not given:  # stage 1 first, on the same cases' training split
        # stage 1 trains on the engine asked for (--engine), unless the segmentation section names one
        engine = {"engine": cfg["estimator"]["engine"]} if "engine" in (cfg.get("estimator") or {}) else {}
        stage1 = {**engine, **dict(cfg.get("segmentation", {}))}
        knee_cfg = task_config("knee_cartilage", overrides={"split": cfg["split"], "estimator": stage1})
        seg_model = knee.train(spark, data, str(out_p / "segmentation"), knee_cfg)["model"]
    seg_info = load_task(seg_model)
    if seg_info["task"] != "knee_cartilage":
        raise ConfigError(f"--seg-model {seg_model} is a {seg_info['task']} model, not knee_cartilage")
    if given:  # a stage 1 trained here used this run's split: no leakage to look for
        check_stage1_split(spark, data, cfg, seg_model, seg_info)
    seg_pipeline = PipelineModel.load(str(Path(seg_model) / "pipeline"))
    df = load(spark, data, cfg).filter(F.col("split") != "test").withColumn("is_val", F.col("split") == "val")
    # the classifier's training and validation windows come from stage 1's predicted masks, as at inference
    stages, windows = served_windows(seg_pipeline.stages, cfg, df)
    try:
        counts = window_counts(windows)
        if counts["no_meniscus"] or counts["unreadable"]:
            log.warning("meniscus_tear: %d training/validation case(s) had no window to classify (%d without a "
                        "meniscus in stage 1's mask, %d unreadable) and were left out", counts["no_meniscus"] +
                        counts["unreadable"], counts["no_meniscus"], counts["unreadable"])
        est = ClassificationEstimator(**cfg["estimator"], inputCol="roi", labelCol="tear",
                                      validationIndicatorCol="is_val", checkpointDir=str(out_p / "checkpoints"),
                                      summaryDir=str(out_p / "summaries"))
        clf = est.fit(windows.select("roi", "tear", "is_val").repartition(spark.sparkContext.defaultParallelism))
    finally:
        windows.unpersist()
    pipeline = PipelineModel(stages=stages + [clf])
    pipeline.write().overwrite().save(str(out_p / "model" / "pipeline"))
    save_task(str(out_p / "model"), "meniscus_tear", cfg, {"segmentation_model": str(seg_model)})
    best = clf.training_stats.get("best_epoch")
    chosen = next((r for r in clf.history if r["epoch"] == best), {})
    summary = {"task": "meniscus_tear", "model": str(out_p / "model"), "segmentation_model": str(seg_model),
               "epochs": len(clf.history), "best_epoch": best, "fit_seconds": round(time.time() - t0, 1),
               "val_auroc": chosen.get("val_auroc"), "windows": "stage-1 predicted masks",
               "train_cases": clf.training_stats["train_images"], "val_cases": clf.training_stats["val_images"],
               "no_meniscus_cases": counts["no_meniscus"], "unreadable_cases": counts["unreadable"],
               "history": clf.history}
    write_json(out_p / "train.json", summary)
    return summary


def labelled_series(spark, data: str):
    """The DICOM series of a labelled knee folder (``dicom/case_NNNN/``, as ``synth --kind knee`` writes), with
    ``case`` (the series' folder) and the ``tear`` labels of ``labels.csv``."""
    from pyspark.sql import functions as F

    from ..datasets.synth import synth_knee_labels
    from ..io import hfs
    from ..io.readers import read_dicom_series

    root = hfs.to_uri(data)
    series = read_dicom_series(spark, hfs.join(root, "dicom"))
    case = F.regexp_extract(F.col("path")[0], r"(case_\d+)/[^/]+$", 1)
    return series.withColumn("case", case).join(synth_knee_labels(spark, hfs.join(root, "labels.csv")), "case")


def _labelled_volumes(spark, data: str, cfg: dict, kind: str | None):
    """The labelled cases as DICOM series (when the folder has ``dicom/``) or NIfTI images, with ``split``."""
    from ..io import hfs

    if kind in (None, "series") and hfs.is_dir(spark, hfs.join(hfs.to_uri(data), "dicom")):
        return assign_split(labelled_series(spark, data), "case", cfg["split"])
    return load(spark, data, cfg)


def evaluate(spark, model_dir: str, data: str, out: str, split: str = "test", kind: str | None = None,
             labels: str | None = None, credentials=None) -> dict:
    """AUROC (with CI), sensitivity and specificity on a split of the labelled cases, or on series from a PACS
    with a ``series_instance_uid,tear`` table in ``labels`` (:func:`~bigdl_medimg.tasks.knee.pacs_cases`)."""
    from ..export import write_predictions
    from ..report import ClassificationResults

    cfg = load_task(model_dir)["config"]
    unlabelled = None
    if data.startswith("dicomweb:"):
        if labels and not str(labels).endswith(".csv"):
            raise ConfigError("meniscus_tear: --labels must be a CSV series_instance_uid,tear")
        df, unlabelled = knee.pacs_cases(spark, data, labels, split, credentials)
    else:
        df = _labelled_volumes(spark, data, cfg, kind)
    scored = score_split(model_dir, df, split)
    try:
        res = ClassificationResults.from_dataframe(scored, labelNames=LABELS, labelCol="tear",
                                                   title=f"Meniscus tear ({split} split)")
        res.save(str(Path(out) / "results"))
        keys = [c for c in ("study_instance_uid", "series_instance_uid") if c in scored.columns] or ["case"]
        write_predictions(scored, str(Path(out) / "predictions"), labelNames=LABELS, labelCol="tear",
                          keyCols=keys + ["case"] if "case" not in keys else keys, mode="overwrite")
        counts = window_counts(scored)
    finally:
        scored.unpersist()
    if counts["no_meniscus"] or counts["unreadable"]:
        log.warning("meniscus_tear: %d %s case(s) have no tear probability (%d without a meniscus in stage 1's mask, "
                    "%d unreadable); the AUROC is over the %d scored ones", counts["no_meniscus"] + counts["unreadable"],
                    split, counts["no_meniscus"], counts["unreadable"], counts["with_window"])
    lab = res.summary["labels"][0]
    metrics = {"task": "meniscus_tear", "split": split, "cases": res.summary["n"],
               "no_meniscus_cases": counts["no_meniscus"], "unreadable_cases": counts["unreadable"],
               "auroc": lab["auroc"],
               "auroc_ci": lab["auroc_ci"], "sensitivity": lab["sensitivity"], "specificity": lab["specificity"]}
    if unlabelled is not None:
        metrics.update({f"{k}_series": v for k, v in unlabelled.items()})
    write_json(Path(out) / "metrics.json", metrics)
    return metrics


def predict(spark, model_dir: str, data: str, out: str, kind: str | None = None, credentials=None) -> dict:
    """Tear probabilities keyed by study/series UID (or file name); stage-1 masks as DICOM SEG for series."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from ..export import write_dicom_seg, write_measurement_reports, write_predictions

    df, key, kind, web = knee.read_volumes(spark, data, kind, credentials)
    scored = PipelineModel.load(str(Path(model_dir) / "pipeline")).transform(df).cache()
    try:
        keys = ["study_instance_uid", "series_instance_uid"] if kind == "series" else [key]
        write_predictions(scored, str(Path(out) / "predictions"), labelNames=LABELS, keyCols=keys, mode="overwrite")
        # a case without a probability is counted with its reason (an unreadable input, or no meniscus found by
        # stage 1 and so no region to classify): the CLI exits 3 when there are any
        reasons = scored.select(F.when(F.col("probability").isNull(), F.coalesce(
            F.col("error"), F.lit("no meniscus found: no region to classify"))).alias("error")).toPandas()
        outputs = {"predictions": str(Path(out) / "predictions"), "rows": len(reasons),
                   "cases": tally_outputs(reasons)}
        if kind == "series":
            outputs["dicom_seg"] = tally_outputs(write_dicom_seg(scored, str(Path(out) / "seg"), knee.SEGMENT_LABELS,
                                                                  keyCol=key, dicomweb=web))
            # the measurement SR: stage 1's volumes and the tear probability (absent where none was computed)
            with_p = scored.withColumn("tear_probability", F.col("probability")[0])
            outputs["dicom_sr"] = tally_outputs(write_measurement_reports(
                with_p, str(Path(out) / "seg"), keyCol=key, probabilityCol="tear_probability", dicomweb=web))
    finally:
        scored.unpersist()
    write_json(Path(out) / "predict.json", outputs)
    return outputs
