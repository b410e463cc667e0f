"""Sliding-window segmentation of one 160x384x384 volume: the library's SegmentationModel (BigDL on
local[2]) vs the same U-Net in PyTorch (2 threads) with the same windows, overlap, Gaussian blending
and batch.  Target >= 0.8x (volumes/s).  Weights are random: speed does not depend on them.

Usage: ``python bench/inference.py``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, mb, run_measured, table, write_json  # noqa: E402

SHAPE = (160, 384, 384)
PATCH = (32, 64, 64)
OVERLAP = 0.25
BATCH = 8
NET = dict(depth=2, base_filters=8, batch_norm=True)
N_CLASSES = 5


def _volume():
    import numpy as np

    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


def _time_model(spark, model) -> dict:
    """Seconds for ``model`` to segment the volume, after a warm-up on a small one (workers, imports, network)."""
    import numpy as np
    from pyspark.sql import types as T

    from bigdl_medimg.tensor import from_numpy, tensor_type

    schema = T.StructType([T.StructField("image", tensor_type())])
    small = spark.createDataFrame([(from_numpy(np.zeros((32, 64, 64), np.float32)),)], schema)
    model.transform(small).write.format("noop").mode("overwrite").save()
    df = spark.createDataFrame([(from_numpy(_volume(), np.eye(4)),)], schema)
    t0 = time.perf_counter()
    out = model.transform(df).select("segmentation.shape").collect()
    dt = time.perf_counter() - t0
    assert list(out[0][0]) == list(SHAPE), out
    spark.stop()
    return {"seconds": dt, "volumes_per_s": 1 / dt}


def bigdl_worker(args) -> dict:
    from bigdl_medimg import get_spark
    from bigdl_medimg.ml import SegmentationModel
    from bigdl_medimg.models import unet3d

    spark = get_spark(master=args.master)
    net = unet3d(N_CLASSES, PATCH, **NET)
    model = SegmentationModel(network=net, patchShape=list(PATCH), nClasses=N_CLASSES, overlap=OVERLAP,
                              batchSize=BATCH)
    return _time_model(spark, model)


def torch_engine_worker(args) -> dict:
    """The torch SegmentationModel: the volume tiled, scored and blended in one Python task with all cores."""
    from bigdl_medimg import get_spark
    from bigdl_medimg.ml import SegmentationModel
    from bigdl_medimg.ml.engines.torch import network_spec
    from bigdl_medimg.models import build_network

    # one volume is one task: it gets both cores (spark.task.cpus sets the worker's OMP_NUM_THREADS)
    spark = get_spark(master=args.master, conf={"spark.task.cpus": str(args.threads)})
    spec = network_spec("unet3d", N_CLASSES, [1, *PATCH], NET)
    net = build_network("unet3d", "torch", n_outputs=N_CLASSES, input_shape=[1, *PATCH], **NET).eval()
    model = SegmentationModel(network=net, network_spec=spec, patchShape=list(PATCH), nClasses=N_CLASSES,
                              overlap=OVERLAP, batchSize=BATCH, engine="torch")
    return _time_model(spark, model)


def torch_worker(args) -> dict:
    import numpy as np
    import torch

    from bigdl_medimg.ml.inference import blend_weights, window_starts
    from bigdl_medimg.models import build_network

    torch.set_num_threads(args.threads)
    net = build_network("unet3d", "torch", n_outputs=N_CLASSES, input_shape=[1, *PATCH], **NET).eval()
    vol = _volume()
    w = torch.from_numpy(blend_weights(PATCH, "gaussian"))

    def run(v):
        starts = window_starts(v.shape, PATCH, OVERLAP)
        acc = torch.zeros((N_CLASSES,) + v.shape)
        norm = torch.zeros(v.shape)
        x = torch.from_numpy(v)
        with torch.inference_mode():
            for b in range(0, len(starts), BATCH):
                chunk = starts[b:b + BATCH]
                tiles = torch.stack([x[tuple(slice(s, s + p) for s, p in zip(st, PATCH))] for st in chunk])[:, None]
                prob = torch.softmax(net(tiles), 1)
                for st, pr in zip(chunk, prob):
                    sl = tuple(slice(s, s + p) for s, p in zip(st, PATCH))
                    acc[(slice(None),) + sl] += pr * w
                    norm[sl] += w
        return torch.argmax(acc / norm, 0).to(torch.uint8).numpy()

    run(np.zeros(PATCH, np.float32))
    t0 = time.perf_counter()
    seg = run(vol)
    dt = time.perf_counter() - t0
    assert seg.shape == SHAPE
    return {"seconds": dt, "volumes_per_s": 1 / dt, "tiles": len(window_starts(SHAPE, PATCH, OVERLAP))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["bigdl", "torch", "torch_engine"])
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.worker:
        emit({"bigdl": bigdl_worker, "torch": torch_worker, "torch_engine": torch_engine_worker}[args.worker](args))
        return {}
    here = str(Path(__file__).resolve())
    ours = run_measured([here, "--worker", "bigdl"])
    engine = run_measured([here, "--worker", "torch_engine"])
    peer = run_measured([here, "--worker", "torch"])
    ratio = ours["volumes_per_s"] / peer["volumes_per_s"] if "error" not in ours and "error" not in peer else None
    t_ratio = engine["volumes_per_s"] / peer["volumes_per_s"] if "error" not in engine and "error" not in peer \
        else None
    res = {"shape": SHAPE, "patch": PATCH, "overlap": OVERLAP, "batch": BATCH, "bigdl": ours, "torch": peer,
           "torch_engine": engine, "ratio": ratio, "torch_engine_ratio": t_ratio}
    text = (f"Sliding-window inference, {'x'.join(map(str, SHAPE))} volume, {'x'.join(map(str, PATCH))} windows, "
            f"overlap {OVERLAP}, {peer.get('tiles', '?')} tiles (target >= 0.8x); ratio "
            f"{'-' if ratio is None else f'{ratio:.2f}x'}; torch engine (target >= 0.9x) "
            f"{'-' if t_ratio is None else f'{t_ratio:.2f}x'}\n\n")
    text += table(["run", "seconds", "driver peak", "JVM peak", "largest worker peak"], [
        ["SegmentationModel (BigDL, local[2])", _s(ours), mb(ours.get("rss", {}).get("driver_python")),
         mb(ours.get("rss", {}).get("jvm")), mb(ours.get("rss", {}).get("python_worker"))],
        ["SegmentationModel (torch engine, local[2], one task with 2 threads)", _s(engine),
         mb(engine.get("rss", {}).get("driver_python")), mb(engine.get("rss", {}).get("jvm")),
         mb(engine.get("rss", {}).get("python_worker"))],
        ["PyTorch, 2 threads", _s(peer), mb(peer.get("rss", {}).get("driver_python")), "-", "-"]])
    print(text)
    res["table"] = text
    write_json("inference", res)
    return res


def _s(r):
    return "failed: " + r["error"].strip().splitlines()[-1][:80] if "error" in r else f"{r['seconds']:.1f}"


if __name__ == "__main__":
    main()
