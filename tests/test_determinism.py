"""Reader jobs are deterministic: a re-run (as a Spark task retry is) with other partitioning gives identical rows."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np

from bigdl_medimg import read_dicom, read_dicom_series, read_nifti
from bigdl_medimg.io.dicom_write import write_dicom_series, write_nifti


def _digest(df, key):
    out = {}
    for r in df.collect():
        d = r.asDict(recursive=True)
        img = d.pop("image")
        blob = None if img is None else hashlib.sha256(img["data"]).hexdigest() + str(img["shape"]) + str(img["affine"])
        k = d[key] if not isinstance(d[key], list) else tuple(d[key])
        out[k] = (blob, sorted((kk, str(v)) for kk, v in d.items()))
    return out


def _with_conf(spark, conf, fn):
    old = {k: spark.conf.get(k, None) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        return fn()
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def test_readers_give_identical_rows_under_other_partitioning(spark, tmp_path, pydicom_test_files, nibabel_data):
    rng = np.random.default_rng(3)
    for s in range(3):
        vol = rng.integers(0, 1000, (6 + s, 10, 12)).astype(np.int16)
        write_dicom_series(vol, np.diag([2.0, 0.7, 0.7, 1.0]), tmp_path / "dcm" / f"s{s}", uid_seed=f"det-{s}")
    shutil.copy(pydicom_test_files / "CT_small.dcm", tmp_path / "dcm" / "ct.dcm")
    (tmp_path / "dcm" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 40)
    write_nifti(rng.standard_normal((5, 6, 7)).astype(np.float32), np.eye(4), tmp_path / "nii" / "a.nii")
    shutil.copy(nibabel_data / "example4d.nii.gz", tmp_path / "nii" / "b.nii.gz")
    root = str(tmp_path)
    runs = [dict(), {"spark.sql.files.maxPartitionBytes": "8k", "spark.sql.files.openCostInBytes": "1k",
                     "spark.sql.shuffle.partitions": "3", "spark.sql.execution.arrow.maxRecordsPerBatch": "1"}]
    results = []
    for conf in runs:
        results.append(_with_conf(spark, conf, lambda: (
            _digest(read_dicom(spark, root + "/dcm"), "path"),
            _digest(read_dicom_series(spark, root + "/dcm"), "series_key"),
            _digest(read_nifti(spark, root + "/nii"), "path"))))
    first, second = results
    for a, b in zip(first, second):
        assert a == b
    dicom_rows, series_rows, nifti_rows = first
    assert len(dicom_rows) == 3 * 7 + 2 - 1 + 1 and len(series_rows) >= 4 and len(nifti_rows) == 2
    assert any(blob is None for blob, _ in dicom_rows.values())  # the broken file is a row, not lost
