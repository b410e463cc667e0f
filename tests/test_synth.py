"""`bigdl-medimg synth`: phantom datasets on disk, read back by the readers; the preview picture."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from bigdl_medimg import read_dicom_series, read_images, read_nifti
from bigdl_medimg.cli import main
from bigdl_medimg.datasets.phantoms import CHEST_LABELS
from bigdl_medimg.tensor import get_affine, to_numpy


def test_knee_dicom_geometry_matches_the_nifti_mask(spark, tmp_path):
    assert main(["synth", "--kind", "knee", "--n", "3", "--out", str(tmp_path), "--shape", "12,40,40",
                 "--spark", "--master", "local[2]"]) == 0
    root = tmp_path / "knee"
    labels = list(csv.DictReader(open(root / "labels.csv")))
    assert [r["case"] for r in labels] == ["case_0000", "case_0001", "case_0002"]
    series = {Path(r.path[0]).parent.name: r for r in read_dicom_series(spark, str(root / "dicom")).collect()}
    nifti = {Path(r.path).name: r for r in read_nifti(spark, str(root / "nifti")).collect()}
    assert len(series) == 3 and len(nifti) == 6
    for case in series:
        s, img, mask = series[case], nifti[f"{case}_image.nii.gz"], nifti[f"{case}_mask.nii.gz"]
        assert s.error is None and img.error is None and mask.error is None
        # slices are re-sorted along the normal: compare physically (same world grid)
        sa, ma = get_affine(s.image), get_affine(mask.image)
        vol, m = to_numpy(s.image), to_numpy(mask.image)
        if not np.allclose(sa, ma, atol=1e-3):
            flip = ma.copy()
            flip[:3, 3] = ma[:3, :3] @ [m.shape[0] - 1, 0, 0] + ma[:3, 3]
            flip[:3, 0] = -ma[:3, 0]
            m, ma = m[::-1], flip
        assert np.allclose(sa, ma, atol=1e-3)
        assert vol.shape == m.shape
        assert np.array_equal(vol, to_numpy(img.image)[:: (1 if np.allclose(sa, get_affine(img.image), atol=1e-3) else -1)])
        assert set(np.unique(m)) == {0, 1, 2, 3, 4}


def test_chest_png_and_dicom_with_labels(spark, tmp_path):
    assert main(["synth", "--kind", "chest", "--n", "4", "--out", str(tmp_path), "--size", "96"]) == 0
    root = tmp_path / "chest"
    labels = {r["case"]: r for r in csv.DictReader(open(root / "labels.csv"))}
    assert set(next(iter(labels.values()))) == {"case", *CHEST_LABELS}
    rows = {Path(r.path).name: r for r in read_images(spark, [str(root / "png"), str(root / "dicom")]).collect()}
    assert len(rows) == 8 and all(r.error is None for r in rows.values())
    png, dcm = to_numpy(rows["case_0001.png"].image), to_numpy(rows["case_0001.dcm"].image)
    assert png.dtype == np.uint16 and np.array_equal(png, dcm)
    assert rows["case_0001.dcm"].modality == "DX" and rows["case_0001.dcm"].spacing_source == "imager_pixel_spacing"


def test_preview_is_a_real_picture(tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["synth", "--preview", str(out)]) == 0
    im = np.asarray(Image.open(out).convert("L"))
    assert im.shape[0] >= 400 and im.shape[1] >= 700
    assert im.std() > 20 and (im > 200).mean() > 0.005  # content, not a blank sheet
    assert main(["synth"]) == 2 and "needs --kind" in capsys.readouterr().err
