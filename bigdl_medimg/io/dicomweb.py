"""Images straight from a PACS: DICOMweb (QIDO-RS on the driver, WADO-RS on the executors), results back with
STOW-RS (:func:`write_dicomweb`).

:func:`read_dicomweb` finds the instances matching a query with QIDO-RS on
the driver (paged with ``limit`` and ``offset``), then retrieves them on the
executors with WADO-RS (``application/dicom`` multipart, one request per
series, the series spread over the partitions) and decodes them with the
same decoders as :func:`~bigdl_medimg.io.readers.read_dicom`, into the same
columns (``level="instance"``) or, with ``level="series"``, assembled like
:func:`~bigdl_medimg.io.readers.read_dicom_series` with the same checks.

The HTTP layer is ``dicomweb-client`` (its multipart parser) on a
``requests`` session with retries and backoff on 429 and 5xx, a timeout, TLS
with a CA bundle and a cap on concurrent requests per executor process.

Credentials come from the driver's environment
(``BIGDL_MEDIMG_DICOMWEB_USER`` and ``BIGDL_MEDIMG_DICOMWEB_PASSWORD``, or
``BIGDL_MEDIMG_DICOMWEB_TOKEN``) or from a credentials file (JSON with
``user`` and ``password``, or ``token``).  They travel to the executors
inside the tasks only: never in a column, a log line, an error text or a
saved stage (:class:`Credentials` does not print them).

Failures are row errors without patient data: ``DicomWebError: HTTP 404 ...``
naming the series and instance UIDs.  A server that cannot be reached or
refuses the credentials fails the query on the driver with one line.
"""
from __future__ import annotations

from typing import Iterator, Mapping

from ..errors import ConfigError
from .dicomweb_http import (ENV_CA_BUNDLE, ENV_PASSWORD, ENV_TOKEN, ENV_USER, Credentials, DicomWebConnection,
                            DicomWebError, RequestSlots, http_reason, load_credentials, resolve_credentials)
from .images import XRAY_MODALITIES

# (the HTTP side's names are re-exported: users import everything DICOMweb from here)
__all__ = ["read_dicomweb", "write_dicomweb", "parse_dicomweb_uri", "read_dicomweb_uri", "query_instances",
           "instance_path", "is_instance_path", "retrieve_headers", "Credentials", "resolve_credentials",
           "load_credentials", "DicomWebConnection", "DicomWebError", "RequestSlots", "ENV_USER", "ENV_PASSWORD",
           "ENV_TOKEN", "ENV_CA_BUNDLE"]

#: QIDO-RS query keys understood by :func:`read_dicomweb` (DICOM keywords; values as QIDO-RS takes them).
QUERY_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "ModalitiesInStudy", "Modality", "StudyDate",
              "SeriesDescription", "BodyPartExamined", "PatientID", "AccessionNumber")
#: The study-level ones: matched by a study search, the others by a series search within each study.
STUDY_KEYS = ("StudyInstanceUID", "ModalitiesInStudy", "StudyDate", "PatientID", "AccessionNumber")
_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"
#: Instances per partition :func:`read_dicomweb` aims at when not told how many partitions to use.
INSTANCES_PER_PARTITION = 256


def _value(item: Mapping, tag: str):
    v = (item.get(tag) or {}).get("Value") or []
    return v[0] if v else None


def _qido(client, conn: DicomWebConnection, path: str, filters: Mapping, fields, limit: int, offset: int) -> list:
    """One QIDO-RS page: ``GET {url}/{path}?Keyword=value&...`` as DICOM JSON.

    The query string is written here, not by ``requests``: a value's ``*`` and
    ``?`` wildcards go as they are (percent-encoded, Orthanc 1.10 takes them
    literally), and a space, which such a server cannot match either, goes as
    ``?`` (any one character); :func:`_matches` then keeps the exact matches.
    """
    from urllib.parse import quote

    args = [f"{k}={quote(str(v).replace(' ', '?'), safe='*?-.,')}" for k, v in filters.items()]
    args += [f"includefield={f}" for f in fields] + [f"limit={int(limit)}", f"offset={int(offset)}"]
    response = client._http_get(f"{conn.url.rstrip('/')}/{path}?{'&'.join(args)}",
                                headers={"Accept": "application/dicom+json"})
    return response.json() if response.content else []


def _matches(item: Mapping, filters: Mapping) -> bool:
    """Whether a QIDO-RS answer really matches ``filters``' values that hold a space (sent as ``?`` by
    :func:`_qido`): DICOM wildcard matching (``*``, ``?``) on the answer's own value."""
    from fnmatch import fnmatchcase

    from pydicom.datadict import tag_for_keyword

    for k, v in filters.items():
        if not isinstance(v, str) or " " not in v:
            continue
        tag = tag_for_keyword(k)
        got = (item.get(f"{tag:08X}") or {}).get("Value") if tag is not None else None
        pattern = v.replace("[", "[[]")  # fnmatch's classes are not DICOM wildcards
        if got is not None and not any(fnmatchcase(str(x), pattern) for x in got):
            return False
    return True


def query_instances(conn: DicomWebConnection, query: Mapping | None = None,
                    page_size: int = 500) -> tuple[list[tuple], list[tuple]]:
    """``([(study, series, sop instance UID)], [(keyword, uid)])``: the instances matching ``query`` (QIDO-RS on
    the driver, paged) and the study or series UIDs the query named that matched nothing.

    ``query`` keys are DICOM keywords (:data:`QUERY_KEYS`); a list value for
    ``StudyInstanceUID`` or ``SeriesInstanceUID`` is one search per UID;
    ``StudyDate`` takes a DICOM range (``"20240101-20241231"``); values may hold
    the wildcards ``*`` and ``?``, and a value with a space matches exactly on
    any server (:func:`_qido`, :func:`_matches`).
    """
    query = dict(query or {})
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise ConfigError(f"read_dicomweb: unknown query key(s) {unknown}; use {', '.join(QUERY_KEYS)}")
    lists = {k: v for k, v in query.items() if isinstance(v, (list, tuple))}
    if len(lists) > 1:
        raise ConfigError("read_dicomweb: only one query key may hold a list of values")
    variants = [query] if not lists else [{**query, k: x} for k, vs in lists.items() for x in dict.fromkeys(vs)]
    client = conn.client()

    def paged(path: str, filters: Mapping, fields=()) -> list[dict]:
        items, offset = [], 0
        while True:
            try:
                page = _qido(client, conn, path, filters, fields, page_size, offset)
            except Exception as exc:
                raise DicomWebError(f"DICOMweb query to {conn.where()} failed: {http_reason(exc, conn)}") from None
            items += page
            if len(page) < page_size:
                return [item for item in items if _matches(item, filters)]
            offset += page_size

    out: dict[str, tuple] = {}
    missing = []
    for q in variants:
        filters = {k: v for k, v in q.items() if v not in (None, "")}
        study_filters = {k: v for k, v in filters.items() if k in STUDY_KEYS and k != "StudyInstanceUID"}
        if study_filters:
            # study-level keys (ModalitiesInStudy, StudyDate...) are matched by a study search: a series search
            # need not support them (Orthanc ignores ModalitiesInStudy there and matches nothing)
            studies = paged("studies", {k: v for k, v in filters.items() if k in STUDY_KEYS})
            series_filters = {k: v for k, v in filters.items() if k not in STUDY_KEYS}
            series = [(_value(st, _STUDY), _value(item, _SERIES)) for st in studies if _value(st, _STUDY)
                      for item in paged(f"studies/{_value(st, _STUDY)}/series", series_filters)]
        else:
            # series first (a StudyInstanceUID is matched there too), then the instances of each series
            series = [(_value(item, _STUDY), _value(item, _SERIES))
                      for item in paged("series", filters, fields=["StudyInstanceUID"])]
        if not series:  # a UID asked for by name that the server does not have is reported, not dropped
            missing += [(k, str(filters[k])) for k in ("SeriesInstanceUID", "StudyInstanceUID") if k in filters][:1]
        for study, uid in series:
            for inst in paged(f"studies/{study}/series/{uid}/instances", {}):
                sop = _value(inst, _SOP)
                if sop:
                    out[sop] = (study, uid, sop)
    return sorted(out.values()), missing


def instance_path(conn: DicomWebConnection, study: str, series: str, sop: str) -> str:
    """The ``path`` column of a retrieved instance: its WADO-RS address (no credentials)."""
    return f"{conn.url.rstrip('/')}/studies/{study}/series/{series}/instances/{sop}"


def is_instance_path(conn: DicomWebConnection, path: str) -> bool:
    """Whether ``path`` is an instance's WADO-RS address on ``conn``'s server (:func:`instance_path`)."""
    rest = str(path)[len(conn.url.rstrip("/")):] if str(path).startswith(conn.url.rstrip("/") + "/") else ""
    parts = rest.split("/")
    return len(parts) == 7 and parts[1] == "studies" and parts[3] == "series" and parts[5] == "instances"


def retrieve_headers(conn: DicomWebConnection, paths) -> dict:
    """``{path: pydicom.Dataset}``: the headers (no pixel data) of instances given by their WADO-RS addresses.

    One WADO-RS metadata request per series (DICOM JSON, read with
    ``Dataset.from_json``; bulk data such as Pixel Data is not retrieved): what
    the DICOM SEG and SR writers need to reference a series read with
    :func:`read_dicomweb`.
    """
    import pydicom

    wanted: dict[tuple, dict[str, str]] = {}
    for p in paths:
        if not is_instance_path(conn, p):
            raise DicomWebError("not a WADO-RS instance address on the server read from")
        _, _, study, _, series, _, sop = str(p)[len(conn.url.rstrip("/")):].split("/")
        wanted.setdefault((study, series), {})[sop] = str(p)
    client, out = conn.client(), {}
    for (study, series), by_sop in wanted.items():
        try:
            items = client.retrieve_series_metadata(study, series)
        except Exception as exc:
            raise DicomWebError(f"metadata of series {series}: {http_reason(exc, conn)}") from None
        for item in items:
            sop = _value(item, _SOP)
            if sop in by_sop:
                ds = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda tag, vr, uri: None)
                for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):  # as read with stop_before_pixels
                    if tag in ds:
                        del ds[tag]
                out[by_sop[sop]] = ds
        lost = sorted(set(by_sop) - {_value(i, _SOP) for i in items})
        if lost:
            raise DicomWebError(f"series {series}: no metadata for {len(lost)} instance(s), e.g. {lost[0]}")
    return out


def _series_parts(client, conn: DicomWebConnection, study: str, series: str):
    """The instances of a series (WADO-RS) as the server sent them: each multipart part's bytes, streamed.

    dicomweb-client's public ``iter_series`` parses every part into a pydicom
    Dataset; the readers need the file's bytes, and writing a Dataset back
    costs ~1 ms per instance and may not give the stored bytes back.  So the
    request and the multipart parsing are the client's own (its ``_http_get``
    with the session's retries, its ``_decode_multipart_message``: dicomweb-client
    is pinned below 0.62 in setup.cfg for these), the bytes are kept as they are.
    """
    # transfer-syntax=*: as stored (Orthanc, like most archives, cannot transcode JPEG 2000)
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    url = f"{conn.url.rstrip('/')}/studies/{study}/series/{series}"
    response = client._http_get(url, headers={"Accept": accept}, stream=True)
    if response.headers.get("Content-Type", "").startswith("application/dicom"):  # one part, not wrapped
        yield response.content
        return
    for part in client._decode_multipart_message(response, stream=True):
        yield bytes(part)


def _fetch_partition(conn: DicomWebConnection, batch_rows: int):
    """The executor side: retrieve each series of a partition once; ``(path, content, fetch_error, UIDs)`` rows.

    The partition's instance references (a few UIDs each) are gathered first:
    Arrow hands them over in small batches, and fetching per batch would
    retrieve a series once per batch.  Each series is then streamed
    (:func:`_series_parts`), its instances leave in batches of ``batch_rows`` as
    they arrive, and the instances it did not deliver (an error mid-stream, a
    truncated or unreadable part, an instance deleted since the query) get an
    error row.
    """

    def run(batches: Iterator):
        import io

        import pyarrow as pa
        import pydicom

        schema = pa.schema([("path", pa.string()), ("content", pa.binary()), ("fetch_error", pa.string()),
                            ("study_instance_uid", pa.string()), ("series_instance_uid", pa.string()),
                            ("sop_instance_uid", pa.string())])
        pending: list[tuple] = []

        def flush(force: bool = False):
            if pending and (force or len(pending) >= batch_rows):
                cols = list(zip(*pending))
                pending.clear()
                return pa.RecordBatch.from_arrays([pa.array(list(c), t.type) for c, t in zip(cols, schema)],
                                                  schema=schema)
            return None

        missing, by_series = [], {}
        for batch in batches:
            for r in batch.to_pylist():
                if r["missing"]:  # (keyword, uid) of the query that matched nothing
                    missing.append(r["missing"])
                else:
                    by_series.setdefault((r["study"], r["series"]), []).append(r["sop"])
        for m in missing:
            key, uid = m.split("=", 1)
            level = "series" if key == "SeriesInstanceUID" else "studies"
            pending.append((f"{conn.url.rstrip('/')}/{level}/{uid}", None, f"DicomWebError: {key} {uid} not found "
                            "on the server", uid if level == "studies" else None, uid if level == "series" else None,
                            None))
        if by_series:
            client, slots = conn.client(), RequestSlots(conn.where(), conn.max_concurrent)
        for (study, series), sops in by_series.items():
            wanted, done, error = set(sops), set(), None
            try:
                with slots:
                    # transfer-syntax=*: as stored (Orthanc, like most archives, cannot transcode JPEG 2000)
                    for content in _series_parts(client, conn, study, series):
                        try:
                            sop = str(pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True, force=True,
                                                      specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                        except Exception:  # a part that is no DICOM: its instance stays "not returned"
                            continue
                        if sop not in wanted or sop in done:  # stored after the query, or sent twice
                            continue
                        done.add(sop)
                        pending.append((instance_path(conn, study, series, sop), content, None, study, series, sop))
                        out = flush()
                        if out is not None:
                            yield out
            except Exception as exc:
                error = f"DicomWebError: series {series}: {http_reason(exc, conn)}"
            for sop in sops:
                if sop not in done:
                    pending.append((instance_path(conn, study, series, sop), None, error or
                                    f"DicomWebError: instance {sop} was not returned with series {series}",
                                    study, series, sop))
                    out = flush()
                    if out is not None:
                        yield out
        out = flush(force=True)
        if out is not None:
            yield out

    return run


def read_dicomweb(spark, url: str, *, query: Mapping | None = None, level: str = "instance",
                  mode: str = "permissive", credentials: Credentials | str | None = None,
                  ca_bundle: str | None = None, timeout: float = 30.0, retries: int = 3, max_concurrent: int = 4,
                  page_size: int = 500, partitions: int | None = None, deidentify=None, modalities=XRAY_MODALITIES):
    """Read DICOM instances (or series) from a DICOMweb server into the columns of the file readers.

    Parameters
    ----------
    spark : SparkSession
    url : str
        The DICOMweb root (``https://pacs.example.org/dicom-web``).
    query : mapping, optional
        QIDO-RS filters by DICOM keyword (:data:`QUERY_KEYS`): ``StudyInstanceUID`` or
        ``SeriesInstanceUID`` (a value or a list), ``ModalitiesInStudy``, ``StudyDate``
        (``"YYYYMMDD-YYYYMMDD"``), ``SeriesDescription``, ``BodyPartExamined``...
    level : {"instance", "series", "image"}
        One row per instance (as ``read_dicom``), per series (as ``read_dicom_series``) or
        per 2-D radiograph (as ``read_images``, with its ``modalities`` check).
    mode : {"permissive", "failfast"}
    credentials : Credentials or str, optional
        Credentials, or the path of a credentials file; default: the environment
        (``BIGDL_MEDIMG_DICOMWEB_USER``/``_PASSWORD`` or ``_TOKEN``), else none.
    ca_bundle : str, optional
        CA bundle for TLS.
    timeout, retries, max_concurrent : float, int, int
        Seconds per request; retries with backoff on 429, 5xx and lost connections;
        concurrent requests per executor process.
    page_size : int
        QIDO-RS ``limit`` per page.
    partitions : int, optional
        Partitions the series are spread over (default: about
        :data:`INSTANCES_PER_PARTITION` instances each, at least
        ``spark.default.parallelism``, at most one per series).

    Returns
    -------
    DataFrame
        The columns of ``read_dicom`` (``level="instance"``) or ``read_dicom_series``
        (``level="series"``); ``path`` holds each instance's WADO-RS address.
    """
    from .readers import check_mode, dicom_frame, dicom_series_frame, image_frame

    check_mode(mode)
    if level not in ("instance", "series", "image"):
        raise ConfigError(f"read_dicomweb: level must be 'instance', 'series' or 'image', got {level!r}")
    creds = resolve_credentials(credentials)
    conn = DicomWebConnection(url.rstrip("/"), creds, ca_bundle, float(timeout), int(retries), 0.5,
                              int(max_concurrent))
    found, missing = query_instances(conn, query, page_size)
    refs = spark.createDataFrame([(*f, None) for f in found] + [(None, k, None, f"{k}={uid}") for k, uid in missing],
                                 "study string, series string, sop string, missing string")
    n_series = len({s for _, s, _ in found}) + len(missing)
    # a task costs a fixed ~0.1-0.3 s (scheduling, a client, the decode stage): give each a few hundred
    # instances, but keep every core busy
    n_parts = partitions or max(1, min(n_series, max(spark.sparkContext.defaultParallelism,
                                                     -(-len(found) // INSTANCES_PER_PARTITION))))
    batch_rows = max(1, int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")))
    fetched = refs.repartition(n_parts, "series").mapInArrow(
        _fetch_partition(conn, batch_rows), "path string, content binary, fetch_error string, "
                                            "study_instance_uid string, series_instance_uid string, "
                                            "sop_instance_uid string")
    if level == "instance":
        return dicom_frame(fetched, mode=mode, deidentify=deidentify)
    if level == "image":
        return image_frame(fetched, mode=mode, deidentify=deidentify, modalities=modalities)
    # the series reader reads the files twice (headers, then the slices): retrieve each series once
    from pyspark import StorageLevel

    return dicom_series_frame(fetched.persist(StorageLevel.MEMORY_AND_DISK), mode=mode, deidentify=deidentify)


def write_dicomweb(source, url: str, *, credentials: Credentials | str | None = None, ca_bundle: str | None = None,
                   timeout: float = 60.0, retries: int = 3, path_col: str = "path"):
    """Send DICOM files (the SEG and SR files the library writes) to a DICOMweb server with STOW-RS.

    Parameters
    ----------
    source : sequence of str, pandas or Spark DataFrame
        File paths or URIs, or a table with them in ``path_col`` (such as the
        tables ``write_dicom_seg`` and ``write_measurement_reports`` return; rows
        without a path are skipped).
    url : str
        The DICOMweb root.
    credentials, ca_bundle, timeout, retries
        As :func:`read_dicomweb`.

    Returns
    -------
    pandas.DataFrame
        ``path``, ``sop_instance_uid``, ``error`` per file. A send that is retried
        stores the same object again (same SOP Instance UID): sends are idempotent.
    """
    import pandas as pd
    import pydicom

    from . import files

    if hasattr(source, "toPandas"):
        source = source.select(path_col).toPandas()
    paths = list(source[path_col].dropna()) if isinstance(source, pd.DataFrame) else list(source)
    creds = resolve_credentials(credentials)
    conn = DicomWebConnection(url.rstrip("/"), creds, ca_bundle, float(timeout), int(retries), 0.5, 1)
    client = conn.client()
    rows = []
    for p in paths:
        row = {"path": str(p), "sop_instance_uid": None, "error": None}
        try:
            with files.open_input(str(p)) as f:
                ds = pydicom.dcmread(f)
            row["sop_instance_uid"] = str(ds.SOPInstanceUID)
            result = client.store_instances([ds])
            failed = result.get("FailedSOPSequence") if result is not None else None
            if failed:
                reason = failed[0].get("FailureReason")
                raise DicomWebError(f"the server refused the instance (failure reason {reason})")
        except DicomWebError as exc:
            row["error"] = f"DicomWebError: {exc}"
        except Exception as exc:
            row["error"] = f"DicomWebError: {http_reason(exc, conn)}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["path", "sop_instance_uid", "error"])


def read_dicomweb_uri(spark, uri: str, *, level: str, credentials: Credentials | str | None = None, **kwargs):
    """``(frame, connection)``: :func:`read_dicomweb` on a ``dicomweb:`` source (:func:`parse_dicomweb_uri`)
    with its credentials (:func:`resolve_credentials`); the connection is what the SEG/SR writers fetch the
    source headers with.  What the command line reads a ``--data``/``--input`` source with."""
    url, query = parse_dicomweb_uri(uri)
    conn = DicomWebConnection(url, resolve_credentials(credentials))
    return read_dicomweb(spark, conn.url, query=query, level=level, credentials=conn.credentials, **kwargs), conn


def parse_dicomweb_uri(uri: str) -> tuple[str, dict]:
    """``dicomweb:https://host/dicom-web?ModalitiesInStudy=MR&StudyDate=20240101-20241231`` -> ``(url, query)``.

    A ``StudyInstanceUID`` or ``SeriesInstanceUID`` value may list several UIDs separated by commas.
    """
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    if not uri.startswith("dicomweb:"):
        raise ConfigError(f"not a dicomweb: URI: {uri!r}")
    parts = urlsplit(uri[len("dicomweb:"):])
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("a DICOMweb source is written dicomweb:http(s)://host/path[?Keyword=value&...]")
    query: dict = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=False):
        query[k] = v.split(",") if k in ("StudyInstanceUID", "SeriesInstanceUID") and "," in v else v
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query
