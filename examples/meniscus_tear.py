"""Meniscus-tear detection as UCSF built it: segment, crop the menisci, classify in 3-D, with BigDL on Spark.

Stage 1 is a ``SegmentationModel`` and its post-processing (trained here
with the ``knee_cartilage`` preset, or loaded with ``--seg-model``: the knee
example's ``model/``).  Stage 2 crops a window around the predicted meniscus
and zeroes everything but the (closed) meniscus region (``CropAroundLabel``),
and stage 3 classifies it (``meniscus_tear`` preset, a 3-D CNN).  The
classifier is trained as it is served: its training and validation windows
come from stage 1's predicted masks through the same stages; cases where
stage 1 finds no meniscus get no window and no score and are counted in
``result.json``.  The saved ``PipelineModel`` then runs on held-out DICOM
series end to end and the AUROC of tear vs no tear is printed.  Outputs: ``predictions/`` (Parquet keyed by
study and series UID), ``seg/`` (the stage-1 masks as DICOM SEG referencing
each source series), ``results/`` and ``report.html``.  ``--whole-volume`` trains the variant that
classifies the whole knee instead of the meniscus window::

    python examples/meniscus_tear.py --out /tmp/tear --seg-model /tmp/knee/model --train 120 --val 24 --test 40
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

AXCODES = "RIP"  # the sagittal acquisition order the phantoms are generated in; NIfTI and DICOM agree after it


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tear-out")
    ap.add_argument("--train", type=int, default=120, help="training volumes (classifier)")
    ap.add_argument("--val", type=int, default=24)
    ap.add_argument("--test", type=int, default=40, help="held-out DICOM series")
    ap.add_argument("--shape", default="24,96,96")
    ap.add_argument("--seg-model", default=None, help="a saved SegmentationModel (default: train one here)")
    ap.add_argument("--seg-train", type=int, default=24)
    ap.add_argument("--seg-epochs", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="override the classifier preset's maxEpoch")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a ClassificationEstimator Param of the preset (VALUE as JSON, e.g. learningRate=0.001)")
    ap.add_argument("--whole-volume", action="store_true", help="classify the whole volume (no segmentation stage)")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed (initial weights with torch, patch draws, augmentation); the data stay the same")
    ap.add_argument("--master", default=None)
    ap.add_argument("--verbose", action="store_true",
                    help="show BigDL's prints and Spark's INFO log (they go to <out>/logs otherwise)")
    ap.add_argument("--engine", default="bigdl", choices=["bigdl", "torch"],
                    help="learning engine: BigDL (default) or PyTorch DDP on the executors")
    args = ap.parse_args(argv)

    from pyspark.ml import PipelineModel
    from pyspark.ml.util import DefaultParamsReader
    from pyspark.sql import functions as F

    from bigdl_medimg.console import start_run
    from bigdl_medimg.datasets.layouts import load_knee_folder
    from bigdl_medimg.datasets.synth import synth_dataset
    from bigdl_medimg.export import write_dicom_seg, write_predictions
    from bigdl_medimg.ml import ClassificationEstimator, SegmentationEstimator, SegmentationModel
    from bigdl_medimg.report import ClassificationResults, write_report
    from bigdl_medimg.tasks import knee, meniscus, task_config
    from bigdl_medimg.transforms import PercentileScale, Reorient

    t0 = time.time()
    out = Path(args.out).resolve()
    # the library's progress lines on the console; BigDL's and Spark's chatter go to <out>/logs
    spark = start_run(out, verbose=args.verbose, **({"master": args.master} if args.master else {}))
    shape = tuple(int(s) for s in args.shape.split(","))
    sets = {"train": (args.train, 41), "val": (args.val, 52), "test": (args.test, 63)}  # disjoint seeds
    folders = {k: synth_dataset("knee", out / k, n, seed=seed, shape=shape,
                                formats=("dicom",) if k == "test" else ("nifti",), spark=spark)
               for k, (n, seed) in sets.items()}
    front = [Reorient(axcodes=AXCODES), PercentileScale(lower=1, upper=99)]
    cases = load_knee_folder(spark, folders["train"]).withColumn("is_val", F.lit(False)) \
        .unionByName(load_knee_folder(spark, folders["val"]).withColumn("is_val", F.lit(True)))
    data = PipelineModel(stages=front).transform(cases.repartition(spark.sparkContext.defaultParallelism))

    seeded = {} if args.seed is None else {"seed": args.seed}
    params = {name: json.loads(value) for name, _, value in (p.partition("=") for p in args.param)}
    seg_s, counts = 0.0, {}
    stages = list(front)
    if args.whole_volume:
        roi_col, overrides, windows = "image", {"inputShape": [1, *shape], "topology": "cnn3d_small"}, data.cache()
    else:
        if args.seg_model:  # the knee example's model/ (a PipelineModel) or a bare SegmentationModel
            kind = DefaultParamsReader.loadMetadata(args.seg_model, spark.sparkContext)["class"]
            stage1 = PipelineModel.load(args.seg_model).stages if kind.endswith("PipelineModel") \
                else [SegmentationModel.load(args.seg_model)]
        else:  # trained here on the training volumes, with reference masks reoriented like the images
            t_seg = time.time()
            seg_est = SegmentationEstimator.from_preset(
                "knee_cartilage", engine=args.engine, **seeded,
                **({"maxEpoch": args.seg_epochs} if args.seg_epochs else {}))
            ref = Reorient(axcodes=AXCODES, inputCol="mask", outputCol="mask")
            seg = seg_est.fit(ref.transform(data.filter(~F.col("is_val")).limit(args.seg_train)))
            seg_s = time.time() - t_seg
            stage1 = [seg, *knee.post_stages(task_config("knee_cartilage"))]
            PipelineModel(stages=stage1).write().overwrite().save(str(out / "segmentation_model"))
        # trained as served: the classifier's training and validation windows are cut around stage 1's
        # predicted menisci by the very stages the saved pipeline runs on the test series
        roi_stages, windows = meniscus.served_windows(stage1, task_config("meniscus_tear"), data, input_col="image")
        stages += roi_stages
        roi_col, overrides = "roi", {}
        counts = {"train_val_" + k: v for k, v in meniscus.window_counts(windows).items()}
        print(f"classifier windows from stage 1's masks: {counts}")
    est = ClassificationEstimator.from_preset(
        "meniscus_tear", inputCol=roi_col, labelCol="tear", validationIndicatorCol="is_val",
        checkpointDir=str(out / "checkpoints"), summaryDir=str(out / "summaries"), engine=args.engine, **seeded,
        **{**overrides, **params, **({"maxEpoch": args.epochs} if args.epochs else {})})
    t_fit = time.time()
    clf = est.fit(windows)
    fit_s = time.time() - t_fit
    windows.unpersist()
    for rec in clf.history:
        print(f"epoch {rec['epoch']}: {rec['images']} volumes, {rec['seconds']} s, "
              f"validation AUROC {rec.get('val_auroc', float('nan')):.3f}")
    pipeline = PipelineModel(stages=stages + [clf])
    pipeline.write().overwrite().save(str(out / "pipeline"))

    # held-out DICOM series through the saved pipeline, loaded back
    test = meniscus.labelled_series(spark, str(folders["test"]))
    scored = PipelineModel.load(str(out / "pipeline")).transform(test).cache()
    res = ClassificationResults.from_dataframe(scored, labelNames=["tear"], labelCol="tear",
                                               title="Meniscus tear (held-out DICOM series)")
    auc = res.summary["mean_auroc"]
    res.save(str(out / "results"))
    # probabilities keyed by study/series UID; the stage-1 masks as DICOM SEG next to their series
    write_predictions(scored, str(out / "predictions"), labelNames=["tear"], labelCol="tear", mode="overwrite")
    if not args.whole_volume:
        segs = write_dicom_seg(scored, str(out / "seg"), knee.SEGMENT_LABELS, maskCol="segmentation")
        print(f"DICOM SEG: {int(segs['error'].isna().sum())} of {len(segs)} series written to {out / 'seg'}")
    report = write_report(str(out / "report.html"), title="Meniscus tear", results=[res],
                          summary_dirs=[str(out / "summaries")])
    print(f"report: {report}")
    if not args.whole_volume:  # test series without a window have no probability: counted, not scored
        counts.update({"test_" + k: v for k, v in meniscus.window_counts(scored).items()})
    scored.unpersist()
    best = clf.training_stats["best_epoch"]
    result = {"test_series": res.summary["n"], "auroc": auc, "auroc_ci": res.summary["mean_auroc_ci"],
              "val_auroc": next((r.get("val_auroc") for r in clf.history if r["epoch"] == best), None),
              "classifier_fit_seconds": round(fit_s, 1), "segmentation_fit_seconds": round(seg_s, 1),
              "total_seconds": round(time.time() - t0, 1), "epochs": len(clf.history), "best_epoch": best,
              "variant": "whole-volume" if args.whole_volume else "meniscus-roi", "engine": args.engine,
              "windows": "whole volume" if args.whole_volume else "stage-1 predicted masks", **counts}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
