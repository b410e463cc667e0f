"""read_dicomweb against a real Orthanc (Debian's orthanc + orthanc-dicomweb, installed by `make`), with HTTP basic
authentication on, loaded through STOW-RS with pydicom's test files and phantom series."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from bigdl_medimg.datasets.local_pacs import LocalOrthanc, orthanc_available
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.io.dicomweb import Credentials, DicomWebError, load_credentials
from bigdl_medimg.tensor import get_affine, to_numpy

#: pydicom's files with distinct SOP Instance UIDs: plain, JPEG 2000, JPEG Extended, RLE, deflated, palette,
#: multi-frame RT dose, and an RT plan (no pixels: a row error in both readers).
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "JPGExtended.dcm", "SC_rgb_rle.dcm",
                 "image_dfl.dcm", "examples_palette.dcm", "liver_1frame.dcm", "rtdose_1frame.dcm", "rtplan.dcm"]

pytestmark = pytest.mark.skipif(not orthanc_available(), reason="Orthanc is installed by `make test`")
Orthanc = LocalOrthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, pydicom_test_files):
    from bigdl_medimg.io.dicom_write import write_dicom_series

    root = tmp_path_factory.mktemp("pacs")
    files = root / "files"
    files.mkdir()
    for name in PYDICOM_FILES:
        shutil.copy(pydicom_test_files / name, files / name)
    rng = np.random.default_rng(0)
    series = []
    for i in range(2):
        vol = rng.integers(0, 1000, size=(6, 16, 20)).astype(np.int16)
        aff = np.diag([0.8, 0.7, 2.5 + i, 1.0])
        aff[:3, 3] = [-10, 5, 3 * i]
        series.append(write_dicom_series(vol, aff, root / "series" / f"s{i}", uid_seed=f"pacs-{i}",
                                         series_description="KNEEPHANTOM"))
    server = Orthanc(root / "orthanc")
    server.store([*sorted(files.iterdir()), *[p for s in series for p in s]])
    yield {"server": server, "files": files, "series_root": root / "series"}
    server.stop()


def _by_sop(rows, pixels: bool = True) -> dict:
    out = {}
    for r in rows:
        d = r.asDict()
        d.pop("path")
        image = d.pop("image")
        err = d.pop("error")
        out[d["sop_instance_uid"]] = (d, None if image is None else (to_numpy(image), get_affine(image)),
                                      None if err is None else err.split(":")[0])
    return out


def test_instances_are_the_rows_read_dicom_gives_for_the_same_files(spark, pacs):
    from bigdl_medimg.io import read_dicom, read_dicomweb

    server = pacs["server"]
    web = read_dicomweb(spark, server.url, credentials=server.credentials,
                        query={"StudyInstanceUID": [pydicom.dcmread(pacs["files"] / n, stop_before_pixels=True)
                                                    .StudyInstanceUID for n in PYDICOM_FILES]})
    local = read_dicom(spark, str(pacs["files"]))
    assert web.columns == local.columns
    got, want = _by_sop(web.collect()), _by_sop(local.collect())
    assert set(got) == set(want) and len(got) == len(PYDICOM_FILES)
    for sop, (meta, image, err) in want.items():
        g_meta, g_image, g_err = got[sop]
        assert g_meta == meta, sop
        assert g_err == err, sop
        if image is None:
            assert g_image is None
        else:
            assert np.array_equal(g_image[0], image[0]) and np.allclose(g_image[1], image[1]), sop
    assert sum(e is not None for _, _, e in got.values()) >= 1  # the RT plan: no pixels, a row error in both
    paths = [r.path for r in web.select("path").collect()]
    assert all(p.startswith(server.url + "/studies/") and "/instances/" in p for p in paths)
    assert server.password not in " ".join(paths)


def test_series_level_gives_the_volumes_of_read_dicom_series(spark, pacs):
    from bigdl_medimg.io import read_dicom_series, read_dicomweb

    server = pacs["server"]
    web = read_dicomweb(spark, server.url, credentials=server.credentials, level="series",
                        query={"SeriesDescription": "KNEEPHANTOM"})
    local = read_dicom_series(spark, str(pacs["series_root"]))
    assert web.columns == local.columns
    got = {r.series_instance_uid: r for r in web.collect()}
    want = {r.series_instance_uid: r for r in local.collect()}
    assert set(got) == set(want) and len(got) == 2
    for uid, r in want.items():
        assert got[uid].error is None and got[uid].n_slices == r.n_slices == 6
        assert np.array_equal(to_numpy(got[uid].image), to_numpy(r.image))
        assert np.allclose(get_affine(got[uid].image), get_affine(r.image))


def test_credentials_from_the_environment_and_a_file_never_show(tmp_path, monkeypatch, pacs):
    server = pacs["server"]
    monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_USER", server.user)
    monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_PASSWORD", server.password)
    env = load_credentials()
    assert env == server.credentials and server.password not in repr(env) + str(env)
    f = tmp_path / "creds.json"
    f.write_text(json.dumps({"token": "abc123"}))
    assert load_credentials(str(f)).token == "abc123" and "abc123" not in repr(load_credentials(str(f)))
    f.write_text("{}")
    with pytest.raises(ConfigError, match="needs 'user' and 'password', or 'token'"):
        load_credentials(str(f))


def test_wrong_password_and_unknown_study_are_clear_errors(spark, pacs):
    from bigdl_medimg.io import read_dicomweb

    server = pacs["server"]
    with pytest.raises(DicomWebError, match=r"query to http://127\.0\.0\.1:\d+ failed: HTTP 401 \(the credentials "
                                            r"were refused\)") as info:
        read_dicomweb(spark, server.url, credentials=Credentials(server.user, "wrong"))
    assert "wrong" not in str(info.value)
    # a study the server does not have: a row that says so, not an empty result
    rows = read_dicomweb(spark, server.url, credentials=server.credentials,
                         query={"StudyInstanceUID": ["1.2.3.4.5.6.7.8.9"]}).collect()
    assert len(rows) == 1 and rows[0].image is None
    assert rows[0].error == "DicomWebError: StudyInstanceUID 1.2.3.4.5.6.7.8.9 not found on the server"


def test_a_server_stopped_mid_job_gives_row_errors_and_a_down_server_fails_the_query(spark, pacs, tmp_path):
    from bigdl_medimg.io import read_dicomweb

    server = Orthanc(tmp_path / "orthanc")
    try:
        server.store([pacs["files"] / "CT_small.dcm", pacs["files"] / "MR_small.dcm"])
        df = read_dicomweb(spark, server.url, credentials=server.credentials, retries=1, timeout=5)  # QIDO done
    finally:
        server.stop()
    rows = df.collect()  # WADO-RS on the executors, against a server that is gone
    assert len(rows) == 2 and all(r.image is None for r in rows)
    assert all(r.error.startswith("DicomWebError: series ") and r.error.endswith(
        f"cannot reach http://127.0.0.1:{server.port}") for r in rows), [r.error for r in rows]
    with pytest.raises(DicomWebError, match=rf"cannot reach http://127\.0\.0\.1:{server.port}$"):
        read_dicomweb(spark, server.url, credentials=server.credentials, retries=0, timeout=5)


def test_ingest_reads_a_pacs_from_the_command_line(spark, pacs, tmp_path, monkeypatch, capsys):
    from bigdl_medimg.cli import main
    from bigdl_medimg.io import read_tensors

    server = pacs["server"]
    monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_USER", server.user)
    monkeypatch.setenv("BIGDL_MEDIMG_DICOMWEB_PASSWORD", server.password)
    assert main(["ingest", "--kind", "series", "--input", f"dicomweb:{server.url}?SeriesDescription=KNEEPHANTOM",
                 "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "ingest series -> " in out and "2 rows, 2 decoded, 0 with errors" in out
    assert server.password not in out
    assert read_tensors(spark, str(tmp_path / "t")).count() == 2
    assert main(["ingest", "--kind", "nifti", "--input", f"dicomweb:{server.url}", "--out", str(tmp_path / "x")]) == 2


def test_headers_for_seg_and_sr_come_from_the_server_metadata(spark, pacs):
    """The SEG/SR writers reference a series read over DICOMweb through its metadata: the same headers as the
    files' (pixels left out); refused credentials are a clear error without the password."""
    from bigdl_medimg.export.dicom_seg import series_headers
    from bigdl_medimg.io import read_dicomweb
    from bigdl_medimg.io.dicom import dicom_metadata
    from bigdl_medimg.io.dicomweb import DicomWebConnection, retrieve_headers

    server = pacs["server"]
    row = read_dicomweb(spark, server.url, credentials=server.credentials, level="series",
                        query={"SeriesDescription": "KNEEPHANTOM"}).orderBy("series_key").first()
    conn = DicomWebConnection(server.url, server.credentials)
    headers, grid = series_headers(list(row.path), conn)
    by_sop = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
              for p in pacs["series_root"].rglob("*.dcm")}
    files_headers, files_grid = series_headers([str(by_sop[h.SOPInstanceUID]) for h in headers])
    assert np.allclose(grid, files_grid) and np.allclose(grid, get_affine(row.image))
    assert [h.SOPInstanceUID for h in headers] == [h.SOPInstanceUID for h in files_headers]
    assert all("PixelData" not in h for h in headers)
    for h, f in zip(headers, files_headers):
        a, b = dicom_metadata(h), dicom_metadata(f)
        # the transfer syntax is the file's (File Meta Information), not part of the DICOM JSON metadata
        assert {k: (a[k], b[k]) for k in a if a[k] != b[k]} == {"transfer_syntax_uid": (None, b["transfer_syntax_uid"])}
    with pytest.raises(DicomWebError, match=r"HTTP 401 \(the credentials were refused\)$") as info:
        retrieve_headers(DicomWebConnection(server.url, Credentials(server.user, "wrong")), list(row.path))
    assert "wrong" not in str(info.value)
    with pytest.raises(DicomWebError, match="not a WADO-RS instance address"):
        retrieve_headers(conn, [str(by_sop[headers[0].SOPInstanceUID])])
