"""Parquet tensor tables, and DICOM series vs NIfTI of the same volume."""
from __future__ import annotations

import numpy as np
import pytest

from bigdl_medimg import read_dicom_series, read_nifti, read_tensors, write_tensors
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.io.dicom_write import write_dicom_series, write_nifti
from bigdl_medimg.tensor import get_affine, to_numpy
from bigdl_medimg.transforms import axcodes_of, reorient


def test_write_and_read_tensor_table(spark, tmp_path, nibabel_data):
    df = read_nifti(spark, str(nibabel_data / "example4d.nii.gz"))
    write_tensors(df, str(tmp_path / "t"))
    back = read_tensors(spark, str(tmp_path / "t")).first()
    orig = df.first()
    assert np.array_equal(to_numpy(back.image), to_numpy(orig.image))
    assert np.array_equal(get_affine(back.image), get_affine(orig.image))
    with pytest.raises(Exception, match="already exists"):
        write_tensors(df, str(tmp_path / "t"))
    write_tensors(df, str(tmp_path / "t"), mode="overwrite")
    with pytest.raises(ConfigError, match="no tensor column"):
        write_tensors(df.select("path"), str(tmp_path / "u"))
    df.select("path").write.parquet(str(tmp_path / "plain"))
    with pytest.raises(ConfigError, match="not a tensor table"):
        read_tensors(spark, str(tmp_path / "plain"))


def test_dicom_series_and_nifti_of_one_volume_agree_after_reorientation(spark, tmp_path):
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 3000, size=(12, 14, 10)).astype(np.int16)
    # a sagittal-ish oblique acquisition: slices along x, rows along -z, columns along y, rotated 10 degrees
    c, s = np.cos(0.17), np.sin(0.17)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T  # columns: slice, row, col directions
    aff = np.eye(4)
    aff[:3, :3] = rot @ axes @ np.diag([2.5, 0.6, 0.5])
    aff[:3, 3] = [-30, 12, 40]
    write_dicom_series(vol, aff, tmp_path / "dicom")
    # the NIfTI holds the same physical volume, stored in canonical RAS order
    ras_arr, ras_aff = reorient(vol, aff, "RAS")
    write_nifti(ras_arr, ras_aff, tmp_path / "vol.nii.gz")
    d = read_dicom_series(spark, str(tmp_path / "dicom")).first()
    n = read_nifti(spark, str(tmp_path / "vol.nii.gz")).first()
    assert d.error is None and n.error is None
    d_arr, d_aff = reorient(to_numpy(d.image), get_affine(d.image), "RAS")
    n_arr, n_aff = reorient(to_numpy(n.image), get_affine(n.image), "RAS")
    assert axcodes_of(d_aff) == axcodes_of(n_aff) == ("R", "A", "S")
    assert np.array_equal(d_arr, n_arr)
    assert np.allclose(d_aff, n_aff, atol=1e-4)
    # and they differ before reorientation (the check is not vacuous)
    assert to_numpy(d.image).shape != to_numpy(n.image).shape or not np.allclose(get_affine(d.image), get_affine(n.image))
