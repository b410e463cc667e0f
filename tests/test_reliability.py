"""Hostile input: mutation fuzzing of the DICOM, NIfTI and PNG/JPEG decoders, and the allocation limit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigdl_medimg.errors import ConfigError, NiftiReadError

HARNESS = Path(__file__).with_name("fuzz_harness.py")


@pytest.mark.reliability
def test_mutation_fuzzing_never_crashes(tmp_path, record_property):
    n = int(os.environ.get("BIGDL_MEDIMG_FUZZ_EXAMPLES", "400"))
    proc = subprocess.run([sys.executable, str(HARNESS), "--examples", str(n)], capture_output=True, text=True,
                          timeout=1200, cwd=str(HARNESS.parent.parent))
    assert proc.returncode in (0, 1), f"the fuzzing process crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"the fuzzing process stopped without a report (exit {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    (tmp_path / "fuzz.json").write_text(json.dumps(report, indent=2))
    summary = ", ".join(f"{k}: {v['tried']} tried, {v['images']} images, {v['errors']} errors, "
                        f"{v['failures']} failures, {v['hangs']} hangs"
                        for k, v in report.items() if isinstance(v, dict))
    print(f"\nmutation fuzzing: {summary}; peak RSS {report['peak_rss_mb']} MB")
    record_property("fuzz", summary)
    assert not report["failures"], report["failures"]
    for kind in ("dicom", "nifti", "image"):
        r = report[kind]
        assert r["seeds"] >= 3 and r["tried"] >= n, r
        assert r["failures"] == 0 and r["hangs"] == 0, r
        assert r["errors"] > 0 and r["images"] > 0, f"{kind}: mutations should give both images and errors: {r}"
        refused = [e for e in r["huge_header_errors"] if "no pixel data" not in e]  # a seed without pixels
        assert refused and all("limit" in e for e in refused), r["huge_header_errors"]


def _nifti_with_dims(dims) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    import struct

    struct.pack_into("<hhhh", raw, 40, 3, *dims)
    return bytes(raw)


def test_declared_size_limit_is_configurable(monkeypatch):
    from bigdl_medimg.io.nifti import decode_nifti_array
    from bigdl_medimg.limits import max_image_bytes

    raw = _nifti_with_dims((30000, 30000, 30000))
    with pytest.raises(NiftiReadError, match=r"30000x30000x30000 volume .* above the 8\.0 GiB limit"):
        decode_nifti_array(raw, "big.nii")
    monkeypatch.setenv("BIGDL_MEDIMG_MAX_IMAGE_BYTES", "8k")
    assert max_image_bytes() == 8192
    small = _nifti_with_dims((16, 16, 16))  # 16 KiB as float32: above 8 KiB
    with pytest.raises(NiftiReadError, match="above the 8.0 KiB limit"):
        decode_nifti_array(small, "small.nii")
    monkeypatch.setenv("BIGDL_MEDIMG_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ConfigError, match="BIGDL_MEDIMG_MAX_IMAGE_BYTES"):
        max_image_bytes()


def test_huge_dicom_and_png_headers_are_refused_before_decoding(pydicom_test_files, monkeypatch):
    import io
    import struct

    import pydicom

    from bigdl_medimg.io.dicom import decode_dicom
    from bigdl_medimg.io.images import decode_image

    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 60000
    buf = io.BytesIO()
    ds.save_as(buf)
    row = decode_dicom(buf.getvalue(), "huge.dcm")
    assert row["image"] is None and "60000x60000x60000" in row["error"] and "limit" in row["error"]

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    raw = bytearray(png.getvalue())
    struct.pack_into(">II", raw, 16, 60000, 60000)
    row = decode_image(bytes(raw), "huge.png", modalities=None)
    assert row["image"] is None and row["error"]
