"""Measurements as DICOM Structured Reports: a TID 1500 Measurement Report built with highdicom.

:func:`build_measurement_report` makes a Comprehensive 3D SR whose evidence
is the source series (every instance referenced in the Current Requested
Procedure Evidence Sequence), with one measurement group per report:

- knee (:func:`knee_measurements`): the volume in mL of each cartilage
  compartment and of the menisci, from the predicted mask (voxel count x
  voxel volume on the mask's grid), each with its anatomic site, and the
  meniscus-tear probability when there is one;
- chest (:func:`chest_measurements`): the probability of each of the 14
  findings.

Volumes use SNOMED CT "Volume" (118565006) in UCUM mL; a probability has no
standard concept for "AI finding probability", so it is coded in this
library's private scheme ``99BIGDLMEDIMG`` with UCUM unit ``1``.
The SR copies the source's patient and study modules, as a derived object
stored beside its images must.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..version import __version__

__all__ = ["build_measurement_report", "write_measurement_reports", "write_finding_reports", "knee_measurements",
           "chest_measurements", "PRIVATE_SCHEME"]

PRIVATE_SCHEME = "99BIGDLMEDIMG"
#: Class number of the knee masks -> (label, SNOMED CT finding site): the structure each volume measures.
KNEE_SITES = {1: ("Femoral cartilage", ("71341001", "SCT", "Femur")),
              2: ("Tibial cartilage", ("12611008", "SCT", "Tibia")),
              3: ("Patellar cartilage", ("64234005", "SCT", "Patella")),
              4: ("Meniscus", ("74135004", "SCT", "Meniscus"))}
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName")


def knee_measurements(mask: np.ndarray, affine: np.ndarray, tear_probability: float | None = None) -> list[dict]:
    """``[{"label", "value", "unit", "site"}]``: volume (mL) of each knee class in ``mask``, and the tear probability."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, np.float64)[:3, :3]))) / 1000.0
    counts = np.bincount(np.asarray(mask, np.int64).ravel(), minlength=5)
    out = [{"label": f"{name} volume", "value": float(counts[k]) * voxel_ml, "unit": "ml", "site": site}
           for k, (name, site) in KNEE_SITES.items()]
    if tear_probability is not None:
        out.append({"label": "Meniscus tear probability", "value": float(tear_probability), "unit": "1",
                    "site": KNEE_SITES[4][1]})
    return out


def chest_measurements(probabilities: Sequence[float], labels: Sequence[str]) -> list[dict]:
    """``[{"label", "value", "unit"}]``: the probability of each finding."""
    return [{"label": f"{name} probability", "value": float(p), "unit": "1"} for name, p in zip(labels, probabilities)]


def _concept(m: Mapping):
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    if m["unit"] == "ml":
        return codes.SCT.Volume, CodedConcept("ml", "UCUM", "milliliter")
    code = "".join(ch if ch.isalnum() else "_" for ch in m["label"].upper())[:16]
    return CodedConcept(code, PRIVATE_SCHEME, m["label"]), CodedConcept("1", "UCUM", "no units")


def build_measurement_report(headers: Sequence, measurements: Sequence[Mapping], *, title: str,
                             series_number: int = 901, series_description: str = "bigdl-medimg measurements",
                             algorithm_name: str = "bigdl-medimg", uid_seed: str | None = None):
    """A highdicom ``Comprehensive3DSR`` (TID 1500) with ``measurements`` about the source ``headers``.

    ``measurements``: ``{"label", "value", "unit" ("ml" or "1"), "site" (optional code)}``
    (:func:`knee_measurements`, :func:`chest_measurements`). ``uid_seed``
    makes the SR's UIDs reproducible (a retried send stores the same object).
    """
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    for ds in headers:
        for kw in _TYPE2:
            if kw not in ds:
                setattr(ds, kw, "")
    seed = (lambda part: None) if uid_seed is None else (lambda part: [f"{uid_seed}/{part}"])
    algo = hd.sr.AlgorithmIdentification(name=algorithm_name, version=__version__)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=seed("device")), name=algorithm_name, model_name=algorithm_name))
    items = []
    for m in measurements:
        name, unit = _concept(m)
        sites = [hd.sr.FindingSite(anatomic_location=CodedConcept(*m["site"]))] if m.get("site") else None
        items.append(hd.sr.Measurement(name=name, value=float(m["value"]), unit=unit, finding_sites=sites,
                                       algorithm_id=algo))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(entropy_srcs=seed("tracking")),
                                                     identifier=title),
        measurements=items, algorithm_id=algo)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CodedConcept("363679005", "SCT", "Imaging procedure"), imaging_measurements=[group])
    return hd.sr.Comprehensive3DSR(
        evidence=list(headers), content=report, series_instance_uid=generate_uid(entropy_srcs=seed("series")),
        series_number=int(series_number), sop_instance_uid=generate_uid(entropy_srcs=seed("instance")),
        instance_number=1, manufacturer="bigdl-medimg", series_description=series_description, is_complete=True)


def write_measurement_reports(df, outDir: str, *, maskCol: str = "segmentation", pathCol: str = "path",
                              keyCol: str = "series_key", probabilityCol: str | None = None,
                              title: str = "Knee MRI measurements", mode: str = "permissive", dicomweb=None):
    """Write one knee Measurement Report per row (series) as ``<outDir>/<key>.sr.dcm``, on the executors.

    The volumes come from ``maskCol`` (class numbers of :data:`KNEE_SITES`, on
    the mask's own grid); ``probabilityCol`` (a number per row, optional) adds the
    meniscus-tear probability; the evidence is the series' files in ``pathCol``
    (WADO-RS addresses of series read with ``read_dicomweb``: give ``dicomweb``,
    as :func:`~bigdl_medimg.export.dicom_seg.write_dicom_seg`).

    Returns
    -------
    pandas.DataFrame
        ``key``, ``path`` written, ``sop_instance_uid`` and ``series_instance_uid`` of the SR, ``error``.
    """
    import io
    import uuid

    from ..io import files
    from ..tensor import get_affine, to_numpy
    from .dicom_seg import row_series
    from .rows import export_rows

    run_id = uuid.uuid4().hex  # UIDs: stable across task retries of this call, new for every export

    def one(rec):
        key = rec[keyCol]
        headers, _grid = row_series(rec, maskCol, pathCol, dicomweb)
        prob = rec.get(probabilityCol) if probabilityCol else None
        prob = None if prob is None or prob != prob else float(prob)
        sr = build_measurement_report(headers, knee_measurements(to_numpy(rec[maskCol]), get_affine(rec[maskCol]),
                                                                 prob), title=title, uid_seed=f"{run_id}/{key}")
        buf = io.BytesIO()
        sr.save_as(buf)
        path = files.write_bytes(files.join(outDir, files.safe_name(key) + ".sr.dcm"), buf.getvalue())
        return {"path": path, "sop_instance_uid": str(sr.SOPInstanceUID),
                "series_instance_uid": str(sr.SeriesInstanceUID)}

    cols = [keyCol, pathCol, maskCol] + ([probabilityCol] if probabilityCol else [])
    return export_rows(df, cols, keyCol, one, ["key", "path", "sop_instance_uid", "series_instance_uid", "error"],
                       mode=mode)


def write_finding_reports(df, outDir: str, labelNames: Sequence[str], *, probabilityCol: str = "probability",
                          pathCol: str = "path", keyCol: str = "image_index",
                          title: str = "Chest radiograph findings", mode: str = "permissive", dicomweb=None):
    """Write one Measurement Report per DICOM image row (the probability of each finding) as ``<key>.sr.dcm``.

    The evidence is the image file in ``pathCol`` (a radiograph read by
    ``read_images``, or by ``read_dicomweb(level="image")`` with its connection
    in ``dicomweb``); rows whose image could not be scored (no probabilities)
    get an error.

    Returns
    -------
    pandas.DataFrame
        ``key``, ``path`` written, ``sop_instance_uid`` and ``series_instance_uid`` of the SR, ``error``.
    """
    import io
    import uuid

    import pydicom

    from ..io import files
    from .rows import export_rows

    run_id = uuid.uuid4().hex
    names = [str(n) for n in labelNames]

    def one(rec):
        key = rec[keyCol]
        probs = rec[probabilityCol]
        if probs is None or len(probs) != len(names):
            raise ValueError("no probabilities for this image")
        if dicomweb is not None:
            from ..io.dicomweb import retrieve_headers

            header = retrieve_headers(dicomweb, [rec[pathCol]])[rec[pathCol]]
        else:
            with files.open_input(rec[pathCol]) as f:
                header = pydicom.dcmread(f, stop_before_pixels=True)
        sr = build_measurement_report([header], chest_measurements(list(probs), names), title=title,
                                      uid_seed=f"{run_id}/{key}")
        buf = io.BytesIO()
        sr.save_as(buf)
        path = files.write_bytes(files.join(outDir, files.safe_name(str(key)) + ".sr.dcm"), buf.getvalue())
        return {"path": path, "sop_instance_uid": str(sr.SOPInstanceUID),
                "series_instance_uid": str(sr.SeriesInstanceUID)}

    return export_rows(df, [keyCol, pathCol, probabilityCol], keyCol, one,
                       ["key", "path", "sop_instance_uid", "series_instance_uid", "error"], mode=mode)
