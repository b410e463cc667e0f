"""Reader throughput and series memory, side by side with a plain pydicom loop.

* ``ingest``: ``read_dicom`` on local[2] (decoded into the tensor column and
  written to Spark's no-op sink, so every row is materialised) vs one process
  running ``dcmread`` + ``pixel_array`` + modality LUT over the same 2,000
  uncompressed 512x512 16-bit slices.  Target >= 1.6x the loop's files/s.
* ``series``: ``read_dicom_series`` on local[2] over 50 series of 160 slices
  (256x256, 16-bit): wall time, and the peak resident memory of one Python
  worker above its idle size, against the decoded size of one series
  (target <= 3x).  The pydicom column is the same loop stacking each series.

Files are generated once under ``bench/data/`` (about 1 GB each set) and read
from the page cache by both sides (a warm-up pass reads them first).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, emit, mb, run_measured, table, write_json  # noqa: E402

INGEST = {"dir": DATA / "ingest", "series": 20, "slices": 100, "size": 512}
SERIES = {"dir": DATA / "series", "series": 50, "slices": 160, "size": 256}


def generate(spec: dict) -> list[Path]:
    import numpy as np

    from bigdl_medimg.io.dicom_write import write_dicom_series

    root = Path(spec["dir"])
    done = root / ".complete"
    if not done.exists():
        rng = np.random.default_rng(0)
        for s in range(spec["series"]):
            vol = rng.integers(0, 4000, (spec["slices"], spec["size"], spec["size"]), dtype=np.int16)
            aff = np.diag([3.0, 0.5, 0.5, 1.0])
            write_dicom_series(vol, aff, root / f"series_{s:03d}", uid_seed=f"bench-{root.name}-{s}")
        done.write_text("ok")
    return sorted(p for p in root.rglob("*.dcm"))


def _warm(files) -> int:
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += len(fh.read())
    return total


def pydicom_worker(args) -> dict:
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    spec = INGEST if args.part == "ingest" else SERIES
    files = generate(spec)
    nbytes = _warm(files)
    t0 = time.perf_counter()
    if args.part == "ingest":
        for f in files:
            ds = pydicom.dcmread(f)
            arr = apply_modality_lut(ds.pixel_array, ds)
        n = len(files)
    else:
        by_series: dict = {}
        for f in files:
            by_series.setdefault(f.parent, []).append(f)
        for folder, paths in by_series.items():
            dss = [pydicom.dcmread(p) for p in paths]
            dss.sort(key=lambda d: float(np.dot(d.ImagePositionPatient, np.cross(
                d.ImageOrientationPatient[:3], d.ImageOrientationPatient[3:]))))
            vol = np.stack([apply_modality_lut(d.pixel_array, d) for d in dss])
        n = len(by_series)
    dt = time.perf_counter() - t0
    return {"items": n, "seconds": dt, "items_per_s": n / dt, "mb_per_s": nbytes / dt / 2**20, "bytes": nbytes,
            "decoded_bytes": int(vol.nbytes) if args.part == "series" else int(arr.nbytes)}


def spark_worker(args) -> dict:
    import psutil

    from _common import RssSampler
    from bigdl_medimg import get_spark
    from bigdl_medimg.io import read_dicom, read_dicom_series

    spec = INGEST if args.part == "ingest" else SERIES
    files = generate(spec)
    nbytes = _warm(files)
    spark = get_spark(master=args.master, conf={"spark.python.worker.reuse": "true"})
    # warm-up: a small job starts the Python workers and loads the imports (what a long job pays once)
    reader = read_dicom if args.part == "ingest" else read_dicom_series
    warm_dir = str(files[0].parent)
    reader(spark, warm_dir).write.format("noop").mode("overwrite").save()
    idle = {}
    with RssSampler(os.getpid(), interval=0.02) as s:
        idle = max((p.memory_info().rss for p in psutil.Process().children(recursive=True)
                    if "pyspark" in " ".join(p.cmdline()) and "java" not in p.name()), default=0)
        t0 = time.perf_counter()
        df = reader(spark, str(spec["dir"]))
        df.write.format("noop").mode("overwrite").save()
        dt = time.perf_counter() - t0
    n_err = df.filter("error is not null").count()
    n = df.count()
    spark.stop()
    return {"items": n, "errors": n_err, "seconds": dt, "items_per_s": n / dt, "mb_per_s": nbytes / dt / 2**20,
            "bytes": nbytes, "worker_peak": s.peak.get("python_worker"), "worker_idle": idle}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["pydicom", "spark"])
    ap.add_argument("--part", choices=["ingest", "series"], default="ingest")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args(argv)
    if args.worker:
        emit(pydicom_worker(args) if args.worker == "pydicom" else spark_worker(args))
        return {}
    here = str(Path(__file__).resolve())
    results = {}
    for part in ("ingest", "series"):
        peer = run_measured([here, "--worker", "pydicom", "--part", part])
        ours = run_measured([here, "--worker", "spark", "--part", part])
        results[part] = {"pydicom": peer, "spark": ours}
        if "error" not in peer and "error" not in ours:
            results[part]["ratio"] = ours["items_per_s"] / peer["items_per_s"]
    ing, ser = results["ingest"], results["series"]
    rows = []
    for name, r in (("read_dicom local[2]", ing["spark"]), ("pydicom loop (1 process)", ing["pydicom"])):
        rows.append([name, _f(r, "items_per_s"), _f(r, "mb_per_s"), mb(r.get("rss", {}).get("driver_python")),
                     mb(r.get("rss", {}).get("jvm")), mb(r.get("rss", {}).get("python_workers_total"))])
    text = (f"Ingest: 2,000 uncompressed 512x512 16-bit slices (target >= 1.6x); ratio "
            f"{ing.get('ratio', float('nan')):.2f}x\n\n")
    text += table(["reader", "files/s", "MB/s", "driver peak", "JVM peak", "workers peak"], rows)
    decoded = SERIES["slices"] * SERIES["size"] ** 2 * 2
    if "error" not in ser["spark"]:
        task = ser["spark"]["worker_peak"] - ser["spark"]["worker_idle"]
        ser["task_peak_bytes"], ser["series_decoded_bytes"] = task, decoded
        ser["task_ratio"] = task / decoded
    text += (f"\n\nSeries assembly: 50 series x 160 slices of 256x256 16-bit (decoded series {mb(decoded)}; "
             f"target: worker peak per task <= 3x)\n\n")
    text += table(["reader", "series/s", "MB/s", "worker peak above idle", "x series", "JVM peak"], [
        ["read_dicom_series local[2]", _f(ser["spark"], "items_per_s"), _f(ser["spark"], "mb_per_s"),
         mb(ser.get("task_peak_bytes")), f"{ser.get('task_ratio', float('nan')):.2f}",
         mb(ser["spark"].get("rss", {}).get("jvm"))],
        ["pydicom loop (1 process)", _f(ser["pydicom"], "items_per_s"), _f(ser["pydicom"], "mb_per_s"),
         mb(ser["pydicom"].get("rss", {}).get("driver_python")), "-", "-"]])
    print(text)
    results["table"] = text
    write_json("ingest", results)
    return results


def _f(r: dict, key: str) -> str:
    if "error" in r:
        return "failed: " + r["error"].strip().splitlines()[-1][:80]
    return f"{r[key]:.1f}"


if __name__ == "__main__":
    main()
