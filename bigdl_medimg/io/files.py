"""File access from Python anywhere (driver or executor): local paths, ``file:``, ``hdfs://`` and ``s3(a)://``
URIs via ``pyarrow.fs``, whose HDFS client is Hadoop's own ``libhdfs``.

Spark's readers cover input; Python code writing files (masks, DICOM SEG,
de-identified files, training checkpoints written by a torch rank or by the
driver) goes through here.  :mod:`bigdl_medimg.io.hfs` answers the same
questions on the driver through the session's JVM.  ``hdfs://`` needs libhdfs on the executors
(``ARROW_LIBHDFS_DIR`` and ``CLASSPATH=$(hadoop classpath --glob)``, as on
Cloudera nodes); ``s3a://`` is read as ``s3://`` with pyarrow's own S3 client.
"""
from __future__ import annotations

import re

__all__ = ["resolve", "read_bytes", "open_input", "write_bytes", "join", "safe_name", "exists", "is_file",
           "list_names", "make_dirs", "remove", "move", "local_path"]


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
    """The bytes of file ``uri``."""
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
    """``base`` with ``name`` appended as a path segment (URIs keep their scheme)."""
    return str(base).rstrip("/") + "/" + name


def safe_name(value) -> str:
    """A file-name-safe rendering of a key (letters, digits, ``._-`` kept; anything else ``_``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("._")
    if not s:
        raise ValueError("a key is empty or has no letters or digits to make a file name from")
    return s


def _info(uri: str):
    fsys, path = resolve(uri)
    return fsys, path, fsys.get_file_info(path)


def exists(uri: str) -> bool:
    """Whether ``uri`` names a file or a folder."""
    from pyarrow import fs

    return _info(uri)[2].type != fs.FileType.NotFound


def is_file(uri: str) -> bool:
    """Whether ``uri`` names a file."""
    from pyarrow import fs

    return _info(uri)[2].type == fs.FileType.File


def list_names(uri: str) -> list[str]:
    """Sorted names of the entries of folder ``uri`` (``[]`` when it is not a folder)."""
    from pyarrow import fs

    fsys, path, info = _info(uri)
    if info.type != fs.FileType.Directory:
        return []
    return sorted(i.base_name for i in fsys.get_file_info(fs.FileSelector(path)))


def make_dirs(uri: str) -> None:
    """Create folder ``uri`` and its parents (no error when it exists)."""
    fsys, path = resolve(uri)
    fsys.create_dir(path, recursive=True)


def remove(uri: str) -> None:
    """Delete the file or folder tree ``uri`` (no error when it does not exist)."""
    from pyarrow import fs

    fsys, path, info = _info(uri)
    if info.type == fs.FileType.Directory:
        fsys.delete_dir(path)
    elif info.type != fs.FileType.NotFound:
        fsys.delete_file(path)


def move(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` on one file system (atomic on local disks and HDFS)."""
    fsys, a = resolve(src)
    _, b = resolve(dst)
    fsys.move(a, b)


def local_path(uri: str) -> str | None:
    """The local path of a plain path or ``file:`` URI; None for a remote file system."""
    from pyarrow import fs

    fsys, path = resolve(uri)
    return path if isinstance(fsys, fs.LocalFileSystem) else None
