"""read_dicom against pydicom's own test files, MONOCHROME1, failfast and headers-only."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from bigdl_medimg import read_dicom
from bigdl_medimg.io.dicom import decode_dicom
from bigdl_medimg.tensor import get_affine, to_numpy


def _pydicom_reference(path: str):
    """What pydicom itself gives: pixel_array, palette expanded, Modality LUT applied, RGB channels first."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            ds = pydicom.dcmread(path, force=True)
        arr = ds.pixel_array
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 2 or (arr.ndim == 3 and int(ds.get("NumberOfFrames", 1) or 1) > 1 and ds.SamplesPerPixel == 1):
        out = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        if ds.get("Modality") == "RTDOSE" and "DoseGridScaling" in ds:  # PS3.3 C.8.8.3.4; pydicom leaves it
            out = arr.astype(np.float64) * float(ds.DoseGridScaling)
        if pi == "MONOCHROME1":  # our documented convention: invert within the output range
            signed = int(ds.PixelRepresentation) == 1
            bits = int(ds.BitsStored)
            stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2 ** bits - 1])
            lo, hi = sorted(np.asarray(apply_modality_lut(stored, ds), dtype=np.float64))
            out = lo + hi - out
        return out
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        arr = arr[np.newaxis]
    return np.moveaxis(arr, -1, 0).astype(np.float64)


def test_every_pydicom_test_file_is_a_row_equal_to_pydicom(spark, pydicom_test_files):
    df = read_dicom(spark, str(pydicom_test_files))
    rows = {r.path: r for r in df.collect()}  # one job over every file: it must not fail
    on_disk = [os.path.join(d, f) for d, _, fs in os.walk(pydicom_test_files) for f in fs]
    assert len(rows) == len(on_disk) > 80
    decoded = errors = 0
    for path in on_disk:
        row = rows["file:" + path]
        try:
            ref = _pydicom_reference(path)
        except Exception:
            ref = None
        if ref is None:
            assert row.image is None and row.error, path
            assert row.error.split(":")[0] == "DicomReadError" and "\n" not in row.error
            errors += 1
            continue
        assert row.error is None, (path, row.error)
        got = to_numpy(row.image)
        assert got.shape == ref.shape, (path, got.shape, ref.shape)
        assert np.allclose(got.astype(np.float64), ref, rtol=1e-6, atol=1e-6), path
        assert get_affine(row.image).shape == (4, 4)
        decoded += 1
    assert decoded >= 50 and errors >= 20, (decoded, errors)
    # a few specific expectations
    by_name = {Path(p).name: r for p, r in rows.items()}
    assert "not a DICOM file" in by_name["README.txt"].error
    assert "no pixel data" in by_name["rtplan.dcm"].error
    assert by_name["rtstruct.dcm"].modality == "RTSTRUCT"  # no preamble, still read as DICOM
    assert "MR_truncated.dcm" in by_name and "cannot decode pixel data" in by_name["MR_truncated.dcm"].error
    ct = by_name["CT_small.dcm"]
    assert ct.modality == "CT" and ct.rows == 128 and ct.affine_source == "patient"
    assert ct.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert to_numpy(ct.image).dtype.kind == "i"  # integer rescale keeps an integer dtype (no float64 blow-up)


def test_affine_of_ct_small_matches_header(pydicom_test_files):
    path = str(pydicom_test_files / "CT_small.dcm")
    ds = pydicom.dcmread(path)
    row = decode_dicom(open(path, "rb").read(), path)
    aff = get_affine(row["image"])
    r, c = 5, 7
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    ps = np.array(ds.PixelSpacing, float)
    lps = ipp + r * ps[0] * iop[3:] + c * ps[1] * iop[:3]
    ras = lps * [-1, -1, 1]
    assert np.allclose(aff @ [r, c, 0, 1], [*ras, 1])


def test_no_phi_in_columns(spark, pydicom_test_files):
    df = read_dicom(spark, str(pydicom_test_files / "CT_small.dcm"))
    banned = {"patient_name", "patient_id", "patient_birth_date", "accession_number", "institution_name"}
    assert not banned & set(df.columns)
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    row = df.first().asDict()
    text = " ".join(str(v) for k, v in row.items() if k != "image")
    assert str(ds.PatientName) not in text and str(ds.PatientID) not in text


def _write_xray(path: Path, pixels: np.ndarray, photometric: str, slope=1.0, intercept=0.0, modality="DX"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN123456"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.ImagerPixelSpacing = [0.2, 0.25]
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_monochrome1_is_inverted_and_fractional_rescale_is_float32(tmp_path):
    px = np.array([[0, 100], [4095, 2000]], dtype=np.uint16)
    p = _write_xray(tmp_path / "m1", px, "MONOCHROME1")
    row = decode_dicom(p.read_bytes(), str(p))
    assert np.array_equal(to_numpy(row["image"]), 4095 - px)
    p2 = _write_xray(tmp_path / "m2", px, "MONOCHROME2", slope=0.5, intercept=-10)
    arr = to_numpy(decode_dicom(p2.read_bytes(), str(p2))["image"])
    assert arr.dtype == np.float32 and np.allclose(arr, px * 0.5 - 10)
    p3 = _write_xray(tmp_path / "m3", px, "MONOCHROME1", slope=2, intercept=-1000)
    arr = to_numpy(decode_dicom(p3.read_bytes(), str(p3))["image"])
    # output range [-1000, 7190]: x -> -1000 + 7190 - x
    assert arr.dtype == np.int16 and np.array_equal(arr, -1000 + 7190 - (px.astype(int) * 2 - 1000))


def test_headers_only_and_extensionless(spark, tmp_path, pydicom_test_files):
    data = (pydicom_test_files / "MR_small.dcm").read_bytes()
    (tmp_path / "IM0001").write_bytes(data)  # no extension, as in many archives
    df = read_dicom(spark, str(tmp_path), with_pixels=False)
    row = df.first()
    assert row.modality == "MR" and row.image is None and row.error is None and row.rows == 64


def test_failfast_raises_naming_the_file(spark, tmp_path, pydicom_test_files):
    (tmp_path / "good.dcm").write_bytes((pydicom_test_files / "MR_small.dcm").read_bytes())
    (tmp_path / "broken.dcm").write_bytes(b"this is not dicom" * 20)
    permissive = {Path(r.path).name: r.error for r in read_dicom(spark, str(tmp_path)).collect()}
    assert permissive["good.dcm"] is None and "not a DICOM file" in permissive["broken.dcm"]
    with pytest.raises(Exception) as info:
        read_dicom(spark, str(tmp_path), mode="failfast").collect()
    assert "DicomReadError" in str(info.value) and "broken.dcm" in str(info.value)
    from bigdl_medimg.errors import ConfigError

    with pytest.raises(ConfigError, match="mode must be one of"):
        read_dicom(spark, str(tmp_path), mode="lenient")
