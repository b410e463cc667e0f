"""Write de-identified copies of DICOM files, on executors."""
from __future__ import annotations

from ..errors import ConfigError

__all__ = ["deidentify_files"]


def deidentify_files(spark, path, out: str, *, deidentify=None, key=None, dates: str = "shift",
                     recursive: bool = True, write_quarantined: bool = True):
    """De-identify every DICOM file under ``path`` and write it under ``out``.

    Each file is parsed on an executor, PS3.15 Table E.1-1 is applied by
    :func:`~bigdl_medimg.deid.deidentify_dataset` (every attribute's action at
    every depth, with the options the ``Deidentify`` stage's Params enable) and
    the result is written as
    ``<out>/<study UID>/<series UID>/<SOP instance UID>.dcm`` with the remapped
    UIDs.  Images that may carry burned-in text (see
    :func:`~bigdl_medimg.deid.quarantine_reason`) go under
    ``<out>/quarantine/...`` instead for review (or are not written, with
    ``write_quarantined=False``): their pixels are not cleaned.

    Parameters
    ----------
    deidentify : Deidentify, optional
        Takes the key, date mode, options and safe-private tags from this
        stage; otherwise ``key=`` (or ``$BIGDL_MEDIMG_DEID_KEY``) and ``dates=``.

    Returns
    -------
    DataFrame
        ``source`` (the input file's opaque label, never its path), ``output``
        (path written, or null), ``quarantine`` (reason or null), ``error``
        (one line naming no patient data, or null).  One row per input file.
    """
    from pyspark.sql import types as T

    from ..io.readers import binary_files
    from .stage import Deidentify

    stage = deidentify if deidentify is not None else Deidentify(key=key, dates=dates)
    stage._validate()
    pseudo = stage.pseudonymizer()
    dates_mode = stage.getOrDefault("dates")
    options, safe = stage.options(), stage.safe_private()
    if not out:
        raise ConfigError("deidentify_files: an output folder is required")
    schema = T.StructType([T.StructField(n, T.StringType()) for n in ("source", "output", "quarantine", "error")])

    def run(batches):
        import io

        import pyarrow as pa

        from ..errors import DicomReadError
        from ..io.files import join, write_bytes
        from ..io.dicom import parse_dicom
        from .profile import deidentify_dataset, quarantine_reason

        for batch in batches:
            paths = batch.column(0).to_pylist()
            contents = batch.column(1)
            rows = {"source": [], "output": [], "quarantine": [], "error": []}
            for i, p in enumerate(paths):
                label = pseudo.path_label(p)
                written, reason, error = None, None, None
                try:
                    ds = parse_dicom(contents[i].as_buffer().to_pybytes(), label)
                    reason = quarantine_reason(ds)
                    deidentify_dataset(ds, pseudo, dates=dates_mode, options=options, safe_private=safe)
                    parts = [str(ds.get("StudyInstanceUID") or "unknown-study"),
                             str(ds.get("SeriesInstanceUID") or "unknown-series"),
                             str(ds.get("SOPInstanceUID") or label) + ".dcm"]
                    if reason is not None:
                        parts.insert(0, "quarantine")
                    if reason is None or write_quarantined:
                        buf = io.BytesIO()
                        ds.save_as(buf, enforce_file_format=False)
                        written = write_bytes(join(out, "/".join(parts)), buf.getvalue())
                except DicomReadError as exc:
                    error = exc.column_text()
                except Exception as exc:  # a damaged element pydicom cannot write back
                    # the exception's text may quote element values: only its type is kept
                    error = f"DicomWriteError: cannot write the de-identified copy: {type(exc).__name__}"
                rows["source"].append(label)
                rows["output"].append(written)
                rows["quarantine"].append(reason)
                rows["error"].append(error)
            yield pa.RecordBatch.from_pydict(rows, schema=pa.schema([(n, pa.string()) for n in rows]))

    return binary_files(spark, path, recursive=recursive).select("path", "content").mapInArrow(run, schema)
