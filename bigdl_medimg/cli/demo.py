"""The embedded demo: phantom data generated on the spot, read by every reader.

It writes knee MRI phantoms as DICOM series (one with a corrupt slice) and as
NIfTI image/mask pairs, and chest X-ray phantoms as PNG and DICOM DX, under
``<out>/data``; ingests each kind into a Parquet tensor table under
``<out>/tables``; checks that the DICOM and NIfTI copies of every knee agree
after reorientation to RAS; and renders ``<out>/preview.png``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "write_demo_archive"]


def write_demo_archive(root: Path, seed: int = 0, spark=None) -> dict[str, Path]:
    """Write the demo's synthetic files; returns the folder of each kind."""
    from ..datasets.synth import synth_dataset

    knee = synth_dataset("knee", root, 4, seed=seed, shape=(16, 64, 64), spark=spark)
    chest = synth_dataset("chest", root, 8, seed=seed, size=128, spark=spark)
    bad = sorted((knee / "dicom" / "case_0003").iterdir())[7]
    bad.write_bytes(bad.read_bytes()[:-300])  # one corrupt slice: that series must be reported, not stacked
    return {"dicom": knee / "dicom", "nifti": knee / "nifti", "xray": chest}


def run_demo(spark, out: str, *, seed: int = 0, summary=None) -> int:
    """Run the demo; returns the process exit code (0 when every check holds)."""
    from ..datasets.synth import render_preview
    from ..io.readers import read_dicom_series, read_images, read_nifti, read_tensors, write_tensors
    from ..tensor import get_affine, to_numpy
    from ..transforms import reorient

    t0 = time.time()
    root = Path(out).resolve()
    folders = write_demo_archive(root / "data", seed, spark)
    tables = root / "tables"
    jobs = {"series": (read_dicom_series, [folders["dicom"].as_uri()]),
            "nifti": (read_nifti, [folders["nifti"].as_uri()]),
            "images": (read_images, [(folders["xray"] / "png").as_uri(), (folders["xray"] / "dicom").as_uri()])}
    for name, (reader, paths) in jobs.items():
        write_tensors(reader(spark, paths), str(tables / name), mode="overwrite")
        summary(read_tensors(spark, str(tables / name)), f"{name:7s}")
    series = {Path(r.path[0]).parent.name: r for r in read_tensors(spark, str(tables / "series")).collect()}
    niftis = {Path(r.path).name: r for r in read_tensors(spark, str(tables / "nifti")).collect()}
    agree = failed = 0
    for case, row in sorted(series.items()):
        if row.image is None:
            failed += 1
            print(f"{case}: not assembled ({row.error})")
            continue
        n = niftis[f"{case}_image.nii.gz"]
        a, aa = reorient(to_numpy(row.image), get_affine(row.image), "RAS")
        b, ba = reorient(to_numpy(n.image), get_affine(n.image), "RAS")
        same = bool(np.array_equal(a, b) and np.allclose(aa, ba, atol=1e-4))
        agree += same
        print(f"{case}: {a.shape} voxels; DICOM series and NIfTI agree after RAS reorientation: {same}")
    preview = render_preview(root / "preview.png", seed=seed)
    print(f"preview of the phantoms: {preview}")
    print(f"demo finished in {time.time() - t0:.1f}s; tensor tables in {tables}")
    return 0 if (agree == 3 and failed == 1) else 1
