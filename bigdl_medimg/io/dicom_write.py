"""Write volumes as DICOM series and NIfTI files (used by phantoms, tests and exports).

``write_dicom_series`` writes one MR Image Storage file per slice with
consistent UIDs, positions, orientation and spacing derived from a RAS+
affine, so that :func:`~bigdl_medimg.io.readers.read_dicom_series` gives the
same array and affine back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..tensor import LPS_TO_RAS

__all__ = ["write_dicom_series", "write_nifti", "write_dicom_xray", "ds_values", "common_modules"]


def ds_values(values) -> list:
    """Decimal String values of at most 16 characters (PS3.5 6.2), as precise as fits."""
    from pydicom.valuerep import DSfloat

    return [DSfloat(float(v), auto_format=True) for v in values]


def common_modules(ds, *, series_number: int, instance_number: int, study_uid: str, series_uid: str,
                   date: str = "20000101", time: str = "120000") -> None:
    """The Patient, General Study, General Series, General Equipment and SOP Common attributes every
    synthetic image carries: Type 1 filled, Type 2 present (empty when unknown), as dciodvfy checks them."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = "Phantom^Synthetic", "PHANTOM"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = date, time, date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = int(series_number), int(instance_number)
    ds.Manufacturer = "bigdl-medimg"


def write_dicom_series(volume: np.ndarray, affine: np.ndarray, out_dir: str | os.PathLike, *,
                       modality: str = "MR", series_uid: str | None = None, study_uid: str | None = None,
                       frame_of_reference_uid: str | None = None, series_number: int = 1,
                       file_names: Sequence[str] | None = None, series_description: str = "",
                       uid_seed: str | None = None) -> list[str]:
    """Write a ``(slices, rows, cols)`` volume as one DICOM file per slice.

    Parameters
    ----------
    volume : ndarray
        Integer volume (int16/uint16 recommended); slice axis first.
    affine : (4, 4) array_like
        RAS+ affine of ``volume``; its first column is the slice step (it may
        be oblique, but rows and columns must be orthogonal).
    out_dir : path
        Folder to write into (created).
    file_names : sequence of str, optional
        One name per slice (default ``slice_0000.dcm`` ...).
    uid_seed : str, optional
        Derive UIDs deterministically from this string.

    Returns
    -------
    list of str
        The written paths, in slice order.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ConfigError(f"write_dicom_series needs a 3-D volume, got shape {vol.shape}")
    if vol.dtype.kind not in "iu" or vol.dtype.itemsize > 2:
        raise ConfigError(f"write_dicom_series needs 8/16-bit integers, got {vol.dtype}")
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    col_vec, row_vec, slice_vec = lps[:3, 1], lps[:3, 2], lps[:3, 0]
    dr, dc = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    row_cos, col_cos = row_vec / dc, col_vec / dr
    if abs(float(row_cos @ col_cos)) > 1e-6:
        raise ConfigError("rows and columns of the affine must be orthogonal")
    normal = np.cross(row_cos, col_cos)
    thickness = abs(float(slice_vec @ normal))

    def uid(suffix: str) -> str:
        return generate_uid(entropy_srcs=[uid_seed, suffix]) if uid_seed else generate_uid()

    series_uid = series_uid or uid("series")
    study_uid = study_uid or uid("study")
    frame_of_reference_uid = frame_of_reference_uid or uid("for")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(file_names) if file_names is not None else [f"slice_{i:04d}.dcm" for i in range(vol.shape[0])]
    if len(names) != vol.shape[0]:
        raise ConfigError(f"{len(names)} file names for {vol.shape[0]} slices")
    signed = vol.dtype.kind == "i"
    bits = vol.dtype.itemsize * 8
    paths = []
    for i in range(vol.shape[0]):
        sop_uid = uid(f"sop{i}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        common_modules(ds, series_number=series_number, instance_number=i + 1, study_uid=study_uid,
                       series_uid=series_uid)
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.PatientPosition, ds.Laterality = "HFS", ""
        # MR Image module (PS3.3 C.8.3.1): a research-mode 2-D acquisition, its Type 2 timing left empty
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "2D", "", "", ""
        ds.ImagePositionPatient = ds_values(lps[:3, 3] + i * slice_vec)
        ds.ImageOrientationPatient = ds_values(np.concatenate([row_cos, col_cos]))
        ds.PixelSpacing = ds_values([dr, dc])
        ds.SliceThickness = ds_values([thickness])[0]
        ds.SpacingBetweenSlices = ds_values([thickness])[0]
        ds.Rows, ds.Columns = int(vol.shape[1]), int(vol.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = bits
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(vol[i], dtype=vol.dtype.newbyteorder("<")).tobytes()
        path = out / names[i]
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(str(path))
    return paths


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> str:
    """Write a channels-first array and RAS+ affine as NIfTI (sform and qform set)."""
    import nibabel as nib

    arr = np.asarray(array)
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 0, -1)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return str(path)


def write_dicom_xray(image: np.ndarray, path: str | os.PathLike, *, spacing: tuple[float, float] = (1.0, 1.0),
                     modality: str = "DX", view_position: str = "PA", uid_seed: str | None = None) -> str:
    """Write a 2-D grey radiograph as a DICOM DX (or CR) file with ImagerPixelSpacing."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ConfigError(f"write_dicom_xray needs a 2-D uint8/uint16 image, got {img.dtype} {img.shape}")
    sop_class = "1.2.840.10008.5.1.4.1.1.1.1" if modality == "DX" else "1.2.840.10008.5.1.4.1.1.1"

    def uid(s):
        return generate_uid(entropy_srcs=[uid_seed, s]) if uid_seed else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    common_modules(ds, series_number=1, instance_number=1, study_uid=uid("study"), series_uid=uid("series"))
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = modality, view_position, "CHEST"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ["L", "F"] if view_position == "PA" else ["R", "F"]  # rows to the left, columns feet
    ds.ImageLaterality = "U"  # unpaired: the chest
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "51185008", "SCT", "Chest"
    ds.AnatomicRegionSequence = [region]
    if modality == "DX":
        # DX modules (PS3.3 C.8.11): a for-presentation linear image, rescale identity
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
        ds.DetectorType, ds.PresentationLUTShape, ds.PositionerType = "DIRECT", "IDENTITY", ""
        lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 1.0)
        ds.WindowCenter, ds.WindowWidth = ds_values([(lo + hi) / 2, max(hi - lo, 1.0)])
        ds.AcquisitionContextSequence = []
        views = {"PA": ("399348003", "postero-anterior"), "AP": ("272479007", "antero-posterior"),
                 "LL": ("399067008", "lateral")}
        if view_position in views:
            view = Dataset()
            view.CodeValue, view.CodeMeaning = views[view_position]
            view.CodingSchemeDesignator = "SCT"
            ds.ViewCodeSequence = [view]
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = img.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.ImagerPixelSpacing = ds_values(spacing)
    ds.PixelData = np.ascontiguousarray(img, dtype=img.dtype.newbyteorder("<")).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(path)
