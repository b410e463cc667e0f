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

from common import DATA, emit, mb, run_measured, table, write_json  # noqa: E402

INGEST = {"dir": DATA / "ingest", "series": 20, "slices": 100, "size": 512}
SERIES = {"dir": DATA / "series", "series": 50, "slices": 160, "size": 256}
# decode-bound case: JPEG 2000 lossless slices (smooth anatomy-like content plus noise)
J2K = {"dir": DATA / "ingest_j2k", "series": 5, "slices": 100, "size": 512, "j2k": True}
PARTS = {"ingest": INGEST, "series": SERIES, "j2k": J2K}
TUNED = {"spark.sql.execution.arrow.maxRecordsPerBatch": 64, "spark.sql.files.maxPartitionBytes": "256m"}


def generate(spec: dict) -> list[Path]:
    import numpy as np

    from bigdl_medimg.io.dicom_write import write_dicom_series

    root = Path(spec["dir"])
    done = root / ".complete"
    if not done.exists():
        rng = np.random.default_rng(0)
        n, size = spec["slices"], spec["size"]
        for s in range(spec["series"]):
            if spec.get("j2k"):
                z, y, x = np.ogrid[:n, :size, :size]
                smooth = 1000 + 800 * np.sin(x / 40.0 + s) * np.cos(y / 55.0) + 3 * z
                vol = (smooth + rng.integers(0, 32, (n, size, size))).astype(np.int16)
            else:
                vol = rng.integers(0, 4000, (n, size, size), dtype=np.int16)
            aff = np.diag([3.0, 0.5, 0.5, 1.0])
            paths = write_dicom_series(vol, aff, root / f"series_{s:03d}", uid_seed=f"bench-{root.name}-{s}")
            if spec.get("j2k"):
                import pydicom
                from pydicom.uid import JPEG2000Lossless

                for p in paths:
                    ds = pydicom.dcmread(p)
                    ds.compress(JPEG2000Lossless)
                    ds.save_as(p)
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

    spec = PARTS[args.part]
    files = generate(spec)
    nbytes = _warm(files)
    t0 = time.perf_counter()
    if args.part != "series":
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
            "decoded_bytes": int(vol.nbytes) if args.part == "series" else int(np.asarray(arr).nbytes)}


def _idle_workers_rss(psutil) -> int:
    """The largest idle PySpark worker's RSS (a worker exiting meanwhile, a zombie, is skipped)."""
    peak = 0
    for p in psutil.Process().children(recursive=True):
        try:
            if "pyspark" in " ".join(p.cmdline()) and "java" not in p.name():
                peak = max(peak, p.memory_info().rss)
        except psutil.Error:
            continue
    return peak


def spark_worker(args) -> dict:
    import psutil

    from common import RssSampler
    from bigdl_medimg import get_spark
    from bigdl_medimg.io import read_dicom, read_dicom_series

    spec = PARTS[args.part]
    files = generate(spec)
    nbytes = _warm(files)
    conf = {"spark.python.worker.reuse": "true", **(TUNED if args.tuned else {})}
    spark = get_spark(master=args.master, conf=conf)
    # warm-up: a small job starts the Python workers and loads the imports (what a long job pays once)
    reader = read_dicom_series if args.part == "series" else read_dicom
    warm_dir = str(files[0].parent)
    reader(spark, warm_dir).write.format("noop").mode("overwrite").save()
    idle = {}
    with RssSampler(os.getpid(), interval=0.02) as s:
        idle = _idle_workers_rss(psutil)
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
    ap.add_argument("--part", choices=sorted(PARTS), default="ingest")
    ap.add_argument("--tuned", action="store_true", help="larger Arrow batches and file partitions (TUNED)")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args(argv)
    if args.worker:
        emit(pydicom_worker(args) if args.worker == "pydicom" else spark_worker(args))
        return {}
    here = str(Path(__file__).resolve())
    results = {}
    for part in ("ingest", "j2k", "series"):
        peer = run_measured([here, "--worker", "pydicom", "--part", part])
        ours = run_measured([here, "--worker", "spark", "--part", part])
        results[part] = {"pydicom": peer, "spark": ours}
        if part != "series":
            results[part]["spark_tuned"] = run_measured([here, "--worker", "spark", "--part", part, "--tuned"])
    for part, res in results.items():
        for k in ("spark", "spark_tuned"):
            if k in res and "error" not in res[k] and "error" not in res["pydicom"]:
                res[f"ratio_{k}"] = res[k]["items_per_s"] / res["pydicom"]["items_per_s"]
    ser = results["series"]
    rows = []
    for part, what in (("ingest", "2,000 uncompressed"), ("j2k", "500 JPEG 2000 lossless")):
        r = results[part]
        for name, key in (("read_dicom local[2]", "spark"), ("read_dicom local[2], tuned", "spark_tuned"),
                          ("pydicom loop (1 process)", "pydicom")):
            x = r[key]
            ratio = r.get(f"ratio_{key}")
            rows.append([what, name, _f(x, "items_per_s"), _f(x, "mb_per_s"), "-" if ratio is None else f"{ratio:.2f}x",
                         mb(x.get("rss", {}).get("driver_python")), mb(x.get("rss", {}).get("jvm")),
                         mb(x.get("rss", {}).get("python_workers_total"))])
    text = ("Ingest: 512x512 16-bit slices, read_dicom on local[2] vs a one-process pydicom loop (target >= 1.6x "
            "on the uncompressed set); tuned = Arrow batches of 64 rows and 256 MB file partitions\n\n")
    text += table(["slices", "reader", "files/s", "MB/s", "ratio", "driver peak", "JVM peak", "workers peak"], rows)
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
