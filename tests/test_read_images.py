"""read_images: PNG/JPEG 8 and 16 bit, DICOM X-rays, and refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bigdl_medimg import read_images
from bigdl_medimg.tensor import get_affine, to_numpy

from test_read_dicom import _write_xray


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)


def test_png_jpeg_dicom_and_refusals(spark, tmp_path, pydicom_test_files):
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    _png(tmp_path / "g8.png", g8)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    _png(tmp_path / "rgb.png", rgb)
    Image.fromarray(g8).save(tmp_path / "photo.jpg", quality=95)
    _write_xray(tmp_path / "chest", np.full((6, 5), 1000, np.uint16), "MONOCHROME2", modality="CR")
    (tmp_path / "mr.dcm").write_bytes((pydicom_test_files / "MR_small.dcm").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "notes.txt").write_text("nothing")
    rows = {Path(r.path).name: r for r in read_images(spark, str(tmp_path)).collect()}
    assert len(rows) == 8
    assert np.array_equal(to_numpy(rows["g8.png"].image), g8)
    got16 = to_numpy(rows["g16.png"].image)
    assert got16.dtype == np.uint16 and np.array_equal(got16, g16)
    ref_gray = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(to_numpy(rows["rgb.png"].image), ref_gray)
    jpg = to_numpy(rows["photo.jpg"].image)
    assert jpg.shape == (20, 30) and np.array_equal(jpg, np.asarray(Image.open(tmp_path / "photo.jpg")))
    cr = rows["chest"]
    assert cr.format == "dicom" and cr.modality == "CR" and cr.spacing_source == "imager_pixel_spacing"
    assert np.allclose(np.diag(get_affine(cr.image))[:2], [0.2, 0.25])
    assert np.array_equal(to_numpy(cr.image), np.full((6, 5), 1000))
    assert "modality MR is not an X-ray" in rows["mr.dcm"].error
    assert "damaged image file" in rows["broken.png"].error
    assert "not a PNG, JPEG or DICOM file" in rows["notes.txt"].error
    assert all(r.error.startswith("ImageFileReadError: ") for r in rows.values() if r.error)
    assert sum(r.error is None for r in rows.values()) == 5


def test_keep_color_and_any_modality(spark, tmp_path, pydicom_test_files):
    rgb = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    _png(tmp_path / "rgb.png", rgb)
    (tmp_path / "mr.dcm").write_bytes((pydicom_test_files / "MR_small.dcm").read_bytes())
    rows = {Path(r.path).name: r for r in read_images(spark, str(tmp_path), keep_color=True,
                                                      modalities=None).collect()}
    assert np.array_equal(to_numpy(rows["rgb.png"].image), np.moveaxis(rgb, -1, 0)[:, None])
    assert rows["mr.dcm"].error is None and to_numpy(rows["mr.dcm"].image).shape == (64, 64)
