"""Driver-side questions about files on any file system Spark reads (``hdfs://``, ``s3a://``, ``file://``).

The readers never need these (Spark lists and reads the files on the
executors); dataset and task loaders use them to check a layout and to read
small side files (label tables, lists) through Hadoop's ``FileSystem`` with
the session's Hadoop configuration, so a folder on HDFS works like a local one.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["to_uri", "join", "exists", "is_dir", "list_names", "read_text", "read_bytes", "write_bytes"]


def to_uri(path) -> str:
    """A local path as a ``file://`` URI; URIs (``hdfs://``, ``s3a://``, ``file:``) unchanged."""
    path = str(path)
    return path if "://" in path or path.startswith("file:") else Path(path).resolve().as_uri()


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended as path segments."""
    return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])


def _fs(spark, uri: str):
    sc = spark.sparkContext
    path = sc._jvm.org.apache.hadoop.fs.Path(to_uri(uri))
    return path.getFileSystem(sc._jsc.hadoopConfiguration()), path


def _status(spark, uri: str):
    fs, path = _fs(spark, uri)
    try:
        return fs.getFileStatus(path)
    except Exception as exc:  # py4j wraps java.io.FileNotFoundException
        if "FileNotFoundException" in str(exc):
            return None
        raise


def exists(spark, uri: str) -> bool:
    """Whether ``uri`` names a file or a folder."""
    return _status(spark, uri) is not None


def is_dir(spark, uri: str) -> bool:
    """Whether ``uri`` names a folder."""
    st = _status(spark, uri)
    return st is not None and st.isDirectory()


def list_names(spark, uri: str) -> list[str]:
    """Names of the entries of folder ``uri`` (``[]`` when it does not exist)."""
    if not is_dir(spark, uri):
        return []
    fs, path = _fs(spark, uri)
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(path))


def read_text(spark, uri: str, limit: int = 64 * 2 ** 20) -> str:
    """The UTF-8 text of the small file ``uri`` (a label table, a list); refuses files over ``limit`` bytes."""
    return read_bytes(spark, uri, limit).decode("utf-8")


def read_bytes(spark, uri: str, limit: int = 2 ** 30) -> bytes:
    """The bytes of file ``uri`` (a saved network's weights); refuses files over ``limit`` bytes."""
    st = _status(spark, uri)
    if st is None or st.isDirectory():
        raise FileNotFoundError(f"{uri}: no such file")
    if st.getLen() > limit:
        raise ValueError(f"{uri}: {st.getLen()} bytes, more than the {limit} read for a side file")
    fs, path = _fs(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark, uri: str, data: bytes) -> None:
    """Write ``data`` to file ``uri`` (replacing it), creating its folder."""
    fs, path = _fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
