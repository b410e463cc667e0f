"""A real Spark standalone cluster on 127.0.0.1 (a master and two 1-core workers from the pyspark
distribution): the ChestX-ray14 example trains through spark-submit, BigDL's training tasks run on
both executors (read from Spark's event log), executors are killed mid-epoch twice and the run resumes
from its checkpoints each time, the saved model is then used, and the cluster is torn down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bigdl_medimg.ports import free_port
from bigdl_medimg.session import bigdl_jars

ROOT = Path(__file__).resolve().parents[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    home = _spark_home()
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1",
               PYSPARK_PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYSPARK_GATEWAY_PORT", None)
    port, ui = free_port(), free_port()
    cls = str(home / "bin" / "spark-class")
    procs = [subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env,
                              stdout=open(root / "master.log", "w"), stderr=subprocess.STDOUT)]
    url = f"spark://127.0.0.1:{port}"
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [cls, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "3g", "--webui-port", str(free_port()), "--work-dir", str(root / f"work{i}")],
                env=env, stdout=open(root / f"worker{i}.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 120
        alive = 0
        while time.time() < deadline:
            try:
                state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5).read())
                alive = sum(w["state"] == "ALIVE" for w in state.get("workers", []))
            except OSError:
                alive = 0
            if alive == 2:
                break
            time.sleep(1)
        assert alive == 2, (root / "master.log").read_text()[-2000:]
        yield {"url": url, "ui": ui, "env": env, "root": root}
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _executor_pids() -> dict[str, int]:
    """Executor ID -> pid of the executor processes running here."""
    pids = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in argv and b"--executor-id" in argv:
                pids[argv[argv.index(b"--executor-id") + 1].decode()] = int(d.name)
    return pids


def _example_on_cluster(cluster, tmp_path, *args):
    """(event-log folder, run folder, spark-submit command) of the ChestX-ray14 example on the cluster."""
    events = tmp_path / "events"
    events.mkdir()
    out = tmp_path / "chest"
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster["url"],
           "--jars", ",".join(bigdl_jars()), "--driver-memory", "2g", "--executor-memory", "2g",
           "--executor-cores", "1", "--total-executor-cores", "2",
           "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
           "--conf", f"spark.pyspark.python={sys.executable}",
           str(ROOT / "examples" / "chest_xray14.py"), "--out", str(out), *args]
    return events, out, cmd


@pytest.mark.slow
def test_spark_submit_training_on_both_executors_survives_killed_executors(cluster, spark, tmp_path):
    """The ChestX-ray14 example through spark-submit on the cluster; an executor is SIGKILLed during
    BigDL's epoch-2 iterations and another during epoch 3's.  A kill either fails BigDL's job (the
    survivor cannot fetch the lost weight slice) or is absorbed by Spark re-running the lost tasks, which
    rebuilds that replica from the epoch's starting weights; both times the estimator re-runs the epoch
    from the last checkpoint (weights and optimiser state), the standalone worker starts a new executor,
    and the run finishes.  Spark's event log shows BigDL's training tasks on the executors; the model is
    then used."""
    import signal

    events, out, cmd = _example_on_cluster(cluster, tmp_path, "--patients", "48", "--size", "64", "--topology",
                                           "densenet_tiny", "--epochs", "3", "--batch", "4")  # ~17 iterations/epoch
    log_path = tmp_path / "submit.log"
    # (executor killed, during the epoch after this checkpoint); both original executors go, "1" first
    plan = [("1", 1), ("0", 2)]
    killed = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cluster["env"])
        try:
            from bigdl_medimg.ml.tfevents import read_scalars

            deadline = time.time() + 600
            summary = out / "summaries" / "classification" / "train"
            while time.time() < deadline and proc.poll() is None and len(killed) < len(plan):
                executor, after = plan[len(killed)]
                done = next((out / "checkpoints").glob(f"fit-*/epoch_{after:04d}/state.json"), None)
                if done is not None:
                    # BigDL numbers iterations across epochs (a resumed epoch re-uses its numbers): a step
                    # two past the checkpointed epochs' last one means the optimiser is inside the next epoch
                    # (late flushes of the previous epoch's events do not count)
                    per_epoch = -(-json.loads(done.read_text())["history"][0]["images"] // 4)
                    steps = [s for s, _v, _t in read_scalars(str(summary)).get("Loss", [])]
                    if steps and max(steps) >= after * per_epoch + 2:
                        pids = _executor_pids()
                        assert executor in pids, pids
                        os.kill(pids[executor], signal.SIGKILL)
                        killed.append(executor)
                time.sleep(0.1)
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert killed == ["1", "0"], text[-3000:]
    assert proc.returncode == 0, text[-4000:]
    assert "retry 1 of 2 resumes from epoch_0001" in text, text[-4000:]
    assert "retry 2 of 2 resumes from epoch_0002" in text, text[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 3
    [fit] = (out / "checkpoints").glob("fit-*")  # one fit: the retries resumed in its own folder
    state = json.loads((fit / "epoch_0003" / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    # Spark's event log: the application ran on the standalone master; BigDL's distributed optimiser
    # ran its training tasks on both original executors (and on the replacement after the kill)
    log = [json.loads(line) for f in events.iterdir() for line in f.read_text().splitlines()]
    env = next(e for e in log if e["Event"] == "SparkListenerEnvironmentUpdate")
    assert env["Spark Properties"]["spark.master"] == cluster["url"]
    executors = {e["Executor ID"] for e in log if e["Event"] == "SparkListenerExecutorAdded"}
    assert len(executors) >= 4  # two, plus the ones started in place of the killed ones
    stages = {e["Stage Info"]["Stage ID"]: e["Stage Info"]["Stage Name"] for e in log
              if e["Event"] == "SparkListenerStageSubmitted"}
    training = {s for s, name in stages.items() if "DistriOptimizer" in name}
    assert training, sorted(set(stages.values()))
    ran_on = {e["Task Info"]["Executor ID"] for e in log
              if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in training}
    assert {"0", "1"} <= ran_on and len(ran_on) >= 3, ran_on  # the originals and at least one replacement
    # the model trained on the cluster is used here (local session): it scores the replica's radiographs
    from bigdl_medimg import read_images
    from bigdl_medimg.ml import ClassificationModel
    from bigdl_medimg.transforms import PercentileScale, ResizeImage

    model = ClassificationModel.load(str(out / "model"))
    assert len(model.getLabelNames()) == 14 and model.getInputShape() == [1, 64, 64]
    images = read_images(spark, (out / "replica" / "images_001").as_uri()).limit(6)
    scored = model.transform(PercentileScale(lower=0.5, upper=99.5).transform(ResizeImage(size=[64, 64])
                                                                               .transform(images))).collect()
    assert len(scored) == 6 and all(len(r.probability) == 14 and 0 <= min(r.probability) for r in scored)


@pytest.mark.slow
def test_torch_engine_trains_on_both_executors_and_survives_a_killed_executor(cluster, tmp_path):
    """The same example with ``--engine torch``: one DDP rank per executor inside a barrier stage.  An
    executor is SIGKILLed during epoch 2; Spark cannot re-run a failed barrier result stage, so the job
    fails, the estimator re-runs the fit (``maxRetries``) once the worker has started a replacement
    executor, and the ranks resume from epoch 1's checkpoint (the history they return keeps the epoch-1
    record written before the kill) and finish."""
    import signal

    events, out, cmd = _example_on_cluster(cluster, tmp_path, "--patients", "96", "--size", "128", "--topology",
                                           "densenet_small", "--epochs", "3", "--batch", "4", "--engine", "torch")
    log_path = tmp_path / "submit.log"
    before, killed = None, False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cluster["env"])
        try:
            from bigdl_medimg.ml.tfevents import read_scalars

            deadline = time.time() + 600
            summary = out / "summaries" / "classification" / "train"
            while time.time() < deadline and proc.poll() is None and not killed:
                done = next((out / "checkpoints").glob("fit-*/epoch_0001/state.json"), None)
                if done is not None:
                    state = json.loads(done.read_text())
                    per_epoch = -(-state["history"][0]["images"] // 4)
                    steps = [s for s, _v, _t in read_scalars(str(summary)).get("Loss", [])]
                    if steps and max(steps) >= per_epoch + 2:
                        before = state["history"][0]
                        pids = _executor_pids()
                        assert "1" in pids, pids
                        os.kill(pids["1"], signal.SIGKILL)
                        killed = True
                time.sleep(0.05)
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert killed, text[-3000:]
    assert proc.returncode == 0, text[-4000:]
    [fit] = (out / "checkpoints").glob("fit-*")
    state = json.loads((fit / "epoch_0003" / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert state["history"][0] == before  # epoch 1 was not trained again: the ranks resumed from its checkpoint
    assert "retry 1 of 2 resumes from epoch_0001" in text, text[-4000:]
    log = [json.loads(line) for f in events.iterdir() for line in f.read_text().splitlines()]
    stages = [e["Stage Info"] for e in log if e["Event"] == "SparkListenerStageSubmitted"]
    barrier = {s["Stage ID"] for s in stages if any(r.get("Barrier") for r in s.get("RDD Info", []))}
    assert barrier, "no barrier stage in the event log"
    attempts = {(e["Stage Info"]["Stage ID"], e["Stage Info"]["Stage Attempt ID"]) for e in log
                if e["Event"] == "SparkListenerStageSubmitted" and e["Stage Info"]["Stage ID"] in barrier}
    assert len(attempts) >= 2, attempts  # the barrier stage ran again (a new job) after the kill
    ends = [e for e in log if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in barrier]
    ran_on = {e["Task Info"]["Executor ID"] for e in ends if e["Task End Reason"]["Reason"] == "Success"}
    assert len(ran_on) == 2, ran_on  # the finishing attempt's two ranks, on two executors
    assert any(e["Task Info"]["Executor ID"] == "1" for e in ends), "no rank ran on the killed executor"
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 3


@pytest.mark.slow
def test_doctor_reaches_the_cluster_and_its_executors_import_the_library(cluster):
    env = {k: v for k, v in cluster["env"].items() if k != "PYSPARK_GATEWAY_PORT"}
    doctor = [sys.executable, "-m", "bigdl_medimg", "doctor", "--profile", "standalone", "--master", cluster["url"],
              "--conf", "spark.executor.memory=1g", "--conf", "spark.driver.memory=2g"]
    # without the cluster's core count BigDL cannot start on a standalone master: doctor says how to give it
    proc = subprocess.run(doctor, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1 and "fix: BigDL needs the cluster's total cores: --conf spark.cores.max=N" in proc.stdout
    proc = subprocess.run(doctor + ["--conf", "spark.cores.max=2"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[  ok] spark + bigdl: session on {cluster['url']}" in proc.stdout
    assert "[  ok] executors:" in proc.stdout and "imported bigdl_medimg" in proc.stdout
    assert "[warn] driver memory: spark.driver.memory 2g" in proc.stdout  # below what the 3-D presets need
