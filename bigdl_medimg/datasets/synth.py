"""Write phantom datasets to disk (``bigdl-medimg synth``) and render previews.

Knee cases go to ``<out>/knee``: ``dicom/case_NNNN/IMxxxx`` (one file per
slice), ``nifti/case_NNNN_image.nii.gz`` and ``..._mask.nii.gz``, and
``labels.csv`` (case, tear, oblique).  Chest cases go to ``<out>/chest``:
``png/case_NNNN.png``, ``dicom/case_NNNN.dcm`` (DX) and ``labels.csv`` (case
and the 14 findings).  With a Spark session, cases are generated on executors
(the output must then be a folder every executor can write, e.g. local mode
or a shared mount).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .phantoms import CHEST_LABELS, chest_xray_phantom, knee_phantom

__all__ = ["write_knee_case", "write_chest_case", "synth_dataset", "render_preview", "synth_knee_labels"]


def write_knee_case(root: Path, index: int, seed: int, shape: Sequence[int], formats: Sequence[str]) -> dict:
    from ..io.dicom_write import write_dicom_series, write_nifti

    case = knee_phantom(seed * 1_000_003 + index, shape=tuple(shape))
    name = f"case_{index:04d}"
    if "dicom" in formats:
        write_dicom_series(case.image, case.affine, root / "dicom" / name, uid_seed=f"knee-{seed}-{index}",
                           file_names=[f"IM{i:04d}" for i in range(case.image.shape[0])], series_description="")
    if "nifti" in formats:
        write_nifti(case.image, case.affine, root / "nifti" / f"{name}_image.nii.gz")
        write_nifti(case.mask, case.affine, root / "nifti" / f"{name}_mask.nii.gz")
    return {"case": name, "tear": case.tear, "oblique": int(case.info["oblique"])}


def write_chest_case(root: Path, index: int, seed: int, size: int, formats: Sequence[str], prevalence=None) -> dict:
    from PIL import Image

    from ..io.dicom_write import write_dicom_xray

    case = chest_xray_phantom(seed * 1_000_003 + index, size=size, prevalence=prevalence)
    name = f"case_{index:04d}"
    if "png" in formats:
        (root / "png").mkdir(parents=True, exist_ok=True)
        Image.fromarray(case.image).save(root / "png" / f"{name}.png")
    if "dicom" in formats:
        write_dicom_xray(case.image, root / "dicom" / f"{name}.dcm", spacing=case.spacing, uid_seed=f"cxr-{seed}-{index}")
    return {"case": name, **{k: int(v) for k, v in zip(CHEST_LABELS, case.labels)}}


def synth_dataset(kind: str, out, n: int, *, seed: int = 0, shape: Sequence[int] = (24, 96, 96), size: int = 256,
                  formats: Sequence[str] | None = None, spark=None, prevalence=None) -> Path:
    """Write ``n`` phantom cases of ``kind`` (``"knee"`` or ``"chest"``) under ``out/<kind>``; returns that folder."""
    if kind not in ("knee", "chest"):
        raise ConfigError(f"kind must be 'knee' or 'chest', got {kind!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    root = Path(out).resolve() / kind
    root.mkdir(parents=True, exist_ok=True)
    if kind == "knee":
        formats = tuple(formats or ("dicom", "nifti"))
        bad = set(formats) - {"dicom", "nifti"}
        if bad:
            raise ConfigError(f"knee formats are dicom and nifti, got {sorted(bad)}")
        shp = tuple(int(s) for s in shape)

        def one(i):
            return write_knee_case(root, i, seed, shp, formats)
    else:
        formats = tuple(formats or ("png", "dicom"))
        bad = set(formats) - {"png", "dicom"}
        if bad:
            raise ConfigError(f"chest formats are png and dicom, got {sorted(bad)}")

        def one(i):
            return write_chest_case(root, i, seed, int(size), formats, prevalence)
    if spark is not None:
        rows = spark.sparkContext.parallelize(range(n), max(1, min(n, spark.sparkContext.defaultParallelism * 4))) \
            .map(one).collect()
    else:
        rows = [one(i) for i in range(n)]
    rows.sort(key=lambda r: r["case"])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    g = np.clip((img.astype(np.float64) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return np.stack([g, g, g], -1)


def render_preview(path, *, n_knee: int = 4, n_chest: int = 4, seed: int = 0, tile: int = 192) -> str:
    """Render a grid PNG: knee mid-slices (raw and with the mask overlaid) and chest radiographs with their labels."""
    from PIL import Image, ImageDraw

    colours = np.array([[0, 0, 0], [255, 64, 64], [64, 255, 64], [64, 128, 255], [255, 220, 0]], np.float64)
    tiles = []
    for i in range(n_knee):
        c = knee_phantom(seed * 1_000_003 + i)
        k = int(np.argmax((c.mask == 4).sum(axis=(1, 2))))  # the slice with most meniscus
        raw = _to_rgb8(c.image[k])
        over = raw.astype(np.float64)
        m = c.mask[k]
        over[m > 0] = 0.45 * over[m > 0] + 0.55 * colours[m[m > 0]]
        for arr, label in ((raw, f"knee {i} tear={c.tear}"), (over.astype(np.uint8), "mask overlay")):
            tiles.append((Image.fromarray(arr).resize((tile, tile), Image.NEAREST), label))
    for i in range(n_chest):
        c = chest_xray_phantom(seed * 1_000_003 + i, prevalence=0.25)
        tiles.append((Image.fromarray(_to_rgb8(c.image)).resize((tile, tile)),
                      ", ".join(c.info["labels"]) or "No Finding"))
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 14)), "black")
    draw = ImageDraw.Draw(sheet)
    for j, (im, label) in enumerate(tiles):
        x, y = (j % cols) * tile, (j // cols) * (tile + 14)
        sheet.paste(im, (x, y + 14))
        draw.text((x + 2, y + 1), label[:34], fill=(255, 255, 255))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return str(path)


def synth_knee_labels(spark, labels_csv, key: str = "case"):
    """``case``, ``tear`` (one-label array) and ``tear_int`` from a tear table (a local path or a URI): the
    synthetic knee ``labels.csv`` (``case,tear``), or with ``key`` another key column (such as
    ``series_instance_uid`` for series read from a PACS), whose values land in ``case``."""
    import io

    from ..io import hfs

    uri = hfs.to_uri(labels_csv)
    rows = []
    for n, r in enumerate(csv.DictReader(io.StringIO(hfs.read_text(spark, uri))), start=2):
        try:
            rows.append((r[key].strip(), [float(r["tear"])], int(r["tear"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"{uri}: line {n}: expected columns {key},tear with tear 0 or 1") from None
    return spark.createDataFrame(rows, "case string, tear array<double>, tear_int int")
