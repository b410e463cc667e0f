"""Peak memory of each preprocessing stage on a 160x256x256 int16 volume.

Two measurements per stage, reported against the volume's float32 size (the
issue's target: peak below 4x per task):

* ``row``: the per-row work a stage does in a Python worker (view the tensor
  bytes, run the pure-numpy function, wrap the result as an Arrow buffer), in a
  fresh subprocess under ``tracemalloc`` (numpy reports its buffers to it;
  scipy's internal C buffers are not seen, the ``task`` column sees them).  The
  input bytes are allocated before tracing starts, as Arrow hands them over.
* ``task``: the stage run by Spark (local[1], one row per Arrow batch) on three
  volumes, in a fresh session per stage, with the Python worker's resident
  memory sampled every 10 ms; reported as peak minus the worker's resident size
  after a warm-up run of the same stage on a tiny volume (imports loaded).

Usage: ``python bench/transforms_memory.py [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

SHAPE = (160, 256, 256)
F32 = SHAPE[0] * SHAPE[1] * SHAPE[2] * 4

STAGES = {
    "Reorient": "Reorient(axcodes='RAS', maskCol='mask')",
    "Resample": "Resample(spacing=[0.8, 0.8, 0.8], maskCol='mask')",
    "IntensityWindow": "IntensityWindow(low=0, high=2000)",
    "ZScoreNormalize": "ZScoreNormalize(nonzero=True)",
    "PercentileScale": "PercentileScale(lower=1, upper=99)",
    "CropOrPad": "CropOrPad(shape=[128, 288, 288], maskCol='mask')",
    "CropForeground": "CropForeground(margin=4, source='mask', maskCol='mask')",
    "Augment": "Augment(seed=1, affineProb=1.0, flipProb=0.5, rot90Prob=1.0, maskCol='mask')",
    "PatchSampler": "PatchSampler(patchShape=[96, 96, 96], patchesPerImage=4, labelCol='mask')",
}

_ROW_CODE = r'''
import tracemalloc, numpy as np, sys
from bigdl_medimg.transforms import *
from bigdl_medimg.tensor import from_numpy, to_numpy
from bigdl_medimg.arrow import tensor_array
from bigdl_medimg.tensor import tensor_type
from bigdl_medimg.arrow import arrow_schema
from pyspark.sql import types as T
TT = arrow_schema(T.StructType([T.StructField("t", tensor_type())])).field("t").type
enc_ = lambda a, f: tensor_array(a, f, TT)  # what the Spark path does: no copy of the result
rng = np.random.default_rng(0)
shape = {shape}
vol = rng.integers(0, 2000, shape).astype(np.int16)
mask = np.zeros(shape, np.uint8); mask[40:120, 60:200, 60:200] = 1
aff = np.diag([0.7, 0.7, 0.7, 1.0])
img_v, mask_v = from_numpy(vol, aff), from_numpy(mask, aff)
del vol, mask
stage = {stage}
stage._validate()
tracemalloc.start()
arr, marr = to_numpy(img_v), to_numpy(mask_v)
if isinstance(stage, PatchSampler):
    from bigdl_medimg.transforms import array as A
    from bigdl_medimg.transforms.array import row_seed
    p = stage.getPatchShape()
    for start, fg in A.patch_starts(arr.shape, p, stage.getPatchesPerImage(), stage.getPosFraction(), marr,
                                    row_seed(0, img_v["data"])):
        enc = enc_(A.extract_patch(arr, start, p), aff)
        menc = enc_(A.extract_patch(marr, start, p), aff)
else:
    fn = stage._row_fn()
    out, oaff, mout = fn(arr, aff, marr, img_v["data"])
    enc = enc_(out, oaff)
    menc = None if mout is None else enc_(mout, oaff)
cur, peak = tracemalloc.get_traced_memory()
print(peak)
'''


def row_peak(stage_expr: str) -> int:
    code = _ROW_CODE.format(shape=SHAPE, stage=stage_expr)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def _workers():
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("pyspark" in part and ("daemon" in part or "worker" in part) for part in p.cmdline()):
                out.append(p)
        except psutil.Error:  # exited or zombie
            continue
    return out


def task_peak(spark, stage, df) -> int:
    import psutil

    base = {p.pid: p.memory_info().rss for p in _workers()}
    peak = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for p in _workers():
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                peak[p.pid] = max(peak.get(p.pid, 0), rss)
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    stage.transform(df).write.format("noop").mode("overwrite").save()
    stop.set()
    t.join()
    return max((v - base.get(pid, min(base.values(), default=0)) for pid, v in peak.items()), default=0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="bench/out/transforms_memory.json")
    ap.add_argument("--skip-spark", action="store_true")
    args = ap.parse_args(argv)
    results = {"shape": SHAPE, "float32_bytes": F32, "target_ratio": 4.0, "stages": {}}
    for name, expr in STAGES.items():
        results["stages"][name] = {"row_peak_bytes": row_peak(expr)}
    if not args.skip_spark:
        import numpy as np
        from pyspark.sql import types as T

        from bigdl_medimg import get_spark
        from bigdl_medimg import transforms as tr
        from bigdl_medimg.tensor import from_numpy, tensor_type

        aff = np.diag([0.7, 0.7, 0.7, 1.0])
        mask = np.zeros(SHAPE, np.uint8)
        mask[40:120, 60:200, 60:200] = 1
        schema = T.StructType([T.StructField("image", tensor_type()), T.StructField("mask", tensor_type())])
        for name, expr in STAGES.items():
            # a fresh session (and so fresh Python workers) per stage: nothing retained from earlier stages
            spark = get_spark(master="local[1]", conf={"spark.sql.execution.arrow.maxRecordsPerBatch": 1,
                                                       "spark.python.worker.reuse": "true"})
            rng = np.random.default_rng(0)
            rows = [(from_numpy(rng.integers(0, 2000, SHAPE).astype(np.int16), aff), from_numpy(mask, aff))
                    for _ in range(3)]
            df = spark.createDataFrame(rows, schema).repartition(1).cache()
            df.count()
            small = spark.createDataFrame([(from_numpy(np.ones((4, 4, 4), np.int16), aff),
                                            from_numpy(np.ones((4, 4, 4), np.uint8), aff))], schema)
            warm = eval(expr.replace("96, 96, 96", "2, 2, 2"), {k: getattr(tr, k) for k in tr.__all__})
            warm.transform(small.coalesce(1)).write.format("noop").mode("overwrite").save()  # imports done
            stage = eval(expr, {k: getattr(tr, k) for k in tr.__all__})
            results["stages"][name]["task_peak_bytes"] = task_peak(spark, stage, df)
            spark.stop()
    print(f"{'stage':18s} {'row peak':>10s} {'x f32':>6s} {'task peak':>10s} {'x f32':>6s}  target < 4x")
    for name, r in results["stages"].items():
        rp = r["row_peak_bytes"]
        tp = r.get("task_peak_bytes")
        r["row_ratio"] = rp / F32
        r["task_ratio"] = None if tp is None else tp / F32
        tps = "-" if tp is None else f"{tp / 2**20:8.0f}MB {tp / F32:6.2f}"
        print(f"{name:18s} {rp / 2**20:8.0f}MB {rp / F32:6.2f} {tps}")
    from pathlib import Path

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"written {args.json}")
    return results


if __name__ == "__main__":
    main()
