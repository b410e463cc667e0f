"""MetaImage reading against SimpleITK (the reference ITK reader), and its failure rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from bigdl_medimg import read_mhd
from bigdl_medimg.io.mhd import decode_mhd, write_mhd
from bigdl_medimg.tensor import get_affine, to_numpy


def _sitk_affine(img) -> np.ndarray:
    """RAS affine for our (z, y, x) array axes, from SimpleITK's own index-to-point mapping."""
    o = np.array(img.TransformIndexToPhysicalPoint((0, 0, 0)))
    cols = [np.array(img.TransformIndexToPhysicalPoint(idx)) - o for idx in ((0, 0, 1), (0, 1, 0), (1, 0, 0))]
    aff = np.eye(4)
    aff[:3, :3] = np.stack(cols, 1)
    aff[:3, 3] = o
    return np.diag([-1.0, -1, 1, 1]) @ aff


@pytest.mark.parametrize("dtype,compress", [("uint8", False), ("int16", True), ("float32", False)])
def test_sitk_written_files_read_identically(spark, tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 6, 7)) * 100).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.8, 2.0))
    img.SetOrigin((10.0, -4.0, 3.0))
    c, s = np.cos(0.4), np.sin(0.4)
    img.SetDirection(tuple(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).ravel()))
    sitk.WriteImage(img, str(tmp_path / "a.mhd"), useCompression=compress)
    sitk.WriteImage(img, str(tmp_path / "b.mha"))
    rows = {Path(r.path).name: r for r in read_mhd(spark, str(tmp_path)).collect()}
    assert set(rows) == {"a.mhd", "b.mha"}
    for row in rows.values():
        assert row.error is None, row.error
        assert np.array_equal(to_numpy(row.image), arr)
        assert np.allclose(get_affine(row.image), _sitk_affine(img))


def test_our_writer_is_read_by_sitk(tmp_path):
    arr = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    aff = np.diag([3.0, 1.5, 0.5, 1])
    aff[:3, 3] = [5, 6, 7]
    write_mhd(arr, aff, tmp_path / "x.mhd")
    img = sitk.ReadImage(str(tmp_path / "x.mhd"))
    assert np.array_equal(sitk.GetArrayFromImage(img), arr)
    assert np.allclose(_sitk_affine(img), aff)


def test_bad_metaimages_are_rows_with_errors(spark, tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    write_mhd(arr, np.eye(4), tmp_path / "ok.mhd")
    write_mhd(arr, np.eye(4), tmp_path / "noraw.mhd")
    (tmp_path / "noraw.raw").unlink()
    write_mhd(arr, np.eye(4), tmp_path / "short.mhd")
    (tmp_path / "short.raw").write_bytes(b"\0" * 5)
    (tmp_path / "junk.mhd").write_text("hello world\n")
    (tmp_path / "weird.mhd").write_text("NDims = 3\nDimSize = 2 2 2\nElementType = MET_COMPLEX\nElementDataFile = LOCAL\n")
    rows = {Path(r.path).name: r for r in read_mhd(spark, str(tmp_path)).collect()}
    assert len(rows) == 5 and rows["ok.mhd"].error is None
    assert "data file noraw.raw not found" in rows["noraw.mhd"].error
    assert "truncated data" in rows["short.mhd"].error
    assert "not a MetaImage header" in rows["junk.mhd"].error
    assert "unsupported ElementType" in rows["weird.mhd"].error
    assert all(r.error.startswith("MhdReadError: ") for n, r in rows.items() if n != "ok.mhd")
    with pytest.raises(Exception, match="MhdReadError"):
        read_mhd(spark, str(tmp_path), mode="failfast").collect()
    huge = b"NDims = 3\nDimSize = 60000 60000 60000\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    with pytest.raises(Exception, match="above the .* limit"):
        decode_mhd(huge, "huge.mha")
