"""read_dicom_series on generated series: order, geometry and every failure it must report."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from bigdl_medimg import read_dicom_series
from bigdl_medimg.io.dicom_write import write_dicom_series
from bigdl_medimg.tensor import get_affine, to_numpy


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _volume(seed=0, shape=(9, 12, 10)):
    rng = np.random.default_rng(seed)
    return rng.integers(-500, 2000, size=shape).astype(np.int16)


def _affine(spacing=(3.0, 0.8, 0.7), rot=(0.0, 0.0, 0.0), origin=(-40.0, 25.0, 10.0)):
    aff = np.eye(4)
    aff[:3, :3] = _rotation(*rot) @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def _same_volume(row, vol, aff, names=None):
    """The row holds ``vol``/``aff`` up to the slice direction (slices are sorted along row x col)."""
    got, gaff = to_numpy(row.image), get_affine(row.image)
    flipped = np.allclose(gaff[:3, 0], -aff[:3, 0], atol=1e-4)
    want = vol[::-1] if flipped else vol
    want_aff = aff.copy()
    if flipped:
        want_aff[:3, 3] = aff[:3, :3] @ [vol.shape[0] - 1, 0, 0] + aff[:3, 3]
        want_aff[:3, 0] = -aff[:3, 0]
    assert np.array_equal(got, want)
    assert np.allclose(gaff, want_aff, atol=1e-4)
    if names is not None:
        assert [Path(p).name for p in row.path] == (names[::-1] if flipped else names)
    return flipped


def _series_rows(spark, folder):
    return read_dicom_series(spark, str(folder)).collect()


def _set(path, **attrs):
    ds = pydicom.dcmread(path)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)


def test_shuffled_names_and_instance_numbers_oblique(spark, tmp_path):
    vol, aff = _volume(1), _affine(rot=(0.3, -0.2, 0.4))
    rng = np.random.default_rng(5)
    names = [f"IM{n:03d}" for n in rng.permutation(vol.shape[0])]  # extension-less, shuffled
    paths = write_dicom_series(vol, aff, tmp_path / "s", file_names=names)
    for p, inst in zip(paths, rng.permutation(vol.shape[0]) + 1):  # InstanceNumber says nothing
        _set(p, InstanceNumber=int(inst))
    [row] = _series_rows(spark, tmp_path / "s")
    assert row.error is None and row.n_slices == 9 and row.split is None
    _same_volume(row, vol, aff, names)  # slice order, not name or InstanceNumber order
    assert row.modality == "MR" and row.series_instance_uid == row.series_key


def test_two_series_in_one_folder_and_a_non_dicom_file(spark, tmp_path):
    v1, v2 = _volume(2, (5, 8, 8)), _volume(3, (7, 6, 9))
    write_dicom_series(v1, _affine(), tmp_path, file_names=[f"a{i}.dcm" for i in range(5)], series_number=1)
    write_dicom_series(v2, _affine(spacing=(1.5, 1, 1)), tmp_path, file_names=[f"b{i}.dcm" for i in range(7)],
                       series_number=2)
    (tmp_path / "notes.txt").write_text("scan notes")
    rows = _series_rows(spark, tmp_path)
    assert len(rows) == 3
    good = sorted((r for r in rows if r.error is None), key=lambda r: r.series_number)
    assert [r.n_slices for r in good] == [5, 7]
    _same_volume(good[0], v1, _affine())
    _same_volume(good[1], v2, _affine(spacing=(1.5, 1, 1)))
    [bad] = [r for r in rows if r.error]
    assert bad.path[0].endswith("notes.txt") and "not a DICOM file" in bad.error and bad.image is None


def test_missing_slice_is_reported_not_stacked(spark, tmp_path):
    paths = write_dicom_series(_volume(4), _affine(), tmp_path)
    Path(paths[4]).unlink()
    [row] = _series_rows(spark, tmp_path)
    assert row.image is None and row.n_slices is None
    assert row.error.startswith("SeriesAssemblyError") and "missing slice" in row.error
    assert len(row.path) == 8


def test_duplicate_positions(spark, tmp_path):
    paths = write_dicom_series(_volume(5), _affine(), tmp_path)
    dup = tmp_path / "dup.dcm"
    shutil.copy(paths[3], dup)
    _set(dup, SOPInstanceUID=generate_uid())
    [row] = _series_rows(spark, tmp_path)
    assert row.image is None and "duplicate slice positions" in row.error


def test_non_uniform_spacing(spark, tmp_path):
    paths = write_dicom_series(_volume(6), _affine(spacing=(2.0, 1, 1)), tmp_path)
    ds = pydicom.dcmread(paths[5])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ipp[0] += 0.7  # along the slice direction (x for this affine)
    _set(paths[5], ImagePositionPatient=ipp)
    [row] = _series_rows(spark, tmp_path)
    assert row.image is None and "non-uniform slice spacing" in row.error


def test_mixed_orientation_is_an_error_and_distinct_planes_are_split(spark, tmp_path):
    paths = write_dicom_series(_volume(7), _affine(), tmp_path / "mixed")
    ds = pydicom.dcmread(paths[2])
    iop = [float(v) for v in ds.ImageOrientationPatient]
    iop[1] += 0.01  # slightly tilted slice inside the stack
    _set(paths[2], ImageOrientationPatient=iop)
    [row] = _series_rows(spark, tmp_path / "mixed")
    assert row.image is None and "mixed orientations" in row.error

    # a three-plane localizer: one SeriesInstanceUID, three stacks
    uid, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k, rot in enumerate([(0, 0, 0), (np.pi / 2, 0, 0), (0, np.pi / 2, 0)]):
        write_dicom_series(_volume(10 + k, (3, 8, 8)), _affine(rot=rot), tmp_path / "loc", series_uid=uid,
                           study_uid=study, frame_of_reference_uid=frame,
                           file_names=[f"p{k}_{i}.dcm" for i in range(3)])
    rows = _series_rows(spark, tmp_path / "loc")
    assert len(rows) == 3 and all(r.error is None for r in rows)
    assert sorted(r.series_key for r in rows) == [f"{uid}#1", f"{uid}#2", f"{uid}#3"]
    assert {r.split for r in rows} == {"orientation"} and all(r.n_slices == 3 for r in rows)


def test_corrupt_files_among_good_ones(spark, tmp_path):
    vol = _volume(8)
    paths = write_dicom_series(vol, _affine(), tmp_path / "a")
    data = Path(paths[3]).read_bytes()
    Path(paths[3]).write_bytes(data[: len(data) - 50])  # truncated pixel data: header still parses
    rows = _series_rows(spark, tmp_path / "a")
    [row] = rows
    assert row.image is None and Path(paths[3]).name in row.error and "could not be decoded" in row.error

    paths = write_dicom_series(vol, _affine(), tmp_path / "b")
    Path(paths[5]).write_bytes(b"\x00" * 500)  # garbage: not even a header
    rows = _series_rows(spark, tmp_path / "b")
    assert len(rows) == 2  # the garbage file is not lost ...
    errs = sorted(r.error for r in rows)
    assert any("not a DICOM file" in e for e in errs)
    assert any("missing slice" in e for e in errs)  # ... and the series is not stacked without it


def test_failfast_series(spark, tmp_path):
    paths = write_dicom_series(_volume(9), _affine(), tmp_path)
    Path(paths[2]).unlink()
    with pytest.raises(Exception) as info:
        read_dicom_series(spark, str(tmp_path), mode="failfast").collect()
    assert "SeriesAssemblyError" in str(info.value) and "missing slice" in str(info.value)


def test_single_multiframe_file_series(spark, pydicom_test_files, tmp_path):
    shutil.copy(pydicom_test_files / "rtdose.dcm", tmp_path / "dose.dcm")
    [row] = _series_rows(spark, tmp_path)
    assert row.error is None and to_numpy(row.image).shape == (15, 10, 10)
    ds = pydicom.dcmread(tmp_path / "dose.dcm")
    # RT Dose: stored values x DoseGridScaling = dose (PS3.3 C.8.8.3.4)
    assert np.allclose(to_numpy(row.image), ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
