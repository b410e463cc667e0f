"""The task examples on small data: CheXNet protocol on a ChestX-ray14 replica, two-stage meniscus-tear pipeline."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_chexnet_protocol_runs_on_the_replica_layout(spark, tmp_path, capsys):
    from bigdl_medimg.datasets.phantoms import CHEST_LABELS

    out = tmp_path / "chest"
    assert _example("chest_xray14").main(["--out", str(out), "--patients", "24", "--size", "64",
                                          "--topology", "densenet_tiny", "--epochs", "1", "--batch", "8"]) == 0
    text = capsys.readouterr().out
    assert "CheXNet" in text and "Wang 2017" in text
    res = json.loads((out / "result.json").read_text())
    test_list = (out / "replica" / "test_list.txt").read_text().split()
    assert res["test_images"] == len(test_list) > 0  # the official test list, every image scored
    assert list(res["auroc_per_label"]) == list(CHEST_LABELS)
    assert res["input_size"] == 64 and res["topology"] == "densenet_tiny"
    import pandas as pd

    from test_report import report_images

    preds = pd.read_csv(next((out / "predictions.csv").glob("part-*.csv")))
    assert sorted(preds["image_index"]) == sorted(test_list)
    assert [c for c in preds.columns if c.startswith("prob_")] == [f"prob_{n}" for n in CHEST_LABELS]
    assert len(report_images((out / "report.html").read_text())) == 4


@pytest.mark.slow
def test_two_stage_meniscus_pipeline_saved_loaded_in_a_fresh_session_on_dicom(spark, tmp_path):
    out = tmp_path / "tear"
    assert _example("meniscus_tear").main(["--out", str(out), "--train", "10", "--val", "4", "--test", "4",
                                           "--shape", "16,32,32", "--seg-train", "6", "--seg-epochs", "1",
                                           "--epochs", "2"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["test_series"] == 4 and res["variant"] == "meniscus-roi"
    # trained as served: the classifier's windows come from stage 1's predicted masks, every case accounted for
    assert res["windows"] == "stage-1 predicted masks" and res["train_val_with_window"] > 0
    assert res["train_val_with_window"] + res["train_val_no_meniscus"] + res["train_val_unreadable"] == 14
    assert res["test_with_window"] + res["test_no_meniscus"] + res["test_unreadable"] == 4
    # outputs: predictions keyed by UIDs, one DICOM SEG per test series referencing it, a report
    preds = spark.read.parquet(str(out / "predictions")).toPandas()
    assert list(preds.columns[:2]) == ["study_instance_uid", "series_instance_uid"] and len(preds) == 4
    assert preds["prob_tear"].dropna().between(0, 1).all() and set(preds["true_tear"]) <= {0, 1}
    assert preds["prob_tear"].notna().sum() == 4 - res["test_no_meniscus"]
    import pydicom

    segs = sorted((out / "seg").glob("*.seg.dcm"))
    assert len(segs) == 4
    referenced = {pydicom.dcmread(p).ReferencedSeriesSequence[0].SeriesInstanceUID for p in segs}
    assert referenced == set(preds["series_instance_uid"])
    from test_report import report_images

    assert len(report_images((out / "report.html").read_text())) == 4
    # a new Python process and JVM: load the saved PipelineModel and apply it to the DICOM series
    code = f"""
import sys
from pyspark.ml import PipelineModel
from bigdl_medimg import get_spark, read_dicom_series
spark = get_spark(master="local[1]", spark_driver_memory="4g")
stages = PipelineModel.load({str(out / 'pipeline')!r})
names = [type(s).__name__ for s in stages.stages]
rows = stages.transform(read_dicom_series(spark, {(out / 'test' / 'knee' / 'dicom').as_uri()!r})) \\
    .select("probability", "prediction", "meniscus_found", "roi").collect()
print("STAGES", ",".join(names))
print("ROWS", len(rows), sum(r.probability is not None and 0 <= r.probability[0] <= 1 for r in rows))
print("ROI", sorted({{tuple(r.roi.shape) for r in rows}}))
"""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    env.pop("PYSPARK_GATEWAY_PORT", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in proc.stdout.splitlines()
             if ln.startswith(("STAGES", "ROWS", "ROI"))}
    assert lines["STAGES"] == ("Reorient,PercentileScale,SegmentationModel,KeepLargestComponent,CropAroundLabel,"
                               "ClassificationModel")
    # a series where stage 1 finds no meniscus has no probability (never one from an empty window), counted
    assert lines["ROWS"] == f"4 {4 - res['test_no_meniscus']}"
    assert lines["ROI"] == "[(24, 24, 64)]"


@pytest.mark.slow
def test_meniscus_whole_volume_variant(spark, tmp_path):
    out = tmp_path / "whole"
    assert _example("meniscus_tear").main(["--out", str(out), "--train", "8", "--val", "4", "--test", "4",
                                           "--shape", "16,32,32", "--epochs", "1", "--whole-volume"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["variant"] == "whole-volume" and res["test_series"] == 4 and res["segmentation_fit_seconds"] == 0
    from pyspark.ml import PipelineModel

    names = [type(s).__name__ for s in PipelineModel.load(str(out / "pipeline")).stages]
    assert names == ["Reorient", "PercentileScale", "ClassificationModel"]
