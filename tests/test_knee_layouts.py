"""The knee task on real dataset layouts: .nii and .nii.gz pairs, DICOM series as images, an OAI-ZIB replica."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from bigdl_medimg.cli import main
from bigdl_medimg.datasets.layouts import write_oaizib_replica
from bigdl_medimg.datasets.synth import synth_dataset
from bigdl_medimg.tensor import get_affine, to_numpy
from bigdl_medimg.transforms import reorient

# one short torch epoch: these tests are about the data reaching training, not about accuracy
CFG = """task: knee_cartilage
estimator:
  engine: torch
  patchesPerImage: 4
  maxEpoch: 1
  batchSize: 8
"""


@pytest.fixture(scope="module")
def knees(tmp_path_factory):
    root = tmp_path_factory.mktemp("knee-layouts")
    (root / "cfg.yaml").write_text(CFG)
    return root, synth_dataset("knee", root / "synth", 10, seed=9, shape=(16, 40, 40))


def _train(root, data, name) -> dict:
    out = root / name
    assert main(["train", "--task", "knee_cartilage", "--data", str(data), "--out", str(out),
                 "--config", str(root / "cfg.yaml")]) == 0
    return json.loads((out / "train.json").read_text())


def _trainval_case(spark, cases):
    from bigdl_medimg.tasks import task_config
    from bigdl_medimg.tasks.common import assign_split

    split = assign_split(spark.createDataFrame([(c,) for c in cases], "case string"), "case",
                         task_config("knee_cartilage")["split"]).toPandas()
    return split[split["split"] != "test"]["case"].iloc[0]


@pytest.mark.slow
def test_uncompressed_nii_pairs_train_and_unpaired_cases_are_counted(spark, knees, capsys):
    from bigdl_medimg.tasks import knee, task_config

    root, synth = knees
    data = root / "nii"
    (data / "nifti").mkdir(parents=True)
    for f in sorted((synth / "nifti").glob("*.nii.gz")):  # .nii files, as many datasets ship them
        nib.save(nib.load(str(f)), str(data / "nifti" / f.name.replace(".nii.gz", ".nii")))
    cases = sorted({p.name.rsplit("_", 1)[0] for p in (data / "nifti").glob("*.nii")})
    victim = _trainval_case(spark, cases)
    (data / "nifti" / f"{victim}_mask.nii").unlink()  # an image without its mask
    rows = {r.case: r for r in knee.load(spark, str(data), task_config("knee_cartilage")).collect()}
    assert sorted(rows) == cases  # nothing dropped: the unpaired case keeps its row and says why
    assert rows[victim].pairing == "no mask" and rows[victim].mask is None and rows[victim].image is not None
    assert all(r.pairing is None and r.image is not None and r.mask is not None for c, r in rows.items() if c != victim)
    capsys.readouterr()
    train = _train(root, data, "run-nii")
    assert train["unpaired_cases"] == 1 and train["unreadable_cases"] == 0 and train["epochs"] == 1
    shown = capsys.readouterr()
    assert "1 training/validation case(s) without an image or a mask" in shown.out + shown.err


@pytest.mark.slow
def test_dicom_series_as_the_image_source_align_with_the_masks(spark, knees):
    from bigdl_medimg.tasks import knee, task_config

    root, synth = knees
    data = root / "dicom-images"
    shutil.copytree(synth / "dicom", data / "dicom")
    (data / "nifti").mkdir()
    for f in (synth / "nifti").glob("*_mask.nii.gz"):
        shutil.copy(f, data / "nifti" / f.name)
    cfg = task_config("knee_cartilage")
    from_dicom = {r.case: r for r in knee.load(spark, str(data), cfg).collect()}
    from_nifti = {r.case: r for r in knee.load(spark, str(synth), cfg).collect()}
    assert sorted(from_dicom) == sorted(from_nifti) and all(r.pairing is None for r in from_dicom.values())
    for case, r in from_dicom.items():  # the series and the NIfTI image are one volume on the mask's grid
        a, aff_a = reorient(to_numpy(r.image), get_affine(r.image), "RIP")
        b, aff_b = reorient(to_numpy(from_nifti[case].image), get_affine(from_nifti[case].image), "RIP")
        m, aff_m = reorient(to_numpy(r.mask), get_affine(r.mask), "RIP")
        assert a.shape == b.shape == m.shape and np.allclose(aff_a, aff_m, atol=1e-3)
        assert np.array_equal(a, b)
    assert _train(root, data, "run-dicom")["unpaired_cases"] == 0


@pytest.mark.slow
def test_oaizib_replica_trains_with_its_labels_mapped_to_the_task(spark, knees):
    from bigdl_medimg.tasks import knee, task_config

    root, _ = knees
    data = write_oaizib_replica(root / "oaizib", n=6, shape=(16, 40, 40), seed=2)
    rows = knee.load(spark, str(data), task_config("knee_cartilage")).collect()
    assert len(rows) == 6 and all(r.error is None and r.image is not None for r in rows)
    for r in rows:  # femoral cartilage 2 -> 1, tibial cartilage 4 -> 2, bones -> background
        assert set(np.unique(to_numpy(r.mask))) == {0, 1, 2}
    train = _train(root, data, "run-oaizib")
    assert train["epochs"] == 1 and train["unpaired_cases"] == 0


def test_map_labels_and_a_bad_map():
    from bigdl_medimg.transforms.labels import map_labels

    m = np.array([[0, 1, 2], [3, 4, 0]], np.uint8)
    assert np.array_equal(map_labels(m, [0, 0, 1, 0, 2]), [[0, 0, 1], [0, 2, 0]])
    with pytest.raises(ValueError, match="labels 0..4, the map covers 0..2"):
        map_labels(m, [0, 1, 2])
