"""De-identification against PS3.15 Table E.1-1 itself: every attribute planted, every action checked.

The table comes from a published extraction of the standard (see
``bigdl_medimg.deid.table``), not from our own list; the test plants a distinct
value in every attribute it names (top level and nested in a sequence),
de-identifies, and checks each attribute's outcome against the table's action,
and that no planted value survives in the written bytes.
"""
from __future__ import annotations

import io
import json
import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from bigdl_medimg.deid import Pseudonymizer, deidentify_dataset
from bigdl_medimg.deid.profile import PSEUDONYM_KEYWORDS, action_for, quarantine_reason
from bigdl_medimg.deid.table import OPTION_CODES, TABLE, load_table

KEY = "table-e11-test-key-0123456789"


def _tag(row) -> int:
    return int(row["tag"].replace("x", "0"), 16)


def _value(vr: str, i: int):
    """A distinct planted value of VR ``vr`` (text values carry ``PLNT<i>``, searchable in the bytes)."""
    if vr == "PN":
        return f"PLNT{i:04d}^NAME"
    if vr in ("LO", "LT", "ST", "UT", "UC", "SH", "CS", "AE"):
        return f"PLNT{i:04d}"
    if vr == "UR":
        return f"http://plnt{i:04d}.example"
    if vr == "DA":
        return f"1931{1 + i // 28 % 12:02d}{1 + i % 28:02d}"
    if vr == "DT":
        return f"1931{1 + i // 28 % 12:02d}{1 + i % 28:02d}101010"
    if vr == "TM":
        return f"10{i % 60:02d}{i // 60 % 60:02d}"
    if vr == "AS":
        return f"{i % 998 + 1:03d}Y"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.9.7777.{i}"
    if vr in ("IS",):
        return str(900000 + i)
    if vr == "DS":
        return f"9{i}.5"
    if vr in ("US", "SS"):
        return 4000 + i
    if vr in ("UL", "SL", "UV", "SV"):
        return 7000000 + i
    if vr in ("FL", "FD"):
        return 9000.25 + i
    if vr == "AT":
        return 0x00100010
    return f"PLNT{i:04d}".encode()  # OB, OW, UN and the like


def _planted():
    """A data set holding every attribute of the table (and a nested copy of each inside a sequence)."""
    rows = sorted((r for r in load_table()["exact"].values()), key=lambda r: r["tag"])
    rows += [r for _m, _v, r in load_table()["masked"]]
    ds, nested, plan = Dataset(), Dataset(), {}
    for i, row in enumerate(rows):
        tag = _tag(row)
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command set and file meta: never in a data set
        vr = dictionary_VR(tag).split(" or ")[0] if tag >> 16 not in (0x5000, 0x6000) else (
            "OW" if tag & 0xFFFF == 0x3000 else "LT")
        if vr == "SQ":
            item = Dataset()
            item.add_new(0x00204000, "LT", f"PLNT{9000 + i:04d}")  # Image Comments (X), planted inside the item
            item.add_new(0x00081155, "UI", f"1.2.826.0.1.3680043.9.8888.{i}")
            if tag == 0x00880200:  # Icon Image Sequence: a thumbnail with pixels
                item.Rows, item.Columns, item.BitsAllocated, item.BitsStored, item.HighBit = 2, 4, 8, 8, 7
                item.SamplesPerPixel, item.PhotometricInterpretation, item.PixelRepresentation = 1, "MONOCHROME2", 0
                item.PixelData = b"PLNTICON"
            value = Sequence([item])
        else:
            value = _value(vr, i)
        ds.add_new(tag, vr, value)
        if vr != "SQ":
            nested.add_new(tag, vr, _value(vr, i + 5000))
        plan[tag] = (row, vr, value)
    # every attribute again one level down, inside a sequence the table keeps (K is no action here: the sequence
    # is one the table does not list, so its items are cleaned like the top level)
    ds.add_new(0x00400260, "SQ", Sequence([nested]))  # Performed Protocol Code Sequence (not in the table)
    ds.add_new(0x00291010, "OB", b"PLNTPRIV")  # a private attribute and its creator
    ds.add_new(0x00290010, "LO", "PLNT CREATOR")
    ds.Modality, ds.SOPClassUID = "MR", "1.2.840.10008.5.1.4.1.1.4"
    ds.PatientID, ds.PatientName = "PLNTMRN", "PLNTDOE^JANE"
    return ds, plan, nested


def _empty(v) -> bool:
    return v is None or v == "" or v == b"" or (hasattr(v, "__len__") and len(v) == 0)


def _check(ds, plan, options=()) -> dict:
    """Each planted attribute's outcome against the table's action; returns ``{action: count}``."""
    seen: dict = {}
    for tag, (row, vr, planted) in plan.items():
        act = action_for(row, options)
        seen[act] = seen.get(act, 0) + 1
        kw = row["keyword"]
        here = tag in ds
        if tag in (0x00100010, 0x00100020):  # re-planted above with the patient's name and ID
            continue
        if act == "X" or (act == "X/Z" and vr == "SQ"):
            assert not here, f"{row['name']} ({row['tag']}): {act}, still present"
            continue
        if act == "K":
            assert here and (ds[tag].value == planted or vr == "SQ"), f"{row['name']}: K, changed"
            continue
        if not here:
            # curves and overlays go whole (stricter than C: their pixels cannot be cleaned of text)
            assert act == "C" and (tag >> 24) in (0x50, 0x60), f"{row['name']} ({row['tag']}): action {act}, removed"
            continue
        v = ds[tag].value
        if act in ("Z", "X/Z"):
            assert _empty(v) or kw in PSEUDONYM_KEYWORDS, f"{row['name']}: Z, value {v!r}"
        elif act == "C":  # cleaned: dates shifted, text freed of the patient's identifiers (a clean one stays)
            if vr in ("DA", "DT"):
                assert v != planted, row["name"]
            elif vr in ("LO", "SH", "LT", "ST", "UT", "PN"):
                assert "PLNTMRN" not in str(v) and "PLNTDOE" not in str(v), row["name"]
        elif vr != "SQ":
            assert v != planted, f"{row['name']} ({row['tag']}): action {act}, planted value kept"
    return seen


def _bytes(ds) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def test_the_table_is_complete_data_with_its_edition():
    data = json.loads(TABLE.read_text())
    assert data["edition"] == "DICOM PS3.15 2024b Table E.1-1"
    rows = data["attributes"]
    assert len(rows) == 621  # every row of the 2024b table, the private-attributes row included
    assert {r["basic"] for r in rows} == {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    by_name = {r["keyword"]: r for r in rows if r["keyword"]}
    # the attributes issue 20 found surviving the hand-written list
    for kw in ("IconImageSequence", "AcquisitionDeviceProcessingDescription", "ImagingServiceRequestComments",
               "RequestedProcedureComments"):
        assert by_name[kw]["basic"].startswith("X"), kw
    assert by_name["ContentSequence"]["basic"] == "D"  # the SR tree: replaced (its TextValue with it)
    assert by_name["PatientSex"] == {**by_name["PatientSex"], "basic": "Z",
                                     "options": {"retainPatientCharacteristics": "K"}}


def test_every_attribute_of_the_table_gets_its_action_and_no_planted_value_survives():
    ds, plan, _nested = _planted()
    assert len(plan) >= 600
    deidentify_dataset(ds, Pseudonymizer(KEY), dates="remove")
    seen = _check(ds, plan)
    assert seen["X"] > 350 and seen["U"] > 40 and seen["Z"] > 30 and seen["D"] > 60
    # the nested copies: every level gets the same actions
    nested = ds[0x00400260].value[0]
    _check(nested, {t: (r, vr, _value(vr, 0)) for t, (r, vr, _v) in plan.items() if vr != "SQ" and t in nested
                    or action_for(r, ()) == "X"} | {})
    for t, (r, vr, _v) in plan.items():
        if action_for(r, ()) == "X":
            assert t not in nested, r["name"]
    data = _bytes(ds)
    assert b"PLNT" not in data, data[data.find(b"PLNT") - 40:data.find(b"PLNT") + 40]
    assert b"1.2.826.0.1.3680043.9.7777." not in data and b"1.2.826.0.1.3680043.9.8888." not in data
    assert not any(e.tag.is_private for e in ds.iterall())
    assert "PatientSex" not in ds or ds.PatientSex == ""
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100"] and "2024b" in ds.DeidentificationMethod


@pytest.mark.parametrize("option", sorted(OPTION_CODES))
def test_each_option_keeps_what_its_column_says_and_declares_its_code(option):
    ds, plan, _nested = _planted()
    dates = {"retainLongitudinalFullDates": "keep", "retainLongitudinalModifiedDates": "shift"}.get(option, "remove")
    opts = () if option.startswith("retainLongitudinal") else (option,)
    safe = [("PLNT CREATOR", 0x10)] if option == "retainSafePrivate" else ()
    deidentify_dataset(ds, Pseudonymizer(KEY), dates=dates, options=opts, safe_private=safe)
    seen = _check(ds, plan, (option,))
    col = [r for r, _vr, _v in plan.values() if option in r["options"]]
    if option != "retainSafePrivate":
        assert col, option
        assert seen.get("K", 0) + seen.get("C", 0) >= len(col)
    for r, vr, planted in plan.values():
        act = r["options"].get(option)
        tag = _tag(r)
        if act == "K":
            assert ds[tag].value == planted or vr == "SQ", r["name"]
        elif act == "C" and vr in ("DA", "DT"):
            assert ds[tag].value not in ("", planted), r["name"]  # shifted, not removed
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", OPTION_CODES[option][1]]
    if option == "retainPatientCharacteristics":
        assert ds.PatientSex == plan[0x00100040][2]
    else:
        assert ds.get("PatientSex", "") == ""
    if option == "retainSafePrivate":
        assert ds[0x00291010].value == b"PLNTPRIV"  # on the allow-list
    else:
        assert 0x00291010 not in ds


def test_an_sr_content_tree_loses_its_text_names_and_dates():
    ds = Dataset()
    ds.PatientID, ds.PatientName = "MRN4455", "DOE^JANE"
    item, inner = Dataset(), Dataset()
    inner.ValueType, inner.TextValue = "TEXT", "Jane Doe, MRN4455, seen by Dr Smith"
    inner.PersonName, inner.Date = "SMITH^JOHN", "20200115"
    item.ValueType, item.ContentSequence = "CONTAINER", Sequence([inner])
    ds.ContentSequence = Sequence([item])
    deidentify_dataset(ds, Pseudonymizer(KEY), dates="remove")
    node = ds.ContentSequence[0].ContentSequence[0]
    assert node.TextValue == "ANONYMIZED" and node.PersonName in ("", "ANONYMIZED") and node.Date == "19000101"
    assert node.ValueType == "TEXT"  # the tree's structure stays
    ds2 = Dataset()
    ds2.PatientID, ds2.PatientName = "MRN4455", "DOE^JANE"
    ds2.ContentSequence = Sequence([Dataset()])
    ds2.ContentSequence[0].TextValue = "KNEE MRN4455 DOE tear 20200115"
    deidentify_dataset(ds2, Pseudonymizer(KEY), dates="remove", options=("cleanStructuredContent",))
    assert ds2.ContentSequence[0].TextValue == "KNEE tear"


def test_clean_descriptors_keeps_the_descriptor_without_the_patient():
    ds = Dataset()
    ds.PatientID, ds.PatientName = "MRN4455", "DOE^JANE"
    ds.StudyDescription = "MR KNEE LEFT DOE MRN4455 20200115"
    deidentify_dataset(ds, Pseudonymizer(KEY), dates="remove", options=("cleanDescriptors",))
    assert ds.StudyDescription == "MR KNEE LEFT"


def test_quarantine_covers_modalities_without_burned_in_annotation():
    for mod in ("US", "XA", "ES", "SC", "OT"):
        ds = Dataset()
        ds.Modality = mod
        assert mod in quarantine_reason(ds) and "missing" in quarantine_reason(ds)
        ds.BurnedInAnnotation = "NO"
        assert quarantine_reason(ds) is None
    ds = Dataset()
    ds.Modality = "MR"
    assert quarantine_reason(ds) is None


def test_deidentified_real_files_pass_dciodvfy(tmp_path, pydicom_test_files):
    """pydicom's own MR and CT files (no Error line), de-identified with and without the options: still none."""
    from test_dicom_geometry import dciodvfy_errors

    for name in ("MR_small.dcm", "CT_small.dcm"):
        for opts in ((), tuple(o for o in OPTION_CODES if not o.startswith("retainLongitudinal"))):
            ds = pydicom.dcmread(pydicom_test_files / name)
            deidentify_dataset(ds, Pseudonymizer(KEY), dates="shift", options=opts)
            out = tmp_path / f"{len(opts)}-{name}"
            ds.save_as(out, enforce_file_format=True)
            assert dciodvfy_errors(pydicom_test_files / name) == []  # the originals are clean
            assert dciodvfy_errors(out) == [], (name, opts)
            assert np.array_equal(pydicom.dcmread(out).pixel_array,
                                  pydicom.dcmread(pydicom_test_files / name).pixel_array)


def _planted_file(path, pydicom_test_files):
    """pydicom's MR_small with every attribute of the table planted in it (pixels and geometry kept)."""
    base = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    ds, plan, _nested = _planted()
    keep = {"Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
            "PhotometricInterpretation", "PixelData", "PixelSpacing", "ImageOrientationPatient",
            "ImagePositionPatient", "SliceThickness", "SOPClassUID", "Modality"}
    for kw in keep:
        if kw in base:
            ds[kw] = base[kw]
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7777.999001"
    ds.PatientSex = "F"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return plan


def test_every_attribute_through_spark_the_stage_the_files_and_the_cli(spark, tmp_path, pydicom_test_files, capsys,
                                                                      monkeypatch):
    """The planted file through read_dicom(deidentify=), deidentify_files and `bigdl-medimg deidentify` with an
    option: no planted value in the columns, the written bytes or the console; the option kept what it keeps."""
    from bigdl_medimg.cli import main
    from bigdl_medimg.deid import Deidentify, deidentify_files
    from bigdl_medimg.io.readers import read_dicom

    src = tmp_path / "in" / "planted.dcm"
    plan = _planted_file(src, pydicom_test_files)
    stage = Deidentify(key=KEY, dates="remove")
    rows = read_dicom(spark, str(src), deidentify=stage).drop("image").collect()
    assert len(rows) == 1 and rows[0].error is None
    text = str(rows[0].asDict())
    assert "PLNT" not in text and "1.2.826.0.1.3680043.9.7777" not in text, text[:500]
    if "patient_sex" in rows[0].asDict():
        assert rows[0].patient_sex is None  # Z: kept only under Retain Patient Characteristics
    out = deidentify_files(spark, str(src), str(tmp_path / "out"), deidentify=stage).collect()
    assert len(out) == 1 and out[0].error is None and out[0].quarantine is None
    written = open(out[0].output, "rb").read()
    assert b"PLNT" not in written and b"1.2.826.0.1.3680043.9.7777." not in written
    # the CLI with an option: PatientSex kept and the option declared; still no planted text
    monkeypatch.setenv("BIGDL_MEDIMG_DEID_KEY", KEY)
    capsys.readouterr()
    assert main(["deidentify", "--input", str(src), "--out", str(tmp_path / "cli"), "--dates", "keep",
                 "--retain-patient-characteristics"]) == 0
    console = capsys.readouterr()
    assert "PLNT" not in console.out + console.err
    copy = next((tmp_path / "cli").rglob("*.dcm"))
    ds = pydicom.dcmread(copy)
    import re

    both = ("retainPatientCharacteristics", "retainLongitudinalFullDates")
    kept = set()
    for r, _vr, v in plan.values():
        m = re.search(rb"PLNT(\d{4})", v if isinstance(v, bytes) else str(v).encode())
        if m and action_for(r, both) == "K":
            kept |= {m.group(0), b"PLNT%04d" % (int(m.group(1)) + 5000)}  # and its nested copy
    found = set(re.findall(rb"PLNT\d{4}", copy.read_bytes()))
    assert ds.PatientSex == "F" and found and found <= kept, found - kept
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113108", "113106"]
    from test_dicom_geometry import dciodvfy_errors

    # the planted file breaks its IOD on purpose (every attribute of the table): the profile adds no error of its
    # own beyond the conditions the planted attributes trigger
    errs = dciodvfy_errors(copy)
    assert set(errs) <= set(dciodvfy_errors(src)) | {e for e in errs if "Conditional" in e or "Type 1C" in e
                                                     or "Type 2C" in e or "unsatisfied" in e}


def test_a_written_seg_and_its_series_keep_their_references_after_deidentification(tmp_path):
    """U actions remap consistently: a SEG the library writes still references its (remapped) source series,
    instances and Frame of Reference; the copies pass dciodvfy."""
    from test_dicom_geometry import dciodvfy_errors

    from bigdl_medimg.export.dicom_seg import build_dicom_seg
    from bigdl_medimg.io.dicom_write import write_dicom_series

    paths = write_dicom_series(np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8), np.eye(4), tmp_path / "src")
    headers = [pydicom.dcmread(p) for p in paths]
    mask = np.zeros((3, 8, 8), np.uint8)
    mask[1, 2:5, 2:5] = 1
    seg = build_dicom_seg(headers, mask, {1: "Meniscus"})
    pseudo = Pseudonymizer(KEY)
    for h in headers:
        deidentify_dataset(h, pseudo, dates="shift")
    deidentify_dataset(seg, pseudo, dates="shift")
    src_uids = {h.SOPInstanceUID for h in headers}
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == headers[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} <= src_uids
    assert seg.FrameOfReferenceUID == headers[0].FrameOfReferenceUID and seg.StudyInstanceUID == headers[0].StudyInstanceUID
    frame_refs = {d.ReferencedSOPInstanceUID for f in seg.PerFrameFunctionalGroupsSequence
                  for d in f.DerivationImageSequence[0].SourceImageSequence}
    assert frame_refs <= src_uids and frame_refs
    out = tmp_path / "seg.dcm"
    seg.save_as(out, enforce_file_format=True)
    assert dciodvfy_errors(out) == []
    headers[0].save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "mr.dcm") == []
