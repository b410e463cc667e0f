"""read_nifti against nibabel on the files shipped in nibabel's wheel, and on edge cases."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigdl_medimg import read_nifti
from bigdl_medimg.io.dicom_write import write_nifti
from bigdl_medimg.io.nifti import decode_nifti
from bigdl_medimg.tensor import get_affine, to_numpy


def test_nibabel_wheel_files_match_nibabel(spark, nibabel_data):
    files = sorted(p for p in nibabel_data.glob("*.nii*"))
    assert len(files) >= 6
    rows = {Path(r.path).name: r for r in read_nifti(spark, [str(f) for f in files], recursive=False).collect()}
    assert set(rows) == {f.name for f in files}
    for f in files:
        row = rows[f.name]
        assert row.error is None, (f.name, row.error)
        try:
            img = nib.Nifti1Image.from_filename(str(f))
        except Exception:  # NIfTI-2 (including the CIFTI-2 file)
            img = nib.Nifti2Image.from_filename(str(f))
        ref = np.asanyarray(img.dataobj)
        if ref.ndim > 3:
            ref = np.moveaxis(ref.reshape(ref.shape[:3] + (-1,)), -1, 0)
        got = to_numpy(row.image)
        assert got.shape == ref.shape, f.name
        assert np.allclose(got, ref, rtol=1e-6, equal_nan=True), f.name
        assert np.allclose(get_affine(row.image), img.affine), f.name
        hdr = img.header
        want = "sform" if hdr["sform_code"] > 0 else "qform" if hdr["qform_code"] > 0 else "pixdim"
        assert row.affine_source == want, f.name
        assert row.n_nonfinite == (int(np.sum(~np.isfinite(ref))) if ref.dtype.kind == "f" else 0)


def _img(arr, aff, sform=0, qform=0):
    img = nib.Nifti1Image(arr, aff)
    img.set_sform(aff if sform else None, code=sform)
    img.set_qform(aff if qform else None, code=qform)
    return img


def test_affine_source_precedence_scaling_and_nonfinite(tmp_path):
    aff = np.diag([2.0, 3.0, 4.0, 1.0])
    aff[:3, 3] = [1, 2, 3]
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    s = _img(arr, aff, sform=2, qform=0)
    q = _img(arr, aff, sform=0, qform=1)
    n = _img(arr, aff, sform=0, qform=0)
    for img, want in ((s, "sform"), (q, "qform"), (n, "pixdim")):
        row = decode_nifti(img.to_bytes(), "x.nii")
        assert row["affine_source"] == want
    # no sform/qform: nibabel's pixdim affine (Analyze convention, x flipped)
    assert np.allclose(get_affine(decode_nifti(n.to_bytes(), "x.nii")["image"]), n.header.get_base_affine())
    assert np.allclose(get_affine(decode_nifti(n.to_bytes(), "x.nii")["image"])[:3, :3], np.diag([-2, 3, 4]))
    scaled = _img(arr, aff, sform=1)
    scaled.header.set_slope_inter(0.5, 10)
    row = decode_nifti(scaled.to_bytes(), "s.nii")
    got = to_numpy(row["image"])
    assert got.dtype == np.float32  # scaled ints: float32, not float64
    assert np.allclose(got, arr * 0.5 + 10)
    f = np.ones((2, 2, 2), np.float32)
    f[0, 0, 0], f[1, 1, 1] = np.nan, np.inf
    row = decode_nifti(_img(f, aff, sform=1).to_bytes(), "f.nii")
    assert row["error"] is None and row["n_nonfinite"] == 2


def test_bad_files_are_rows_with_errors(spark, tmp_path):
    good = write_nifti(np.zeros((4, 4, 4), np.uint8), np.eye(4), tmp_path / "good.nii.gz")
    raw = gzip.decompress(Path(good).read_bytes())
    (tmp_path / "truncated.nii").write_bytes(raw[:400])
    (tmp_path / "badgzip.nii.gz").write_bytes(b"\x1f\x8b" + b"junk" * 50)
    (tmp_path / "text.nii").write_text("hello")
    pair = bytearray(raw[:348])
    pair[344:348] = b"ni1\0"
    (tmp_path / "pair.hdr").write_bytes(bytes(pair))
    rows = {Path(r.path).name: r for r in read_nifti(spark, str(tmp_path)).collect()}
    assert rows["good.nii.gz"].error is None
    assert "truncated" in rows["truncated.nii"].error
    assert "gzip" in rows["badgzip.nii.gz"].error
    assert "not a NIfTI file" in rows["text.nii"].error
    assert ".hdr/.img" in rows["pair.hdr"].error
    assert all(r.error.startswith("NiftiReadError: ") for n, r in rows.items() if n != "good.nii.gz")
    with pytest.raises(Exception, match="NiftiReadError"):
        read_nifti(spark, str(tmp_path / "text.nii"), mode="failfast").collect()
