"""Spark DataFrame readers: files on any Hadoop filesystem to tensor columns.

Every reader lists and reads files through Spark's ``binaryFile`` source, so
hdfs://, s3a:// and file:// paths and Hadoop globs work alike, and decodes on
executors with ``mapInArrow`` (Arrow batches of
``spark.sql.execution.arrow.maxRecordsPerBatch`` rows; the profiles in
``conf/spark`` keep it small because images are large rows).

Every row carries ``path`` (for a series, its files' paths in slice order),
``image`` (the tensor struct, see :mod:`bigdl_medimg.tensor`) and ``error``.
In ``mode="permissive"`` (default) a bad file gives a row with a null image and
a one-line ``error``; in ``mode="failfast"`` the job fails with the
corresponding :class:`~bigdl_medimg.errors.ImageReadError` naming the file.
Nothing is dropped silently.

``deidentify=`` (``read_dicom``, ``read_dicom_series``, ``read_nifti``,
``read_images``) takes a :class:`~bigdl_medimg.deid.Deidentify` stage: the
decoders then only see opaque path labels (so errors and failfast exceptions
never carry a path) and the stage is applied to the result.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, SeriesAssemblyError
from ..tensor import tensor_type
from .dicom import METADATA_FIELDS
from .images import XRAY_MODALITIES

__all__ = ["read_dicom", "read_dicom_series", "read_nifti", "read_images", "read_mhd", "write_tensors",
           "read_tensors", "binary_files"]

_MODES = ("permissive", "failfast")


def _spark_type(name: str):
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "int": T.IntegerType(),
        "long": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "array<double>": T.ArrayType(T.DoubleType()),
        "array<int>": T.ArrayType(T.IntegerType()),
        "array<string>": T.ArrayType(T.StringType()),
    }[name]


def _schema(fields: Sequence[tuple[str, Any]]):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, _spark_type(t) if isinstance(t, str) else t, True) for n, t in fields])


def _meta_fields() -> list[tuple[str, str]]:
    return [(c, t) for c, _kw, t, _conv in METADATA_FIELDS] + [("transfer_syntax_uid", "string")]


def check_mode(mode: str) -> None:
    """ConfigError unless ``mode`` is 'permissive' or 'failfast'."""
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")


def binary_files(spark, path: str | Sequence[str], *, recursive: bool = True):
    """``(path, content)`` of every file matching ``path`` (a Hadoop path or glob, or a list)."""
    reader = spark.read.format("binaryFile")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    paths = [path] if isinstance(path, str) else list(path)
    if not paths:
        raise ConfigError("no path given")
    return reader.load(paths).select("path", "content")


def _rows_frame(rows: list[dict], columns: list[str]):
    import pandas as pd

    return pd.DataFrame({c: [r.get(c) for r in rows] for c in columns}, columns=columns)


def _map_decode(files, decode, fields, failfast: bool, path_label=None):
    """``decode(content, path) -> row dict`` over ``(path, content)`` rows, with ``mapInArrow``.

    Each file's bytes are taken straight from the Arrow batch; the output
    columns are built as Arrow arrays (no pandas conversion of the large rows).
    ``path_label`` (de-identification): decoders see an opaque label instead of
    the path, so error texts and failfast exceptions never carry it.
    """
    from ..arrow import arrow_schema

    from ..console import counter

    schema = _schema(fields)
    columns = [n for n, _ in fields]
    # a retrieval that failed upstream (read_dicomweb) arrives as fetch_error: its row carries it, nothing decoded
    fetched = "fetch_error" in files.columns
    # counted for the ingest progress display when one is running (None otherwise)
    n_files, n_errors = counter("files"), counter("errors")

    def run(batches: Iterator):
        import pyarrow as pa

        out_schema = arrow_schema(schema)
        for batch in batches:
            paths = batch.column(batch.schema.get_field_index("path")).to_pylist()
            contents = batch.column(batch.schema.get_field_index("content"))
            failed = batch.column(batch.schema.get_field_index("fetch_error")).to_pylist() if fetched else None
            known = {c: batch.column(batch.schema.get_field_index(c)).to_pylist() for c in _FETCHED_UIDS} \
                if fetched else {}
            values: dict[str, list] = {c: [] for c in columns}
            for i, path in enumerate(paths):
                if failed is not None and failed[i]:
                    if failfast:
                        from .dicomweb import DicomWebError

                        raise DicomWebError(failed[i])
                    got = {"error": failed[i], **{c: v[i] for c, v in known.items()}}  # the UIDs QIDO-RS gave
                else:
                    buf = contents[i].as_buffer()
                    got = decode(b"" if buf is None else buf.to_pybytes(),
                                 path if path_label is None else path_label(path))
                for r in (got if isinstance(got, list) else [got]):  # a list: one row per stack of the file
                    if failfast and r.get("_exc") is not None:
                        raise r["_exc"]
                    r["path"] = path
                    for c in columns:
                        values[c].append(r.get(c))
            if n_files is not None:
                n_files.add(len(paths))
            if n_errors is not None:  # also counted alone: a prediction's display shows the unreadable inputs
                n_errors.add(sum(e is not None for e in values.get("error", ())))
            yield pa.RecordBatch.from_arrays([pa.array(values[f.name], type=f.type) for f in out_schema],
                                             schema=out_schema)

    return files.select("path", "content", *(["fetch_error", *_FETCHED_UIDS] if fetched else [])) \
        .mapInArrow(run, schema)


#: Identifiers a retrieval knows before any byte arrives (from the query): kept on its error rows.
_FETCHED_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")


def _deid(deidentify):
    """``(stage, path label function)`` for a reader's ``deidentify=`` argument (both None without it)."""
    if deidentify is None:
        return None, None
    from ..deid import Deidentify

    if not isinstance(deidentify, Deidentify):
        raise ConfigError(f"deidentify= takes a bigdl_medimg.deid.Deidentify stage, got {type(deidentify).__name__}")
    deidentify._validate()
    pseudo = deidentify.pseudonymizer()
    return deidentify, (pseudo.path_label if deidentify.getOrDefault("pathMode") != "keep" else None)


def _finish(df, stage):
    return df if stage is None else stage.transform(df)


def read_dicom(spark, path, *, with_pixels: bool = True, mode: str = "permissive", recursive: bool = True,
               deidentify=None):
    """One row per file: allow-listed DICOM metadata, the decoded image and an error.

    Parameters
    ----------
    spark : SparkSession
    path : str or list of str
        Files, folders or Hadoop globs (hdfs://, s3a://, file://).  Files are
        recognised as DICOM by content, so extension-less files are read.
    with_pixels : bool
        Decode pixels into ``image``; ``False`` reads headers only.
    mode : {"permissive", "failfast"}
    recursive : bool
        Descend into sub-folders.

    Returns
    -------
    DataFrame
        ``path``, the metadata columns of
        :data:`bigdl_medimg.io.dicom.METADATA_FIELDS`, ``transfer_syntax_uid``,
        ``affine_source``, ``split`` and ``stack_index`` (an enhanced object
        holding several stacks gives a row per stack; null otherwise),
        ``image``, ``error``.
    """
    check_mode(mode)
    return dicom_frame(binary_files(spark, path, recursive=recursive), with_pixels=with_pixels, mode=mode,
                       deidentify=deidentify)


def dicom_frame(files, *, with_pixels: bool = True, mode: str = "permissive", deidentify=None):
    """:func:`read_dicom` on a frame of ``(path, content)`` rows (and ``fetch_error``: a failed retrieval)."""
    from .dicom import decode_dicom

    fields = [("path", "string")] + _meta_fields() + [("affine_source", "string"), ("split", "string"),
                                                      ("stack_index", "int"), ("image", tensor_type()),
                                                      ("error", "string")]
    stage, label = _deid(deidentify)
    return _finish(_map_decode(files, lambda c, p: decode_dicom(c, p, with_pixels=with_pixels), fields,
                               mode == "failfast", label), stage)


def read_nifti(spark, path, *, mode: str = "permissive", recursive: bool = True, deidentify=None):
    """One row per ``.nii``/``.nii.gz`` file (recognised by content).

    Returns
    -------
    DataFrame
        ``path``, ``affine_source`` (``sform``, ``qform`` or ``pixdim``),
        ``n_nonfinite`` (count of NaN/inf voxels), ``image``, ``error``.
        4-D images are channels-first ``(T, X, Y, Z)``.
    """
    from .nifti import decode_nifti

    check_mode(mode)
    fields = [("path", "string"), ("affine_source", "string"), ("n_nonfinite", "long"),
              ("image", tensor_type()), ("error", "string")]
    files = binary_files(spark, path, recursive=recursive)
    stage, label = _deid(deidentify)
    return _finish(_map_decode(files, decode_nifti, fields, mode == "failfast", label), stage)


def read_images(spark, path, *, modalities: Sequence[str] | None = XRAY_MODALITIES, keep_color: bool = False,
                deidentify=None,
                mode: str = "permissive", recursive: bool = True):
    """One row per 2-D X-ray: DICOM (CR, DX, ...), PNG or JPEG, 8 or 16 bit.

    Parameters
    ----------
    modalities : sequence of str or None
        DICOM modalities accepted; other DICOM files get an error.  None
        accepts any single-frame DICOM image.
    keep_color : bool
        Keep colour PNG/JPEG as ``(3, 1, rows, cols)`` instead of converting to grey.

    Returns
    -------
    DataFrame
        ``path``, ``format``, ``modality``, ``view_position``, ``laterality``,
        ``body_part_examined``, ``rows``, ``columns``,
        ``photometric_interpretation``, ``spacing_source``, ``image``, ``error``.
    """
    check_mode(mode)
    return image_frame(binary_files(spark, path, recursive=recursive), modalities=modalities,
                       keep_color=keep_color, mode=mode, deidentify=deidentify)


def image_frame(files, *, modalities: Sequence[str] | None = XRAY_MODALITIES, keep_color: bool = False,
                mode: str = "permissive", deidentify=None):
    """:func:`read_images` on a frame of ``(path, content)`` rows (and ``fetch_error``: a failed retrieval)."""
    from .images import decode_image

    mods = None if modalities is None else tuple(modalities)
    fields = [("path", "string"), ("format", "string"), ("modality", "string"), ("view_position", "string"),
              ("laterality", "string"), ("body_part_examined", "string"), ("rows", "int"), ("columns", "int"),
              ("photometric_interpretation", "string"), ("spacing_source", "string"),
              ("image", tensor_type()), ("error", "string")]
    stage, label = _deid(deidentify)
    return _finish(_map_decode(files, lambda c, p: decode_image(c, p, modalities=mods, keep_color=keep_color),
                               fields, mode == "failfast", label), stage)


def read_mhd(spark, path, *, mode: str = "permissive", recursive: bool = True):
    """One row per ITK MetaImage (``.mhd`` with its data file, or ``.mha``).

    ``path`` selects the headers (files ending ``.mhd``/``.mha``; other files
    are ignored, so a folder holding headers and ``.raw`` files works); each
    header's data file is read from next to it.

    Returns
    -------
    DataFrame
        ``path`` (the header), ``data_path``, ``image``, ``error`` (a missing or
        short data file is an error row, not a lost row).
    """
    from pyspark.sql import functions as F

    from .mhd import MhdReadError, data_file_of, decode_mhd_row, parse_mhd_header

    check_mode(mode)
    failfast = mode == "failfast"
    headers = binary_files(spark, path, recursive=recursive).filter(
        F.lower(F.col("path")).endswith(".mhd") | F.lower(F.col("path")).endswith(".mha"))

    def locate(batches):
        import pandas as pd

        for pdf in batches:
            out = []
            for p, content in zip(pdf["path"], pdf["content"]):
                try:
                    fields, _ = parse_mhd_header(bytes(content), p)
                    out.append((p, data_file_of(fields, p), None))
                except MhdReadError as exc:
                    if failfast:
                        raise
                    out.append((p, None, exc.column_text()))
            yield pd.DataFrame(out, columns=["path", "data_path", "header_error"])

    located = headers.select("path", "content").mapInPandas(
        locate, _schema([("path", "string"), ("data_path", "string"), ("header_error", "string")])).cache()
    data_paths = sorted({r.data_path for r in located.select("data_path").distinct().collect() if r.data_path})
    hdr = headers.select("path", F.col("content").alias("header")).join(located, on="path")
    if data_paths:
        # read the folders holding the data files once (a missing data file must not fail the job)
        folders = sorted({p.rsplit("/", 1)[0] for p in data_paths})
        data = binary_files(spark, folders, recursive=False).select(
            F.col("path").alias("found_path"), F.col("content").alias("data"))
        hdr = hdr.join(data, hdr["data_path"] == data["found_path"], "left").drop("found_path")
    else:
        hdr = hdr.withColumn("data", F.lit(None).cast("binary"))
    fields = [("path", "string"), ("data_path", "string"), ("image", tensor_type()), ("error", "string")]
    columns = [n for n, _ in fields]

    def decode(batches):
        for pdf in batches:
            rows = []
            for rec in pdf.to_dict("records"):
                if rec["header_error"]:
                    rows.append({"path": rec["path"], "data_path": None, "image": None, "error": rec["header_error"]})
                    continue
                data = rec.get("data")
                r = decode_mhd_row(bytes(rec["header"]), rec["path"], None if data is None else bytes(data),
                                   rec["data_path"])
                if failfast and r.get("_exc") is not None:
                    raise r["_exc"]
                r["path"] = rec["path"]
                rows.append(r)
            yield _rows_frame(rows, columns)

    return hdr.select("path", "header", "data_path", "header_error", "data").mapInPandas(decode, _schema(fields))


# ----------------------------------------------------------------- series ---

_HEADER_EXTRA = [("has_pixels", "boolean"), ("error", "string")]
_SERIES_META = [("study_instance_uid", "string"), ("frame_of_reference_uid", "string"), ("modality", "string"),
                ("manufacturer", "string"), ("manufacturer_model_name", "string"),
                ("body_part_examined", "string"), ("series_number", "int"), ("mr_acquisition_type", "string"),
                ("magnetic_field_strength", "double"), ("echo_time", "double"), ("repetition_time", "double"),
                ("echo_numbers", "int"), ("temporal_position_identifier", "int"), ("trigger_time", "double"),
                ("diffusion_b_value", "double")]


def _header_row(content: bytes, path: str) -> dict:
    from .dicom import dicom_metadata, has_pixel_data, parse_dicom
    from ..errors import CONTROL_FLOW, DicomReadError, record_error

    row: dict[str, Any] = {"error": None, "has_pixels": False}
    try:
        ds = parse_dicom(content, path)
        row.update(dicom_metadata(ds))
        row["has_pixels"] = has_pixel_data(ds)
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, DicomReadError, path)
    return row


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def read_dicom_series(spark, path, *, mode: str = "permissive", recursive: bool = True, deidentify=None):
    """One row per DICOM series: a 3-D volume sorted along the slice normal.

    Series are grouped by SeriesInstanceUID and split further (``series_key``
    gets a ``#n`` suffix, ``split`` says why) when frame of reference or image
    plane differ.  A header pass runs first; pixels are decoded only for series
    whose geometry is regular, one series per task, so memory is bounded by
    the largest series.  Missing slices, duplicate positions, non-uniform
    spacing, mixed orientations and undecodable slices are reported in
    ``error`` (or raised in failfast mode), never stacked.  Files that are not
    DICOM or have no SeriesInstanceUID become rows of their own with an error.

    Returns
    -------
    DataFrame
        ``series_key``, ``series_instance_uid``, series metadata, ``n_slices``,
        ``split``, ``path`` (array of file paths in slice order), ``image``
        (``(slices, rows, cols)``, affine to RAS+), ``error``.
    """
    check_mode(mode)
    return dicom_series_frame(binary_files(spark, path, recursive=recursive), mode=mode, deidentify=deidentify)


def dicom_series_frame(files, *, mode: str = "permissive", deidentify=None):
    """:func:`read_dicom_series` on a frame of ``(path, content)`` rows (and ``fetch_error``)."""
    from pyspark.sql import functions as F

    failfast = mode == "failfast"
    header_fields = [("path", "string")] + _meta_fields() + _HEADER_EXTRA
    stage, label = _deid(deidentify)
    headers = _map_decode(files, _header_row, header_fields, failfast, label)
    plan_fields = ([("series_key", "string"), ("series_instance_uid", "string")] + _SERIES_META
                   + [("n_slices", "int"), ("split", "string"), ("path", "array<string>"),
                      ("plan_affine", "array<double>"), ("plan_error", "string")])
    plan_cols = [n for n, _ in plan_fields]

    def plan(pdf):
        from .series import plan_series

        records = [{k: _plain(v) for k, v in rec.items()} for rec in pdf.to_dict("records")]
        rows = []
        for p in plan_series(records):
            if failfast and p.error:
                name, _, reason = p.error.partition(": ")
                if label is not None:
                    from ..deid.stage import scrub_paths

                    raise SeriesAssemblyError(label(p.paths[0]), scrub_paths(reason or name, p.paths, label))
                raise SeriesAssemblyError(p.paths[0], reason or name)
            r = dict(p.meta)
            if r.get("series_number") is not None:
                r["series_number"] = int(r["series_number"])
            r.update(series_key=p.series_key, series_instance_uid=p.series_instance_uid,
                     n_slices=None if p.error else len(p.paths), split=p.split, path=p.paths,
                     plan_affine=None if p.affine is None else [float(v) for v in p.affine.ravel()],
                     plan_error=p.error)
            rows.append(r)
        return _rows_frame(rows, plan_cols)

    plans = headers.groupBy("series_instance_uid").applyInPandas(plan, _schema(plan_fields))
    good = plans.filter(F.col("plan_error").isNull() & F.col("series_key").isNotNull())
    slices = good.select("series_key", "plan_affine", F.size("path").alias("n_slices"),
                         F.posexplode("path").alias("slice_index", "path"))
    joined = slices.join(files.select("path", "content"), on="path", how="inner") \
        .repartition("series_key").sortWithinPartitions("series_key", "slice_index")
    out_fields = [("series_key", "string"), ("image", tensor_type()), ("assembly_error", "string")]
    out_schema = _schema(out_fields)

    def assemble(batches):
        # Streams each partition's slices (sorted by series, then slice) into one preallocated
        # volume per series: a task holds one volume plus one small Arrow batch, and the volume
        # leaves as the data buffer of the output row without a copy.
        import pyarrow as pa

        from ..arrow import arrow_schema, fold_by_key, tensor_array
        from .dicom import dicom_affine, ordered_pixels, parse_dicom, single_stack
        from .series import VolumeBuilder

        schema = arrow_schema(out_schema)
        image_type = schema.field("image").type

        def start(cols, i):
            aff = cols["plan_affine"][i].as_py()
            # a one-file series (an enhanced object) comes back with its frames ordered along the normal
            return {"builder": VolumeBuilder(cols["n_slices"][i].as_py(), ordered_pixels),
                    "affine": None if aff is None else np.asarray(aff, np.float64).reshape(4, 4),
                    "error": None, "first": None}

        def add(state, cols, i):
            if state["error"] is not None:
                return
            path = cols["path"][i].as_py()
            shown = path if label is None else label(path)
            content = cols["content"][i].as_buffer().to_pybytes()
            if state["affine"] is None and state["first"] is None:
                state["first"] = (content, shown)
            try:
                state["builder"].add(cols["slice_index"][i].as_py(), content, shown)
            except SeriesAssemblyError as exc:
                if failfast:
                    raise
                state["error"] = exc.column_text()

        def finish(key, state):
            b, image, error = state["builder"], None, state["error"]
            if error is None and not b.complete:
                error = f"SeriesAssemblyError: {b.n - b.filled} of {b.n} slices could not be read"
            if error is None:
                aff = state["affine"]
                if aff is None:
                    first_content, first_path = state["first"]
                    ds = parse_dicom(first_content, first_path, stop_before_pixels=True)
                    aff, _src = dicom_affine(ds, b.volume.shape, single_stack(ds, first_path))
                image = tensor_array(b.volume, aff, image_type)
            else:
                image = pa.nulls(1, type=image_type)
            return pa.RecordBatch.from_arrays([pa.array([key]), image, pa.array([error], pa.string())],
                                              schema=schema)

        return fold_by_key(batches, "series_key", start, add, finish)

    assembled = joined.select("series_key", "plan_affine", "n_slices", "slice_index", "path", "content") \
        .mapInArrow(assemble, out_schema)
    out = plans.join(assembled, on="series_key", how="left")
    meta_cols = [n for n, _ in _SERIES_META]
    return _finish(out.select(
        "series_key", "series_instance_uid", *meta_cols,
        F.when(F.col("assembly_error").isNull(), F.col("n_slices")).alias("n_slices"),
        "split", "path", "image",
        F.coalesce("plan_error", "assembly_error").alias("error"),
    ), stage)


# ---------------------------------------------------------- tensor tables ---

def _tensor_columns(df) -> list[str]:
    from pyspark.sql import types as T

    want = {f.name: f.dataType.simpleString() for f in tensor_type().fields}
    cols = []
    for f in df.schema.fields:
        if isinstance(f.dataType, T.StructType) and {
                x.name: x.dataType.simpleString() for x in f.dataType.fields} == want:
            cols.append(f.name)
    return cols


def write_tensors(df, path: str, *, mode: str = "errorifexists", partition_by: Sequence[str] | None = None) -> None:
    """Write a DataFrame with tensor columns as a Parquet tensor table.

    Later stages read it with :func:`read_tensors` and need not decode DICOM
    again.  ``mode`` is Spark's save mode (``errorifexists``, ``overwrite``,
    ``append``, ``ignore``).
    """
    if not _tensor_columns(df):
        raise ConfigError("write_tensors: the DataFrame has no tensor column (struct<data,dtype,shape,affine>)")
    writer = df.write.mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(path)


def read_tensors(spark, path: str):
    """Read a Parquet tensor table written by :func:`write_tensors`."""
    df = spark.read.parquet(path)
    if not _tensor_columns(df):
        raise ConfigError(f"{path}: not a tensor table (no struct<data,dtype,shape,affine> column)")
    return df
