"""Loaders for public datasets' file layouts, and writers of small replicas.

* NIH ChestX-ray14: ``Data_Entry_2017.csv``, ``train_val_list.txt``,
  ``test_list.txt`` and PNGs under ``images*/`` (``images_001/images/...``).
* MRNet: ``{train,valid}/{axial,coronal,sagittal}/NNNN.npy`` with
  ``{train,valid}-{abnormal,acl,meniscus}.csv``.
* OAI-ZIB: ``segmentation/segmentation_masks/<ID>.segmentation_masks.mhd``
  (+ ``.raw``; labels 0 background, 1 femoral bone, 2 femoral cartilage,
  3 tibial bone, 4 tibial cartilage), ``segmentation/doc/oai_mri_paths.txt``
  (``ID: path`` of each DESS series inside the OAI baseline archive) and the
  two-fold ``2foldCrossValidation-List{1,2}.txt``.  The MR images are DICOM
  series from the OAI database, read from ``oai_root`` when given.

Loaders read through Spark (any Hadoop path) and fail with
:class:`DatasetLayoutError` naming what is missing.  The replica writers
produce the exact layouts from phantoms, so loaders are tested without the
real data.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import MedImgError
from .phantoms import CHEST_LABELS, chest_xray_phantom, knee_phantom

__all__ = ["DatasetLayoutError", "write_chestxray14_replica", "load_chestxray14", "patient_split",
           "write_mrnet_replica", "load_mrnet", "MRNET_PLANES", "MRNET_TASKS", "OAIZIB_LABELS",
           "write_oaizib_replica", "load_oaizib", "knee_folder_cases", "load_knee_folder", "load_oaizib_knees",
           "OAIZIB_TO_KNEE"]

OAIZIB_LABELS = ("background", "femoral_bone", "femoral_cartilage", "tibial_bone", "tibial_cartilage")

MRNET_PLANES = ("axial", "coronal", "sagittal")
MRNET_TASKS = ("abnormal", "acl", "meniscus")
_CXR_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", ""]


class DatasetLayoutError(MedImgError, FileNotFoundError):
    """A dataset folder does not have the expected layout or files are missing."""


# ------------------------------------------------------------ ChestX-ray14 ---

def write_chestxray14_replica(root, n_patients: int = 20, max_followups: int = 3, size: int = 128,
                              seed: int = 0, test_fraction: float = 0.25, prevalence=None) -> Path:
    """Write a tiny ChestX-ray14 replica (same file names, CSV columns and split lists)."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows, train_val, test = [], [], []
    folder_index, in_folder = 1, 0
    for pid in range(1, n_patients + 1):
        is_test = rng.random() < test_fraction
        for fu in range(int(rng.integers(1, max_followups + 1))):
            name = f"{pid:08d}_{fu:03d}.png"
            case = chest_xray_phantom(seed * 100003 + pid * 101 + fu, size=size, prevalence=prevalence, bits=8)
            folder = root / f"images_{folder_index:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(case.image).save(folder / name)
            in_folder += 1
            if in_folder >= 50:
                folder_index, in_folder = folder_index + 1, 0
            found = "|".join(case.info["labels"]) or "No Finding"
            rows.append([name, found, fu, pid, int(rng.integers(20, 80)), "MF"[int(rng.integers(0, 2))],
                         "PA" if rng.random() < 0.6 else "AP", size, size, 0.143, 0.143, ""])
            (test if is_test else train_val).append(name)
    with open(root / "Data_Entry_2017.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_CXR_HEADER)
        w.writerows(rows)
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def _read_text(spark, path: str) -> list[str]:
    try:
        return [r.value for r in spark.read.text(path).collect()]
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise DatasetLayoutError(f"{path}: file not found") from None
        raise


def finding_vector(text: str) -> list[float]:
    """ChestX-ray14's ``Finding Labels`` (``"Effusion|Mass"``, ``"No Finding"``) as 14 floats in
    :data:`CHEST_LABELS` order; ValueError naming an unknown finding."""
    findings = {f.strip() for f in str(text).split("|")} - {"No Finding", ""}
    unknown = findings - set(CHEST_LABELS)
    if unknown:
        raise ValueError(f"unknown finding label(s) {sorted(unknown)}")
    return [float(k in findings) for k in CHEST_LABELS]


def load_chestxray14(spark, root: str, *, check_images: bool = True):
    """NIH ChestX-ray14 as a DataFrame.

    Returns
    -------
    DataFrame
        ``image_index``, ``path`` (the PNG under ``images*/``), ``labels``
        (14 floats in :data:`CHEST_LABELS` order), ``patient_id``, ``follow_up``,
        ``view_position``, ``split`` (``train_val`` or ``test``, the official lists).

    Raises
    ------
    DatasetLayoutError
        When the CSV or split lists are missing, the CSV lacks its columns, an
        image is in no split list, or (``check_images``) listed images are missing.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    root = root.rstrip("/")
    lines = _read_text(spark, f"{root}/Data_Entry_2017.csv")
    if not lines:
        raise DatasetLayoutError(f"{root}/Data_Entry_2017.csv is empty")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = next(reader)
    need = {"Image Index", "Finding Labels", "Follow-up #", "Patient ID", "View Position"}
    missing = need - set(header)
    if missing:
        raise DatasetLayoutError(f"{root}/Data_Entry_2017.csv lacks columns {sorted(missing)}")
    ix = {k: header.index(k) for k in need}
    split_of = {}
    for split, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        for name in _read_text(spark, f"{root}/{fname}"):
            if name.strip():
                split_of[name.strip()] = split
    records, unknown = [], set()
    for row in reader:
        if not row:
            continue
        name = row[ix["Image Index"]]
        findings = set(row[ix["Finding Labels"]].split("|")) - {"No Finding"}
        unknown |= findings - set(CHEST_LABELS)  # (finding_vector's check; collected here for one message)
        if name not in split_of:
            raise DatasetLayoutError(f"{name} is in Data_Entry_2017.csv but in neither train_val_list.txt nor test_list.txt")
        records.append((name, [float(k in findings) for k in CHEST_LABELS], int(row[ix["Patient ID"]]),
                        int(row[ix["Follow-up #"]]), row[ix["View Position"]], split_of[name]))
    if unknown:
        raise DatasetLayoutError(f"unknown finding labels in Data_Entry_2017.csv: {sorted(unknown)}")
    schema = T.StructType([T.StructField("image_index", T.StringType()),
                           T.StructField("labels", T.ArrayType(T.FloatType())),
                           T.StructField("patient_id", T.IntegerType()), T.StructField("follow_up", T.IntegerType()),
                           T.StructField("view_position", T.StringType()), T.StructField("split", T.StringType())])
    entries = spark.createDataFrame(records, schema)
    files = (spark.read.format("binaryFile").option("pathGlobFilter", "*.png").option("recursiveFileLookup", "true")
             .load(f"{root}/images*").select("path"))
    files = files.withColumn("image_index", F.element_at(F.split("path", "/"), -1))
    df = entries.join(files, on="image_index", how="left")
    if check_images:
        absent = df.filter(F.col("path").isNull())
        n = absent.count()
        if n:
            ex = [r.image_index for r in absent.limit(3).collect()]
            raise DatasetLayoutError(f"{n} image(s) listed in Data_Entry_2017.csv are missing under {root}/images*/ "
                                     f"(e.g. {', '.join(ex)})")
    return df.select("image_index", "path", "labels", "patient_id", "follow_up", "view_position", "split")


def patient_split(df, fractions: dict[str, float], *, seed: int = 0, patient_col: str = "patient_id",
                  split_col: str = "split"):
    """Assign every row a split by a hash of its patient, so no patient is in two splits.

    ``fractions`` maps split names to shares summing to 1, e.g.
    ``{"train": 0.8, "val": 0.2}``.  Deterministic for a seed.
    """
    from pyspark.sql import functions as F

    if not fractions or abs(sum(fractions.values()) - 1) > 1e-6 or min(fractions.values()) < 0:
        raise DatasetLayoutError(f"fractions must be non-negative and sum to 1, got {fractions}")
    u = (F.abs(F.xxhash64(F.col(patient_col).cast("string"), F.lit(str(seed)))) % 1000000) / 1000000.0
    expr, acc = None, 0.0
    names = list(fractions)
    for name in names[:-1]:
        acc += fractions[name]
        cond = u < acc
        expr = F.when(cond, name) if expr is None else expr.when(cond, name)
    expr = F.lit(names[-1]) if expr is None else expr.otherwise(names[-1])
    return df.withColumn(split_col, expr)


# ------------------------------------------------------------------ MRNet ---

def _plane_views(vol: np.ndarray) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal stacks (slices first) of a sagittal knee volume (x, y, z)."""
    sag = vol                                  # slices along x (medial-lateral)
    cor = np.transpose(vol, (2, 1, 0))         # slices along z (anterior-posterior)
    axi = np.transpose(vol, (1, 2, 0))         # slices along y (superior-inferior)
    return {"axial": axi, "coronal": cor, "sagittal": sag}


def write_mrnet_replica(root, n_train: int = 8, n_valid: int = 4, shape=(16, 64, 64), seed: int = 0) -> Path:
    """Write a tiny MRNet replica: uint8 ``(slices, 256-like, 256-like)`` stacks per plane and label CSVs."""
    root = Path(root)
    for split, count, offset in (("train", n_train, 0), ("valid", n_valid, n_train)):
        labels = {t: [] for t in MRNET_TASKS}
        for i in range(count):
            exam = offset + i
            case = knee_phantom(seed * 7919 + exam, shape=shape)
            vol = case.image.astype(np.float32)
            vol = np.clip(vol / max(np.percentile(vol, 99.5), 1) * 255, 0, 255).astype(np.uint8)
            for plane, arr in _plane_views(vol).items():
                folder = root / split / plane
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / f"{exam:04d}.npy", np.ascontiguousarray(arr))
            labels["meniscus"].append((exam, case.tear))
            labels["acl"].append((exam, 0))
            labels["abnormal"].append((exam, case.tear))
        for task, rows in labels.items():
            with open(root / f"{split}-{task}.csv", "w", newline="") as f:
                csv.writer(f).writerows([(f"{e:04d}", v) for e, v in rows])
    return root


def _decode_npy(content: bytes, path: str):
    from ..errors import ImageReadError

    try:
        arr = np.load(io.BytesIO(content), allow_pickle=False)
    except Exception as exc:
        raise ImageReadError(path, f"not a readable .npy array: {type(exc).__name__}: {exc}") from None
    if arr.ndim != 3:
        raise ImageReadError(path, f"MRNet stacks are 3-D (slices, rows, cols), got shape {arr.shape}")
    return arr


def load_mrnet(spark, root: str):
    """MRNet as one row per exam.

    Returns
    -------
    DataFrame
        ``split``, ``exam_id``, ``axial``/``coronal``/``sagittal`` tensor
        columns (uint8 stacks, identity affine: MRNet ships no geometry),
        ``abnormal``, ``acl``, ``meniscus`` (0/1) and ``error`` (a plane that
        is missing or unreadable).
    """
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from ..tensor import from_numpy, tensor_type

    root = root.rstrip("/")
    labels = {}
    for split in ("train", "valid"):
        for task in MRNET_TASKS:
            for line in _read_text(spark, f"{root}/{split}-{task}.csv"):
                parts = line.strip().split(",")
                if len(parts) != 2:
                    if line.strip():
                        raise DatasetLayoutError(f"{root}/{split}-{task}.csv: expected 'exam,label' lines, got {line!r}")
                    continue
                labels.setdefault((split, f"{int(parts[0]):04d}"), {})[task] = int(parts[1])
    lab_rows = [(s, e, d.get("abnormal"), d.get("acl"), d.get("meniscus")) for (s, e), d in labels.items()]
    lab_df = spark.createDataFrame(lab_rows, "split string, exam_id string, abnormal int, acl int, meniscus int")
    files = (spark.read.format("binaryFile").option("pathGlobFilter", "*.npy").option("recursiveFileLookup", "true")
             .load([f"{root}/{s}" for s in ("train", "valid")]))
    parts = F.split("path", "/")
    files = files.select("path", "content", F.element_at(parts, -3).alias("split"),
                         F.element_at(parts, -2).alias("plane"),
                         F.regexp_replace(F.element_at(parts, -1), r"\.npy$", "").alias("exam_id"))
    out_schema = T.StructType([T.StructField("split", T.StringType()), T.StructField("exam_id", T.StringType())]
                              + [T.StructField(p, tensor_type()) for p in MRNET_PLANES]
                              + [T.StructField("error", T.StringType())])

    def combine(pdf):
        row = {"split": pdf["split"].iloc[0], "exam_id": pdf["exam_id"].iloc[0], "error": None}
        errors = []
        for p in MRNET_PLANES:
            row[p] = None
            sel = pdf[pdf["plane"] == p]
            if sel.empty:
                errors.append(f"{p} stack missing")
                continue
            try:
                row[p] = from_numpy(_decode_npy(bytes(sel["content"].iloc[0]), sel["path"].iloc[0]))
            except MedImgError as exc:
                errors.append(f"{p}: {getattr(exc, 'reason', exc)}")
        row["error"] = "; ".join(errors) or None
        return pd.DataFrame([row])

    exams = files.groupBy("split", "exam_id").applyInPandas(combine, out_schema)
    df = lab_df.join(exams, on=["split", "exam_id"], how="full")
    no_labels = df.filter(F.col("meniscus").isNull()).count()
    if no_labels:
        raise DatasetLayoutError(f"{no_labels} exam(s) under {root} have .npy stacks but no labels in the CSVs")
    return df.withColumn("error", F.coalesce("error", F.when(F.col("axial").isNull() & F.col("coronal").isNull()
                                                               & F.col("sagittal").isNull(), "no .npy stacks found")))


# ---------------------------------------------------------------- OAI-ZIB ---

def write_oaizib_replica(root, n: int = 4, shape=(16, 64, 64), seed: int = 0) -> Path:
    """Write a tiny OAI-ZIB replica under ``root/OAI-ZIB`` and its images under ``root/OAI``.

    Masks carry OAI-ZIB's labels (built from the phantom's bones and
    cartilage) as MetaImage files; the images are DICOM series at the paths
    listed in ``oai_mri_paths.txt``.  Returns ``root``.
    """
    from ..io.dicom_write import write_dicom_series
    from ..io.mhd import write_mhd

    root = Path(root)
    zib = root / "OAI-ZIB" / "segmentation"
    (zib / "doc").mkdir(parents=True, exist_ok=True)
    ids, paths = [], []
    for i in range(n):
        pid = 9000000 + 1013 * (seed * 1000 + i) % 999999
        case = knee_phantom(seed * 7919 + 31 * i, shape=tuple(shape))
        zmask = np.zeros(case.mask.shape, np.uint8)
        zmask[case.bones == 1] = 1
        zmask[case.mask == 1] = 2
        zmask[case.bones == 2] = 3
        zmask[case.mask == 2] = 4
        # OAI-ZIB stores x = the sagittal slice axis fastest: array (z, y, x) = (cols, rows, slices)
        arr = np.ascontiguousarray(np.transpose(zmask, (2, 1, 0)))
        aff = case.affine[:, [2, 1, 0, 3]]
        write_mhd(arr, aff, zib / "segmentation_masks" / f"{pid}.segmentation_masks.mhd")
        rel = f"0.C.2/{pid}/20050101/{10000000 + i}"
        write_dicom_series(case.image, case.affine, root / "OAI" / rel, uid_seed=f"oai-{seed}-{i}",
                           file_names=[f"{k + 1:03d}" for k in range(case.image.shape[0])])
        ids.append(pid)
        paths.append(rel)
    (zib / "doc" / "oai_mri_paths.txt").write_text("".join(f"{p}: {r}\n" for p, r in zip(ids, paths)))
    half = (n + 1) // 2
    (zib / "doc" / "2foldCrossValidation-List1.txt").write_text("".join(f"{p}\n" for p in ids[:half]))
    (zib / "doc" / "2foldCrossValidation-List2.txt").write_text("".join(f"{p}\n" for p in ids[half:]))
    return root


def load_oaizib(spark, root: str, *, oai_root: str | None = None):
    """OAI-ZIB masks (and, with ``oai_root``, their OAI images) as one row per knee.

    Parameters
    ----------
    root : str
        The OAI-ZIB folder (holding ``segmentation/``).
    oai_root : str, optional
        The OAI baseline folder that the paths in ``oai_mri_paths.txt`` are
        relative to; its DICOM series become the ``image`` column.

    Returns
    -------
    DataFrame
        ``subject_id``, ``fold`` (1 or 2), ``oai_path``, ``mask`` (labels of
        :data:`OAIZIB_LABELS`), ``image`` (null without ``oai_root``),
        ``error``.  OAI-ZIB masks carry no pose: they match the images up to
        rigid alignment, so compare them after :func:`~bigdl_medimg.transforms.reorient`.

    Raises
    ------
    DatasetLayoutError
        Missing folders or lists, subjects listed without a mask, or (with
        ``oai_root``) listed series that are missing.
    """
    from pyspark.sql import functions as F

    from ..io.readers import read_dicom_series, read_mhd

    root = root.rstrip("/")
    seg = f"{root}/segmentation"
    folds = {}
    for k in (1, 2):
        for line in _read_text(spark, f"{seg}/doc/2foldCrossValidation-List{k}.txt"):
            if line.strip():
                folds[line.strip()] = k
    paths = {}
    for line in _read_text(spark, f"{seg}/doc/oai_mri_paths.txt"):
        if line.strip():
            sid, sep, rel = line.partition(":")
            if not sep:
                raise DatasetLayoutError(f"{seg}/doc/oai_mri_paths.txt: expected 'ID: path' lines, got {line!r}")
            paths[sid.strip()] = rel.strip().strip("/")
    try:
        masks = read_mhd(spark, f"{seg}/segmentation_masks")
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise DatasetLayoutError(f"{seg}/segmentation_masks: folder not found") from None
        raise
    masks = masks.select(
        F.regexp_extract(F.element_at(F.split("path", "/"), -1), r"^([^.]+)\.segmentation_masks\.mhd$", 1)
        .alias("subject_id"), F.col("image").alias("mask"), F.col("error").alias("mask_error"))
    found = {r.subject_id for r in masks.select("subject_id").collect()}
    listed = set(folds) | set(paths)
    missing = sorted(listed - found)
    if missing:
        raise DatasetLayoutError(f"{len(missing)} subject(s) listed in {seg}/doc have no segmentation mask "
                                 f"(e.g. {', '.join(missing[:3])})")
    meta = spark.createDataFrame([(sid, folds.get(sid), paths.get(sid)) for sid in sorted(found)],
                                 "subject_id string, fold int, oai_path string")
    df = meta.join(masks, on="subject_id", how="left")
    if oai_root is None:
        return df.select("subject_id", "fold", "oai_path", "mask", F.lit(None).cast(masks.schema["mask"].dataType)
                         .alias("image"), F.col("mask_error").alias("error"))
    base = oai_root.rstrip("/")
    wanted = {sid: p for sid, p in paths.items() if sid in found}
    series = read_dicom_series(spark, [f"{base}/{p}" for p in wanted.values()], recursive=True)
    series = series.select(F.regexp_replace(F.element_at("path", 1), r"/[^/]+$", "").alias("series_dir"),
                           F.col("image"), F.col("error").alias("image_error"))
    keyed = spark.createDataFrame(list(wanted.items()), "subject_id string, rel string")
    series = keyed.join(series, F.col("series_dir").endswith(F.concat(F.lit("/"), F.col("rel"))), "left")
    absent = [r.subject_id for r in series.filter(F.col("series_dir").isNull()).select("subject_id").collect()]
    if absent:
        raise DatasetLayoutError(f"{len(absent)} OAI series listed in oai_mri_paths.txt are missing under {base} "
                                 f"(e.g. {', '.join(sorted(absent)[:3])})")
    out = df.join(series.select("subject_id", "image", "image_error"), on="subject_id", how="left")
    return out.select("subject_id", "fold", "oai_path", "mask", "image",
                      F.concat_ws("; ", "mask_error", "image_error").alias("error")).withColumn(
        "error", F.when(F.col("error") == "", None).otherwise(F.col("error")))


# ------------------------------------------------------------ knee folders ---
_PAIR_NAME = r"([^/]+)_(image|mask)\.nii(\.gz)?$"


def knee_folder_cases(spark, root: str, images: str = "auto") -> dict:
    """The cases of a knee folder from its file listing alone (no image is read).

    Returns ``{"images_from": "nifti" | "dicom", "images": set, "masks": set}``: the
    cases with an image (``nifti/<case>_image.nii[.gz]``, or a series folder
    ``dicom/<case>/``) and those with a mask (``nifti/<case>_mask.nii[.gz]``).
    ``images="auto"`` takes NIfTI images when there are any, else ``dicom/``.
    """
    import re

    from ..io import hfs

    root = hfs.to_uri(root)
    if images not in ("auto", "nifti", "dicom"):
        raise DatasetLayoutError(f"images must be 'auto', 'nifti' or 'dicom', got {images!r}")
    nifti, dicom = hfs.join(root, "nifti"), hfs.join(root, "dicom")
    names = hfs.list_names(spark, nifti) if hfs.is_dir(spark, nifti) else []
    found = {"image": set(), "mask": set()}
    for n in names:
        m = re.search(_PAIR_NAME, n)
        if m:
            found[m.group(2)].add(m.group(1))
    if images == "auto":
        images = "nifti" if found["image"] or not hfs.is_dir(spark, dicom) else "dicom"
    if images == "dicom":
        if not hfs.is_dir(spark, dicom):
            raise DatasetLayoutError(f"{root}: images from DICOM series need a dicom/<case>/ folder per case")
        found["image"] = set(hfs.list_names(spark, dicom))
    if not found["mask"]:
        raise DatasetLayoutError(f"{root}: expected label masks nifti/<case>_mask.nii[.gz] with images "
                                 "nifti/<case>_image.nii[.gz] or DICOM series dicom/<case>/")
    return {"images_from": images, "images": found["image"], "masks": found["mask"]}


def load_knee_folder(spark, root: str, images: str = "auto"):
    """A knee folder as one row per case: ``case``, ``image``, ``mask``, ``error``, ``pairing``.

    Layout: masks ``nifti/<case>_mask.nii[.gz]``; images ``nifti/<case>_image.nii[.gz]``
    or, with ``images="dicom"`` (or ``"auto"`` and no NIfTI images), the DICOM
    series in ``dicom/<case>/`` (as ``bigdl-medimg synth --kind knee`` writes
    both).  Nothing is dropped: a case with only an image or only a mask keeps
    its row with the other side null and ``pairing`` saying ``"no mask"`` or
    ``"no image"``; an unreadable file gives a null side and its ``error``; a
    case folder holding several DICOM series is an error row.  With
    ``labels.csv`` (case,tear) the rows get ``tear`` and ``tear_int``.
    """
    from pyspark.sql import functions as F

    from ..io import hfs
    from ..io.readers import read_dicom_series, read_nifti
    from .synth import synth_knee_labels

    root = hfs.to_uri(root)
    images = knee_folder_cases(spark, root, images)["images_from"]
    files = read_nifti(spark, hfs.join(root, "nifti"))
    named = files.select(F.regexp_extract("path", _PAIR_NAME, 1).alias("case"),
                         F.regexp_extract("path", _PAIR_NAME, 2).alias("kind"), "image", "error")
    masks = named.filter(F.col("kind") == "mask").select("case", F.col("image").alias("mask"),
                                                         F.col("error").alias("mask_error"), F.lit(True).alias("__m"))
    if images == "nifti":
        imgs = named.filter(F.col("kind") == "image").select("case", "image", F.col("error").alias("image_error"))
    else:
        series = read_dicom_series(spark, hfs.join(root, "dicom"), recursive=True).select(
            F.regexp_extract(F.element_at("path", 1), r"/dicom/([^/]+)/", 1).alias("case"), "image",
            F.col("error").alias("image_error"))
        per_case = series.groupBy("case").count()
        imgs = series.join(per_case, "case").select(
            "case", F.when(F.col("count") == 1, F.col("image")).alias("image"),
            F.when(F.col("count") == 1, F.col("image_error"))
            .otherwise(F.concat(F.lit("DatasetLayoutError: "), F.col("count").cast("string"),
                                F.lit(" DICOM series in the case folder; expected one"))).alias("image_error"))
    pairs = imgs.withColumn("__i", F.lit(True)).join(masks, "case", "full_outer")
    pairs = pairs.select(
        "case", "image", "mask",
        F.concat_ws("; ", "image_error", "mask_error").alias("error"),
        F.when(F.col("__i").isNull(), F.lit("no image")).when(F.col("__m").isNull(), F.lit("no mask"))
        .alias("pairing"))
    pairs = pairs.withColumn("error", F.when(F.col("error") == "", None).otherwise(F.col("error")))
    labels = hfs.join(root, "labels.csv")
    if hfs.exists(spark, labels):
        pairs = pairs.join(synth_knee_labels(spark, labels), "case", "left")
    return pairs


def load_oaizib_knees(spark, root: str):
    """An OAI-ZIB download beside its OAI images (``root/OAI-ZIB``, ``root/OAI``) in the knee task's terms.

    Rows as :func:`load_knee_folder` gives them (``case`` = the OAI subject id,
    ``pairing`` null).  The masks are relabelled into the task's classes:
    femoral cartilage 2 -> 1, tibial cartilage 4 -> 2, both bones -> background.
    OAI-ZIB has no patellar cartilage or menisci, so classes 3 and 4 never
    occur in it (their Dice is not defined on OAI-ZIB).
    """
    from pyspark.sql import functions as F

    from ..io import hfs
    from ..transforms.labels import MapLabels

    root = hfs.to_uri(root)
    df = load_oaizib(spark, hfs.join(root, "OAI-ZIB"), oai_root=hfs.join(root, "OAI"))
    df = MapLabels(labelMap=OAIZIB_TO_KNEE, inputCol="mask", outputCol="mask", errorCol="__map_error").transform(df)
    return df.select(F.col("subject_id").alias("case"), "image", "mask",
                     F.coalesce("error", "__map_error").alias("error"), F.lit(None).cast("string").alias("pairing"))


#: OAI-ZIB labels (:data:`OAIZIB_LABELS`) -> the knee task's classes (background, femoral, tibial cartilage)
OAIZIB_TO_KNEE = [0, 0, 1, 0, 2]
