"""De-identification: the PS3.15 basic profile on data sets, columns and written files; no PHI in any output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bigdl_medimg import read_dicom, read_dicom_series
from bigdl_medimg.deid import Deidentify, Pseudonymizer, deidentify_dataset, deidentify_files
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.io.dicom_write import write_dicom_series

KEY = "test-key-0123456789abcdef"
# every one of these strings is patient data planted in the files (or their paths) below
PHI = ["DOE^JOHN", "DOE_JOHN", "DOE JOHN", "99887766", "5544332", "19610203", "PHIHOSPITAL", "DRWHO", "SECRETNOTE",
       "77 PHI STREET"]


def _plant_phi(path: Path, *, study_uid: str, extra=None) -> None:
    ds = pydicom.dcmread(path)
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "MRN99887766"
    ds.OtherPatientIDs = "ALT99887766"
    ds.AccessionNumber = "ACC5544332"
    ds.PatientBirthDate = "19610203"
    ds.PatientAddress = "77 PHI STREET"
    ds.InstitutionName = "PHIHOSPITAL"
    ds.ReferringPhysicianName = "DRWHO^JOHN"
    ds.StudyDate = "20200115"
    ds.SeriesDate = "20200115"
    ds.StudyDescription = "SECRETNOTE knee"
    ds.ImageComments = "SECRETNOTE for DOE"
    ds.StudyInstanceUID = study_uid
    block = ds.private_block(0x0011, "PHI VENDOR", create=True)
    block.add_new(0x01, "LO", "DOE JOHN 99887766")
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.PerformingPhysicianName = "DRWHO"
    ds.ReferencedImageSequence = Sequence([ref])
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.save_as(path)


@pytest.fixture(scope="module")
def phi_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("phi") / "MRN99887766_DOE_JOHN"
    vol = np.random.default_rng(0).integers(0, 1000, (4, 8, 10)).astype(np.int16)
    study = "1.2.826.0.1.3680043.99887766.1"
    paths = write_dicom_series(vol, np.diag([2.0, 0.5, 0.5, 1.0]), root / "series1", uid_seed="phi-1",
                               file_names=[f"DOE_JOHN_{i}.dcm" for i in range(4)])
    for p in paths:
        _plant_phi(Path(p), study_uid=study)
    burned = write_dicom_series(vol[:1], np.eye(4), root / "burned", uid_seed="phi-2",
                                file_names=["DOE_JOHN_burned.dcm"])[0]
    _plant_phi(Path(burned), study_uid=study, extra={"BurnedInAnnotation": "YES"})
    sc = write_dicom_series(vol[:1], np.eye(4), root / "sc", uid_seed="phi-3", file_names=["DOE_JOHN_sc.dcm"])[0]
    _plant_phi(Path(sc), study_uid=study, extra={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"})
    bad = write_dicom_series(vol[:1], np.eye(4), root / "bad", uid_seed="phi-4", file_names=["DOE_JOHN_bad.dcm"])[0]
    _plant_phi(Path(bad), study_uid=study, extra={"PhotometricInterpretation": "DOE^JOHN"})
    trunc = Path(write_dicom_series(vol[:1], np.eye(4), root / "bad", uid_seed="phi-5",
                                    file_names=["DOE_JOHN_truncated.dcm"])[0])
    _plant_phi(trunc, study_uid=study)
    trunc.write_bytes(trunc.read_bytes()[:-300])
    (root / "MRN99887766_notes.dcm").write_bytes(b"DOE JOHN MRN99887766 is not a DICOM file")
    return root, study, pydicom.dcmread(paths[0]).SOPInstanceUID


def _assert_clean(text: str, where: str) -> None:
    found = [p for p in PHI if p in text]
    assert not found, f"patient data {found} in {where}: {text[:400]}"


def test_pseudonymizer_is_keyed_deterministic_and_hides_its_key():
    a, b, other = Pseudonymizer(KEY), Pseudonymizer(KEY), Pseudonymizer(KEY + "x")
    assert a.pseudonym("MRN1", "PID") == b.pseudonym("MRN1", "PID") != other.pseudonym("MRN1", "PID")
    assert a.pseudonym("MRN1", "PID") != a.pseudonym("MRN2", "PID") and len(a.pseudonym("MRN1", "PID")) == 16
    uid = a.uid("1.2.3.4")
    assert uid == b.uid("1.2.3.4") != a.uid("1.2.3.5") and uid.startswith("2.25.") and len(uid) <= 64
    assert pydicom.uid.UID(uid).is_valid
    shifts = {a.shift_days(f"p{i}") for i in range(200)}
    assert 0 not in shifts and min(shifts) >= -365 and max(shifts) <= 365 and len(shifts) > 100
    assert KEY not in repr(a) and KEY not in repr(Deidentify(key=KEY))
    with pytest.raises(ConfigError, match="key"):
        Pseudonymizer("short")


# one planted attribute is PHI in a CS element (PhotometricInterpretation): pydicom rightly warns about it
@pytest.mark.filterwarnings("ignore:Invalid value for VR CS:UserWarning")
def test_dataset_profile(phi_archive):
    root, study, sop = phi_archive
    path = next((root / "series1").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    pseudo = Pseudonymizer(KEY)
    deidentify_dataset(ds, pseudo, dates="shift")
    days = pseudo.shift_days("MRN99887766")
    import datetime as dt

    assert ds.StudyDate == (dt.date(2020, 1, 15) + dt.timedelta(days=days)).strftime("%Y%m%d") == ds.SeriesDate
    assert ds.PatientID == pseudo.pseudonym("MRN99887766", "PID") and ds.AccessionNumber.startswith("ACC")
    assert str(ds.PatientName) == pseudo.pseudonym("MRN99887766", "PAT") and ds.PatientBirthDate == ""
    assert ds.StudyInstanceUID == pseudo.uid(study) and ds.SOPInstanceUID == pseudo.uid(sop)
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == ds.SOPInstanceUID and ref.ReferencedSOPClassUID == ds.SOPClassUID
    assert "PerformingPhysicianName" not in ref  # X in Table E.1-1, at any depth
    for kw in ("PatientAddress", "StudyDescription", "ImageComments"):  # X
        assert kw not in ds
    assert ds.InstitutionName == "ANONYMIZED"  # X/Z/D: a dummy, valid whatever the IOD asks of it
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethodCodeSequence[1].CodeValue == "113107"
    ds2 = pydicom.dcmread(path)
    deidentify_dataset(ds2, pseudo, dates="remove")
    assert ds2.StudyDate == "" and len(ds2.DeidentificationMethodCodeSequence) == 1


def test_reader_columns_errors_and_exceptions_carry_no_phi(spark, phi_archive):
    root, study, _sop = phi_archive
    stage = Deidentify(key=KEY)
    df = read_dicom(spark, str(root), deidentify=stage)
    rows = df.drop("image").collect()
    assert len(rows) == 9
    for r in rows:
        _assert_clean(str(r.asDict()), "read_dicom(deidentify=...) columns")
        assert r.path.startswith("file-")
    pseudo = Pseudonymizer(KEY)
    assert {r.study_instance_uid for r in rows if r.study_instance_uid} == {pseudo.uid(study)}
    errors = [r.error for r in rows if r.error]
    assert len(errors) == 3, errors  # the photometric-interpretation file, the truncated one, the non-DICOM one
    quarantine = sorted(r.quarantine for r in rows if r.quarantine)
    assert quarantine == ["BurnedInAnnotation is YES", "secondary capture image (Secondary Capture)"]
    # failfast: the exception (and so the driver's log) names the file by its label
    with pytest.raises(Exception) as info:
        read_dicom(spark, str(root / "bad"), mode="failfast", deidentify=stage).collect()
    _assert_clean(str(info.value), "the failfast exception")
    assert "file-" in str(info.value)
    # series: keys, path arrays and errors
    series = read_dicom_series(spark, str(root), deidentify=stage).drop("image").collect()
    for r in series:
        _assert_clean(str(r.asDict()), "read_dicom_series(deidentify=...) columns")
    good = [r for r in series if r.error is None and r.n_slices == 4]
    assert len(good) == 1 and all(p.startswith("file-") for p in good[0].path)
    assert good[0].series_key.startswith("2.25.")
    # dropping the path; dates removed
    dropped = read_dicom(spark, str(root / "series1"), deidentify=Deidentify(key=KEY, pathMode="drop"))
    assert "path" not in dropped.columns


def test_without_deidentification_metadata_is_still_an_allow_list(spark, phi_archive):
    root, _study, _sop = phi_archive
    rows = read_dicom(spark, str(root / "series1")).drop("image", "path").collect()
    for r in rows:
        text = str(r.asDict())  # (UIDs are kept without de-identification; this study's UID embeds the MRN)
        assert not any(p in text for p in PHI if p != "99887766"), text


def test_written_files_are_deidentified_and_consistent(spark, phi_archive, tmp_path):
    root, study, _sop = phi_archive
    out = tmp_path / "clean"
    res = deidentify_files(spark, str(root), str(out), key=KEY).collect()
    assert len(res) == 9
    for r in res:
        _assert_clean(str(r.asDict()), "deidentify_files result")
    written = [Path(r.output) for r in res if r.output]
    # everything but the non-DICOM file (a short pixel data element is still written back as it was)
    assert len(written) == 8 and [r.error for r in res if r.error] == [
        "DicomReadError: not a DICOM file (no DICM marker and no parsable data set)"]
    assert sum("/quarantine/" in str(p) for p in written) == 2
    for p in written:
        raw = p.read_bytes()
        _assert_clean(raw.decode("latin-1"), f"written file {p.name}")
        _assert_clean(str(p), "written file path")
        ds = pydicom.dcmread(p)
        assert ds.PatientIdentityRemoved == "YES" and ds.StudyInstanceUID == Pseudonymizer(KEY).uid(study)
    # the written series reads back as one volume whose UIDs match the column remapping
    series = read_dicom_series(spark, str(out)).filter("n_slices = 4").collect()
    cols = read_dicom_series(spark, str(root), deidentify=Deidentify(key=KEY)).filter("n_slices = 4").collect()
    assert len(series) == 1 and series[0].series_instance_uid == cols[0].series_instance_uid
    # the de-identified copies of a valid series are valid DICOM (dciodvfy: no Error line)
    from test_dicom_geometry import dciodvfy_errors

    for uri in series[0].path:
        assert dciodvfy_errors(uri.removeprefix("file:")) == [], uri


def test_cli_logs_and_tables_carry_no_phi(phi_archive, tmp_path):
    root, _study, _sop = phi_archive
    env = dict(os.environ, BIGDL_MEDIMG_DEID_KEY=KEY)
    outputs = []
    for args in (["ingest", "--kind", "dicom", "--input", str(root), "--out", str(tmp_path / "t1"), "--deidentify"],
                 ["ingest", "--kind", "dicom", "--input", str(root / "bad"), "--out", str(tmp_path / "t3"),
                  "--deidentify", "--mode", "failfast"],
                 ["deidentify", "--input", str(root), "--out", str(tmp_path / "files")]):
        p = subprocess.run([sys.executable, "-m", "bigdl_medimg", *args, "--master", "local[1]"], env=env,
                           capture_output=True, text=True, timeout=600)
        log = p.stdout + p.stderr
        # the command line itself names the input folder; everything the library prints must not
        _assert_clean(log.replace(str(root), "<input>"), f"the log of {args[0]} (exit {p.returncode})")
        outputs.append((args, p.returncode, log))
    assert [rc for _a, rc, _l in outputs] == [0, 1, 3], [(a[:2], rc, log[-500:]) for a, rc, log in outputs]
    from bigdl_medimg import get_spark
    from bigdl_medimg.io.readers import read_tensors

    spark = get_spark()
    for t in ("t1",):
        for r in read_tensors(spark, str(tmp_path / t)).drop("image").collect():
            _assert_clean(str(r.asDict()), f"the ingested table {t}")
    env.pop("BIGDL_MEDIMG_DEID_KEY")
    p = subprocess.run([sys.executable, "-m", "bigdl_medimg", "ingest", "--kind", "dicom", "--input", str(root),
                        "--out", str(tmp_path / "t4"), "--deidentify"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 2 and "BIGDL_MEDIMG_DEID_KEY" in p.stdout + p.stderr


def test_deidentify_in_a_saved_pipeline_keeps_no_key(spark, phi_archive, tmp_path, monkeypatch):
    from pyspark.ml import Pipeline, PipelineModel

    root, _study, _sop = phi_archive
    model = Pipeline(stages=[Deidentify(key=KEY, dates="remove")]).fit(read_dicom(spark, str(root / "series1")))
    model.write().overwrite().save(str(tmp_path / "pm"))
    saved = "".join(p.read_text(errors="ignore") for p in (tmp_path / "pm").rglob("*") if p.is_file())
    assert KEY not in saved
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    with pytest.raises(ConfigError, match="BIGDL_MEDIMG_DEID_KEY"):
        loaded.transform(read_dicom(spark, str(root / "series1")))
    monkeypatch.setenv("BIGDL_MEDIMG_DEID_KEY", KEY)
    rows = loaded.transform(read_dicom(spark, str(root / "series1"))).collect()
    assert rows and all(r.path.startswith("file-") for r in rows)


def test_identifier_and_date_columns_of_a_label_table(spark):
    """A user table (as ChestX-ray14's or MRNet's label files give): IDs pseudonymised, dates shifted per
    patient (intervals kept) or removed, birth dates removed, names replaced, paths labelled."""
    import datetime as dt

    rows = [("MRN1", "DOE^JOHN", "20200101", "20200111", "19610203", "ACC1", "/data/MRN1/a.png"),
            ("MRN1", "DOE^JOHN", "20200105", None, "19610203", "ACC2", "/data/MRN1/b.png"),
            ("MRN2", "ROE^JANE", "20210301", "20210302", "19700101", "ACC3", "/data/MRN2/c.png")]
    df = spark.createDataFrame(rows, "patient_id string, patient_name string, study_date string, "
                                     "report_date string, patient_birth_date string, accession_number string, "
                                     "path string")
    pseudo = Pseudonymizer(KEY)
    out = {r.accession_number: r for r in Deidentify(key=KEY).transform(df).collect()}
    assert set(out) == {pseudo.pseudonym(a, "ACC") for a in ("ACC1", "ACC2", "ACC3")}
    a, b, c = (out[pseudo.pseudonym(x, "ACC")] for x in ("ACC1", "ACC2", "ACC3"))
    assert a.patient_id == b.patient_id == pseudo.pseudonym("MRN1", "PID") != c.patient_id
    assert a.patient_name == pseudo.pseudonym("MRN1", "PAT") and c.patient_name == pseudo.pseudonym("MRN2", "PAT")

    def day(s):
        return dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))

    shift = pseudo.shift_days("MRN1")
    assert day(a.study_date) - day("20200101") == dt.timedelta(days=shift)
    assert (day(b.study_date) - day(a.study_date)).days == 4 and (day(a.report_date) - day(a.study_date)).days == 10
    assert b.report_date is None and a.patient_birth_date is None
    assert day(c.study_date) - day("20210301") == dt.timedelta(days=pseudo.shift_days("MRN2"))
    assert all(r.path.startswith("file-") and r.path.endswith(".png") for r in out.values())
    removed = Deidentify(key=KEY, dates="remove").transform(df).collect()
    assert all(r.study_date is None and r.report_date is None for r in removed)


def test_reports_of_deidentified_data_carry_no_phi(spark, phi_archive, tmp_path):
    """A segmentation report keyed by the (de-identified) series key: the HTML names no patient."""
    from pyspark.sql import functions as F

    from bigdl_medimg.report import SegmentationResults, write_report
    from bigdl_medimg.tensor import from_numpy, get_affine, to_numpy, tensor_type

    root, _study, _sop = phi_archive
    series = read_dicom_series(spark, str(root), deidentify=Deidentify(key=KEY)).filter(F.col("n_slices") == 4)

    @F.udf(tensor_type())
    def threshold(img, cut):
        arr = to_numpy(img)
        return from_numpy((arr > cut).astype("uint8"), get_affine(img))

    df = series.withColumn("mask", threshold("image", F.lit(500))).withColumn("pred", threshold("image", F.lit(450)))
    res = SegmentationResults.from_dataframe(df, predictionCol="pred", labelCol="mask", numClasses=2,
                                               keyCol="series_key", imageCol="image")
    html = Path(write_report(str(tmp_path / "report.html"), title="knee", results=[res])).read_text()
    assert "2.25." in html  # the volumes are named by their remapped keys
    _assert_clean(html, "the HTML report")
