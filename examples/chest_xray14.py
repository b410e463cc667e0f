"""CheXNet protocol on NIH ChestX-ray14 (or a generated replica of its layout), trained with BigDL on Spark.

Reads ``Data_Entry_2017.csv`` and the official ``train_val_list.txt`` /
``test_list.txt``, splits train/validation by patient, resizes and scales the
PNGs, trains the ``chest_xray14`` preset (DenseNet-121, weighted BCE, Adam) and
prints the per-label AUROC (with bootstrap intervals) on the official test
list next to CheXNet's published values and the ChestX-ray14 paper's
baseline; writes ``predictions.csv`` (per image), ``results/`` and
``report.html``.  Without ``--data`` a
replica of the layout with phantom radiographs is generated first::

    python examples/chest_xray14.py --data /data/ChestX-ray14 --out chexnet-out          # the real dataset
    python examples/chest_xray14.py --out /tmp/chest --patients 700 --size 128 \\
        --topology densenet_small --epochs 8                                               # a phantom replica

Runs unchanged under ``spark-submit`` (local, standalone or YARN).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="ChestX-ray14 root (Data_Entry_2017.csv, images*/); "
                                                 "default: generate a replica under --out")
    ap.add_argument("--out", default="chest-out")
    ap.add_argument("--patients", type=int, default=300, help="replica patients (without --data)")
    ap.add_argument("--prevalence", type=float, default=0.2,
                    help="replica: finding rate per label (ChestX-ray14's own rates leave rare labels "
                         "without positives in a small replica)")
    ap.add_argument("--size", type=int, default=None, help="input size (default: the preset's 224)")
    ap.add_argument("--topology", default=None, help="override the preset's densenet121")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--val-fraction", type=float, default=0.125)
    ap.add_argument("--no-augment", action="store_true", help="train without the preset's augmentation")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed (initial weights with torch, patch draws, augmentation); the data stay the same")
    ap.add_argument("--master", default=None)
    ap.add_argument("--verbose", action="store_true",
                    help="show BigDL's prints and Spark's INFO log (they go to <out>/logs otherwise)")
    ap.add_argument("--engine", default="bigdl", choices=["bigdl", "torch"],
                    help="learning engine: BigDL (default) or PyTorch DDP on the executors")
    args = ap.parse_args(argv)

    from pyspark.sql import functions as F

    from bigdl_medimg import read_images
    from bigdl_medimg.console import start_run
    from bigdl_medimg.datasets.layouts import load_chestxray14, patient_split, write_chestxray14_replica
    from bigdl_medimg.datasets.reference import CHEXNET_AUROC, WANG2017_AUROC
    from bigdl_medimg.export import write_predictions
    from bigdl_medimg.ml import ClassificationEstimator
    from bigdl_medimg.ml.segmentation_estimator import load_preset
    from bigdl_medimg.report import ClassificationResults, write_report
    from bigdl_medimg.transforms import PercentileScale, ResizeImage

    t0 = time.time()
    out = Path(args.out).resolve()
    # the library's progress lines on the console; BigDL's and Spark's chatter go to <out>/logs
    spark = start_run(out, verbose=args.verbose, **({"master": args.master} if args.master else {}))
    data = args.data
    if data is None:
        data = str(write_chestxray14_replica(out / "replica", n_patients=args.patients, size=args.size or 224,
                                             seed=7, prevalence=args.prevalence))
    if "://" not in data:
        data = Path(data).resolve().as_uri()
    entries = load_chestxray14(spark, data)
    entries = patient_split(entries.filter(F.col("split") == "train_val"),
                            {"train": 1 - args.val_fraction, "val": args.val_fraction}, seed=0) \
        .unionByName(entries.filter(F.col("split") == "test"))
    size = args.size or load_preset("chest_xray14")["inputShape"][-1]
    images = read_images(spark, f"{data.rstrip('/')}/images*").select("path", "image", "error")
    bad = images.filter(F.col("image").isNull())
    n_bad = bad.count()
    if n_bad:
        print(f"{n_bad} unreadable image(s) left out, e.g. {bad.first()['error']}", file=sys.stderr)
    df = entries.join(images.filter(F.col("image").isNotNull()).drop("error"), "path")
    df = PercentileScale(lower=0.5, upper=99.5).transform(ResizeImage(size=[size, size]).transform(df))
    df = df.withColumn("is_val", F.col("split") == "val") \
        .repartition(spark.sparkContext.defaultParallelism).cache()
    overrides = {"inputShape": [1, size, size], "labelCol": "labels", "validationIndicatorCol": "is_val",
                 "checkpointDir": str(out / "checkpoints"), "summaryDir": str(out / "summaries"),
                 "engine": args.engine}
    if args.no_augment:
        overrides["augment"] = {}
    for key, val in (("topology", args.topology), ("maxEpoch", args.epochs), ("batchSize", args.batch),
                     ("learningRate", args.lr), ("seed", args.seed)):
        if val is not None:
            overrides[key] = val
    est = ClassificationEstimator.from_preset("chest_xray14", **overrides)
    t_fit = time.time()
    model = est.fit(df.filter(F.col("split") != "test"))
    fit_s = time.time() - t_fit
    for rec in model.history:
        print(f"epoch {rec['epoch']}: {rec['images']} images, {rec['seconds']} s, "
              f"validation AUROC {rec.get('val_auroc', float('nan')):.3f}")
    test = model.transform(df.filter(F.col("split") == "test")).cache()
    names = est.getLabelNames()
    res = ClassificationResults.from_dataframe(test, labelNames=names, labelCol="labels",
                                               title="ChestX-ray14 official test list")
    res.save(str(out / "results"))
    write_predictions(test, str(out / "predictions.csv"), labelNames=names, labelCol="labels",
                      keyCols=["image_index", "patient_id"], format="csv", single_file=True, mode="overwrite")
    labels = res.summary["labels"]
    per = [lab["auroc"] for lab in labels]
    print(f"\n{'label':<20}{'AUROC':>8}{'95% CI':>16}{'CheXNet':>9}{'Wang 2017':>11}")
    for lab in labels:
        lo, hi = lab["auroc_ci"]
        print(f"{lab['label']:<20}{lab['auroc']:>8.3f}   [{lo:.3f}, {hi:.3f}]{CHEXNET_AUROC[lab['label']]:>9.3f}"
              f"{WANG2017_AUROC[lab['label']]:>11.3f}" if lo is not None else f"{lab['label']:<20}{lab['auroc']:>8.3f}")
    import numpy as np

    mean = res.summary["mean_auroc"]
    print(f"{'mean':<20}{mean:>8.3f}{'':>16}{np.mean(list(CHEXNET_AUROC.values())):>9.3f}"
          f"{np.mean(list(WANG2017_AUROC.values())):>11.3f}")
    report = write_report(str(out / "report.html"), title="CheXNet protocol", results=[res],
                          summary_dirs=[str(out / "summaries")])
    print(f"report: {report}")
    model.write().overwrite().save(str(out / "model"))
    result = {"data": data, "test_images": res.summary["n"], "mean_auroc": mean,
              "mean_auroc_ci": res.summary["mean_auroc_ci"], "auroc_per_label": dict(zip(names, per)),
              "fit_seconds": round(fit_s, 1), "total_seconds": round(time.time() - t0, 1),
              "epochs": len(model.history), "best_epoch": model.training_stats["best_epoch"],
              "topology": est.getTopology(), "input_size": size, "engine": args.engine}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "auroc_per_label"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
