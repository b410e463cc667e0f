"""The CLI and the spark-submit example, run as a user runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bigdl_medimg.cli import main
from bigdl_medimg.io.dicom_write import write_dicom_series
from bigdl_medimg.session import bigdl_jars

ROOT = Path(__file__).resolve().parents[1]


def _series(folder: Path, n: int = 2):
    for i in range(n):
        write_dicom_series(np.full((4, 8, 8), 100 * (i + 1), np.int16), np.diag([2.0, 1, 1, 1]),
                           folder / f"s{i}", uid_seed=f"cli{i}")


def test_cli_ingest_exit_codes(spark, tmp_path, capsys):
    _series(tmp_path / "in")
    (tmp_path / "in" / "junk.bin").write_bytes(b"junk" * 100)
    out = tmp_path / "table"
    assert main(["ingest", "--kind", "series", "--input", str(tmp_path / "in"), "--out", str(out),
                 "--master", "local[2]"]) == 0
    text = capsys.readouterr().out
    assert "3 rows, 2 decoded, 1 with errors" in text and "not a DICOM file" in text
    assert spark.read.parquet(str(out)).count() == 3
    # exists already -> one clear line, exit 1, no stack trace
    assert main(["ingest", "--kind", "series", "--input", str(tmp_path / "in"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert main(["ingest", "--kind", "series", "--input", str(tmp_path / "in"), "--out", str(out),
                 "--overwrite", "--fail-on-error"]) == 3
    assert main(["ingest", "--kind", "nifti", "--input", str(tmp_path), "--out", str(tmp_path / "x"),
                 "--profile", "nope"]) == 2
    assert "unknown Spark profile" in capsys.readouterr().err


def test_example_runs_under_spark_submit(tmp_path):
    _series(tmp_path / "in")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               SPARK_LOCAL_IP="127.0.0.1")
    env.pop("PYSPARK_GATEWAY_PORT", None)
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
           "--jars", ",".join(bigdl_jars()), "--driver-memory", "1g",
           str(ROOT / "examples" / "ingest_dicom_series.py"), (tmp_path / "in").as_uri(), str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 series written" in proc.stdout and "0 with errors" in proc.stdout
    # the command line as a spark-submit script; its messages and exit codes come through spark-submit
    cli = cmd[:-3] + [str(ROOT / "examples" / "cli.py"), "ingest", "--kind", "series",
                      "--input", (tmp_path / "in").as_uri(), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "already exists" in proc.stdout  # spark-submit merges Python's stderr


def test_demo_runs_and_checks_itself(spark, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--readers-only"]) == 0
    out = capsys.readouterr().out
    assert "series : 4 rows, 3 decoded, 1 with errors" in out
    assert out.count("agree after RAS reorientation: True") == 3
    assert (tmp_path / "demo" / "preview.png").stat().st_size > 10000
