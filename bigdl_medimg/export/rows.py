"""One writer loop for the per-row exports (DICOM SEG, DICOM SR): run on the executors, a row error per failure."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ..errors import ConfigError

__all__ = ["export_rows"]


def export_rows(df, columns: Sequence[str], key_col: str, one: Callable[[dict], Mapping], names: Sequence[str], *,
                mode: str = "permissive", int_names: Sequence[str] = ()):
    """``one(record) -> {name: value}`` for every row of ``df[columns]`` on the executors; a pandas table back.

    The table has ``names`` (the first is the row's key, from ``key_col``; the
    last is ``error``).  Permissive: a row that fails gets its error (an
    :class:`~bigdl_medimg.errors.ExportError` naming the key) and the others are
    written; failfast raises on the first.
    """
    import pandas as pd
    from pyspark.sql import types as T

    from ..errors import ExportError, one_line

    if mode not in ("permissive", "failfast"):
        raise ConfigError(f"mode must be 'permissive' or 'failfast', got {mode!r}")
    for c in columns:
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not found (columns: {', '.join(df.columns)})")
    failfast = mode == "failfast"
    names = list(names)

    def run(batches):
        for pdf in batches:
            out = []
            for rec in pdf.to_dict("records"):
                row = dict.fromkeys(names)
                row[names[0]] = None if rec[key_col] is None else str(rec[key_col])
                try:
                    row.update(one(rec))
                except Exception as exc:
                    err = ExportError(str(rec[key_col]), f"{type(exc).__name__}: {one_line(exc)}")
                    if failfast:
                        raise err from exc
                    row["error"] = err.column_text()
                out.append(row)
            yield pd.DataFrame(out, columns=names)

    schema = T.StructType([T.StructField(n, T.IntegerType() if n in int_names else T.StringType()) for n in names])
    return df.select(*columns).mapInPandas(run, schema).toPandas()
