"""Train and evaluate 3-D knee cartilage/meniscus segmentation on phantoms, end to end from files.

Generates knee MRI phantoms (training seeds and never-seen held-out seeds) as
NIfTI image/mask pairs, reads them with Spark, normalises intensities, trains
the ``knee_cartilage`` preset with BigDL, segments the held-out volumes by
sliding window and prints Dice, HD95 and mean surface distance per class;
keeps the largest components of each class (the preset's post-processing,
measured on the validation volumes with and without it in ``result.json``);
writes the predicted masks as NIfTI (``masks/``, the source affine),
``results/``, ``report.html`` and ``model/`` (a ``PipelineModel``:
``SegmentationModel`` -> ``KeepLargestComponent``, stage 1 of
``examples/meniscus_tear.py``).  Runs unchanged under
``spark-submit`` (local, standalone or YARN) or ``python``::

    python examples/knee_cartilage_segmentation.py --out /tmp/knee --train 24 --val 4 --test 6
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="knee-seg-out")
    ap.add_argument("--train", type=int, default=24, help="training volumes")
    ap.add_argument("--val", type=int, default=4, help="validation volumes (Dice every epoch, best epoch kept)")
    ap.add_argument("--test", type=int, default=6, help="held-out test volumes")
    ap.add_argument("--shape", default="24,96,96")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's maxEpoch")
    ap.add_argument("--no-augment", action="store_true", help="train without the preset's augmentation")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a SegmentationEstimator Param of the preset (VALUE as JSON, e.g. lrDecay=0.9)")
    ap.add_argument("--no-postprocess", action="store_true", help="leave out the preset's KeepLargestComponent")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed (initial weights with torch, patch draws, augmentation); the data stay the same")
    ap.add_argument("--master", default=None)
    ap.add_argument("--verbose", action="store_true",
                    help="show BigDL's prints and Spark's INFO log (they go to <out>/logs otherwise)")
    ap.add_argument("--engine", default="bigdl", choices=["bigdl", "torch"],
                    help="learning engine: BigDL (default) or PyTorch DDP on the executors")
    args = ap.parse_args(argv)

    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from bigdl_medimg.console import start_run
    from bigdl_medimg.datasets.layouts import load_knee_folder
    from bigdl_medimg.datasets.synth import synth_dataset
    from bigdl_medimg.export import write_nifti_masks
    from bigdl_medimg.ml import SegmentationEstimator
    from bigdl_medimg.report import SegmentationResults, write_report
    from bigdl_medimg.tasks import knee, task_config
    from bigdl_medimg.transforms import PercentileScale

    t0 = time.time()
    out = Path(args.out).resolve()
    # the library's progress lines on the console; BigDL's and Spark's chatter go to <out>/logs
    spark = start_run(out, verbose=args.verbose, **({"master": args.master} if args.master else {}))
    shape = tuple(int(s) for s in args.shape.split(","))
    sets = {"train": (args.train, 11), "val": (args.val, 22), "test": (args.test, 33)}  # disjoint seeds
    folders = {k: synth_dataset("knee", out / k, n, seed=seed, shape=shape, formats=("nifti",), spark=spark)
               for k, (n, seed) in sets.items()}
    norm = PercentileScale(lower=1, upper=99)
    train = norm.transform(load_knee_folder(spark, folders["train"])).withColumn("is_val", F.lit(False))
    val = norm.transform(load_knee_folder(spark, folders["val"])).withColumn("is_val", F.lit(True))
    test = norm.transform(load_knee_folder(spark, folders["test"]))
    overrides = {"maxEpoch": args.epochs} if args.epochs else {}
    overrides["engine"] = args.engine
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.no_augment:
        overrides["augment"] = {}
    for item in args.param:
        name, _, value = item.partition("=")
        overrides[name] = json.loads(value)
    est = SegmentationEstimator.from_preset("knee_cartilage", validationIndicatorCol="is_val",
                                            checkpointDir=str(out / "checkpoints"), summaryDir=str(out / "summaries"),
                                            **overrides)
    t_fit = time.time()
    model = est.fit(train.unionByName(val).repartition(spark.sparkContext.defaultParallelism))
    fit_s = time.time() - t_fit
    for rec in model.history:
        print(f"epoch {rec['epoch']}: {rec['patches']} patches, {rec['seconds']} s, validation Dice {rec.get('val_dice', float('nan')):.3f}")
    names = est.getClassNames()[1:]
    post = [] if args.no_postprocess else knee.post_stages(task_config("knee_cartilage"))

    def results(scored, title):
        res = SegmentationResults.from_dataframe(scored, numClasses=5, classNames=names, keyCol="case", title=title)
        return res, res.per_class()

    # the validation volumes with and without the post-processing: whether it lowers HD95 is measured here
    val_raw = model.transform(val).cache()
    validation = {"raw": results(val_raw, "validation")[1]}
    for st in post:
        validation["postprocessed"] = results(st.transform(val_raw), "validation")[1]
    val_raw.unpersist()
    scored = model.transform(test)
    for st in post:
        scored = st.transform(scored)
    scored = scored.cache()
    res, per = results(scored, "Knee cartilage and menisci (held-out phantoms)")
    res.save(str(out / "results"))
    masks = write_nifti_masks(scored, str(out / "masks"), nameCol="case", referenceCol="image")
    print(f"NIfTI masks: {int(masks['error'].isna().sum())} of {len(masks)} written to {out / 'masks'}")
    report = write_report(str(out / "report.html"), title="Knee segmentation", results=[res],
                          summary_dirs=[str(out / "summaries")])
    print(f"report: {report}")
    PipelineModel(stages=[model, *post]).write().overwrite().save(str(out / "model"))
    finite = [d for d in per["dice"] if d == d]
    result = {"test_volumes": args.test, "mean_dice": sum(finite) / len(finite) if finite else None,
              "dice_per_class": dict(zip(names, per["dice"])), "hd95_mm_per_class": dict(zip(names, per["hd"])),
              "msd_mm_per_class": dict(zip(names, per["msd"])), "fit_seconds": round(fit_s, 1),
              "total_seconds": round(time.time() - t0, 1), "epochs": len(model.history),
              "best_epoch": model.training_stats.get("best_epoch"), "engine": args.engine,
              "postprocessing": [st.__class__.__name__ for st in post],
              "validation": {k: {"dice_per_class": dict(zip(names, v["dice"])),
                                 "hd95_mm_per_class": dict(zip(names, v["hd"]))} for k, v in validation.items()}}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
