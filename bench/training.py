"""Training throughput: the library's 3-D U-Net and 2-D DenseNet with BigDL on Spark vs the same nets in PyTorch.

Each configuration runs in a fresh process (a fresh JVM for BigDL, whose
``local[N]`` cannot change inside one); the parent samples the resident memory
of the driver, the JVM (in local mode also the executor where BigDL trains) and
the Python workers.

BigDL's samples/s is the median of the per-iteration ``Throughput`` its
TrainSummary records (first iterations dropped), so it excludes JVM start and
data caching; ``wall`` is every epoch's samples over the whole ``fit`` time.
PyTorch runs the same network, loss, optimiser (Adam), input, batch and thread
count, timed after warm-up iterations.

Usage: ``python bench/training.py [--quick]``; one configuration:
``python bench/training.py --worker bigdl --model unet --master local[2] ...``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, mb, run_measured, table, write_json  # noqa: E402

MODELS = {
    # the knee_cartilage preset: 16x32x32 patches, depth 2, 8 base filters, batch norm, 5 classes, dice_ce
    "unet": {"shape": [1, 16, 32, 32], "outputs": 5, "batch": 16, "samples": 256},
    # DenseNet-BC (growth 12, blocks 3-6-4: the library's densenet_small) on 1x128x128 X-rays, 14 labels
    "densenet": {"shape": [1, 128, 128], "outputs": 14, "batch": 16, "samples": 256},
}
UNET = dict(depth=2, base_filters=8, batch_norm=True)
DENSENET = dict(growth_rate=12, block_config=(3, 6, 4), init_features=24)
if os.environ.get("BENCH_DENSENET"):  # probe other widths: "growth,init"
    _g, _i = (int(v) for v in os.environ["BENCH_DENSENET"].split(","))
    DENSENET = dict(growth_rate=_g, block_config=(3, 6, 4), init_features=_i)
CLASS_WEIGHTS = [0.02, 1.0, 1.0, 1.0, 1.0]


def _data(spark, model: str, n: int, partitions: int):
    import numpy as np
    import pandas as pd
    from pyspark.sql import types as T

    cfg = MODELS[model]
    vox = int(np.prod(cfg["shape"]))
    label_len = vox // cfg["shape"][0] * cfg["outputs"] if model == "unet" else cfg["outputs"]

    def gen(batches):
        for pdf in batches:
            feats, labels = [], []
            for i in pdf["id"]:
                rng = np.random.default_rng(int(i))
                feats.append(rng.standard_normal(vox).astype(np.float32))
                if model == "unet":
                    cls = rng.integers(0, cfg["outputs"], vox)
                    labels.append(np.eye(cfg["outputs"], dtype=np.float32)[cls].reshape(-1))
                else:
                    labels.append((rng.random(cfg["outputs"]) < 0.2).astype(np.float32))
            yield pd.DataFrame({"features": feats, "label": labels})

    schema = T.StructType([T.StructField("features", T.ArrayType(T.FloatType())),
                           T.StructField("label", T.ArrayType(T.FloatType()))])
    df = spark.range(n, numPartitions=partitions).mapInPandas(gen, schema).cache()
    assert df.count() == n and label_len > 0
    return df


# OpenMP/MKL thread pinning for the BigDL JVM (set before it starts): one MKL thread per BigDL replica, each
# pinned to its own core, no spin-waiting between the two Spark jobs of an iteration
PINNING = {"KMP_AFFINITY": "granularity=fine,compact,1,0", "OMP_NUM_THREADS": "1", "KMP_BLOCKTIME": "0"}


def _breakdown(log_text: str) -> dict:
    """Median seconds per iteration of each part DistriOptimizer's DEBUG metrics summary reports.

    Per iteration BigDL logs ``Trained N records in S seconds`` (the wall of the iteration's two Spark jobs)
    and, at DEBUG, a ``Metrics Summary``: ``get weights average`` (fetching the weight partitions),
    ``computing time average`` (forward + backward on the replicas), ``aggregrateGradientParition average
    executor`` (summing the gradient partitions) and ``send weights average``; the rest of the wall is Spark
    scheduling (job and task launch, accumulators, the driver's broadcast) = job overhead.
    """
    import re

    import numpy as np

    walls = [float(m) for m in re.findall(r"Trained [\d.]+ records in ([\d.eE-]+) seconds", log_text)]
    parts: dict[str, list[float]] = {}
    for block in log_text.split("========== Metrics Summary ==========")[1:]:
        for line in block.split("=====")[0].splitlines():
            m = re.match(r"\s*(.+?) : ([\d.eE-]+) s\s*$", line)
            if m:
                parts.setdefault(m.group(1), []).append(float(m.group(2)))
    skip = 2  # warm-up iterations
    out = {"iteration": float(np.median(walls[skip:])) if len(walls) > skip else None}
    for key, name in (("get weights average", "get_weights"), ("computing time average", "compute"),
                      ("aggregrateGradientParition average executor", "aggregate_gradients"),
                      ("send weights average", "send_weights")):
        vals = parts.get(key, [])
        out[name] = float(np.median(vals[skip:])) if len(vals) > skip else None
    if out["iteration"] and out["compute"] is not None:
        known = sum(v for k, v in out.items() if k != "iteration" and v)
        out["spark_overhead"] = max(0.0, out["iteration"] - known)
    return out


def bigdl_worker(args) -> dict:
    import os

    import numpy as np
    from bigdl.dllib.nnframes import NNEstimator
    from bigdl.dllib.optim.optimizer import Adam, TrainSummary

    from bigdl_medimg import get_spark
    from bigdl_medimg.ml.tfevents import read_scalars

    if args.pin:
        os.environ.update(PINNING)
    log_path = None
    if args.breakdown:  # the JVM inherits fd 2: its log lines land in a file this worker parses
        log_path = tempfile.mktemp(prefix="bench-bigdl-", suffix=".log")
        os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    java_opts = f"-Dbigdl.engineType={args.engine}"
    if args.breakdown:  # the library's log4j2 file with DistriOptimizer at DEBUG
        from bigdl_medimg.session import conf_dir

        cfg_file = tempfile.mktemp(prefix="bench-log4j2-", suffix=".properties")
        Path(cfg_file).write_text((conf_dir() / "log4j2.properties").read_text()
                                  + "\nlogger.dopt.name = com.intel.analytics.bigdl.dllib.optim.DistriOptimizer$"
                                    "\nlogger.dopt.level = debug\n")
        java_opts += f" -Dlog4j2.configurationFile=file:{cfg_file} -Dbigdl.utils.LoggerFilter.disable=true"
    spark = get_spark(master=args.master, conf={"spark.driver.extraJavaOptions": java_opts,
                                                "spark.executor.extraJavaOptions": java_opts})
    cfg = MODELS[args.model]
    df = _data(spark, args.model, args.samples or cfg["samples"], args.partitions)
    if args.model == "densenet" and args.graph:  # BigDL's nn graph API, the form mkldnn converts
        from bigdl.dllib.nn.criterion import MultiLabelSoftMarginCriterion

        from bigdl_medimg.models.classifiers import densenet2d_graph

        # logits out; the criterion is BCE on their sigmoid (mkldnn has no sigmoid layer of its own)
        net = densenet2d_graph(cfg["outputs"], cfg["shape"], mkldnn=args.engine == "mkldnn", sigmoid=False,
                               **DENSENET)
        crit = MultiLabelSoftMarginCriterion()
        label_shape = [cfg["outputs"]]
    elif args.model == "unet":
        from bigdl_medimg.ml.segmentation_estimator import SegmentationEstimator
        from bigdl_medimg.models import unet3d

        seg = SegmentationEstimator(nClasses=cfg["outputs"], patchShape=cfg["shape"][1:], loss=args.loss,
                                    classWeights=CLASS_WEIGHTS)
        net = seg._training_network(unet3d(cfg["outputs"], cfg["shape"][1:], **UNET))
        crit = seg._criterion()
        if args.loss == "ce":
            raise SystemExit("use loss dice_ce: the bench data carries one-hot labels")
        label_shape = seg._label_shape()
    else:
        from bigdl.dllib.keras.layers import Activation
        from bigdl.dllib.keras.models import Sequential

        from bigdl_medimg.ml.classification import weighted_bce_loss
        from bigdl_medimg.models.classifiers import densenet2d

        net = Sequential()
        net.add(densenet2d(cfg["outputs"], cfg["shape"], **DENSENET))
        net.add(Activation("sigmoid"))
        crit = weighted_bce_loss(cfg["outputs"], np.full(cfg["outputs"], 0.8), np.full(cfg["outputs"], 0.2))
        label_shape = [cfg["outputs"]]
    sumdir = tempfile.mkdtemp(prefix="bench-summary-")
    # one summary for the run, as the library's engine keeps: BigDL truncates an event file made in the same second
    summary = TrainSummary(sumdir, "bench")
    est = NNEstimator(net, crit, cfg["shape"], label_shape).setBatchSize(args.batch) \
        .setOptimMethod(Adam(learningrate=1e-3)).setMaxEpoch(args.epochs).setTrainSummary(summary)
    if args.cache != "DRAM":
        est.setDataCacheLevel(args.cache, 2)
    t0 = time.perf_counter()
    if args.fit_per_epoch:  # what the library's loop does: one NNEstimator fit per epoch, same optimiser
        optim = Adam(learningrate=1e-3)
        for epoch in range(1, args.epochs + 1):
            NNEstimator(net, crit, cfg["shape"], label_shape).setBatchSize(args.batch).setOptimMethod(optim) \
                .setMaxEpoch(epoch).setTrainSummary(summary).fit(df)
    else:
        est.fit(df)
    wall = time.perf_counter() - t0
    summary.value.close()  # flushed: BigDL writes it from a thread of its own, once a second
    thr = [v for _, v, _ in read_scalars(f"{sumdir}/bench/train").get("Throughput", [])]
    steady = thr[2:] if len(thr) > 4 else thr
    n = df.count()
    spark.stop()
    out = {"samples_per_s": float(np.median(steady)) if steady else None, "iterations": len(thr),
           "wall_samples_per_s": n * args.epochs / wall, "fit_seconds": wall}
    if log_path:
        out["breakdown"] = _breakdown(open(log_path, errors="replace").read())
        os.unlink(log_path)
    return out


def torch_worker(args) -> dict:
    import numpy as np
    import torch

    from bigdl_medimg.ml.engines.torch_tasks import dice_ce_loss, weighted_bce_loss
    from bigdl_medimg.models import build_network

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = MODELS[args.model]
    b = args.batch
    x = torch.randn(b, *cfg["shape"])
    if args.model == "unet":
        net = build_network("unet3d", "torch", n_outputs=cfg["outputs"], input_shape=cfg["shape"], **UNET)
        cls = torch.randint(0, cfg["outputs"], (b, *cfg["shape"][1:]))
        y = torch.nn.functional.one_hot(cls, cfg["outputs"]).permute(0, 4, 1, 2, 3).float()
        w = torch.tensor(CLASS_WEIGHTS)
        loss_fn = lambda out: dice_ce_loss(out, y, w)  # noqa: E731
    else:
        net = build_network("densenet_small", "torch", n_outputs=cfg["outputs"], input_shape=cfg["shape"])
        y = (torch.rand(b, cfg["outputs"]) < 0.2).float()
        loss_fn = lambda out: weighted_bce_loss(out, y, 0.8, 0.2)  # noqa: E731
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x))
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"samples_per_s": b / float(np.median(times)), "iterations": args.iterations}


def torch_engine_worker(args) -> dict:
    """The library's torch engine (DDP ranks on a Spark barrier stage) through the estimators."""
    import numpy as np
    from pyspark.sql import types as T

    from bigdl_medimg import get_spark
    from bigdl_medimg.ml import ClassificationEstimator, SegmentationEstimator
    from bigdl_medimg.ml.tfevents import read_scalars
    from bigdl_medimg.tensor import from_numpy, tensor_type

    # --task-cpus 2 with one rank: one process with both cores instead of one rank per core
    spark = get_spark(master=args.master, conf={"spark.task.cpus": str(args.task_cpus)})
    cfg = MODELS[args.model]
    rng = np.random.default_rng(0)
    sumdir = tempfile.mkdtemp(prefix="bench-summary-")
    common = dict(batchSize=args.batch, maxEpoch=args.epochs, learningRate=1e-3, optimizer="adam",
                  lrSchedule="constant", summaryDir=sumdir, engine="torch", numRanks=args.ranks)
    if args.model == "unet":  # one patch per volume, the whole volume: the same samples as the peer's
        rows = [(from_numpy(rng.standard_normal(cfg["shape"][1:]).astype(np.float32), np.eye(4)),
                 from_numpy(rng.integers(0, cfg["outputs"], cfg["shape"][1:]).astype(np.uint8), np.eye(4)))
                for _ in range(args.samples)]
        df = spark.createDataFrame(rows, T.StructType([T.StructField("image", tensor_type()),
                                                        T.StructField("mask", tensor_type())]))
        est = SegmentationEstimator(nClasses=cfg["outputs"], patchShape=cfg["shape"][1:], patchesPerImage=1,
                                    posFraction=0.0, classWeights=CLASS_WEIGHTS, depth=UNET["depth"],
                                    baseFilters=UNET["base_filters"], batchNorm=UNET["batch_norm"], **common)
        app = "segmentation"
    else:
        rows = [(from_numpy(rng.standard_normal(cfg["shape"]).astype(np.float32), np.eye(4)),
                 (rng.random(cfg["outputs"]) < 0.2).astype(float).tolist()) for _ in range(args.samples)]
        df = spark.createDataFrame(rows, T.StructType([T.StructField("image", tensor_type()),
                                                        T.StructField("label", T.ArrayType(T.DoubleType()))]))
        est = ClassificationEstimator(labelNames=[f"l{k}" for k in range(cfg["outputs"])], inputShape=cfg["shape"],
                                      topology="densenet_small", labelWeighting="none", **common)
        app = "classification"
    df = df.repartition(args.partitions).cache()
    df.count()
    t0 = time.perf_counter()
    model = est.fit(df)
    wall = time.perf_counter() - t0
    thr = [v for _, v, _ in read_scalars(f"{sumdir}/{app}/train").get("Throughput", [])]
    per_epoch = len(thr) // max(1, args.epochs)
    steady = [v for i, v in enumerate(thr) if i % per_epoch >= 2] if per_epoch > 4 else thr
    spark.stop()
    return {"samples_per_s": float(np.median(steady)) if steady else None, "iterations": len(thr),
            "ranks": model.training_stats["ranks"], "wall_samples_per_s": args.samples * args.epochs / wall,
            "fit_seconds": wall}


def _args(model, worker, **kw) -> list[str]:
    """Command line of one worker run; a value of ``""`` is a flag."""
    out = [str(Path(__file__).resolve()), "--worker", worker, "--model", model]
    for k, v in kw.items():
        out += [f"--{k}"] + ([] if v == "" else [str(v)])
    return out


# (label, model, BigDL options); the first row of each model is the library's default set-up
LEVERS = [
    ("default: mklblas, batch 16, 2 partitions, DRAM cache", "unet", {}),
    ("batch 32", "unet", {"batch": 32}),
    ("batch 64", "unet", {"batch": 64}),
    ("4 partitions", "unet", {"partitions": 4}),
    ("DISK_AND_DRAM cache", "unet", {"cache": "DISK_AND_DRAM"}),
    ("engine mkldnn", "unet", {"engine": "mkldnn"}),
    ("thread pinning (KMP_AFFINITY, OMP_NUM_THREADS=1, KMP_BLOCKTIME=0)", "unet", {"pin": ""}),
    ("default: mklblas, batch 16, 2 partitions, DRAM cache", "densenet", {}),
    ("batch 64", "densenet", {"batch": 64}),
    ("engine mkldnn (Keras model)", "densenet", {"engine": "mkldnn"}),
    ("nn graph API model (JoinTable(2, 0)), mklblas", "densenet", {"graph": ""}),
    ("nn graph API model, engine mkldnn (input nchw)", "densenet", {"graph": "", "engine": "mkldnn"}),
    ("thread pinning (KMP_AFFINITY, OMP_NUM_THREADS=1, KMP_BLOCKTIME=0)", "densenet", {"pin": ""}),
]
# epochs: 3 one-epoch NNEstimator fits (the library's loop) vs one fit of 3 epochs; wall samples/s
EPOCH_LEVERS = [("one fit of 3 epochs", {"epochs": 3}), ("3 fits of one epoch (the library)", {"epochs": 3,
                                                                                                "fit-per-epoch": ""})]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["bigdl", "torch", "torch_engine"])
    ap.add_argument("--model", choices=sorted(MODELS), default="unet")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--engine", default="mklblas")
    ap.add_argument("--cache", default="DRAM")
    ap.add_argument("--ranks", type=int, default=0, help="torch engine: ranks (0 = one per task slot)")
    ap.add_argument("--task-cpus", type=int, default=1, help="torch engine: spark.task.cpus (threads per rank)")
    ap.add_argument("--loss", default="dice_ce")
    ap.add_argument("--pin", action="store_true", help="BigDL: pin OpenMP/MKL threads (KMP_AFFINITY...)")
    ap.add_argument("--breakdown", action="store_true", help="BigDL: parse DistriOptimizer's DEBUG metrics")
    ap.add_argument("--graph", action="store_true", help="BigDL DenseNet written with the nn graph API")
    ap.add_argument("--fit-per-epoch", action="store_true", help="BigDL: one NNEstimator fit per epoch")
    ap.add_argument("--quick", action="store_true", help="default set-ups only (no lever sweep)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.worker:
        args.batch = args.batch or MODELS[args.model]["batch"]
        args.samples = args.samples or max(MODELS[args.model]["samples"], args.batch * 8)
        emit({"bigdl": bigdl_worker, "torch": torch_worker, "torch_engine": torch_engine_worker}[args.worker](args))
        return {}

    results = {"models": {k: {**v, **({"unet": UNET, "densenet": DENSENET}[k])} for k, v in MODELS.items()},
               "runs": []}
    levers = [lv for lv in LEVERS if not args.quick or lv[0].startswith("default")]
    rows = []
    for label, model, opts in levers:
        batch = opts.get("batch", MODELS[model]["batch"])
        r = run_measured(_args(model, "bigdl", **opts))
        t = run_measured(_args(model, "torch", batch=batch, threads=2))
        ratio = (r.get("samples_per_s") or 0) / t["samples_per_s"] if "samples_per_s" in t and r.get(
            "samples_per_s") else None
        results["runs"].append({"model": model, "lever": label, "options": opts, "bigdl": r, "torch": t,
                                "ratio": ratio})
        rows.append([model, label, _sps(r), _sps(t), "-" if ratio is None else f"{ratio:.2f}x",
                     mb(r.get("rss", {}).get("jvm")), mb(r.get("rss", {}).get("driver_python")),
                     mb(t.get("rss", {}).get("driver_python"))])
    # where an iteration's time goes (DistriOptimizer's DEBUG metrics), and one fit spanning epochs vs the loop
    breakdown, epochs = [], []
    for model in ("unet", "densenet"):
        r = run_measured(_args(model, "bigdl", breakdown=""))
        breakdown.append({"model": model, **(r.get("breakdown") or {"error": r.get("cause") or r.get("error")})})
        for label, opts in EPOCH_LEVERS:
            r = run_measured(_args(model, "bigdl", **opts))
            epochs.append({"model": model, "lever": label, "run": r})
    results["breakdown"], results["epochs"] = breakdown, epochs
    # scaling: the default U-Net and DenseNet set-ups on one core
    scaling = []
    for model in ("unet", "densenet"):
        one = run_measured(_args(model, "bigdl", master="local[1]", partitions=1))
        two = next(x["bigdl"] for x in results["runs"] if x["model"] == model and x["lever"].startswith("default"))
        s = (two.get("samples_per_s") or 0) / one["samples_per_s"] if one.get("samples_per_s") else None
        t1 = run_measured(_args(model, "torch", threads=1))
        t2 = next(x["torch"] for x in results["runs"] if x["model"] == model and x["lever"].startswith("default"))
        ts = t2["samples_per_s"] / t1["samples_per_s"] if "samples_per_s" in t1 and "samples_per_s" in t2 else None
        scaling.append({"model": model, "bigdl_local1": one, "bigdl_local2": two, "speedup": s,
                        "torch_1_thread": t1, "torch_speedup": ts})
    results["scaling"] = scaling
    # the torch engine: the same networks, batch and samples through the estimators, local[2] and local[1]
    engine_runs = []
    for model in ("unet", "densenet"):
        peer = next(x["torch"] for x in results["runs"] if x["model"] == model and x["lever"].startswith("default"))
        two = run_measured(_args(model, "torch_engine", epochs=2))
        one = run_measured(_args(model, "torch_engine", epochs=2, master="local[1]", partitions=1))
        wide = run_measured(_args(model, "torch_engine", epochs=2, ranks=1, **{"task-cpus": 2}))
        ok = all(r.get("samples_per_s") for r in (two, one)) and "samples_per_s" in peer
        engine_runs.append({"model": model, "local2": two, "local1": one, "one_rank_two_threads": wide, "peer": peer,
                            "ratio": two["samples_per_s"] / peer["samples_per_s"] if ok else None,
                            "scaling": two["samples_per_s"] / one["samples_per_s"] if ok else None})
    results["torch_engine"] = engine_runs
    text = "Training throughput (samples/s; BigDL local[2] vs PyTorch 2 threads; target >= 1.0x)\n\n"
    text += table(["model", "BigDL set-up", "BigDL", "PyTorch", "ratio", "JVM peak", "driver peak",
                   "PyTorch peak"], rows)
    text += "\n\nWhere a BigDL iteration goes (default set-up; median seconds per iteration from DistriOptimizer's " \
            "DEBUG metrics; overhead = iteration wall minus the parts: Spark job and task launch)\n\n"
    text += table(["model", "iteration", "get weights", "forward + backward", "aggregate gradients", "send weights",
                   "Spark overhead"],
                  [[b["model"]] + (["failed: " + str(b["error"])[:80]] if "error" in b else
                                   [_sec(b.get(k)) for k in ("iteration", "get_weights", "compute",
                                                             "aggregate_gradients", "send_weights",
                                                             "spark_overhead")]) for b in breakdown])
    text += "\n\nEpochs: one NNEstimator fit over 3 epochs vs 3 fits of one epoch (what the loop does to validate " \
            "and checkpoint each epoch); wall samples/s over the whole fit, caching included\n\n"
    text += table(["model", "set-up", "wall samples/s", "fit seconds"],
                  [[e["model"], e["lever"], "-" if "error" in e["run"] else f"{e['run']['wall_samples_per_s']:.1f}",
                    "-" if "error" in e["run"] else f"{e['run']['fit_seconds']:.1f}"] for e in epochs])
    text += "\n\nScaling (samples/s; target local[2] / local[1] >= 1.8x)\n\n"
    text += table(["model", "BigDL local[1]", "BigDL local[2]", "speed-up", "PyTorch 1 thread", "PyTorch speed-up"],
                  [[s["model"], _sps(s["bigdl_local1"]), _sps(s["bigdl_local2"]),
                    "-" if s["speedup"] is None else f"{s['speedup']:.2f}x", _sps(s["torch_1_thread"]),
                    "-" if s["torch_speedup"] is None else f"{s['torch_speedup']:.2f}x"] for s in scaling])
    text += "\n\nTorch engine (DDP ranks on a barrier stage, through the estimators; samples/s; targets: local[2] vs " \
            "PyTorch 2 threads >= 1.0x, local[2] / local[1] >= 1.8x)\n\n"
    text += table(["model", "engine local[2] (2 ranks x 1 thread)", "1 rank x 2 threads", "PyTorch 2 threads",
                   "ratio", "engine local[1]", "scaling", "fit wall (2 epochs, local[2])",
                   "engine peak (JVM + workers)"],
                  [[e["model"], _sps(e["local2"]), _sps(e["one_rank_two_threads"]), _sps(e["peer"]),
                    "-" if e["ratio"] is None else f"{e['ratio']:.2f}x",
                    _sps(e["local1"]), "-" if e["scaling"] is None else f"{e['scaling']:.2f}x",
                    "-" if "fit_seconds" not in e["local2"] else f"{e['local2']['fit_seconds']:.1f} s",
                    mb((e["local2"].get("rss", {}).get("jvm") or 0) + (e["local2"].get("rss", {}).get("python_worker")
                                                                       or 0))] for e in engine_runs])
    print(text)
    results["table"] = text
    write_json("training", results)
    return results


def _sec(v) -> str:
    return "-" if v is None else f"{v:.3f} s"


def _sps(r: dict) -> str:
    if "error" in r:
        return "failed: " + (r.get("cause") or r["error"].strip().splitlines()[-1])[:90]
    return f"{r['samples_per_s']:.1f}" if r.get("samples_per_s") else "-"


if __name__ == "__main__":
    main()
