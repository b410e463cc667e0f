"""The console: what the command line prints, what goes to RUN/logs, progress displays, --verbose."""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bigdl_medimg.console import Progress, format_seconds, setup_console

ROOT = Path(__file__).resolve().parents[1]

#: What BigDL and the JVM print that a user must not see by default.
NOISE = [re.compile(p, re.M) for p in (
    r"creating: ", r"cls\.getname", r"BigDLBasePickler", r"^\S+ \S+ INFO ", r"DistriOptimizer",
    r"computeThresholdbatchSize", r"Setting default log level", r"sun\.reflect")]


def _cli(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    """The command line in a fresh process (its own JVM): exactly what a user's terminal gets."""
    full = dict(os.environ, BIGDL_MEDIMG_PROGRESS_SECONDS="0.5", **env)
    full.pop("PYSPARK_GATEWAY_PORT", None)
    full.pop("SPARK_LOCAL_IP", None)  # the machine's own hostname warning must be filtered, not avoided
    full.pop("BIGDL_MEDIMG_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "bigdl_medimg", *args], capture_output=True, text=True,
                          env=full, cwd=tmp_path, timeout=900)


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(p.search(line) for p in NOISE)]


@pytest.mark.slow
def test_train_and_predict_console_holds_only_the_library(tmp_path):
    from bigdl_medimg.datasets.layouts import write_chestxray14_replica

    data = write_chestxray14_replica(tmp_path / "cxr", n_patients=24, size=64, seed=3, prevalence=0.3)
    (tmp_path / "small.yaml").write_text("task: chest_xray14\npreprocessing:\n  size: [64, 64]\n"
                                         "estimator:\n  topology: densenet_tiny\n  batchSize: 4\n")
    run = tmp_path / "run"
    proc = _cli(["train", "--task", "chest_xray14", "--data", str(data), "--out", str(run),
                 "--config", "small.yaml", "--epochs", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert _noise(console) == [], _noise(console)[:10]
    # progress lines (iteration, loss, throughput, time left), each epoch's summary and the result
    assert re.search(r"epoch 1/2 \| iteration \d+/\d+ \| loss [\d.]+ \| [\d.]+ samples/s .*left", proc.stdout), \
        proc.stdout
    assert "epoch 2/2 done in" in proc.stdout and "trained chest_xray14 in" in proc.stdout
    assert proc.stderr.strip() == ""
    # what was kept off the console is in the run's logs
    logs = run / "logs"
    assert "creating: createZooKeras" in (logs / "bigdl-medimg.log").read_text()
    assert "BigDLBasePickler" in (logs / "jvm-stdout.log").read_text()
    spark_log = (logs / "spark.log").read_text()
    assert "INFO SparkContext" in spark_log and "INFO DAGScheduler" in spark_log

    proc = _cli(["predict", "--model", str(run / "model"), "--data", str(data / "images_001"),
                 "--out", str(tmp_path / "pred")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert _noise(console) == [], _noise(console)[:10]
    n_images = len(list((data / "images_001").rglob("*.png")))
    assert re.search(rf"predict: {n_images} images \| [\d.]+ images/s \| 0 errors", proc.stdout), proc.stdout
    assert '"written": %d' % n_images in proc.stdout
    assert "INFO" in (tmp_path / "pred" / "logs" / "spark.log").read_text()


@pytest.mark.slow
def test_ingest_shows_files_and_errors_and_verbose_shows_everything(tmp_path):
    from bigdl_medimg.datasets.synth import synth_dataset

    folder = synth_dataset("chest", tmp_path / "data", 6, seed=1, size=64)
    pngs = sorted(folder.rglob("*.png"))
    pngs[0].write_bytes(pngs[0].read_bytes()[:50])  # one broken file: counted, named in the summary
    proc = _cli(["ingest", "--kind", "images", "--input", str(folder), "--out", str(tmp_path / "t1")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _noise(proc.stdout + proc.stderr) == []
    n = len([p for p in folder.rglob("*") if p.is_file()])
    others = n - len(pngs) - len(list(folder.rglob("*.dcm")))  # the label table: not an image, a row error too
    bad = 1 + others
    assert re.search(rf"ingest images: {n}/{n} files \| [\d.]+ files/s \| .*\| {bad} errors$", proc.stdout, re.M), \
        proc.stdout
    assert f"{n} rows, {n - bad} decoded, {bad} with errors" in proc.stdout
    # --verbose: BigDL's pickler lines and Spark's INFO log are shown again
    proc = _cli(["ingest", "--kind", "images", "--input", str(folder), "--out", str(tmp_path / "t2"),
                 "--verbose"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BigDLBasePickler" in proc.stdout and re.search(r" INFO SparkContext: ", proc.stderr)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    term = _Terminal()
    bar = Progress("epoch 1/3", 10, "it", stream=term)
    for i in range(1, 11):
        bar.update(i, extra=f"loss {1 / i:.3f}")
    bar.close()
    text = term.getvalue()
    assert "\r" in text and "10/10" in text and "loss 0.100" in text and "epoch 1/3" in text

    plain = io.StringIO()
    setup_console(plain)
    try:
        lines = Progress("ingest", 100, "files", interval=3600, stream=plain)
        lines.update(0)  # nothing done: nothing to say
        lines.update(10, extra="0 errors")  # the first count is shown at once
        lines.update(20)  # then at most one line per interval
        lines.update(30, force=True)
        lines.update(30, force=True)  # a final update repeating the last line is not shown twice
        lines.close()
    finally:
        setup_console(sys.stdout)
    out = plain.getvalue().splitlines()
    assert len(out) == 2, out
    assert re.search(r"ingest: 10/100 files \| [\d.]+ files/s \| ~\S+ left \| 0 errors$", out[0]) and "\r" not in out[0]
    assert "ingest: 30/100 files" in out[1]
    assert format_seconds(42) == "42s" and format_seconds(187) == "3m07s" and format_seconds(3900) == "1h05m"


def test_bigdl_prints_go_to_the_log_not_the_console(spark, capsys, tmp_path, caplog):
    from bigdl.dllib.keras.layers import Dense

    from bigdl_medimg.console import run_logs

    with run_logs(tmp_path, spark):
        Dense(3)
    assert "creating:" not in capsys.readouterr().out
    assert "creating: createZooKerasDense" in (tmp_path / "logs" / "bigdl-medimg.log").read_text()

