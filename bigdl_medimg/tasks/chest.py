"""Task ``chest_xray14``: the CheXNet protocol on NIH ChestX-ray14 (14 findings, multi-label).

Data: the dataset's layout (``Data_Entry_2017.csv``, ``train_val_list.txt``,
``test_list.txt``, ``images*/``), local or on a Hadoop file system.  Training
uses the official train_val list split by patient into train and validation;
``evaluate`` scores the official test list.  The saved ``PipelineModel``:
``ResizeImage`` -> ``PercentileScale`` -> ``ClassificationModel``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import ConfigError
from .common import (as_uri, check_pacs_evaluation, labelled_pacs_cases, load_task, save_task, score_split,
                     tally_outputs, write_json)

__all__ = ["load", "front_stages", "train", "evaluate", "predict"]

log = logging.getLogger(__name__)


def _entries(spark, data: str, cfg: dict):
    """``(root URI, entries)``: the label table with ``split`` train / val (by patient) / test (official)."""
    from pyspark.sql import functions as F

    from ..datasets.layouts import load_chestxray14, patient_split

    root = as_uri(data)
    entries = load_chestxray14(spark, root)
    val = float(cfg["split"].get("val", 0.125))
    return root, patient_split(entries.filter(F.col("split") == "train_val"), {"train": 1 - val, "val": val},
                               seed=int(cfg["split"].get("seed", 0))) \
        .unionByName(entries.filter(F.col("split") == "test"))


def _with_images(spark, root: str, entries):
    from ..io.readers import read_images

    images = read_images(spark, f"{root.rstrip('/')}/images*").select("path", "image", "error")
    return entries.join(images, "path", "left")


def load(spark, data: str, cfg: dict):
    """Entries joined with their decoded images; ``split`` is train / val (by patient) / test (official)."""
    root, entries = _entries(spark, data, cfg)
    return _with_images(spark, root, entries)


def front_stages(cfg: dict) -> list:
    from ..transforms import PercentileScale, ResizeImage

    pre = cfg.get("preprocessing", {})
    lo, hi = pre.get("percentiles", [0.5, 99.5])
    return [ResizeImage(size=list(pre.get("size", [224, 224])), inputCol="image", outputCol="model_input"),
            PercentileScale(lower=lo, upper=hi, inputCol="model_input", outputCol="model_input")]


def train(spark, data: str, out: str, cfg: dict) -> dict:
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from ..ml import ClassificationEstimator

    out_p = Path(out)
    root, entries = _entries(spark, data, cfg)
    entries = entries.filter(F.col("split") != "test")
    df = _with_images(spark, root, entries)  # decoded once, inside the estimator's first job
    size = list(cfg.get("preprocessing", {}).get("size", [224, 224]))
    prep = PipelineModel(stages=front_stages(cfg)).transform(df.filter(F.col("image").isNotNull())) \
        .withColumn("is_val", F.col("split") == "val")
    params = {**cfg["estimator"], "inputShape": [1, *size]}
    est = ClassificationEstimator(**params, inputCol="model_input", labelCol="labels",
                                  validationIndicatorCol="is_val", checkpointDir=str(out_p / "checkpoints"),
                                  summaryDir=str(out_p / "summaries"))
    t0 = time.time()
    model = est.fit(prep.select("model_input", "labels", "is_val").repartition(spark.sparkContext.defaultParallelism))
    # images that could not be read were filtered out above: the label table (no decoding) tells how many
    listed = entries.count()
    bad = listed - model.training_stats["train_images"] - model.training_stats["val_images"]
    if bad:
        log.warning("%d of %d training/validation image(s) could not be read and were left out (`bigdl-medimg "
                    "ingest --kind images` lists them with their error)", bad, listed)
    PipelineModel(stages=front_stages(cfg) + [model]).write().overwrite().save(str(out_p / "model" / "pipeline"))
    save_task(str(out_p / "model"), "chest_xray14", cfg)
    summary = {"task": "chest_xray14", "model": str(out_p / "model"), "epochs": len(model.history),
               "best_epoch": model.training_stats.get("best_epoch"), "fit_seconds": round(time.time() - t0, 1),
               "unreadable_images": bad, "history": model.history}
    write_json(out_p / "train.json", summary)
    return summary


def read_radiographs(spark, data: str, credentials=None):
    """``(images with image_index, DICOMweb connection or None)``: the radiograph files under ``data`` (keyed
    by file name), or the radiographs a ``dicomweb:`` query matches (keyed by SOP Instance UID)."""
    from pyspark.sql import functions as F

    from ..io.readers import read_images

    conn = None
    if data.startswith("dicomweb:"):  # radiographs straight from a PACS: QIDO-RS here, WADO-RS on the executors
        from ..io.dicomweb import read_dicomweb_uri

        df, conn = read_dicomweb_uri(spark, data, level="image", credentials=credentials)
    else:
        df = read_images(spark, as_uri(data))
    # the file name, or the last segment of the instance's WADO-RS address: its SOP Instance UID
    return df.withColumn("image_index", F.regexp_extract("path", r"([^/]+)$", 1)), conn


def _pacs_labelled(spark, data: str, labels: str | None, split: str, credentials=None):
    """Radiographs from a PACS with their findings from ``labels`` (CSV ``sop_instance_uid,Finding Labels``,
    ChestX-ray14's label syntax); ``(frame, counts of those not scored)``."""
    import csv
    import io

    from ..datasets.layouts import finding_vector
    from ..io import hfs

    check_pacs_evaluation(split, labels, "a CSV sop_instance_uid,Finding Labels (ChestX-ray14's syntax)")
    uri = hfs.to_uri(labels)
    rows = []
    for n, r in enumerate(csv.DictReader(io.StringIO(hfs.read_text(spark, uri))), start=2):
        try:
            rows.append((r["sop_instance_uid"].strip(), finding_vector(r["Finding Labels"])))
        except (KeyError, AttributeError, ValueError) as exc:
            why = str(exc) if isinstance(exc, ValueError) else "expected columns sop_instance_uid,Finding Labels"
            raise ConfigError(f"{uri}: line {n}: {why}") from None
    table = spark.createDataFrame(rows, "image_index string, labels array<float>")
    images, _conn = read_radiographs(spark, data, credentials)
    return labelled_pacs_cases(images.join(table, "image_index", "left"), "labels", labels, "radiograph(s)")


def evaluate(spark, model_dir: str, data: str, out: str, split: str = "test", kind: str | None = None,
             labels: str | None = None, credentials=None) -> dict:
    """Per-finding AUROC (with CI) on a split of ChestX-ray14, or on radiographs from a PACS labelled in
    ``labels`` (:func:`_pacs_labelled`)."""
    from ..export import write_predictions
    from ..report import ClassificationResults

    cfg = load_task(model_dir)["config"]
    names = list(cfg["estimator"]["labelNames"])
    unlabelled = None
    if data.startswith("dicomweb:"):
        df, unlabelled = _pacs_labelled(spark, data, labels, split, credentials)
    else:
        df = load(spark, data, cfg)
    scored = score_split(model_dir, df, split)
    try:
        res = ClassificationResults.from_dataframe(scored, labelNames=names, labelCol="labels",
                                                   title=f"ChestX-ray14 ({split} split)")
        res.save(str(Path(out) / "results"))
        keys = ["image_index"] + (["patient_id"] if "patient_id" in scored.columns else [])
        write_predictions(scored, str(Path(out) / "predictions.csv"), labelNames=names, labelCol="labels",
                          keyCols=keys, format="csv", single_file=True, mode="overwrite")
    finally:
        scored.unpersist()
    s = res.summary
    metrics = {"task": "chest_xray14", "split": split, "images": s["n"], "unscored": res.n_unscored,
               "mean_auroc": s["mean_auroc"], "mean_auroc_ci": s["mean_auroc_ci"],
               "auroc": {lab["label"]: lab["auroc"] for lab in s["labels"]}}
    if unlabelled is not None:
        metrics.update({f"{k}_images": v for k, v in unlabelled.items()})
    write_json(Path(out) / "metrics.json", metrics)
    return metrics


def predict(spark, model_dir: str, data: str, out: str, kind: str | None = None, credentials=None) -> dict:
    """Probabilities of the 14 findings for every image under ``data`` (PNG, JPEG or DICOM), keyed by file name,
    or for every radiograph a ``dicomweb:`` query matches, keyed by SOP Instance UID; a measurement SR per DICOM
    radiograph."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from ..export import write_finding_reports, write_predictions

    cfg = load_task(model_dir)["config"]
    names = list(cfg["estimator"]["labelNames"])
    df, conn = read_radiographs(spark, data, credentials)
    scored = PipelineModel.load(str(Path(model_dir) / "pipeline")).transform(df)
    path = str(Path(out) / "predictions.csv")
    write_predictions(scored, path, labelNames=names, keyCols=["image_index"], format="csv", single_file=True,
                      mode="overwrite")
    # unreadable images are rows with an error and no probabilities; counted from the written table
    errors = spark.read.option("header", True).csv(as_uri(path)).select("error").toPandas()
    outputs = {"predictions": path, "images": tally_outputs(errors)}
    dicom = scored.filter((F.col("format") == "dicom") & F.col("probability").isNotNull())
    if dicom.limit(1).count():  # a measurement SR (the 14 probabilities) beside each DICOM radiograph
        outputs["dicom_sr"] = tally_outputs(write_finding_reports(dicom, str(Path(out) / "sr"), names,
                                                                  dicomweb=conn))
    write_json(Path(out) / "predict.json", outputs)
    return outputs
