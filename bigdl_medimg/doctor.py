"""``bigdl-medimg doctor``: is this environment able to run the library? One line per check, with the fix.

Each check gives ``ok``, ``warn`` (works, with a limit) or ``FAIL`` (the main
job cannot run).  The exit code is 1 when any check fails, 0 otherwise.
Nothing here needs Spark until the last checks, which start a tiny local
session (and, with ``--master``, ask a cluster's executors to import the
library).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .version import BIGDL_REQUIREMENTS, bigdl_install_command

__all__ = ["Check", "iter_checks", "run_checks", "format_check", "main", "MIN_DRIVER_MEMORY_GB"]

#: Driver heap the 3-D presets are run with in local mode (BigDL keeps the epoch's training patches and the
#: validation volumes on the driver there); below it the knee and meniscus commands can run out of memory.
MIN_DRIVER_MEMORY_GB = 8.0
SUPPORTED_JAVA = (8, 11, 17)
#: How long the executors may take to answer (a cluster that cannot place the job never does).
EXECUTOR_TIMEOUT_S = 180.0


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn", "FAIL"
    detail: str
    fix: str = ""


def format_check(c: Check) -> str:
    line = f"[{c.status:>4}] {c.name}: {c.detail}"
    return line + (f"\n       fix: {c.fix}" if c.fix else "")


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    v = sys.version_info
    ok = (v.major, v.minor) == (3, 11)
    return Check("python", "ok" if ok else "FAIL", f"{v.major}.{v.minor}.{v.micro} ({sys.executable})",
                 "" if ok else "use Python 3.11 (the tested stack: pyspark 3.5, BigDL 2.4.0, numpy<2)")


def java_executable() -> str | None:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def check_java() -> Check:
    java = java_executable()
    fix = "install a JDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; `make java` does it)"
    if java is None:
        return Check("java", "FAIL", "no java on PATH and no JAVA_HOME", fix)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("java", "FAIL", f"{java} does not run: {exc}", fix)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(m.group(1)) if m else 0
    major = int(m.group(2)) if major == 1 and m and m.group(2) else major  # "1.8.0" is Java 8
    if major not in SUPPORTED_JAVA:
        return Check("java", "FAIL", f"{java}: Java {major or '?'} (Spark 3.5 runs on 8, 11 or 17)", fix)
    return Check("java", "ok", f"Java {major} ({java})")


def check_pyspark() -> Check:
    v = _version("pyspark")
    if v is None:
        return Check("pyspark", "FAIL", "not installed", "pip install 'pyspark>=3.5,<3.6'")
    home = os.environ.get("JAVA_HOME")
    note = f"JAVA_HOME={home}" if home else "JAVA_HOME not set (java is taken from PATH)"
    if not v.startswith("3.5."):
        return Check("pyspark", "FAIL", f"{v}; {note}", "pip install 'pyspark>=3.5,<3.6'")
    return Check("pyspark", "ok", f"{v}; {note}")


def check_bigdl() -> Check:
    fix = bigdl_install_command()
    got = {name: _version(name) for name in BIGDL_REQUIREMENTS}
    missing = [n for n, v in got.items() if v is None]
    wrong = [f"{n} {got[n]} (want {want})" for n, want in BIGDL_REQUIREMENTS.items() if got[n] and got[n] != want]
    if missing or wrong:
        return Check("bigdl", "FAIL", "missing: " + ", ".join(missing) if missing else "; ".join(wrong), fix)
    try:
        from .session import bigdl_jars

        jars = [Path(j).name for j in bigdl_jars()]
    except Exception as exc:  # ConfigError: no jars under the wheel
        return Check("bigdl", "FAIL", str(exc), fix)
    dllib = [j for j in jars if j.startswith("bigdl-dllib")]
    core = [j for j in jars if j.startswith("all-") or j.startswith("bigdl-core")]
    if not (dllib and core):
        return Check("bigdl", "FAIL", f"jars found: {jars or 'none'} (need the dllib and the core jar)", fix)
    return Check("bigdl", "ok", ", ".join(f"{n} {v}" for n, v in got.items()) + f"; jars: {dllib[0]}, {core[0]}")


def check_numpy() -> Check:
    v = _version("numpy")
    if v is None:
        return Check("numpy", "FAIL", "not installed", "pip install 'numpy<2'")
    ok = int(v.split(".")[0]) < 2
    return Check("numpy", "ok" if ok else "FAIL", v, "" if ok else "pip install 'numpy<2' (BigDL 2.4 needs numpy 1)")


def check_optional(dist: str, what: str, extra: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(dist, "warn", f"not installed: {what} unavailable", f"pip install 'bigdl-medimg[{extra}]'")
    return Check(dist, "ok", v)


def check_highdicom() -> Check:
    v = _version("highdicom")
    return Check("highdicom", "ok" if v else "FAIL", v or "not installed (DICOM SEG output)",
                 "" if v else "pip install 'highdicom>=0.26,<0.29'")


#: Compressed transfer syntaxes seen in PACS exports, by the name pydicom gives them.
TRANSFER_SYNTAXES = ("JPEGBaseline8Bit", "JPEGExtended12Bit", "JPEGLosslessSV1", "JPEGLSLossless", "JPEGLSNearLossless",
                     "JPEG2000Lossless", "JPEG2000", "RLELossless", "DeflatedExplicitVRLittleEndian")


def check_decoders() -> Check:
    """Which compressed transfer syntaxes pydicom can decode here (pylibjpeg, pillow, pyjpegls plugins)."""
    from pydicom import uid
    from pydicom.pixels import get_decoder

    can, cannot = [], []
    for name in TRANSFER_SYNTAXES:
        try:
            ok = get_decoder(getattr(uid, name)).is_available
        except Exception:  # pydicom knows no decoder for it
            ok = False
        (can if ok else cannot).append(name)
    if cannot:
        return Check("pixel decoders", "warn", f"can decode {', '.join(can)}; cannot decode {', '.join(cannot)}",
                     "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls")
    return Check("pixel decoders", "ok", "all of " + ", ".join(can))


def _gigabytes(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(text).lower())
    if not m:
        return 0.0
    return float(m.group(1)) * {"": 1 / 2 ** 30, "k": 1 / 2 ** 20, "m": 1 / 1024, "g": 1, "t": 1024}[m.group(2)]


def check_driver_memory(profile: str, conf: dict | None = None) -> Check:
    from .session import resolve_settings

    try:
        mem = resolve_settings(profile, conf).get("spark.driver.memory", "1g")
    except Exception as exc:
        return Check("driver memory", "FAIL", f"profile {profile!r}: {exc}")
    gb = _gigabytes(mem)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30 if hasattr(os, "sysconf") else 0
    detail = f"spark.driver.memory {mem} (profile {profile}); this machine has {total:.0f} GiB"
    if total and gb > total:
        return Check("driver memory", "FAIL", detail + ": more than the machine has",
                     f"--conf spark.driver.memory={int(total * 0.6)}g")
    if gb < MIN_DRIVER_MEMORY_GB:
        return Check("driver memory", "warn", detail + f": the 3-D presets need {MIN_DRIVER_MEMORY_GB:.0f}g",
                     f"--conf spark.driver.memory={MIN_DRIVER_MEMORY_GB:.0f}g")
    return Check("driver memory", "ok", detail)


def check_spark_start(profile: str, master: str | None, conf: dict | None = None) -> tuple[Check, object]:
    """Start Spark with BigDL (local[1] unless ``master``), run a job and a BigDL layer; timed."""
    t0 = time.time()
    try:
        from .session import get_spark

        spark = get_spark(profile, conf=conf, master=master or "local[1]", app_name="bigdl-medimg-doctor")
        n = spark.sparkContext.parallelize(range(100), 2).map(lambda x: x * x).sum()
        from bigdl.dllib.nn.layer import Linear

        import numpy as np

        y = Linear(4, 2).forward(np.ones((1, 4), np.float32))
        assert n == 328350 and np.asarray(y).shape == (1, 2)
    except Exception as exc:
        from .errors import one_line

        text = one_line(str(exc))
        fix = ("BigDL needs the cluster's total cores: --conf spark.cores.max=N (spark-submit "
               "--total-executor-cores N)" if "total core number" in text
               else "`bigdl-medimg doctor --verbose` shows Spark's log")
        return Check("spark + bigdl", "FAIL", f"could not start: {text[:400]}", fix), None
    where = "local[1]" if not master else master
    return Check("spark + bigdl", "ok", f"session on {where}, a job and a BigDL layer in {time.time() - t0:.1f}s"), spark


def check_executors(spark) -> Check:
    """Every executor imports bigdl_medimg (same version as the driver)."""
    from . import __version__

    sc = spark.sparkContext
    slots = max(2, sc.defaultParallelism)

    def probe(_):
        import socket

        import bigdl_medimg

        yield (socket.gethostname(), bigdl_medimg.__version__)

    import threading

    # a cluster with no executor that can take the job would leave it waiting for resources forever
    sc.setJobGroup("bigdl-medimg-doctor", "doctor: executors import bigdl_medimg", interruptOnCancel=True)
    timer = threading.Timer(EXECUTOR_TIMEOUT_S, sc.cancelJobGroup, args=("bigdl-medimg-doctor",))
    timer.start()
    try:
        got = sc.parallelize(range(slots), slots).mapPartitions(probe).collect()
    except Exception as exc:
        if not timer.is_alive():
            return Check("executors", "FAIL", f"no answer from the executors within {EXECUTOR_TIMEOUT_S:.0f}s",
                         "check that the workers are alive and have the cores and memory the job asks for")
        from .errors import one_line

        return Check("executors", "FAIL", f"cannot import bigdl_medimg: {one_line(str(exc))[:300]}",
                     "ship the environment (make dist; spark-submit --archives dist/bigdl-medimg-env.tar.gz#environment)")
    finally:
        timer.cancel()
        sc.setLocalProperty("spark.jobGroup.id", None)
    hosts = sorted({h for h, _ in got})
    versions = sorted({v for _, v in got})
    if versions != [__version__]:
        return Check("executors", "FAIL", f"executors run bigdl_medimg {versions}, the driver {__version__}",
                     "ship the same environment to the executors (make dist)")
    return Check("executors", "ok", f"{len(got)} tasks on {', '.join(hosts)} imported bigdl_medimg {__version__}")


def iter_checks(profile: str = "local", master: str | None = None, start_spark: bool = True,
                conf: dict | None = None):
    """The checks in order, each as soon as it is done; Spark is started only when the installation checks pass."""
    failed = False
    for check in (check_python, check_java, check_pyspark, check_bigdl, check_numpy,
                  lambda: check_optional("torch", "engine='torch'", "torch"), check_highdicom, check_decoders,
                  lambda: check_optional("mlflow", "experiment tracking (--mlflow, trackingUri)", "mlflow"),
                  lambda: check_driver_memory(profile, conf)):
        c = check()
        failed = failed or c.status == "FAIL"
        yield c
    if not start_spark:
        return
    if failed:
        yield Check("spark + bigdl", "FAIL", "not tried: fix the failures above first")
        return
    started, spark = check_spark_start(profile, master, conf)
    yield started
    if spark is not None and master:
        yield check_executors(spark)


def run_checks(profile: str = "local", master: str | None = None, start_spark: bool = True,
               conf: dict | None = None) -> list[Check]:
    """All checks (:func:`iter_checks`) as a list."""
    return list(iter_checks(profile, master, start_spark, conf))


def main(profile: str = "local", master: str | None = None, out=None, conf: dict | None = None) -> int:
    """Print the checks; 0 when the main job can run, 1 otherwise."""
    out = out or sys.stdout
    checks = []
    for c in iter_checks(profile, master, conf=conf):
        checks.append(c)
        print(format_check(c), file=out, flush=True)
    failed = [c.name for c in checks if c.status == "FAIL"]
    print(f"doctor: {'cannot run: ' + ', '.join(failed) if failed else 'ready'}", file=out)
    return 1 if failed else 0
