"""Predicted masks as DICOM Segmentation objects (highdicom) referencing their source series.

Each series' SEG is built on an executor: the source files' headers are read
(pixels skipped), sorted into the same slice order as
:func:`~bigdl_medimg.io.readers.read_dicom_series` (so the geometry is the
reader's), the mask is put on that grid when it lives on another (a
reoriented or resampled pipeline) and every frame references the source
instance it was drawn on.  The SEG carries the source's patient and study
modules, as a derived object stored next to its images must.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..version import __version__
from ..errors import ConfigError

__all__ = ["TISSUE", "SEGMENT_CODES", "build_dicom_seg", "write_dicom_seg", "series_headers", "row_series"]

#: SNOMED CT "Tissue" (85756007): the default segmented property category and type.
TISSUE = ("85756007", "SCT", "Tissue")

#: Segment label -> (segmented property category, type, anatomic region), SNOMED CT codes from the DICOM
#: code lists: category Tissue (CID 7150), types Cartilage and Meniscus (CID 7151 / 7166), regions from the
#: anatomic region list (CID 4): the bone a cartilage covers, the knee joint for the menisci.
SEGMENT_CODES = {
    "Femoral cartilage": (TISSUE, ("309312004", "SCT", "Cartilage"), ("71341001", "SCT", "Femur")),
    "Tibial cartilage": (TISSUE, ("309312004", "SCT", "Cartilage"), ("12611008", "SCT", "Tibia")),
    "Patellar cartilage": (TISSUE, ("309312004", "SCT", "Cartilage"), ("64234005", "SCT", "Patella")),
    "Meniscus": (TISSUE, ("74135004", "SCT", "Meniscus"), ("49076000", "SCT", "Knee joint")),
}

# Type-2 attributes of the patient and study modules that highdicom copies from
# the source; DICOM lets them be empty, so missing ones are added empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName")


def _segments(segment_labels) -> dict[int, str]:
    if isinstance(segment_labels, Mapping):
        out = {int(k): str(v) for k, v in segment_labels.items()}
    else:
        out = {i + 1: str(v) for i, v in enumerate(segment_labels)}
    if not out or min(out) < 1 or max(out) > 255:
        raise ConfigError("segment labels must name classes 1..255 (0 is background)")
    return out


def _code(value):
    from highdicom.sr import CodedConcept

    value = TISSUE if value is None else value
    if isinstance(value, CodedConcept):
        return value
    return CodedConcept(*value)


def build_dicom_seg(headers: Sequence, mask: np.ndarray, segment_labels, *, series_number: int = 900,
                    series_description: str = "bigdl-medimg segmentation", algorithm_name: str = "bigdl-medimg",
                    algorithm_version: str = __version__, property_types: Mapping[int, tuple] | None = None,
                    category=None, uid_seed: str | None = None):
    """A highdicom ``Segmentation`` of ``mask`` ``(slices, rows, cols)`` over ``headers`` (slice order).

    ``mask`` holds class numbers; ``segment_labels`` names them
    (``{1: "Femoral cartilage", ...}`` or a list for 1..n).  Classes present
    in the mask but not named are an error.  ``property_types`` maps a class
    to a code ``(value, scheme, meaning)``; labels named in :data:`SEGMENT_CODES`
    (the knee classes) get its category, type and anatomic region, others
    SNOMED "Tissue";
    ``uid_seed`` makes the SEG's UIDs reproducible (same seed, same UIDs).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    segs = _segments(segment_labels)
    mask = np.asarray(mask)
    if mask.shape != (len(headers), int(headers[0].Rows), int(headers[0].Columns)):
        raise ValueError(f"mask shape {mask.shape} does not match the series "
                         f"({len(headers)} slices of {headers[0].Rows}x{headers[0].Columns})")
    present = set(np.unique(mask).tolist()) - {0}
    unnamed = sorted(present - set(segs))
    if unnamed:
        raise ValueError(f"mask has classes {unnamed} without a segment label")
    for ds in headers:
        for kw in _TYPE2:
            if kw not in ds:
                setattr(ds, kw, "")
    algo = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=str(algorithm_version),
                                              family=codes.cid7162.ArtificialIntelligence)
    types = dict(property_types or {})
    numbers = sorted(segs)
    def description(i: int, k: int):
        known = SEGMENT_CODES.get(segs[k])
        cat = category if category is not None else (known[0] if known else None)
        typ = types.get(k) if types.get(k) is not None else (known[1] if known else None)
        return hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=segs[k], segmented_property_category=_code(cat),
            segmented_property_type=_code(typ), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo, anatomic_regions=[_code(known[2])] if known else None)

    descriptions = [description(i, k) for i, k in enumerate(numbers)]
    # segment numbers must run 1..n: relabel the classes in order
    lut = np.zeros(max(256, int(mask.max()) + 1), np.uint8)
    for i, k in enumerate(numbers):
        lut[k] = i + 1
    labelmap = lut[mask.astype(np.int64)]
    seed = None if uid_seed is None else [f"{uid_seed}/series", f"{uid_seed}/instance"]
    return hd.seg.Segmentation(
        source_images=list(headers), pixel_array=labelmap, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=None if seed is None else [seed[0]]),
        series_number=int(series_number), series_description=series_description,
        sop_instance_uid=generate_uid(entropy_srcs=None if seed is None else [seed[1]]), instance_number=1,
        manufacturer="bigdl-medimg", manufacturer_model_name=algorithm_name, software_versions=__version__,
        device_serial_number="0")


def series_headers(paths: Sequence[str], dicomweb=None):
    """Headers of a series' files (pixels skipped), sorted and checked as the series reader does.

    ``dicomweb`` (a :class:`~bigdl_medimg.io.dicomweb.DicomWebConnection`):
    the paths are WADO-RS instance addresses of a series read with
    ``read_dicomweb``; the headers come from the server's metadata.
    """
    import pydicom

    from ..io.dicom import dicom_metadata
    from ..io.series import plan_series
    from ..io import files

    if dicomweb is not None:
        from ..io.dicomweb import retrieve_headers

        by_path = retrieve_headers(dicomweb, paths)
    else:
        by_path = {}
        for p in paths:
            with files.open_input(p) as f:
                by_path[p] = pydicom.dcmread(f, stop_before_pixels=True, force=True)
    records = [dict(dicom_metadata(by_path[p]), path=p, error=None, has_pixels=True) for p in paths]
    plans = plan_series(records)
    if len(plans) != 1 or plans[0].error or plans[0].affine is None:
        why = plans[0].error if len(plans) == 1 else f"the files form {len(plans)} series"
        raise ValueError(f"source files are not one regular series: {why or 'no geometry'}")
    return [by_path[p] for p in plans[0].paths], plans[0].affine


def row_series(rec, mask_col: str, path_col: str, dicomweb=None):
    """``(headers, grid)`` of an export row's source series (:func:`series_headers`); ValueError without a mask
    or without source files."""
    if rec[mask_col] is None:
        raise ValueError("mask is null")
    paths = list(rec[path_col] if rec[path_col] is not None else [])
    if not paths:
        raise ValueError("no source files")
    return series_headers(paths, dicomweb)


def write_dicom_seg(df, outDir: str, segmentLabels, *, maskCol: str = "segmentation", pathCol: str = "path",
                    keyCol: str = "series_key", seriesNumber: int = 900,
                    seriesDescription: str = "bigdl-medimg segmentation", algorithmName: str = "bigdl-medimg",
                    propertyTypes: Mapping[int, tuple] | None = None, mode: str = "permissive", dicomweb=None):
    """Write one DICOM SEG per row (series) as ``<outDir>/<key>.seg.dcm``, on the executors.

    Parameters
    ----------
    df : DataFrame
        Rows of :func:`~bigdl_medimg.io.readers.read_dicom_series` (or any
        frame with the series' file paths in ``pathCol``) with a predicted
        label-mask tensor column ``maskCol`` in the same world space.
    outDir : str
        Local path or URI (``file:``, ``hdfs://``, ``s3a://``).
    segmentLabels : mapping or sequence
        Names of the classes (``{1: "Femoral cartilage", ...}``).
    propertyTypes : mapping, optional
        Class -> ``(code value, scheme, meaning)`` of the segmented property type.
    mode : {"permissive", "failfast"}
    dicomweb : DicomWebConnection, optional
        For series read with ``read_dicomweb``: the server their ``pathCol``
        addresses are on (the source headers are retrieved as metadata, with
        the connection's credentials, on the executors).

    Returns
    -------
    pandas.DataFrame
        ``key``, ``path`` written, ``sop_instance_uid`` and
        ``series_instance_uid`` of the SEG, ``frames``, ``error``.
    """
    import io
    import uuid

    from ..tensor import get_affine, to_numpy
    from ..io import files
    from .masks import to_reference_grid
    from .rows import export_rows

    segs = _segments(segmentLabels)
    run_id = uuid.uuid4().hex  # UIDs: stable across task retries of this call, new for every export

    def one(rec):
        key = rec[keyCol]
        headers, grid = row_series(rec, maskCol, pathCol, dicomweb)
        mask = to_numpy(rec[maskCol])
        shape = (len(headers), int(headers[0].Rows), int(headers[0].Columns))
        mask = to_reference_grid(mask, get_affine(rec[maskCol]), shape, grid)
        seg = build_dicom_seg(headers, mask, segs, series_number=seriesNumber,
                              series_description=seriesDescription, algorithm_name=algorithmName,
                              property_types=propertyTypes, uid_seed=f"{run_id}/{key}")
        buf = io.BytesIO()
        seg.save_as(buf)
        path = files.write_bytes(files.join(outDir, files.safe_name(key) + ".seg.dcm"), buf.getvalue())
        return {"path": path, "sop_instance_uid": str(seg.SOPInstanceUID),
                "series_instance_uid": str(seg.SeriesInstanceUID), "frames": int(seg.NumberOfFrames)}

    return export_rows(df, [keyCol, pathCol, maskCol], keyCol, one,
                       ["key", "path", "sop_instance_uid", "series_instance_uid", "frames", "error"], mode=mode,
                       int_names=["frames"])
