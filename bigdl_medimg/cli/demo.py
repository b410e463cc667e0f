"""The embedded demo: a small synthetic archive read by every reader.

It writes DICOM series (one clean, one oblique, one with a corrupt slice),
the same volumes as NIfTI, and X-rays as PNG and DICOM CR under
``<out>/data``, ingests each kind into a tensor table under ``<out>/tables``
and checks that the DICOM and NIfTI copies agree after reorientation to RAS.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "write_demo_archive"]


def _volume(rng, shape):
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    ball = (x ** 2 + y ** 2 + z ** 2) < 0.5
    vol = 200 + 800 * ball + rng.normal(0, 20, shape)
    return vol.astype(np.int16)


def write_demo_archive(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the demo's synthetic files; returns the folder of each kind."""
    from PIL import Image

    from ..io.dicom_write import write_dicom_series, write_nifti
    from ..transforms import reorient

    rng = np.random.default_rng(seed)
    dicom, nifti, xray = root / "dicom", root / "nifti", root / "xray"
    for i, rot in enumerate([0.0, 0.35, 0.0]):
        c, s = np.cos(rot), np.sin(rot)
        aff = np.eye(4)
        aff[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([3.0, 0.7, 0.7])
        aff[:3, 3] = [-20.0, -30.0, 15.0]
        vol = _volume(rng, (16, 48, 48))
        paths = write_dicom_series(vol, aff, dicom / f"series{i}", series_number=i + 1,
                                   uid_seed=f"demo-{seed}-{i}", file_names=[f"IM{j:04d}" for j in range(16)])
        if i == 2:
            Path(paths[7]).write_bytes(Path(paths[7]).read_bytes()[:-300])  # one corrupt slice
        ras, ras_aff = reorient(vol, aff, "RAS")
        write_nifti(ras, ras_aff, nifti / f"series{i}.nii.gz")
    xray.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        img = (rng.random((128, 128)) * 60 + 100).astype(np.uint8)
        Image.fromarray(img).save(xray / f"cxr{i}.png")
    return {"dicom": dicom, "nifti": nifti, "xray": xray}


def run_demo(spark, out: str, *, seed: int = 0, summary=None) -> int:
    """Run the demo; returns the process exit code."""
    from ..io.readers import read_dicom_series, read_images, read_nifti, read_tensors, write_tensors
    from ..tensor import get_affine, to_numpy
    from ..transforms import reorient

    t0 = time.time()
    root = Path(out).resolve()
    folders = write_demo_archive(root / "data", seed)
    tables = root / "tables"
    jobs = {"series": (read_dicom_series, folders["dicom"]), "nifti": (read_nifti, folders["nifti"]),
            "images": (read_images, folders["xray"])}
    for name, (reader, folder) in jobs.items():
        write_tensors(reader(spark, folder.as_uri()), str(tables / name), mode="overwrite")
        summary(read_tensors(spark, str(tables / name)), f"{name:7s} {folder}")
    series = {r.series_number: r for r in read_tensors(spark, str(tables / "series")).collect() if r.series_number}
    niftis = {Path(r.path).name: r for r in read_tensors(spark, str(tables / "nifti")).collect()}
    agree = 0
    for num, row in sorted(series.items()):
        if row.image is None:
            print(f"series {num}: not assembled ({row.error})")
            continue
        n = niftis[f"series{num - 1}.nii.gz"]
        a, aa = reorient(to_numpy(row.image), get_affine(row.image), "RAS")
        b, ba = reorient(to_numpy(n.image), get_affine(n.image), "RAS")
        same = np.array_equal(a, b) and np.allclose(aa, ba, atol=1e-4)
        agree += same
        print(f"series {num}: {a.shape} voxels, DICOM and NIfTI agree after RAS reorientation: {same}")
    print(f"demo finished in {time.time() - t0:.1f}s; tensor tables in {tables}")
    return 0 if agree == 2 else 1
