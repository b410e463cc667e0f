"""Evaluation results small enough for a driver: scores, per-volume metrics, a few overlay slices.

They are built from scored DataFrames (the heavy work runs on executors),
saved as JSON + NPZ in a results folder, and read back by the report, so
``bigdl-medimg report`` can run later, anywhere, without Spark.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["ClassificationResults", "SegmentationResults", "load_results"]


@dataclass
class ClassificationResults:
    """Scores and labels of a classifier on a test set, with the evaluator's summary."""

    label_names: list[str]
    scores: np.ndarray
    labels: np.ndarray
    summary: dict
    mode: str = "multilabel"  # or "multiclass" (labels are one-hot rows)
    title: str = "Classification"
    n_unscored: int = 0

    @classmethod
    def from_dataframe(cls, df, *, labelNames: Sequence[str], probabilityCol: str = "probability",
                       labelCol: str = "label", thresholds: Sequence[float] = (0.5,), numBootstrap: int = 1000,
                       seed: int = 0, title: str = "Classification") -> "ClassificationResults":
        from ..metrics.evaluators import MultiLabelAUCEvaluator, classification_arrays

        p, y, keys = classification_arrays(df, probabilityCol, labelCol)
        from pyspark.sql import types as T

        is_index = not isinstance(df.schema[labelCol].dataType, T.ArrayType)
        mode = "multiclass" if is_index and p.shape[1] > 1 else "multilabel"
        names = list(labelNames)
        if is_index and p.shape[1] == 1 and len(names) == 2:
            names = names[1:]  # two classes: the positive one is scored
        ev = MultiLabelAUCEvaluator(labelNames=names, thresholds=list(thresholds), numBootstrap=numBootstrap,
                                    seed=seed)
        return cls(names, p, y, ev.summary(arrays=(p, y)), mode=mode, title=title, n_unscored=keys["n_unscored"])

    def save(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        meta = {"kind": "classification", "label_names": self.label_names, "summary": self.summary,
                "mode": self.mode, "title": self.title, "n_unscored": self.n_unscored}
        with open(os.path.join(folder, "classification.json"), "w") as f:
            json.dump(meta, f, indent=1, allow_nan=True)
        np.savez_compressed(os.path.join(folder, "classification_scores.npz"), scores=self.scores,
                            labels=self.labels)
        return folder

    @classmethod
    def load(cls, folder: str) -> "ClassificationResults":
        with open(os.path.join(folder, "classification.json")) as f:
            meta = json.load(f)
        arrays = np.load(os.path.join(folder, "classification_scores.npz"))
        return cls(meta["label_names"], arrays["scores"], arrays["labels"], meta["summary"], mode=meta["mode"],
                   title=meta["title"], n_unscored=meta["n_unscored"])


@dataclass
class SegmentationResults:
    """Per-volume Dice / HD95 / MSD, the voxel confusion matrix and best/median/worst overlay slices."""

    class_names: list[str]
    volumes: list[dict]
    confusion: np.ndarray
    overlays: list[dict] = field(default_factory=list)
    title: str = "Segmentation"
    percentile: float = 95.0

    @classmethod
    def from_dataframe(cls, df, *, numClasses: int, classNames: Sequence[str] | None = None,
                       imageCol: str = "image", predictionCol: str = "segmentation", labelCol: str = "mask",
                       keyCol: str | None = None, surface: bool = True, percentile: float = 95.0,
                       title: str = "Segmentation") -> "SegmentationResults":
        """Score every volume on the executors; fetch only three 2-D slices for the overlays.

        Volumes are named by ``keyCol`` when given, else numbered (keys may
        be identifiers a report should not show).
        """
        from pyspark.sql import functions as F

        from ..metrics.evaluators import segmentation_scores

        n = int(numClasses)
        names = list(classNames) if classNames else [f"class {k}" for k in range(1, n)]
        if len(names) != n - 1:
            raise ConfigError(f"classNames needs {n - 1} names (classes 1..{n - 1}), got {len(names)}")
        key = keyCol or "__volume"
        if keyCol is None:
            df = df.withColumn(key, F.monotonically_increasing_id().cast("string"))
        else:
            df = df.withColumn(key, F.col(keyCol).cast("string"))
        df = df.cache()
        try:
            scores = segmentation_scores(df, predictionCol, labelCol, n, keyCol=key, surface=surface,
                                         percentile=percentile).toPandas()
            volumes, confusion = [], np.zeros((n, n), np.int64)
            for i, r in enumerate(scores.sort_values(key).to_dict("records")):
                name = r[key] if keyCol else f"volume {i + 1}"
                vol = {"key": name, "_key": r[key], "error": r["error"]}
                for m in ("dice", "hd", "msd"):
                    vol[m] = None if r[m] is None else [float(v) for v in r[m]]
                if r["confusion"] is not None:
                    confusion += np.asarray(r["confusion"], np.int64).reshape(n, n)
                volumes.append(vol)
            overlays = _overlays(df, volumes, key, imageCol, predictionCol, labelCol)
        finally:
            df.unpersist()
        for v in volumes:
            v.pop("_key")
        return cls(names, volumes, confusion, overlays, title=title, percentile=percentile)

    def per_class(self) -> dict[str, list[float]]:
        """Mean over scored volumes of each metric, per foreground class (NaN where never present)."""
        out = {}
        for m in ("dice", "hd", "msd"):
            rows = [v[m] for v in self.volumes if v["error"] is None and v[m] is not None]
            if rows:
                a = np.asarray(rows, dtype=np.float64)
                cols = [a[~np.isnan(a[:, k]), k] for k in range(a.shape[1])]
                out[m] = [float(c.mean()) if c.size else float("nan") for c in cols]
        return out

    def save(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        meta = {"kind": "segmentation", "class_names": self.class_names, "volumes": self.volumes,
                "confusion": self.confusion.tolist(), "title": self.title, "percentile": self.percentile,
                "overlays": [{k: v for k, v in o.items() if k not in ("image", "reference", "prediction")}
                             for o in self.overlays]}
        with open(os.path.join(folder, "segmentation.json"), "w") as f:
            json.dump(meta, f, indent=1, allow_nan=True)
        arrays = {f"{name}_{i}": o[name] for i, o in enumerate(self.overlays)
                  for name in ("image", "reference", "prediction")}
        np.savez_compressed(os.path.join(folder, "segmentation_overlays.npz"), **arrays)
        return folder

    @classmethod
    def load(cls, folder: str) -> "SegmentationResults":
        with open(os.path.join(folder, "segmentation.json")) as f:
            meta = json.load(f)
        arrays = np.load(os.path.join(folder, "segmentation_overlays.npz"))
        overlays = [dict(o, **{name: arrays[f"{name}_{i}"] for name in ("image", "reference", "prediction")})
                    for i, o in enumerate(meta["overlays"])]
        return cls(meta["class_names"], meta["volumes"], np.asarray(meta["confusion"], np.int64), overlays,
                   title=meta["title"], percentile=meta["percentile"])


def _mean_dice(v: dict) -> float:
    d = np.asarray(v["dice"], dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def _overlays(df, volumes: list[dict], key: str, image_col: str, pred_col: str, ref_col: str) -> list[dict]:
    """Best, median and worst volume by mean Dice: one slice each (the one with most reference foreground)."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    scored = sorted((v for v in volumes if v["error"] is None and np.isfinite(_mean_dice(v))), key=_mean_dice)
    if not scored:
        return []
    picks = {"best": scored[-1], "median": scored[len(scored) // 2], "worst": scored[0]}
    wanted = {v["_key"] for v in picks.values()}

    def slices(batches):
        from ..tensor import get_affine, spacing_from_affine, to_numpy

        for pdf in batches:
            out = []
            for rec in pdf.to_dict("records"):
                img, ref, pred = (to_numpy(rec[c]) for c in (image_col, ref_col, pred_col))
                while img.ndim > ref.ndim:  # channels first: show the first channel
                    img = img[0]
                if ref.ndim == 2:
                    idx, im, r, p = 0, img, ref, pred
                else:
                    fg = (ref > 0).reshape(ref.shape[0], -1).sum(axis=1)
                    if not fg.any():
                        fg = (pred > 0).reshape(pred.shape[0], -1).sum(axis=1)
                    idx = int(np.argmax(fg))
                    im, r, p = img[idx], ref[idx], pred[idx]
                sp = spacing_from_affine(get_affine(rec[ref_col]))[-2:] if ref.ndim == 3 else \
                    spacing_from_affine(get_affine(rec[ref_col]))[:2]
                out.append({key: rec[key], "slice": idx, "shape": list(r.shape),
                            "aspect": float(sp[0] / sp[1]),
                            "image": np.ascontiguousarray(im, np.float32).tobytes(),
                            "reference": np.ascontiguousarray(r, np.uint8).tobytes(),
                            "prediction": np.ascontiguousarray(p, np.uint8).tobytes()})
            yield pd.DataFrame(out, columns=[key, "slice", "shape", "aspect", "image", "reference", "prediction"])

    schema = T.StructType([T.StructField(key, T.StringType()), T.StructField("slice", T.IntegerType()),
                           T.StructField("shape", T.ArrayType(T.IntegerType())),
                           T.StructField("aspect", T.DoubleType()),
                           *[T.StructField(n, T.BinaryType()) for n in ("image", "reference", "prediction")]])
    rows = {r[key]: r for r in df.filter(F.col(key).isin(list(wanted)))
            .select(key, image_col, ref_col, pred_col).mapInPandas(slices, schema).collect()}
    out = []
    for kind, v in picks.items():
        r = rows.get(v["_key"])
        if r is None:
            continue
        shape = tuple(r["shape"])
        out.append({"kind": kind, "key": v["key"], "mean_dice": _mean_dice(v), "slice": r["slice"],
                    "aspect": r["aspect"],
                    "image": np.frombuffer(r["image"], np.float32).reshape(shape),
                    "reference": np.frombuffer(r["reference"], np.uint8).reshape(shape),
                    "prediction": np.frombuffer(r["prediction"], np.uint8).reshape(shape)})
    return out


def load_results(folder: str) -> list:
    """Every results object saved in ``folder`` (classification and/or segmentation)."""
    out = []
    if os.path.exists(os.path.join(folder, "classification.json")):
        out.append(ClassificationResults.load(folder))
    if os.path.exists(os.path.join(folder, "segmentation.json")):
        out.append(SegmentationResults.load(folder))
    if not out:
        raise ConfigError(f"no saved results in {folder} (expected classification.json or segmentation.json)")
    return out
