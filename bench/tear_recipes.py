"""The meniscus-tear classifier's recipes compared on one set of stage-1 windows (README, "Run-to-run spread").

The meniscus example cuts its windows with stage 1 on every run; to rank
classifier recipes, this script cuts them once with a saved knee model and
refits only the classifier.  ``cut`` writes Parquet tensor tables of the
windows: around stage 1's predicted menisci for the training, validation
and held-out cases (the held-out ones from DICOM series, as the example
serves them), around the reference menisci for the training cases, and
around stage 1's for ``--val-extra`` validation cases.  ``fit`` refits the
``meniscus_tear`` preset (Params overridden with ``--param``) on them and
appends the validation and held-out AUROC with per-case scores to
``<out>/results.jsonl``::

    python bench/tear_recipes.py cut --seg-model bench/out/spread/bigdl/knee-seed1/model --out /tmp/tear-lab
    python bench/tear_recipes.py fit --out /tmp/tear-lab --seed 0 [--reference] [--val-extra] [--param NAME=JSON]

The cases are the example's (``--train 120 --val 24 --test 40``, the same
generator seeds); ``--val-extra 40`` cuts a 40-case validation set whose first
24 are the example's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

AXCODES = "RIP"
SHAPE = (24, 96, 96)
SEEDS = {"train": 41, "val": 52, "test": 63}  # examples/meniscus_tear.py's generator seeds


def cut(spark, args, win: Path) -> None:
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from bigdl_medimg.datasets.layouts import load_knee_folder
    from bigdl_medimg.datasets.synth import synth_dataset
    from bigdl_medimg.io.readers import write_tensors
    from bigdl_medimg.tasks import meniscus, task_config
    from bigdl_medimg.transforms import PercentileScale, Reorient

    cfg, out = task_config("meniscus_tear"), Path(args.out)
    front = [Reorient(axcodes=AXCODES), PercentileScale(lower=1, upper=99)]
    stage1 = PipelineModel.load(args.seg_model).stages
    cols = ["case", "roi", "tear", "is_val"]
    counts = {"train": args.train, "val": args.val, "test": args.test}
    folders = {k: synth_dataset("knee", out / k, n, seed=SEEDS[k], shape=SHAPE,
                                formats=("dicom",) if k == "test" else ("nifti",), spark=spark)
               for k, n in counts.items()}
    cases = load_knee_folder(spark, folders["train"]).withColumn("is_val", F.lit(False)) \
        .unionByName(load_knee_folder(spark, folders["val"]).withColumn("is_val", F.lit(True)))
    data = PipelineModel(stages=front).transform(cases.repartition(spark.sparkContext.defaultParallelism))
    stages, pred = meniscus.served_windows(stage1, cfg, data, input_col="image")
    write_tensors(pred.select(*cols), str(win / "pred"), mode="overwrite")
    # the reference masks on the image's grid, the same crop around them (training cases only are used)
    ref = PipelineModel(stages=[Reorient(axcodes=AXCODES, inputCol="mask", outputCol="mask"),
                                meniscus.roi_stage(cfg, "mask", "meniscus_found", "image")]).transform(data)
    write_tensors(ref.filter(~F.col("is_val")).select(*cols), str(win / "ref"), mode="overwrite")
    test = meniscus.labelled_series(spark, str(folders["test"]))
    write_tensors(PipelineModel(stages=front + stages).transform(test).select("case", "roi", "tear"),
                  str(win / "test"), mode="overwrite")
    if args.val_extra:
        f = synth_dataset("knee", out / "val_extra", args.val_extra, seed=SEEDS["val"], shape=SHAPE,
                          formats=("nifti",), spark=spark)
        extra = PipelineModel(stages=front).transform(load_knee_folder(spark, f).withColumn("is_val", F.lit(True)))
        write_tensors(meniscus.served_windows(stage1, cfg, extra, input_col="image")[1].select(*cols),
                      str(win / "val_extra"), mode="overwrite")
    pred.unpersist()


def fit(spark, args, win: Path) -> dict:
    import numpy as np
    from pyspark.sql import functions as F
    from sklearn.metrics import roc_auc_score

    from bigdl_medimg.io.readers import read_tensors
    from bigdl_medimg.ml import ClassificationEstimator

    pred = read_tensors(spark, str(win / "pred"))
    if args.val_extra:
        pred = pred.filter(~F.col("is_val")).unionByName(read_tensors(spark, str(win / "val_extra")))
    df = pred.unionByName(read_tensors(spark, str(win / "ref"))) if args.reference else pred
    df = df.filter("roi IS NOT NULL").repartition(spark.sparkContext.defaultParallelism).cache()
    params = {name: json.loads(value) for name, _, value in (p.partition("=") for p in args.param)}
    est = ClassificationEstimator.from_preset("meniscus_tear", inputCol="roi", labelCol="tear",
                                              validationIndicatorCol="is_val", engine=args.engine, seed=args.seed,
                                              **params)
    t0 = time.time()
    clf = est.fit(df)
    fit_s = time.time() - t0
    df.unpersist()

    def scores(frame):
        rows = clf.transform(frame.filter("roi IS NOT NULL")).select("case", "tear", "probability").collect()
        y, p = np.array([r.tear[0] for r in rows]), np.array([r.probability[0] for r in rows])
        return roc_auc_score(y, p), sorted(((r.case, int(r.tear[0]), round(float(r.probability[0]), 3))
                                            for r in rows), key=lambda t: t[2])

    best = clf.training_stats["best_epoch"]
    test_auc, test_cases = scores(read_tensors(spark, str(win / "test")))
    _, val_cases = scores(pred.filter("is_val"))
    return {"engine": args.engine, "seed": args.seed, "reference": args.reference, "val_extra": bool(args.val_extra),
            "params": params, "val_auroc": next((r.get("val_auroc") for r in clf.history if r["epoch"] == best), None),
            "test_auroc": test_auc, "best_epoch": best, "train_windows": clf.training_stats["train_images"],
            "fit_min": round(fit_s / 60, 2), "val_auroc_per_epoch": [r.get("val_auroc") for r in clf.history],
            "val_cases": val_cases, "test_cases": test_cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["cut", "fit"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seg-model", help="cut: a saved knee model (the knee example's model/)")
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--val", type=int, default=24)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--val-extra", type=int, default=0,
                    help="cut: also this many validation cases (same generator); fit: validate on them")
    ap.add_argument("--reference", action="store_true", help="fit: mix the reference-mask training windows in")
    ap.add_argument("--engine", default="bigdl", choices=["bigdl", "torch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="fit: override a ClassificationEstimator Param of the preset (VALUE as JSON)")
    args = ap.parse_args(argv)
    if args.mode == "cut" and not args.seg_model:
        ap.error("cut needs --seg-model")

    from bigdl_medimg.console import start_run

    out = Path(args.out).resolve()
    spark = start_run(out / "run")
    win = out / "windows"
    if args.mode == "cut":
        cut(spark, args, win)
        print(f"windows in {win}")
        return 0
    res = fit(spark, args, win)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_cases")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
