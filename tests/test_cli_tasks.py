"""bigdl-medimg train / evaluate / predict / report for the three tasks, on small generated data."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from bigdl_medimg.cli import main
from bigdl_medimg.datasets.layouts import write_chestxray14_replica
from bigdl_medimg.datasets.synth import synth_dataset

ROOT = Path(__file__).resolve().parents[1]

KNEE_CFG = """task: knee_cartilage
estimator:
  patchesPerImage: 8
  maxEpoch: 1
split:  # the meniscus preset's: this model serves as the meniscus run's stage 1 (--seg-model)
  val: 0.15
  test: 0.25
  seed: 0
"""


def _sr_numbers(path) -> dict:
    """``{concept meaning: value}`` of every NUM item of a Measurement Report (TID 1500), after dciodvfy."""
    from test_dicom_geometry import dciodvfy_errors

    assert dciodvfy_errors(path) == [], path
    out = {}

    def walk(items):
        for it in items:
            if it.ValueType == "NUM":
                out[it.ConceptNameCodeSequence[0].CodeMeaning] = float(it.MeasuredValueSequence[0].NumericValue)
            walk(getattr(it, "ContentSequence", []))

    walk(pydicom.dcmread(path).ContentSequence)
    return out


@pytest.fixture(scope="module")
def knee_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    folder = synth_dataset("knee", root / "data", 12, seed=5, shape=(16, 48, 48))
    (root / "knee.yaml").write_text(KNEE_CFG)
    return root, folder


@pytest.fixture(scope="module")
def knee_run(spark, knee_data):
    root, folder = knee_data
    assert main(["train", "--task", "knee_cartilage", "--data", str(folder), "--out", str(root / "knee"),
                 "--config", str(root / "knee.yaml")]) == 0
    return root / "knee"


@pytest.fixture(scope="module")
def pacs_knees(spark, knee_data, knee_run, tmp_path_factory):
    """A real Orthanc holding the DICOM series of the test split's cases and of one training case (left without
    a label), with the references keyed by Series Instance UID as a hospital would keep them."""
    from bigdl_medimg.datasets.local_pacs import LocalOrthanc, orthanc_available
    from bigdl_medimg.tasks import knee, load_task

    if not orthanc_available():
        pytest.skip("Orthanc is installed by `make test`")
    root, folder = knee_data
    cfg = load_task(str(knee_run / "model"))["config"]
    split = dict(knee.load(spark, str(folder), cfg).select("case", "split").toPandas().values)
    test = sorted(c for c, s in split.items() if s == "test")
    extra = sorted(c for c, s in split.items() if s == "train")[0]
    here = tmp_path_factory.mktemp("pacs-knees")
    (here / "masks").mkdir()
    server = LocalOrthanc(here / "orthanc")
    uids, tears = {}, pd.read_csv(folder / "labels.csv").set_index("case")["tear"]
    for case in [*test, extra]:
        files = sorted((folder / "dicom" / case).iterdir())
        server.store(files)
        uids[case] = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        if case != extra:
            shutil.copy(folder / "nifti" / f"{case}_mask.nii.gz", here / "masks" / f"{uids[case]}.nii.gz")
    pd.DataFrame({"series_instance_uid": [uids[c] for c in test], "tear": [int(tears[c]) for c in test]}).to_csv(
        here / "tears.csv", index=False)
    (here / "credentials.json").write_text(json.dumps({"user": server.user, "password": server.password}))
    yield {"server": server, "test": test, "uids": uids, "masks": here / "masks", "tears": here / "tears.csv",
           "credentials": here / "credentials.json", "source": f"dicomweb:{server.url}"}
    server.stop()


@pytest.mark.slow
def test_knee_train_evaluate_predict_and_report(spark, knee_data, knee_run, capsys, monkeypatch):
    root, folder = knee_data
    info = json.loads((knee_run / "model" / "task.json").read_text())
    assert info["task"] == "knee_cartilage" and info["config"]["estimator"]["patchesPerImage"] == 8
    train = json.loads((knee_run / "train.json").read_text())
    assert train["epochs"] == 1 and 0 <= train["val_dice"] <= 1 and train["unreadable_volumes"] == 0
    capsys.readouterr()
    # data given as a URI go through Hadoop's FileSystem (the layout check, the labels), as hdfs:// would
    assert main(["evaluate", "--model", str(knee_run / "model"), "--data", folder.as_uri(),
                 "--out", str(root / "knee-eval")]) == 0
    metrics = json.loads((root / "knee-eval" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["volumes"] >= 1 and metrics["not_scored"] == 0
    assert set(metrics["dice"]) == {"femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus"}
    assert all(v > 0 for v in metrics["hd"].values())
    out = capsys.readouterr().out
    assert "bigdl-medimg report --results" in out
    # predict on the DICOM series: NIfTI masks on each source grid and a DICOM SEG per series
    # predict on four DICOM series, one with a truncated slice: NIfTI masks on each source grid and a
    # DICOM SEG per good series; the bad one is reported, nothing else lost, exit code 3
    some = root / "some-dicom"
    for case in sorted((folder / "dicom").iterdir())[:4]:
        shutil.copytree(case, some / case.name)
    victim = sorted((some / "case_0002").iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:400])
    assert main(["predict", "--model", str(knee_run / "model"), "--data", some.as_uri(),
                 "--out", str(root / "knee-pred")]) == 3
    pred = json.loads((root / "knee-pred" / "predict.json").read_text())
    segs = list((root / "knee-pred" / "seg").glob("*.seg.dcm"))
    assert len(segs) == 3 and pydicom.dcmread(segs[0]).Modality == "SEG"
    assert len(list((root / "knee-pred" / "masks").glob("*.nii.gz"))) == 3
    # the truncated file is a row of its own and its series (now missing a slice) another: both reported
    assert pred["masks"]["written"] == 3 and pred["masks"]["failed"] == 2
    assert pred["masks"]["errors"] == {"ExportError: ValueError: mask is null": 2}
    # a measurement SR (TID 1500) beside each SEG: the volumes of the predicted mask, referencing the series
    srs = sorted((root / "knee-pred" / "seg").glob("*.sr.dcm"))
    assert len(srs) == 3 and pred["dicom_sr"]["written"] == 3
    from test_dicom_geometry import dciodvfy_errors

    sr = pydicom.dcmread(srs[0])
    assert sr.Modality == "SR" and dciodvfy_errors(srs[0]) == []
    key = srs[0].name.removesuffix(".sr.dcm")
    mask = nib.load(next((root / "knee-pred" / "masks").glob(f"{key}*.nii.gz")))
    voxel_ml = abs(np.linalg.det(mask.affine[:3, :3])) / 1000
    want = {name: float((np.asarray(mask.dataobj) == k).sum() * voxel_ml)
            for k, name in ((1, "Femoral cartilage"), (2, "Tibial cartilage"), (3, "Patellar cartilage"),
                            (4, "Meniscus"))}
    got = {}
    for item in sr.ContentSequence:
        for sub in getattr(item, "ContentSequence", []):
            for m in getattr(sub, "ContentSequence", []):
                if m.ValueType == "NUM":
                    site = next(x.ConceptCodeSequence[0].CodeMeaning for x in m.ContentSequence
                                if x.ConceptNameCodeSequence[0].CodeMeaning == "Finding Site")
                    got[site] = float(m.MeasuredValueSequence[0].NumericValue)
    sites = {"Femoral cartilage": "Femur", "Tibial cartilage": "Tibia", "Patellar cartilage": "Patella",
             "Meniscus": "Meniscus"}
    assert got == pytest.approx({sites[n]: v for n, v in want.items()}, rel=1e-6, abs=1e-6)
    referenced = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                  for ser in s.ReferencedSeriesSequence for r in ser.ReferencedSOPSequence}
    seg = pydicom.dcmread((root / "knee-pred" / "seg" / f"{key}.seg.dcm"))
    assert referenced == {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert main(["report", "--results", str(root / "knee-eval" / "results"), "--summaries",
                 str(knee_run / "summaries"), "--out", str(root / "report.html")]) == 0
    from test_report import report_images

    assert len(report_images((root / "report.html").read_text())) == 4


@pytest.mark.slow
def test_knee_with_the_torch_engine_from_the_command_line(spark, knee_data, capsys, monkeypatch):
    root, folder = knee_data
    run = root / "knee-torch"
    monkeypatch.setenv("BIGDL_MEDIMG_PROGRESS_SECONDS", "0.05")
    capsys.readouterr()
    assert main(["train", "--task", "knee_cartilage", "--data", str(folder), "--out", str(run),
                 "--config", str(root / "knee.yaml"), "--engine", "torch", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    # rank 0's progress reaches the driver's console while the barrier stage runs (over TCP, not a shared file)
    assert re.search(r"epoch [12]/2 \| iteration \d+/\d+ \| loss \d+\.\d+ \| [\d.]+ samples/s", out), out
    assert "epoch 2/2 done in" in out
    # the same run again resumes its own last checkpoint (nothing left to train); a changed config does not
    [fit] = (run / "checkpoints").glob("fit-*")
    assert main(["train", "--task", "knee_cartilage", "--data", str(folder), "--out", str(run), "--config",
                 str(root / "knee.yaml"), "--engine", "torch", "--epochs", "2", "--resume", "require"]) == 0
    assert "epoch 1/2 done" not in capsys.readouterr().out
    assert main(["train", "--task", "knee_cartilage", "--data", str(folder), "--out", str(run), "--config",
                 str(root / "knee.yaml"), "--engine", "torch", "--epochs", "2", "--batch-size", "4",
                 "--resume", "require"]) == 2
    err = capsys.readouterr().err
    assert "resume='require'" in err and str(run / "checkpoints") in err and fit.name in err
    assert "batchSize" in err and err.count("\n") == 1
    assert [p.name for p in (run / "checkpoints").glob("fit-*")] == [fit.name]
    info = json.loads((run / "model" / "task.json").read_text())
    assert info["config"]["estimator"]["engine"] == "torch"
    train = json.loads((run / "train.json").read_text())
    assert train["epochs"] == 2 and 0 <= train["val_dice"] <= 1
    stage = json.loads(next((run / "model" / "pipeline" / "stages").glob("*SegmentationModel*/metadata/part-*"))
                       .read_text())
    assert stage["paramMap"]["engine"] == "torch"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(folder), "--out", str(root / "te"),
                 "--engine", "torch"]) == 0
    metrics = json.loads((root / "te" / "metrics.json").read_text())
    assert metrics["volumes"] >= 1 and metrics["not_scored"] == 0 and len(metrics["dice"]) == 4
    # a model runs on the engine it was trained with: asking for the other one is a one-line usage error
    capsys.readouterr()
    assert main(["predict", "--model", str(run / "model"), "--data", str(folder / "dicom"),
                 "--out", str(root / "tp"), "--engine", "bigdl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained with engine 'torch'" in err


@pytest.mark.slow
def test_meniscus_two_stage_from_the_command_line(spark, knee_data, knee_run, pacs_knees, capsys, monkeypatch):
    root, folder = knee_data
    monkeypatch.setenv("BIGDL_MEDIMG_PROGRESS_SECONDS", "0.2")  # epochs here last ~2 s
    capsys.readouterr()
    # one training case's image is broken: that case is left out of training and counted
    from bigdl_medimg.tasks import task_config
    from bigdl_medimg.tasks.common import assign_split

    cases = pd.read_csv(folder / "labels.csv")["case"].tolist()
    split = assign_split(spark.createDataFrame([(c,) for c in cases], "case string"), "case",
                         task_config("meniscus_tear")["split"]).toPandas()
    victim = split[split["split"] != "test"]["case"].iloc[0]
    data = root / "tear-data"
    shutil.copytree(folder / "nifti", data / "nifti")
    shutil.copy(folder / "labels.csv", data / "labels.csv")
    (data / "nifti" / f"{victim}_image.nii.gz").write_bytes(b"not a NIfTI file")
    assert main(["train", "--task", "meniscus_tear", "--data", str(data), "--out", str(root / "tear"),
                 "--seg-model", str(knee_run / "model"), "--epochs", "2", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    # progress while BigDL trains, one line per epoch, a summary at the end
    assert re.search(r"epoch [12]/2 \| iteration \d+/\d+ \| loss \d+\.\d+ \| [\d.]+ samples/s \| elapsed \S+ \| ~\S+ left",
                     out), out
    assert "epoch 2/2 done in" in out and "trained meniscus_tear in" in out
    info = json.loads((root / "tear" / "model" / "task.json").read_text())
    assert info["segmentation_model"] == str(knee_run / "model")
    # trained as served: windows around stage 1's predicted menisci; cases without one (or unreadable) counted
    train = json.loads((root / "tear" / "train.json").read_text())
    assert train["windows"] == "stage-1 predicted masks" and train["unreadable_cases"] == 1
    from pyspark.ml import PipelineModel

    from bigdl_medimg.tasks import meniscus
    from bigdl_medimg.tensor import to_numpy

    cases = meniscus.load(spark, str(data), task_config("meniscus_tear")).filter("split != 'test'")
    segs = PipelineModel.load(str(knee_run / "model" / "pipeline")).transform(cases) \
        .select("segmentation").collect()
    no_meniscus = sum(r.segmentation is not None and not (to_numpy(r.segmentation) == 4).any() for r in segs)
    assert train["no_meniscus_cases"] == no_meniscus
    assert train["train_cases"] + train["val_cases"] + no_meniscus + 1 == len(segs)
    assert train["train_cases"] > 0 and train["val_cases"] > 0
    assert main(["evaluate", "--model", str(root / "tear" / "model"), "--data", folder.as_uri(),
                 "--out", str(root / "tear-eval")]) == 0
    metrics = json.loads((root / "tear-eval" / "metrics.json").read_text())
    preds = spark.read.parquet(str(root / "tear-eval" / "predictions")).toPandas()
    assert list(preds.columns[:3]) == ["study_instance_uid", "series_instance_uid", "case"]
    assert metrics["split"] == "test" and metrics["cases"] == len(preds) >= 1  # DICOM series of the test cases
    assert main(["predict", "--model", str(root / "tear" / "model"), "--data", str(folder / "dicom" / "case_0001"),
                 "--out", str(root / "tear-pred")]) == 0
    got = spark.read.parquet(str(root / "tear-pred" / "predictions")).toPandas()
    assert len(got) == 1 and got["prob_tear"].between(0, 1).all()
    assert len(list((root / "tear-pred" / "seg").glob("*.seg.dcm"))) == 1
    # the SR beside the SEG carries the tear probability of the predictions table (and stage 1's volumes)
    [sr_path] = (root / "tear-pred" / "seg").glob("*.sr.dcm")
    assert _sr_numbers(sr_path)["Meniscus tear probability"] == pytest.approx(float(got["prob_tear"][0]), abs=1e-6)
    # evaluate from a PACS, tear labels keyed by Series Instance UID: the probabilities of the same series read
    # from the folder
    assert main(["evaluate", "--model", str(root / "tear" / "model"), "--data", str(folder),
                 "--out", str(root / "tear-ev-files")]) == 0
    assert main(["evaluate", "--model", str(root / "tear" / "model"), "--data", pacs_knees["source"],
                 "--labels", str(pacs_knees["tears"]), "--credentials", str(pacs_knees["credentials"]),
                 "--out", str(root / "tear-ev-pacs")]) == 0
    m_files, m_pacs = [json.loads((root / d / "metrics.json").read_text()) for d in ("tear-ev-files", "tear-ev-pacs")]
    assert m_pacs["cases"] == m_files["cases"] == len(pacs_knees["test"]) and m_pacs["unlabelled_series"] == 1
    p_files, p_pacs = [spark.read.parquet(str(root / d / "predictions")).toPandas().set_index("series_instance_uid")
                       for d in ("tear-ev-files", "tear-ev-pacs")]
    assert sorted(p_pacs.index) == sorted(pacs_knees["uids"][c] for c in pacs_knees["test"])
    assert np.allclose(p_pacs["prob_tear"], p_files.loc[p_pacs.index, "prob_tear"], atol=1e-6)
    assert (p_pacs["true_tear"] == p_files.loc[p_pacs.index, "true_tear"]).all()
    # an unreadable input is a row with its error, counted in predict.json, and the exit code says so
    broken = root / "tear-broken"
    (broken / "nifti").mkdir(parents=True)
    shutil.copy(folder / "nifti" / "case_0001_image.nii.gz", broken / "nifti" / "case_0001_image.nii.gz")
    (broken / "nifti" / "case_0002_image.nii.gz").write_bytes(b"not a NIfTI file")
    assert main(["predict", "--model", str(root / "tear" / "model"), "--data", str(broken / "nifti"),
                 "--out", str(root / "tear-pred2")]) == 3
    pred = json.loads((root / "tear-pred2" / "predict.json").read_text())
    assert pred["rows"] == 2 and pred["cases"]["failed"] >= 1 and pred["cases"]["written"] + pred["cases"]["failed"] == 2
    # a stage-1 model trained on another split would have seen this run's test cases: refused before training
    other = root / "seg-other-split"
    shutil.copytree(knee_run / "model", other)
    info = json.loads((other / "task.json").read_text())
    info["config"]["split"] = {"val": 0.0, "test": 0.0, "seed": 0}  # every case a training case of stage 1
    (other / "task.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["train", "--task", "meniscus_tear", "--data", str(folder), "--out", str(root / "tear-leak"),
                 "--seg-model", str(other), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "of this run's test cases were training cases of that segmentation model" in err


def test_knee_loaders_take_uris_and_name_bad_label_tables(spark, knee_data, tmp_path):
    from bigdl_medimg.errors import ConfigError
    from bigdl_medimg.tasks import knee, meniscus, task_config

    _root, folder = knee_data
    cfg = task_config("meniscus_tear")
    labels = pd.read_csv(folder / "labels.csv")
    got = meniscus.load(spark, folder.as_uri(), cfg).select("case", "tear_int", "split").toPandas()
    assert dict(zip(got["case"], got["tear_int"])) == dict(zip(labels["case"], labels["tear"]))
    assert set(got["split"]) <= {"train", "val", "test"}
    df, key, kind, web = knee.read_volumes(spark, (folder / "nifti").as_uri(), None)
    assert (key, kind, web) == ("name", "nifti", None) and df.count() == 24
    _df, key, kind, web = knee.read_volumes(spark, (folder / "dicom").as_uri(), None)
    assert (key, kind, web) == ("series_key", "series", None)
    bad = tmp_path / "bad"
    shutil.copytree(folder / "nifti", bad / "nifti")
    (bad / "labels.csv").write_text("case,tear\ncase_0000,maybe\n")
    with pytest.raises(ConfigError, match=r"bad/labels\.csv: line 2: expected columns case,tear"):
        meniscus.load(spark, bad.as_uri(), cfg)
    (bad / "labels.csv").unlink()
    with pytest.raises(ConfigError, match="no labels.csv"):
        meniscus.load(spark, bad.as_uri(), cfg)
    with pytest.raises(ConfigError, match="expected a knee folder"):
        knee.load(spark, (tmp_path / "nowhere").as_uri(), cfg)


@pytest.mark.slow
def test_chest_from_the_command_line(spark, tmp_path, capsys):
    data = write_chestxray14_replica(tmp_path / "cxr", n_patients=30, size=64, seed=3, prevalence=0.3)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("task: chest_xray14\npreprocessing:\n  size: [64, 64]\n"
                   "estimator:\n  topology: densenet_tiny\n  batchSize: 8\n")
    # two training radiographs are broken: training goes on without them and says how many were left out
    for name in (data / "train_val_list.txt").read_text().split()[:2]:
        png = next(data.glob(f"images*/**/{name}"))
        png.write_bytes(png.read_bytes()[:60])
    assert main(["train", "--task", "chest_xray14", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--config", str(cfg), "--epochs", "1"]) == 0
    train = json.loads((tmp_path / "run" / "train.json").read_text())
    assert train["unreadable_images"] == 2, train
    assert main(["evaluate", "--model", (tmp_path / "run" / "model").as_uri(), "--data", str(data),
                 "--out", (tmp_path / "eval").as_uri()]) == 0  # file: URIs are local folders
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    test_list = (data / "test_list.txt").read_text().split()
    assert metrics["images"] == len(test_list) and len(metrics["auroc"]) == 14
    table = pd.read_csv(next((tmp_path / "eval" / "predictions.csv").glob("part-*.csv")))
    assert sorted(table["image_index"]) == sorted(test_list)
    # predict keeps the two broken radiographs as rows with their error and no probabilities: exit 3
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "run" / "model"), "--data", str(data / "images_001"),
                 "--out", str(tmp_path / "pred")]) == 3
    table = pd.read_csv(next((tmp_path / "pred" / "predictions.csv").glob("part-*.csv")))
    assert len(table) == len(list((data / "images_001").rglob("*.png")))
    # the progress display counted every image and the two unreadable ones
    assert re.search(rf"predict: {len(table)} images \| [\d.]+ images/s \| 2 errors", capsys.readouterr().out)
    broken = table["error"].notna()
    assert broken.sum() == 2 and table["error"][broken].str.startswith("ImageFileReadError").all()
    probs, bad = table.filter(like="prob_").to_numpy(), broken.to_numpy()
    assert np.isnan(probs[bad]).all() and np.all((probs[~bad] >= 0) & (probs[~bad] <= 1))
    pred = json.loads((tmp_path / "pred" / "predict.json").read_text())
    assert pred["images"]["written"] == len(table) - 2 and pred["images"]["failed"] == 2
    assert "dicom_sr" not in pred  # PNG radiographs: no DICOM to report on
    # DICOM DX radiographs: a measurement SR each, with the probabilities of the predictions table
    from bigdl_medimg.datasets.synth import synth_dataset

    dx = synth_dataset("chest", tmp_path / "dx", 3, seed=4, size=64) / "dicom"
    assert main(["predict", "--model", str(tmp_path / "run" / "model"), "--data", str(dx),
                 "--out", str(tmp_path / "pred-dx")]) == 0
    pred = json.loads((tmp_path / "pred-dx" / "predict.json").read_text())
    assert pred["dicom_sr"] == {"written": 3, "failed": 0, "errors": {}}
    table = pd.read_csv(next((tmp_path / "pred-dx" / "predictions.csv").glob("part-*.csv")))
    row = table.iloc[0]
    numbers = _sr_numbers(tmp_path / "pred-dx" / "sr" / f"{row['image_index']}.sr.dcm")
    assert numbers == pytest.approx({f"{c[5:]} probability": row[c] for c in table.columns if c.startswith("prob_")},
                                    abs=1e-6)
    _chest_from_a_pacs(tmp_path, tmp_path / "run" / "model", dx, table, capsys)


def _chest_from_a_pacs(tmp_path, model, dx, files_table, capsys):
    """The same radiographs from a real Orthanc: predict (keyed by SOP Instance UID, an SR each with the
    probabilities the files gave) and evaluate against a findings table keyed by SOP Instance UID."""
    from bigdl_medimg.datasets.local_pacs import LocalOrthanc, orthanc_available

    if not orthanc_available():
        pytest.skip("Orthanc is installed by `make test`")
    paths = sorted(dx.rglob("*.dcm"))
    sop = {p.name: str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    server = LocalOrthanc(tmp_path / "orthanc")
    try:
        server.store(paths)
        creds = tmp_path / "credentials.json"
        creds.write_text(json.dumps({"user": server.user, "password": server.password}))
        source = f"dicomweb:{server.url}?Modality=DX"  # the DX series (the SRs sent back are in the studies too)
        assert main(["predict", "--model", str(model), "--data", source, "--credentials", str(creds),
                     "--out", str(tmp_path / "pred-pacs"), "--stow", server.url]) == 0
        pred = json.loads((tmp_path / "pred-pacs" / "predict.json").read_text())
        assert pred["dicom_sr"] == {"written": 3, "failed": 0, "errors": {}}
        assert pred["stow"] == {"written": 3, "failed": 0, "errors": {}}  # the SRs, back beside their images
        web = pd.read_csv(next((tmp_path / "pred-pacs" / "predictions.csv").glob("part-*.csv"))).set_index(
            "image_index")
        files = files_table.assign(image_index=files_table["image_index"].map(sop)).set_index("image_index")
        assert sorted(web.index) == sorted(sop.values())
        probs = [c for c in web.columns if c.startswith("prob_")]
        assert np.allclose(web.loc[files.index, probs].to_numpy(), files[probs].to_numpy(), atol=1e-6)
        from bigdl_medimg.io.dicomweb import DicomWebConnection

        client = DicomWebConnection(server.url, server.credentials).client()
        assert len(client.search_for_instances(search_filters={"Modality": "SR"})) == 3
        for uid in web.index:  # the SR references the PACS instance and carries its probabilities
            sr_path = tmp_path / "pred-pacs" / "sr" / f"{uid}.sr.dcm"
            assert _sr_numbers(sr_path) == pytest.approx(
                {f"{c[5:]} probability": web.loc[uid, c] for c in probs}, abs=1e-6)
            evidence = pydicom.dcmread(sr_path).CurrentRequestedProcedureEvidenceSequence[0]
            assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uid
        # evaluate: findings keyed by SOP Instance UID (ChestX-ray14's syntax); one radiograph left unlabelled
        a, b, _c = sorted(sop.values())
        pd.DataFrame({"sop_instance_uid": [a, b], "Finding Labels": ["Effusion|Mass", "No Finding"]}).to_csv(
            tmp_path / "findings.csv", index=False)
        assert main(["evaluate", "--model", str(model), "--data", source, "--labels", str(tmp_path / "findings.csv"),
                     "--credentials", str(creds), "--out", str(tmp_path / "ev-pacs")]) == 0
        metrics = json.loads((tmp_path / "ev-pacs" / "metrics.json").read_text())
        assert metrics["images"] == 2 and metrics["unlabelled_images"] == 1 and metrics["split"] == "all"
        assert metrics["unlabelled_unreadable_images"] == 0
        # the whole studies: the SRs sent back above are no radiographs: counted apart, not as unlabelled
        assert main(["evaluate", "--model", str(model), "--data", f"dicomweb:{server.url}?ModalitiesInStudy=DX",
                     "--labels", str(tmp_path / "findings.csv"), "--credentials", str(creds),
                     "--out", str(tmp_path / "ev-studies")]) == 0
        studies = json.loads((tmp_path / "ev-studies" / "metrics.json").read_text())
        assert (studies["images"], studies["unlabelled_images"], studies["unlabelled_unreadable_images"]) == (2, 1, 3)
        assert metrics["auroc"]["Effusion"] in (0.0, 1.0)  # two images, one positive: 0 or 1
        ev = pd.read_csv(next((tmp_path / "ev-pacs" / "predictions.csv").glob("part-*.csv"))).set_index("image_index")
        assert np.allclose(ev.loc[[a, b], probs].to_numpy(), web.loc[[a, b], probs].to_numpy(), atol=1e-6)
        # a label the dataset does not know: one line naming the file and line, exit 2
        (tmp_path / "bad.csv").write_text(f"sop_instance_uid,Finding Labels\n{a},Broken Bone\n")
        capsys.readouterr()
        assert main(["evaluate", "--model", str(model), "--data", source, "--labels", str(tmp_path / "bad.csv"),
                     "--credentials", str(creds), "--out", str(tmp_path / "ev-bad")]) == 2
        assert re.search(r"bad\.csv: line 2: unknown finding label\(s\) \['Broken Bone'\]", capsys.readouterr().err)
    finally:
        server.stop()


def test_command_line_errors_are_one_line_with_exit_codes(tmp_path, capsys):
    assert main(["train", "--task", "knee_cartilage", "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and "no such file or folder" in err
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("task: chest_xray14\n")
    assert main(["train", "--task", "knee_cartilage", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--config", str(tmp_path / "c.yaml")]) == 2
    assert "is for task 'chest_xray14'" in capsys.readouterr().err
    # run folders are written with the driver's file I/O: a scheme other than file: is refused up front
    assert main(["train", "--task", "knee_cartilage", "--data", str(tmp_path), "--out", "hdfs://nn/runs/knee"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out hdfs://nn/runs/knee" in err and "local or NFS path" in err
    assert not (tmp_path / "hdfs:").exists() and not any(p.name.startswith("hdfs") for p in ROOT.iterdir())


def test_failures_inside_spark_are_reduced_to_their_cause(spark):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from bigdl_medimg.cli import failure_line

    @F.udf(T.IntegerType())
    def boom(x):
        raise ValueError(f"cannot handle row {x}")

    with pytest.raises(Exception) as info:
        spark.range(3).select(boom("id")).collect()
    assert re.match(r"ValueError: cannot handle row \d$", failure_line(info.value)), failure_line(info.value)


@pytest.mark.slow
def test_predict_stows_seg_and_sr_to_a_pacs_where_qido_finds_them(spark, knee_data, knee_run, tmp_path, monkeypatch):
    from bigdl_medimg.datasets.local_pacs import LocalOrthanc as Orthanc, orthanc_available
    from bigdl_medimg.io.dicomweb import DicomWebConnection, write_dicomweb

    if not orthanc_available():
        pytest.skip("Orthanc is installed by `make test`")
    root, folder = knee_data
    case = sorted((folder / "dicom").iterdir())[0]
    server = Orthanc(tmp_path / "orthanc")
    try:
        server.store(sorted(case.iterdir()))  # the source series is in the PACS, as in a hospital
        monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_USER", server.user)
        monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_PASSWORD", server.password)
        assert main(["predict", "--model", str(knee_run / "model"), "--data", str(case), "--out",
                     str(tmp_path / "pred"), "--stow", server.url]) == 0
        pred = json.loads((tmp_path / "pred" / "predict.json").read_text())
        assert pred["stow"] == {"written": 2, "failed": 0, "errors": {}}
        source = pydicom.dcmread(next(case.iterdir()), stop_before_pixels=True)
        client = DicomWebConnection(server.url, server.credentials).client()
        found = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0]
                 for s in client.search_for_series(source.StudyInstanceUID)}
        assert set(found) == {"MR", "SEG", "SR"} and found["MR"] == source.SeriesInstanceUID
        [seg] = client.retrieve_series(source.StudyInstanceUID, found["SEG"])
        [sr] = client.retrieve_series(source.StudyInstanceUID, found["SR"])
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID \
            == source.SeriesInstanceUID
        # a retried send of the same files stores the same objects (same SOP Instance UIDs): still one SEG, one SR
        again = write_dicomweb(sorted(str(p) for p in (tmp_path / "pred" / "seg").glob("*.dcm")), server.url)
        assert again["error"].isna().all() and set(again["sop_instance_uid"]) == {seg.SOPInstanceUID,
                                                                                  sr.SOPInstanceUID}
        assert len(client.search_for_series(source.StudyInstanceUID)) == 3
        assert len(client.search_for_instances(source.StudyInstanceUID, found["SEG"])) == 1
        # the series straight from the PACS: masks written as from files
        assert main(["predict", "--model", str(knee_run / "model"), "--data",
                     f"dicomweb:{server.url}?SeriesInstanceUID={source.SeriesInstanceUID}",
                     "--out", str(tmp_path / "pred-web")]) == 0
        web = json.loads((tmp_path / "pred-web" / "predict.json").read_text())
        assert web["masks"] == {"written": 1, "failed": 0, "errors": {}}
        # a wrong password: the sends fail, are counted, and the exit code says so
        monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_PASSWORD", "wrong")
        assert main(["predict", "--model", str(knee_run / "model"), "--data", str(case), "--out",
                     str(tmp_path / "pred2"), "--stow", server.url]) == 3
        stow = json.loads((tmp_path / "pred2" / "predict.json").read_text())["stow"]
        assert stow["failed"] == 2 and list(stow["errors"]) == ["DicomWebError: HTTP 401 (the credentials were refused)"]
    finally:
        server.stop()


@pytest.mark.slow
def test_knee_evaluate_and_predict_straight_from_a_pacs(spark, knee_data, knee_run, pacs_knees, tmp_path, capsys):
    root, folder = knee_data
    pacs, model = pacs_knees, str(knee_run / "model")
    creds = ["--credentials", str(pacs["credentials"])]
    # evaluate: the same cases' Dice from the PACS (masks keyed by Series Instance UID) as from the folder
    assert main(["evaluate", "--model", model, "--data", str(folder), "--out", str(tmp_path / "ev-files")]) == 0
    assert main(["evaluate", "--model", model, "--data", pacs["source"], "--labels", str(pacs["masks"]), *creds,
                 "--out", str(tmp_path / "ev-pacs")]) == 0
    files_m = json.loads((tmp_path / "ev-files" / "metrics.json").read_text())
    pacs_m = json.loads((tmp_path / "ev-pacs" / "metrics.json").read_text())
    assert pacs_m["volumes"] == files_m["volumes"] == len(pacs["test"]) and pacs_m["split"] == "all"
    assert pacs_m["unlabelled_series"] == 1  # the training case's series: counted, not scored
    assert pacs_m["unlabelled_unreadable_series"] == 0
    for metric in ("dice", "hd", "msd"):
        for name, value in files_m[metric].items():
            assert pacs_m[metric][name] == pytest.approx(value, abs=1e-6, nan_ok=True), (metric, name)
    capsys.readouterr()
    # a split, or no labels, for a PACS source: one line, exit 2
    assert main(["evaluate", "--model", model, "--data", pacs["source"], "--split", "test", "--labels",
                 str(pacs["masks"]), *creds, "--out", str(tmp_path / "x")]) == 2
    assert main(["evaluate", "--model", model, "--data", pacs["source"], *creds, "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "use --split all" in err and "needs --labels" in err and pacs["server"].password not in err
    # predict: SEG and SR for series read from the PACS, the same as for the same series read from files
    case = pacs["test"][0]
    uid = pacs["uids"][case]
    assert main(["predict", "--model", model, "--data", f"{pacs['source']}?SeriesInstanceUID={uid}", *creds,
                 "--out", str(tmp_path / "pred-web")]) == 0
    assert main(["predict", "--model", model, "--data", str(folder / "dicom" / case),
                 "--out", str(tmp_path / "pred-files")]) == 0
    web = json.loads((tmp_path / "pred-web" / "predict.json").read_text())
    assert all(web[k] == {"written": 1, "failed": 0, "errors": {}} for k in ("masks", "dicom_seg", "dicom_sr")), web
    [seg_web], [seg_files] = [list((tmp_path / d / "seg").glob("*.seg.dcm")) for d in ("pred-web", "pred-files")]
    [sr_web], [sr_files] = [list((tmp_path / d / "seg").glob("*.sr.dcm")) for d in ("pred-web", "pred-files")]
    from test_dicom_geometry import dciodvfy_errors

    assert dciodvfy_errors(seg_web) == []
    a, b = pydicom.dcmread(seg_web), pydicom.dcmread(seg_files)
    assert a.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert [x.ReferencedSOPInstanceUID for x in a.ReferencedSeriesSequence[0].ReferencedInstanceSequence] == \
        [x.ReferencedSOPInstanceUID for x in b.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert np.array_equal(a.pixel_array, b.pixel_array)
    assert _sr_numbers(sr_web) == pytest.approx(_sr_numbers(sr_files), abs=1e-6)
