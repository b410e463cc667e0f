"""``read_dicomweb`` on local[2] against a local Orthanc vs the loop a user would write instead.

The loop: QIDO-RS for the instances, then dicomweb-client retrieving them one
after another in one process (``retrieve_instance``) and decoding each with
pydicom (``pixel_array``).  Ours: ``read_dicomweb`` (QIDO-RS on the driver,
WADO-RS per series on the executors, decoded into the tensor column and
written to Spark's no-op sink).  Both read the same instances from the same
Orthanc (Debian's orthanc + orthanc-dicomweb, started here on 127.0.0.1 with
basic auth).  Target: >= 1.5x the loop's instances/s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, emit, mb, run_measured, table, write_json  # noqa: E402

SPEC = {"dir": DATA / "dicomweb", "series": 12, "slices": 40, "size": 256}


def generate() -> list[Path]:
    import numpy as np

    from bigdl_medimg.io.dicom_write import write_dicom_series

    root = Path(SPEC["dir"])
    if not (root / ".complete").exists():
        rng = np.random.default_rng(0)
        n, size = SPEC["slices"], SPEC["size"]
        for s in range(SPEC["series"]):
            vol = rng.integers(0, 4000, (n, size, size), dtype=np.int16)
            write_dicom_series(vol, np.diag([3.0, 0.5, 0.5, 1.0]), root / f"series_{s:03d}",
                               uid_seed=f"bench-dicomweb-{s}", series_description="BENCHWEB")
        (root / ".complete").write_text("ok")
    return sorted(root.rglob("*.dcm"))


def loop_worker(args) -> dict:
    from bigdl_medimg.io.dicomweb import Credentials, DicomWebConnection, query_instances

    conn = DicomWebConnection(args.url, Credentials(args.user, args.password))
    client = conn.client()
    t0 = time.perf_counter()
    found, _ = query_instances(conn, {"SeriesDescription": "BENCHWEB"})
    nbytes = 0
    for study, series, sop in found:
        ds = client.retrieve_instance(study, series, sop)
        nbytes += ds.pixel_array.nbytes
    dt = time.perf_counter() - t0
    return {"items": len(found), "seconds": dt, "items_per_s": len(found) / dt, "mb_per_s": nbytes / dt / 2**20}


def spark_worker(args) -> dict:
    from bigdl_medimg import get_spark
    from bigdl_medimg.io import read_dicomweb
    from bigdl_medimg.io.dicomweb import Credentials

    spark = get_spark(master=args.master, conf={"spark.python.worker.reuse": "true"})
    creds = Credentials(args.user, args.password)
    # warm-up: two series in two tasks start both Python workers and their imports (what a long job pays
    # once; the loop's process has its imports done too)
    from bigdl_medimg.io.dicomweb import DicomWebConnection, query_instances

    found, _ = query_instances(DicomWebConnection(args.url, creds), {"SeriesDescription": "BENCHWEB"})
    two = sorted({series for _, series, _ in found})[:2]
    read_dicomweb(spark, args.url, credentials=creds, query={"SeriesInstanceUID": two},
                  partitions=2).write.format("noop").mode("overwrite").save()
    t0 = time.perf_counter()
    df = read_dicomweb(spark, args.url, credentials=creds, query={"SeriesDescription": "BENCHWEB"})
    df.write.format("noop").mode("overwrite").save()
    dt = time.perf_counter() - t0
    n = df.count()
    errors = df.filter("error is not null").count()
    nbytes = n * SPEC["size"] ** 2 * 2
    spark.stop()
    return {"items": n, "errors": errors, "seconds": dt, "items_per_s": n / dt, "mb_per_s": nbytes / dt / 2**20}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["loop", "spark"])
    ap.add_argument("--url")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args(argv)
    if args.worker:
        emit(loop_worker(args) if args.worker == "loop" else spark_worker(args))
        return {}
    from bigdl_medimg.datasets.local_pacs import LocalOrthanc

    files = generate()
    here = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as tmp:
        server = LocalOrthanc(Path(tmp) / "orthanc")
        try:
            server.store(files)
            auth = ["--url", server.url, "--user", server.user, "--password", server.password]
            loop = run_measured([here, "--worker", "loop", *auth])
            ours = run_measured([here, "--worker", "spark", *auth])
        finally:
            server.stop()
    results = {"loop": loop, "spark": ours, "instances": len(files)}
    if "error" not in loop and "error" not in ours:
        results["ratio"] = ours["items_per_s"] / loop["items_per_s"]

    def cell(r, key):
        return "failed: " + r["error"].strip().splitlines()[-1][:80] if "error" in r else f"{r[key]:.1f}"

    ratio = results.get("ratio")
    text = (f"DICOMweb: {len(files)} instances ({SPEC['series']} series x {SPEC['slices']} slices, "
            f"{SPEC['size']}x{SPEC['size']} 16-bit) from a local Orthanc; read_dicomweb on local[2] vs a "
            "one-process dicomweb-client loop (target >= 1.5x)\n\n")
    text += table(["reader", "instances/s", "MB/s", "ratio", "driver peak", "JVM peak", "workers peak"], [
        ["read_dicomweb local[2]", cell(ours, "items_per_s"), cell(ours, "mb_per_s"),
         "-" if ratio is None else f"{ratio:.2f}x", mb(ours.get("rss", {}).get("driver_python")),
         mb(ours.get("rss", {}).get("jvm")), mb(ours.get("rss", {}).get("python_workers_total"))],
        ["dicomweb-client loop (1 process)", cell(loop, "items_per_s"), cell(loop, "mb_per_s"), "1.00x",
         mb(loop.get("rss", {}).get("driver_python")), "-", "-"]])
    print(text)
    results["table"] = text
    write_json("dicomweb", results)
    return results


if __name__ == "__main__":
    main()
