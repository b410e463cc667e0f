"""Loaders of ChestX-ray14 and MRNet layouts, on replicas written by the phantom generator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bigdl_medimg.datasets.layouts import (DatasetLayoutError, load_chestxray14, load_mrnet, patient_split,
                                           write_chestxray14_replica, write_mrnet_replica)
from bigdl_medimg.datasets.phantoms import CHEST_LABELS
from bigdl_medimg.tensor import to_numpy


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory):
    return write_chestxray14_replica(tmp_path_factory.mktemp("cxr14"), n_patients=30, size=64, seed=1,
                                     prevalence=0.3)


def test_chestxray14_loader(spark, cxr_root):
    df = load_chestxray14(spark, str(cxr_root))
    rows = df.collect()
    csv_lines = (cxr_root / "Data_Entry_2017.csv").read_text().strip().splitlines()
    assert len(rows) == len(csv_lines) - 1
    assert all(r.path and r.path.endswith(r.image_index) for r in rows)
    assert {r.split for r in rows} == {"train_val", "test"}
    # labels agree with the CSV text
    text = {l.split(",")[0]: l.split(",")[1] for l in csv_lines[1:]}
    for r in rows:
        names = {CHEST_LABELS[i] for i, v in enumerate(r.labels) if v == 1.0}
        assert names == (set(text[r.image_index].split("|")) - {"No Finding"})
    # the official split keeps each patient on one side
    sides = {}
    for r in rows:
        sides.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())


def test_patient_split_never_shares_patients(spark, cxr_root):
    df = patient_split(load_chestxray14(spark, str(cxr_root)), {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    rows = df.select("patient_id", "split").collect()
    sides = {}
    for r in rows:
        sides.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {r.split for r in rows} <= {"train", "val", "test"} and len({r.split for r in rows}) >= 2
    again = patient_split(load_chestxray14(spark, str(cxr_root)), {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert sorted(map(tuple, again.select("patient_id", "split").collect())) == sorted(map(tuple, rows))
    with pytest.raises(DatasetLayoutError, match="sum to 1"):
        patient_split(df, {"train": 0.5})


def test_chestxray14_layout_errors(spark, cxr_root, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(cxr_root, broken)
    victim = next((broken / "images_001" / "images").glob("*.png"))
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 image\(s\) listed in Data_Entry_2017.csv are missing"):
        load_chestxray14(spark, str(broken))
    (broken / "test_list.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="test_list.txt: file not found"):
        load_chestxray14(spark, str(broken))
    with pytest.raises(DatasetLayoutError, match="Data_Entry_2017.csv: file not found"):
        load_chestxray14(spark, str(tmp_path / "nothing"))


def test_mrnet_loader(spark, tmp_path):
    root = write_mrnet_replica(tmp_path / "mrnet", n_train=4, n_valid=2, shape=(10, 32, 32), seed=2)
    rows = {(r.split, r.exam_id): r for r in load_mrnet(spark, str(root)).collect()}
    assert len(rows) == 6 and all(r.error is None for r in rows.values())
    r = rows[("valid", "0004")]
    sag = np.load(root / "valid" / "sagittal" / "0004.npy")
    assert np.array_equal(to_numpy(r.sagittal), sag) and to_numpy(r.sagittal).dtype == np.uint8
    assert to_numpy(r.axial).shape == (32, 32, 10) and to_numpy(r.coronal).shape == (32, 32, 10)
    menisc = dict(l.split(",") for l in (root / "valid-meniscus.csv").read_text().split())
    assert r.meniscus == int(menisc["0004"])
    # a missing plane and a corrupt stack are reported per exam, not dropped
    (root / "train" / "axial" / "0001.npy").unlink()
    (root / "train" / "coronal" / "0002.npy").write_bytes(b"garbage")
    rows = {(r.split, r.exam_id): r for r in load_mrnet(spark, str(root)).collect()}
    assert len(rows) == 6
    assert "axial stack missing" in rows[("train", "0001")].error
    assert "coronal: not a readable .npy array" in rows[("train", "0002")].error
    (root / "valid-acl.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="valid-acl.csv: file not found"):
        load_mrnet(spark, str(root))


def test_oaizib_loader_masks_images_and_folds(spark, tmp_path):
    from bigdl_medimg.cli import main
    from bigdl_medimg.datasets.layouts import load_oaizib
    from bigdl_medimg.tensor import get_affine
    from bigdl_medimg.transforms import reorient

    assert main(["synth", "--layout", "oai-zib", "--n", "3", "--out", str(tmp_path), "--shape", "12,40,40"]) == 0
    zib, oai = tmp_path / "OAI-ZIB", tmp_path / "OAI"
    rows = load_oaizib(spark, str(zib), oai_root=str(oai)).collect()
    assert len(rows) == 3 and all(r.error is None for r in rows)
    assert sorted(r.fold for r in rows) == [1, 1, 2]
    for r in rows:
        mask, image = to_numpy(r.mask), to_numpy(r.image)
        assert set(np.unique(mask)) == {0, 1, 2, 3, 4}
        m, maff = reorient(mask, get_affine(r.mask), "RAS")
        i, iaff = reorient(image, get_affine(r.image), "RAS")
        assert m.shape == i.shape and np.allclose(maff, iaff, atol=1e-3)  # same grid in the replica
        assert i[m == 2].mean() > 1.5 * i[m == 1].mean()  # mask aligned: cartilage bright, bone darker
    only_masks = load_oaizib(spark, str(zib)).collect()
    assert len(only_masks) == 3 and all(r.image is None and r.mask is not None for r in only_masks)
    victim = next((zib / "segmentation" / "segmentation_masks").glob("*.mhd"))
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match="1 subject.* have no segmentation mask"):
        load_oaizib(spark, str(zib))
    with pytest.raises(DatasetLayoutError, match="file not found"):
        load_oaizib(spark, str(tmp_path / "nowhere"))
