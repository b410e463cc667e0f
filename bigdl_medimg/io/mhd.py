"""ITK MetaImage (``.mhd`` + data file, or single-file ``.mha``) decoding and writing.

Arrays follow the tensor contract: MetaImage data is stored x-fastest, so a
3-D image with ``DimSize = nx ny nz`` becomes an array ``(nz, ny, nx)``;
multi-channel images are channels-first.  ITK's world frame is LPS+; the affine
is converted to RAS+.  ``TransformMatrix`` holds the direction of each image
axis in turn (ITK's reading), ``Offset`` (alias ``Origin``/``Position``) the
first voxel's position.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CONTROL_FLOW, ImageReadError, record_error
from ..tensor import LPS_TO_RAS

__all__ = ["MhdReadError", "parse_mhd_header", "data_file_of", "decode_mhd", "write_mhd", "MET_TYPES"]

MET_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
             "MET_UINT": "u4", "MET_LONG": "i8", "MET_ULONG": "u8", "MET_LONG_LONG": "i8",
             "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}
_MAX_HEADER = 64 * 1024


class MhdReadError(ImageReadError):
    """A MetaImage header or its data file cannot be read."""


def parse_mhd_header(content: bytes, path: str) -> tuple[dict[str, str], int]:
    """Parse ``key = value`` lines; returns the fields and the byte offset after the header.

    The header ends with the ``ElementDataFile`` line (data follows for ``LOCAL``).
    """
    fields: dict[str, str] = {}
    pos = 0
    head = content[:_MAX_HEADER]
    while pos < len(head):
        end = head.find(b"\n", pos)
        end = len(head) if end < 0 else end
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise MhdReadError(path, f"not a MetaImage header (line without '=': {line[:40]!r})")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "ElementDataFile" not in fields or "DimSize" not in fields:
        raise MhdReadError(path, "not a MetaImage header (no DimSize/ElementDataFile)")
    return fields, pos


def data_file_of(fields: dict[str, str], header_path: str) -> str | None:
    """Path of the data file next to the header, or None for ``LOCAL`` data."""
    name = fields["ElementDataFile"]
    if name.upper() == "LOCAL":
        return None
    if name.upper().startswith("LIST") or "%" in name:
        raise MhdReadError(header_path, f"ElementDataFile {name!r} (file lists/patterns) is not supported")
    return header_path.rsplit("/", 1)[0] + "/" + name if "/" in header_path else name


def _floats(fields, keys, n, default):
    for k in keys:
        if k in fields:
            vals = [float(v) for v in fields[k].split()]
            if len(vals) < n:
                raise ValueError(f"{k} has {len(vals)} values, expected {n}")
            return np.asarray(vals[:n])
    return np.asarray(default, dtype=np.float64)


def decode_mhd(header: bytes, path: str, data: bytes | None = None, *, max_bytes: int = 8 << 30):
    """Decode a MetaImage.

    Parameters
    ----------
    header : bytes
        The ``.mhd``/``.mha`` file content (with the data for ``LOCAL``).
    data : bytes, optional
        The separate data file's content.

    Returns
    -------
    array : ndarray
    affine : (4, 4) ndarray (RAS+)
    """
    from ..limits import check_declared_size

    fields, offset = parse_mhd_header(header, path)
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        ndims = int(fields.get("NDims", len(dims)))
        etype = fields.get("ElementType", "")
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        spacing = _floats(fields, ("ElementSpacing", "ElementSize"), ndims, [1.0] * ndims)
        origin = _floats(fields, ("Offset", "Origin", "Position"), ndims, [0.0] * ndims)
        direction = _floats(fields, ("TransformMatrix", "Rotation", "Orientation"), ndims * ndims,
                            np.eye(ndims).ravel()).reshape(ndims, ndims)
    except (ValueError, KeyError) as exc:
        raise MhdReadError(path, f"bad MetaImage header: {exc}") from None
    if ndims not in (2, 3) or len(dims) != ndims or min(dims) < 1:
        raise MhdReadError(path, f"unsupported dimensions NDims={ndims} DimSize={dims}")
    if etype not in MET_TYPES:
        raise MhdReadError(path, f"unsupported ElementType {etype!r}")
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = np.dtype(MET_TYPES[etype]).newbyteorder(">" if msb else "<")
    need = check_declared_size(list(dims) + [channels], dtype.itemsize, MhdReadError, path)
    count = need // dtype.itemsize
    if need > max_bytes:
        raise MhdReadError(path, f"declares {need} bytes of data, over the {max_bytes}-byte limit")
    raw = header[offset:] if data is None else data
    if fields.get("CompressedData", "False").lower() == "true":
        try:
            d = zlib.decompressobj()
            raw = d.decompress(raw, need + 1)
        except zlib.error as exc:
            raise MhdReadError(path, f"damaged compressed data: {exc}") from None
    if len(raw) < need:
        raise MhdReadError(path, f"truncated data: {len(raw)} bytes, header declares {need}")
    arr = np.frombuffer(raw, dtype=dtype, count=count)
    shape = tuple(reversed(dims)) + ((channels,) if channels > 1 else ())
    arr = arr.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    if channels > 1:
        arr = np.moveaxis(arr, -1, 0)
    lps = np.eye(4)
    if ndims == 3:
        for col, ax in enumerate((2, 1, 0)):            # array axis 0 is z, 1 is y, 2 is x
            lps[:3, col] = direction[ax] * spacing[ax]
        lps[:3, 3] = origin
    else:
        lps[:2, 0] = direction[1] * spacing[1]
        lps[:2, 1] = direction[0] * spacing[0]
        lps[:2, 3] = origin
    return np.ascontiguousarray(arr), LPS_TO_RAS @ lps


def write_mhd(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *, compress: bool = False) -> str:
    """Write a 3-D array ``(z, y, x)`` with a RAS+ affine as ``.mhd`` + ``.raw``."""
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise MhdReadError(str(path), f"write_mhd needs a 3-D array, got {arr.shape}")
    inv = {v: k for k, v in MET_TYPES.items() if not k.endswith("LONG_LONG")}
    code = np.dtype(arr.dtype).newbyteorder("<").str[1:]
    if code not in inv:
        raise MhdReadError(str(path), f"no MetaImage type for dtype {arr.dtype}")
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = [float(np.linalg.norm(lps[:3, c])) for c in (2, 1, 0)]     # x, y, z
    direction = [lps[:3, c] / s for c, s in zip((2, 1, 0), spacing)]
    path = Path(path)
    raw_name = path.with_suffix(".raw" if not compress else ".zraw").name
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    if compress:
        data = zlib.compress(data)
    lines = [
        "ObjectType = Image", "NDims = 3", "BinaryData = True", "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compress}",
        *( [f"CompressedDataSize = {len(data)}"] if compress else []),
        "TransformMatrix = " + " ".join(f"{v:.10g}" for d in direction for v in d),
        "Offset = " + " ".join(f"{v:.10g}" for v in lps[:3, 3]),
        "CenterOfRotation = 0 0 0", "AnatomicalOrientation = RAI",
        "ElementSpacing = " + " ".join(f"{v:.10g}" for v in spacing),
        "DimSize = " + " ".join(str(s) for s in reversed(arr.shape)),
        f"ElementType = {inv[code]}", f"ElementDataFile = {raw_name}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    (path.parent / raw_name).write_bytes(data)
    return str(path)


def decode_mhd_row(header: bytes, path: str, data: bytes | None, data_path: str | None) -> dict[str, Any]:
    """Reader row for one MetaImage; never raises for bad input."""
    from ..tensor import from_numpy

    row: dict[str, Any] = {"image": None, "error": None, "data_path": data_path}
    try:
        if data_path is not None and data is None:
            raise MhdReadError(path, f"data file {data_path.rsplit('/', 1)[-1]} not found next to the header")
        arr, aff = decode_mhd(header, path, data)
        row["image"] = from_numpy(arr, aff)
    except BaseException as exc:
        if isinstance(exc, CONTROL_FLOW):
            raise
        record_error(row, exc, MhdReadError, path)
    return row
