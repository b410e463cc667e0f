"""Predicted probabilities and labels as Parquet or CSV tables keyed by DICOM UIDs."""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError

__all__ = ["DEFAULT_KEYS", "prediction_table", "write_predictions"]

#: Key columns used when present (the DICOM hierarchy: study, series, instance).
DEFAULT_KEYS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")


def _label_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "label"


def prediction_table(df, *, labelNames: Sequence[str], probabilityCol: str = "probability",
                     predictionCol: str | None = "prediction", labelCol: str | None = None,
                     keyCols: Sequence[str] | None = None, errorCol: str | None = "error"):
    """A flat DataFrame: keys, ``prob_<label>``, ``pred_<label>``, ``true_<label>``, ``error``.

    ``keyCols`` defaults to whichever of study/series/SOP instance UID columns
    the frame has; a frame with none of them needs explicit ``keyCols``
    (an image file name, a case id).  Array columns are spread into one column
    per label so CSV can hold them; a class-index ``labelCol`` or
    ``predictionCol`` is kept as one ``true_class`` / ``pred_class`` column.
    Rows without a probability (unreadable images) stay, with nulls and their
    ``error``.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    keys = list(keyCols) if keyCols is not None else [k for k in DEFAULT_KEYS if k in df.columns]
    if not keys:
        raise ConfigError("no key columns: the frame has none of " + ", ".join(DEFAULT_KEYS)
                          + "; pass keyCols (e.g. an image index or case id)")
    names = [_label_name(n) for n in labelNames]
    if len(set(names)) != len(names):
        raise ConfigError(f"label names collide as column names: {names}")
    for c in keys + [probabilityCol] + [c for c in (predictionCol, labelCol) if c]:
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not found (columns: {', '.join(df.columns)})")
    cols = [F.col(k) for k in keys]
    cols += [F.col(probabilityCol)[i].alias(f"prob_{n}") for i, n in enumerate(names)]
    for src, prefix in ((predictionCol, "pred"), (labelCol, "true")):
        if not src:
            continue
        if isinstance(df.schema[src].dataType, T.ArrayType):
            cols += [F.col(src)[i].cast("int").alias(f"{prefix}_{n}") for i, n in enumerate(names)]
        else:
            cols.append(F.col(src).cast("int").alias(f"{prefix}_class"))
    if errorCol and errorCol in df.columns:
        cols.append(F.col(errorCol).alias("error"))
    return df.select(*cols)


def write_predictions(df, path: str, *, labelNames: Sequence[str], format: str = "parquet",
                      mode: str = "errorifexists", single_file: bool = False, **kwargs) -> None:
    """Write :func:`prediction_table` as Parquet or CSV (with a header) with Spark's writers.

    ``single_file`` coalesces to one partition (one CSV for a spreadsheet);
    other keyword arguments go to :func:`prediction_table`.
    """
    if format not in ("parquet", "csv"):
        raise ConfigError(f"format must be 'parquet' or 'csv', got {format!r}")
    table = prediction_table(df, labelNames=labelNames, **kwargs)
    if single_file:
        table = table.coalesce(1)
    writer = table.write.mode(mode)
    if format == "csv":
        writer.option("header", True).csv(path)
    else:
        writer.parquet(path)
