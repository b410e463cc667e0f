"""Meniscus-tear detection as UCSF built it: segment, crop the menisci, classify in 3-D, with BigDL on Spark.

Stage 1 is a ``SegmentationModel`` (trained here with the ``knee_cartilage``
preset, or loaded with ``--seg-model``).  Stage 2 crops a window around the
meniscus label and zeroes everything but the (closed) meniscus region
(``CropAroundLabel``), and stage 3 classifies it (``meniscus_tear`` preset, a
3-D CNN).  The classifier trains on windows around the reference
meniscus masks; the saved two-stage ``PipelineModel`` then runs on held-out
DICOM series end to end (predicted masks locate the windows) and the AUROC
of tear vs no tear is printed.  Outputs: ``predictions/`` (Parquet keyed by
study and series UID), ``seg/`` (the stage-1 masks as DICOM SEG referencing
each source series), ``results/`` and ``report.html``.  ``--whole-volume`` trains the variant that
classifies the whole knee instead of the meniscus window::

    python examples/meniscus_tear.py --out /tmp/tear --seg-model /tmp/knee/model
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

AXCODES = "RIP"  # the sagittal acquisition order the phantoms are generated in; NIfTI and DICOM agree after it

#: Segment names of the knee label map (classes 1-4) for DICOM SEG.
KNEE_SEGMENTS = {1: "Femoral cartilage", 2: "Tibial cartilage", 3: "Patellar cartilage", 4: "Meniscus"}


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
    ap.add_argument("--whole-volume", action="store_true", help="classify the whole volume (no segmentation stage)")
    ap.add_argument("--master", default=None)
    ap.add_argument("--engine", default="bigdl", choices=["bigdl", "torch"],
                    help="learning engine: BigDL (default) or PyTorch DDP on the executors")
    args = ap.parse_args(argv)

    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from bigdl_medimg import get_spark, read_dicom_series
    from bigdl_medimg.datasets.layouts import load_knee_folder
    from bigdl_medimg.datasets.synth import synth_dataset, synth_knee_labels
    from bigdl_medimg.export import write_dicom_seg, write_predictions
    from bigdl_medimg.ml import ClassificationEstimator, SegmentationEstimator, SegmentationModel
    from bigdl_medimg.report import ClassificationResults, write_report
    from bigdl_medimg.ml.training import load_preset_section
    from bigdl_medimg.transforms import CropAroundLabel, PercentileScale, Reorient

    t0 = time.time()
    out = Path(args.out).resolve()
    spark = get_spark(**({"master": args.master} if args.master else {}))
    shape = tuple(int(s) for s in args.shape.split(","))
    sets = {"train": (args.train, 41), "val": (args.val, 52), "test": (args.test, 63)}  # disjoint seeds
    folders = {k: synth_dataset("knee", out / k, n, seed=seed, shape=shape,
                                formats=("dicom",) if k == "test" else ("nifti",), spark=spark)
               for k, (n, seed) in sets.items()}
    prep = [Reorient(axcodes=AXCODES, maskCol="mask", maskOutputCol="mask"), PercentileScale(lower=1, upper=99)]

    def prepare(df):
        for st in prep:
            df = st.transform(df)
        return df

    train = prepare(load_knee_folder(spark, folders["train"])).withColumn("is_val", F.lit(False))
    val = prepare(load_knee_folder(spark, folders["val"])).withColumn("is_val", F.lit(True))
    data = train.unionByName(val).repartition(spark.sparkContext.defaultParallelism).cache()

    seg_s = 0.0
    stages = [Reorient(axcodes=AXCODES), PercentileScale(lower=1, upper=99)]
    if args.whole_volume:
        roi_col, in_shape = "image", [1, *shape]
        overrides = {"inputShape": in_shape, "topology": "cnn3d_small"}
    else:
        if args.seg_model:
            seg = SegmentationModel.load(args.seg_model)
        else:
            t_seg = time.time()
            seg_est = SegmentationEstimator.from_preset(
                "knee_cartilage", engine=args.engine, **({"maxEpoch": args.seg_epochs} if args.seg_epochs else {}))
            seg = seg_est.fit(data.filter(~F.col("is_val")).limit(args.seg_train))
            seg_s = time.time() - t_seg
            seg.write().overwrite().save(str(out / "segmentation_model"))
        roi = load_preset_section("meniscus_tear", "roi")
        roi_params = dict(labels=roi["labels"], size=roi["size"], maskImage=roi.get("maskImage", False),
                          closing=roi.get("closing", 0))
        crop_train = CropAroundLabel(maskCol="mask", outputCol="roi", **roi_params)
        data = crop_train.transform(data)
        roi_col, overrides = "roi", {}
        stages += [seg.copy().setOutputCol("seg_pred"),
                   CropAroundLabel(maskCol="seg_pred", outputCol="roi", foundCol="meniscus_found", **roi_params)]
    est = ClassificationEstimator.from_preset(
        "meniscus_tear", inputCol=roi_col, labelCol="tear", validationIndicatorCol="is_val",
        checkpointDir=str(out / "checkpoints"), summaryDir=str(out / "summaries"), engine=args.engine,
        **overrides, **({"maxEpoch": args.epochs} if args.epochs else {}))
    t_fit = time.time()
    clf = est.fit(data)
    fit_s = time.time() - t_fit
    for rec in clf.history:
        print(f"epoch {rec['epoch']}: {rec['images']} volumes, {rec['seconds']} s, "
              f"validation AUROC {rec.get('val_auroc', float('nan')):.3f}")
    pipeline = PipelineModel(stages=stages + [clf])
    pipeline.write().overwrite().save(str(out / "pipeline"))

    # held-out DICOM series through the saved pipeline, loaded back
    series = read_dicom_series(spark, (folders["test"] / "dicom").as_uri())
    case = F.regexp_extract(F.col("path")[0], r"(case_\d+)/[^/]+$", 1)
    test = series.withColumn("case", case).join(synth_knee_labels(spark, folders["test"] / "labels.csv"), "case")
    scored = PipelineModel.load(str(out / "pipeline")).transform(test).cache()
    res = ClassificationResults.from_dataframe(scored, labelNames=["tear"], labelCol="tear",
                                               title="Meniscus tear (held-out DICOM series)")
    auc = res.summary["mean_auroc"]
    res.save(str(out / "results"))
    # probabilities keyed by study/series UID; the stage-1 masks as DICOM SEG next to their series
    write_predictions(scored, str(out / "predictions"), labelNames=["tear"], labelCol="tear", mode="overwrite")
    if not args.whole_volume:
        segs = write_dicom_seg(scored, str(out / "seg"), KNEE_SEGMENTS, maskCol="seg_pred")
        print(f"DICOM SEG: {int(segs['error'].isna().sum())} of {len(segs)} series written to {out / 'seg'}")
    report = write_report(str(out / "report.html"), title="Meniscus tear", results=[res],
                          summary_dirs=[str(out / "summaries")])
    print(f"report: {report}")
    result = {"test_series": res.summary["n"], "auroc": auc, "auroc_ci": res.summary["mean_auroc_ci"], "classifier_fit_seconds": round(fit_s, 1),
              "segmentation_fit_seconds": round(seg_s, 1), "total_seconds": round(time.time() - t0, 1),
              "epochs": len(clf.history), "best_epoch": clf.training_stats["best_epoch"],
              "variant": "whole-volume" if args.whole_volume else "meniscus-roi"}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
