"""Task ``knee_cartilage``: 3-D U-Net segmentation of the femoral, tibial and patellar cartilage and menisci.

Data (:func:`load`): a knee folder with masks ``nifti/<case>_mask.nii[.gz]`` and
images ``nifti/<case>_image.nii[.gz]`` or DICOM series ``dicom/<case>/`` (as
``bigdl-medimg synth --kind knee`` writes both; ``data.images`` in the config
chooses, default: NIfTI images when there are any), or an OAI-ZIB download
beside its OAI images (``OAI-ZIB/``, ``OAI/``; OAI-ZIB's labels mapped into the
task's classes).
The saved model is a ``PipelineModel``: ``Reorient`` -> ``PercentileScale`` ->
``SegmentationModel`` -> ``KeepLargestComponent`` (the preset's
``postprocessing``; column ``segmentation`` on the reoriented grid, which the
outputs map back to each source image's grid).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import ConfigError
from .common import (as_uri, assign_split, check_pacs_evaluation, labelled_pacs_cases, load_task, save_task,
                     score_split, tally_outputs, write_json)

__all__ = ["load", "front_stages", "post_stages", "train", "evaluate", "predict", "SEGMENT_LABELS"]

log = logging.getLogger(__name__)

#: DICOM SEG segment names of the knee classes 1-4.
SEGMENT_LABELS = {1: "Femoral cartilage", 2: "Tibial cartilage", 3: "Patellar cartilage", 4: "Meniscus"}


def load(spark, data: str, cfg: dict):
    """``case``, ``image``, ``mask``, ``error``, ``pairing`` (and ``tear`` when labelled) with a ``split`` column.

    Every case keeps its row: one with only an image or only a mask has the
    other side null and ``pairing`` saying which is missing; an unreadable
    file gives a null side and an ``error`` (training counts both).
    """
    from ..datasets.layouts import load_knee_folder, load_oaizib_knees
    from ..io import hfs

    root = hfs.to_uri(data)
    if hfs.is_dir(spark, hfs.join(root, "OAI-ZIB")):
        df = load_oaizib_knees(spark, root)
    elif hfs.is_dir(spark, hfs.join(root, "nifti")):
        df = load_knee_folder(spark, root, (cfg.get("data") or {}).get("images", "auto"))
    else:
        raise ConfigError(f"{data}: expected a knee folder with nifti/<case>_mask.nii[.gz] and images as "
                          "nifti/<case>_image.nii[.gz] or DICOM series dicom/<case>/ (as `bigdl-medimg synth "
                          "--kind knee` writes), or an OAI-ZIB/ folder beside OAI/")
    return assign_split(df, "case", cfg["split"])


def unpaired_cases(spark, data: str, cfg: dict) -> int:
    """Training and validation cases with an image but no mask or the reverse, from the file listing alone."""
    from ..datasets.layouts import knee_folder_cases
    from ..io import hfs

    root = hfs.to_uri(data)
    if hfs.is_dir(spark, hfs.join(root, "OAI-ZIB")):
        return 0  # load_oaizib refuses listed subjects without a mask or a series
    cases = knee_folder_cases(spark, root, (cfg.get("data") or {}).get("images", "auto"))
    odd = sorted(cases["images"] ^ cases["masks"])
    if not odd:
        return 0
    split = assign_split(spark.createDataFrame([(c,) for c in odd], "case string"), "case", cfg["split"])
    return split.filter("split != 'test'").count()


def front_stages(cfg: dict) -> list:
    """Reorientation and intensity scaling into ``model_input`` (the saved pipeline's first stages)."""
    from ..transforms import PercentileScale, Reorient

    pre = cfg.get("preprocessing", {})
    lo, hi = pre.get("percentiles", [1.0, 99.0])
    return [Reorient(axcodes=pre.get("reorient", "RIP"), inputCol="image", outputCol="model_input"),
            PercentileScale(lower=lo, upper=hi, inputCol="model_input", outputCol="model_input")]


def post_stages(cfg: dict, col: str = "segmentation") -> list:
    """The preset's post-processing of the predicted mask (``postprocessing.keep_largest``; ``[]`` without it)."""
    from ..transforms import KeepLargestComponent

    keep = (cfg.get("postprocessing") or {}).get("keep_largest")
    if not keep:
        return []
    return [KeepLargestComponent(labels=list(keep.get("labels", [])), components=list(keep.get("components", [1])),
                                 connectivity=int(keep.get("connectivity", 1)), inputCol=col, outputCol=col)]


def reference_mask(cfg: dict, df):
    """The reference ``mask`` on the model's grid (``mask_model``)."""
    from ..transforms import Reorient

    return Reorient(axcodes=cfg.get("preprocessing", {}).get("reorient", "RIP"), inputCol="mask",
                    outputCol="mask_model").transform(df)


def train(spark, data: str, out: str, cfg: dict) -> dict:
    """Fit on the ``train`` split (``val`` for per-epoch Dice); save ``<out>/model``."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from ..ml import SegmentationEstimator

    out_p = Path(out)
    df = load(spark, data, cfg)
    prep = reference_mask(cfg, PipelineModel(stages=front_stages(cfg)).transform(df))
    prep = prep.filter(F.col("split") != "test").withColumn("is_val", F.col("split") == "val")
    est = SegmentationEstimator(**cfg["estimator"], inputCol="model_input", maskCol="mask_model",
                                validationIndicatorCol="is_val", checkpointDir=str(out_p / "checkpoints"),
                                summaryDir=str(out_p / "summaries"))
    t0 = time.time()
    model = est.fit(prep.repartition(spark.sparkContext.defaultParallelism))
    pipeline = PipelineModel(stages=front_stages(cfg) + [model.setInputCol("model_input")] + post_stages(cfg))
    pipeline.write().overwrite().save(str(out_p / "model" / "pipeline"))
    save_task(str(out_p / "model"), "knee_cartilage", cfg, {"data": as_uri(data)})  # for leakage checks
    # cases left out (no image or no mask: the estimator counts them; unpaired ones known from the listing)
    unpaired = unpaired_cases(spark, data, cfg)
    left_out = {"unpaired_cases": unpaired,
                "unreadable_cases": max(0, model.training_stats["skipped_volumes"] - unpaired)}
    if any(left_out.values()):
        log.warning("knee_cartilage: %d training/validation case(s) without an image or a mask and %d unreadable "
                    "one(s) were left out of training (their rows carry `pairing` and `error`)",
                    left_out["unpaired_cases"], left_out["unreadable_cases"])
    best_epoch = model.training_stats.get("best_epoch")
    chosen = next((r for r in model.history if r["epoch"] == best_epoch), model.history[-1] if model.history else {})
    summary = {"task": "knee_cartilage", "model": str(out_p / "model"), "epochs": len(model.history),
               "fit_seconds": round(time.time() - t0, 1), "val_dice": chosen.get("val_dice"), "best_epoch": best_epoch,
               "unreadable_volumes": model.training_stats["skipped_volumes"], **left_out,
               "history": model.history}
    write_json(out_p / "train.json", summary)
    return summary


def _classes(cfg: dict) -> list[str]:
    names = cfg["estimator"].get("classNames") or cfg.get("classes")
    return list(names)[1:]


def evaluate(spark, model_dir: str, data: str, out: str, split: str = "test", kind: str | None = None,
             labels: str | None = None, credentials=None) -> dict:
    """Dice, HD95 and MSD per class on a split (of the NIfTI pairs, or of series from a PACS with reference
    masks in ``labels``: :func:`pacs_cases`); results saved in ``<out>/results``."""
    from ..report import SegmentationResults

    cfg = load_task(model_dir)["config"]
    unlabelled = None
    if data.startswith("dicomweb:"):
        df, unlabelled = pacs_cases(spark, data, labels, split, credentials)  # (counts of those not scored)
    else:
        df = load(spark, data, cfg)
    scored = score_split(model_dir, df, split)
    names = _classes(cfg)
    try:
        res = SegmentationResults.from_dataframe(
            reference_mask(cfg, scored), numClasses=len(names) + 1, classNames=names, imageCol="model_input",
            predictionCol="segmentation", labelCol="mask_model", keyCol="case",
            title=f"Knee segmentation ({split} split)")
    finally:
        scored.unpersist()
    res.save(str(Path(out) / "results"))
    per = res.per_class()
    metrics = {"task": "knee_cartilage", "split": split, "volumes": len(res.volumes),
               "not_scored": sum(v["error"] is not None for v in res.volumes),
               **{m: dict(zip(names, per[m])) for m in per}}
    if unlabelled is not None:
        metrics.update({f"{k}_series": v for k, v in unlabelled.items()})
    write_json(Path(out) / "metrics.json", metrics)
    return metrics


def read_volumes(spark, data: str, kind: str | None, credentials=None):
    """Images to segment: DICOM series (``series``), NIfTI files (``nifti``) or series from a PACS
    (``dicomweb:`` URI); ``(frame, key column, kind, DICOMweb connection or None)``."""
    from pyspark.sql import functions as F

    from ..io import hfs
    from ..io.readers import read_dicom_series, read_nifti

    if data.startswith("dicomweb:"):  # series straight from a PACS (QIDO-RS, then WADO-RS on the executors)
        from ..io.dicomweb import read_dicomweb_uri

        if kind not in (None, "series"):
            raise ConfigError(f"--kind {kind}: a dicomweb: source holds DICOM series")
        df, conn = read_dicomweb_uri(spark, data, level="series", credentials=credentials)
        return df, "series_key", "series", conn
    if kind is None:
        root = hfs.to_uri(data)
        if hfs.is_dir(spark, root):
            nifti = any(".nii" in name for name in hfs.list_names(spark, root))
        else:  # a file or a glob
            nifti = ".nii" in root.rsplit("/", 1)[-1]
        kind = "nifti" if nifti else "series"
    if kind == "series":
        return read_dicom_series(spark, as_uri(data)), "series_key", kind, None
    if kind == "nifti":
        df = read_nifti(spark, as_uri(data))
        return df.withColumn("name", F.regexp_extract("path", r"([^/]+?)(\.nii(\.gz)?)?$", 1)), "name", kind, None
    raise ConfigError(f"--kind must be 'series' or 'nifti' for segmentation, got {kind!r}")


def pacs_cases(spark, data: str, labels: str | None, split: str, credentials=None):
    """Labelled series from a PACS for ``evaluate``: ``data`` a ``dicomweb:`` URI, ``labels`` keyed by Series
    Instance UID, either a folder of reference masks ``<SeriesInstanceUID>.nii[.gz]`` (``mask``, knee
    segmentation) or a CSV ``series_instance_uid,tear`` (``tear``, meniscus tear).

    ``case`` is the Series Instance UID and every series the query matches is
    in the evaluation (``split`` must be ``"all"``: the query chooses the
    cases).  Series without a label are counted and logged, not scored.
    """
    from pyspark.sql import functions as F

    from ..datasets.synth import synth_knee_labels
    from ..io.readers import read_nifti

    check_pacs_evaluation(split, labels, "a folder of <SeriesInstanceUID>.nii.gz reference masks, or a CSV "
                                         "series_instance_uid,tear")
    series, _key, _kind, _conn = read_volumes(spark, data, "series", credentials)
    series = series.withColumn("case", F.col("series_instance_uid"))
    if str(labels).endswith(".csv"):
        ref = synth_knee_labels(spark, as_uri(labels), key="series_instance_uid")
    else:
        masks = read_nifti(spark, as_uri(labels))
        ref = masks.select(F.regexp_extract("path", r"([^/]+?)\.nii(\.gz)?$", 1).alias("case"),
                           F.col("image").alias("mask"), F.col("error").alias("mask_error"))
    label_col = "tear" if "tear" in ref.columns else "mask"
    cases = series.join(ref, "case", "left")
    if "mask_error" in cases.columns:  # an unreadable reference mask: counted with its error, not as unlabelled
        cases = cases.withColumn("error", F.coalesce("error", "mask_error")).drop("mask_error")
    return labelled_pacs_cases(cases, label_col, labels, "series")


def predict(spark, model_dir: str, data: str, out: str, kind: str | None = None, credentials=None) -> dict:
    """Segment every volume: NIfTI masks on each source grid; for DICOM series a DICOM SEG and a measurement SR
    (TID 1500: each compartment's volume in mL) referencing the series (also for series read from a PACS:
    ``data`` a ``dicomweb:`` URI, ``credentials`` a credentials file or None for the environment)."""
    from pyspark.ml import PipelineModel

    from ..export import write_dicom_seg, write_measurement_reports, write_nifti_masks

    df, key, kind, web = read_volumes(spark, data, kind, credentials)
    scored = PipelineModel.load(str(Path(model_dir) / "pipeline")).transform(df).cache()
    try:
        masks = write_nifti_masks(scored, str(Path(out) / "masks"), nameCol=key, referenceCol="image")
        outputs = {"masks": tally_outputs(masks)}
        if kind == "series":
            outputs["dicom_seg"] = tally_outputs(write_dicom_seg(scored, str(Path(out) / "seg"), SEGMENT_LABELS,
                                                                 keyCol=key, dicomweb=web))
            outputs["dicom_sr"] = tally_outputs(write_measurement_reports(scored, str(Path(out) / "seg"),
                                                                          keyCol=key, dicomweb=web))
    finally:
        scored.unpersist()
    write_json(Path(out) / "predict.json", outputs)
    return outputs

