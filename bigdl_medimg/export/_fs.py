"""File access for executors: local paths, ``file:``, ``hdfs://`` and ``s3(a)://`` URIs via ``pyarrow.fs``.

Spark's readers cover input; Python code writing files on executors (masks,
DICOM SEG) goes through here.  ``hdfs://`` needs libhdfs on the executors
(``ARROW_LIBHDFS_DIR`` and ``CLASSPATH=$(hadoop classpath --glob)``, as on
Cloudera nodes); ``s3a://`` is read as ``s3://`` with pyarrow's own S3 client.
"""
from __future__ import annotations

import re

__all__ = ["resolve", "read_bytes", "open_input", "write_bytes", "join", "safe_name"]


def resolve(uri: str):
    """``(pyarrow FileSystem, path)`` for a local path or URI."""
    import os

    from pyarrow import fs

    uri = str(uri)
    if re.match(r"^s3[an]://", uri):
        uri = "s3://" + uri[6:]
    if "://" not in uri and not uri.startswith("file:"):
        return fs.LocalFileSystem(), os.path.abspath(uri)
    return fs.FileSystem.from_uri(uri)


def read_bytes(uri: str) -> bytes:
    fsys, path = resolve(uri)
    with fsys.open_input_stream(path, compression=None) as f:
        return f.read()


def open_input(uri: str):
    """A seekable binary file object (pydicom can stop reading before the pixels)."""
    fsys, path = resolve(uri)
    return fsys.open_input_file(path)


def write_bytes(uri: str, data: bytes) -> str:
    """Write ``data`` to ``uri`` (parents created, an existing file replaced); returns the path written."""
    fsys, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fsys.create_dir(parent, recursive=True)
    # compression=None: pyarrow would otherwise gzip a ".gz" name a second time
    with fsys.open_output_stream(path, compression=None) as f:
        f.write(data)
    return path


def join(base: str, name: str) -> str:
    return str(base).rstrip("/") + "/" + name


def safe_name(value) -> str:
    """A file-name-safe rendering of a key (letters, digits, ``._-`` kept; anything else ``_``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("._")
    if not s:
        raise ValueError("a key is empty or has no letters or digits to make a file name from")
    return s
