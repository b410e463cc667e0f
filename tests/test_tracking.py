"""MLflow tracking: a file store from the estimators, a real `mlflow server` from the command line, read back
through MlflowClient; nothing of a patient in what is logged."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import types as T

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.ports import free_port
from bigdl_medimg.tensor import from_numpy, tensor_type
from test_deid import _assert_clean

mlflow = pytest.importorskip("mlflow")  # installed by `make` (the mlflow extra): never skipped in CI
from mlflow.tracking import MlflowClient  # noqa: E402

EASY = ["Cardiomegaly", "Effusion"]


def _frame(spark, seeds, is_val):
    from bigdl_medimg.datasets.phantoms import CHEST_LABELS, chest_xray_phantom

    idx = [CHEST_LABELS.index(n) for n in EASY]
    rows = []
    for s in seeds:
        c = chest_xray_phantom(s, size=64, prevalence={n: 0.5 for n in EASY}, bits=8)
        rows.append((from_numpy((c.image.astype(np.float32) / 255.0)[None], np.eye(4)),
                     [float(c.labels[i]) for i in idx], bool(is_val)))
    schema = T.StructType([T.StructField("image", tensor_type()), T.StructField("labels", T.ArrayType(T.DoubleType())),
                           T.StructField("is_val", T.BooleanType())])
    return spark.createDataFrame(rows, schema)


def _files(client, run_id: str, path: str = "") -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(_files(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def _everything_logged(client, run, tmp_path) -> str:
    """Params, tags, metric names and every artifact's bytes of ``run``, as one text for the PHI scan."""
    parts = [json.dumps(run.data.params), json.dumps(run.data.tags), " ".join(run.data.metrics)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path)))
    for f in local.rglob("*"):
        if f.is_file():
            parts.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


@pytest.mark.slow
def test_estimator_logs_params_epochs_stats_and_model_to_a_file_store(spark, tmp_path):
    from pyspark.ml import PipelineModel

    from bigdl_medimg.ml import ClassificationEstimator

    data = _frame(spark, range(48), False).unionByName(_frame(spark, range(1000, 1016), True)).cache()
    store = (tmp_path / "mlruns").as_uri()
    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], topology="densenet_tiny",
                                  validationIndicatorCol="is_val", maxEpoch=3, batchSize=8,
                                  summaryDir=str(tmp_path / "summ"), trackingUri=store, experimentName="chest-test")
    model = est.fit(data)
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("chest-test")
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert model.training_stats["mlflow_run_id"] == run.info.run_id
    p = run.data.params
    assert p["maxEpoch"] == "3" and p["topology"] == "densenet_tiny" and p["labelNames"] == json.dumps(EASY)
    assert "trackingUri" not in p
    # one value per epoch, equal to the fit's own history
    hist = client.get_metric_history(run.info.run_id, "val_auroc")
    assert [m.step for m in hist] == [1, 2, 3]
    assert np.allclose([m.value for m in hist], [r["val_auroc"] for r in model.history])
    for name in ("loss", "samples_per_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2, 3], name
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
    assert all(0 < v < 10 for v in losses)
    assert run.data.metrics["train_images"] == 48 and run.data.metrics["val_images"] == 16
    files = _files(client, run.info.run_id)
    assert "training_stats.json" in files and any(f.startswith("model/stages/") for f in files)
    # the logged model is a PipelineModel that loads and scores like the fitted one
    (tmp_path / "dl").mkdir()
    local = client.download_artifacts(run.info.run_id, "model", str(tmp_path / "dl"))
    again = PipelineModel.load(local).transform(data).select("probability").collect()
    mine = model.transform(data).select("probability").collect()
    assert np.allclose([r.probability for r in again], [r.probability for r in mine], atol=1e-6)
    # no URI: nothing logged, no run
    est2 = est.copy({est.trackingUri: "", est.maxEpoch: 1})
    assert "mlflow_run_id" not in est2.fit(data).training_stats
    assert len(client.search_runs([exp.experiment_id])) == 1


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a file backend store, stopped after the test."""
    port = free_port()
    root = tmp_path / "server"
    root.mkdir()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1",
                             "--backend-store-uri", (root / "store").as_uri(),
                             "--artifacts-destination", (root / "artifacts").as_uri()],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("mlflow server did not start: " + (root / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_command_line_logs_train_and_evaluate_to_an_mlflow_server(spark, tmp_path, mlflow_server):
    from bigdl_medimg.cli import main
    from bigdl_medimg.datasets.layouts import write_chestxray14_replica

    # a data folder named after a patient, as hospital folders often are: none of it may reach the store
    data = write_chestxray14_replica(tmp_path / "DOE_JOHN_99887766" / "cxr", n_patients=24, size=64, seed=3,
                                     prevalence=0.3)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("task: chest_xray14\npreprocessing:\n  size: [64, 64]\n"
                   "estimator:\n  topology: densenet_tiny\n  batchSize: 8\n")
    run_dir = tmp_path / "run"
    assert main(["train", "--task", "chest_xray14", "--data", str(data), "--out", str(run_dir), "--config", str(cfg),
                 "--epochs", "2", "--mlflow", mlflow_server, "--experiment", "cxr"]) == 0
    info = json.loads((run_dir / "model" / "task.json").read_text())
    assert "trackingUri" not in info["config"]["estimator"] and mlflow_server not in json.dumps(info)
    assert main(["evaluate", "--model", str(run_dir / "model"), "--data", str(data), "--out", str(tmp_path / "ev"),
                 "--mlflow", mlflow_server, "--experiment", "cxr"]) == 0
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("cxr")
    runs = client.search_runs([exp.experiment_id])
    [parent] = [r for r in runs if r.info.run_id == info["mlflow_run_id"]]
    [child] = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    # the command's run: the task's settings, the saved PipelineModel, train.json; evaluate added its metrics
    # and the HTML report to the same run
    assert parent.data.params["preprocessing.size"] == "[64, 64]"
    files = _files(client, parent.info.run_id)
    assert "model/task.json" in files and any(f.startswith("model/pipeline/stages/") for f in files)
    assert {"train.json", "metrics.json", "report.html"} <= set(files)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    label = next(iter(metrics["auroc"]))
    logged = parent.data.metrics
    assert any(k.startswith("test.") for k in logged), logged
    flat = {k: v for k, v in logged.items() if k.startswith(f"test.auroc.{label}")}
    assert flat, logged
    # the estimator's fit is a child run with one value per epoch
    assert child.data.params["maxEpoch"] == "2"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_auroc")] == [1, 2]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "loss")] == [1, 2]
    for run in (parent, child):
        _assert_clean(_everything_logged(client, run, tmp_path / run.info.run_id), f"MLflow run {run.info.run_id}")
    assert not any(p in json.dumps(parent.data.params) for p in ("DOE", "99887766"))


def test_tracking_without_mlflow_is_a_config_error(spark, monkeypatch):
    from bigdl_medimg.ml import ClassificationEstimator

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64],
                                  topology="densenet_tiny", trackingUri="file:/tmp/nowhere")
    with pytest.raises(ConfigError, match=r"pip install 'bigdl-medimg\[mlflow\]'"):
        est.fit(_frame(spark, range(8), False))
