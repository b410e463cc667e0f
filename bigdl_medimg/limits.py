"""Allocation limits of the decoders: a header's declared size is checked before anything is allocated.

A hostile or damaged header can declare a 60000x60000x60000 volume; every
decoder (DICOM, NIfTI, MetaImage, PNG/JPEG) computes the declared decoded size
from the header alone and refuses the file with a clear error when it is above
:func:`max_image_bytes`.

The limit is read from the environment variable ``BIGDL_MEDIMG_MAX_IMAGE_BYTES``
(bytes; suffixes ``k``, ``m``, ``g`` allowed) each time a file is decoded, so it
reaches executors: on a cluster set it with
``--conf spark.executorEnv.BIGDL_MEDIMG_MAX_IMAGE_BYTES=16g`` (and in the
driver's environment for local mode).  Default: 8 GiB.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

from .errors import ConfigError

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "ENV_VAR", "max_image_bytes", "check_declared_size"]

DEFAULT_MAX_IMAGE_BYTES = 8 << 30
ENV_VAR = "BIGDL_MEDIMG_MAX_IMAGE_BYTES"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def max_image_bytes() -> int:
    """The current limit in bytes (``$BIGDL_MEDIMG_MAX_IMAGE_BYTES`` or 8 GiB)."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if not raw:
        return DEFAULT_MAX_IMAGE_BYTES
    num, unit = (raw[:-1], raw[-1]) if raw[-1] in _UNITS and not raw[-1].isdigit() else (raw, "")
    try:
        value = int(float(num) * _UNITS[unit.rstrip("b")])
    except (ValueError, KeyError):
        raise ConfigError(f"{ENV_VAR}={raw!r} is not a size (bytes, or with k/m/g/t)") from None
    if value <= 0:
        raise ConfigError(f"{ENV_VAR} must be positive, got {raw!r}")
    return value


def _fmt(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_declared_size(dims: Sequence[int], itemsize: float, error_cls, path: str, what: str = "image") -> int:
    """Raise ``error_cls(path, ...)`` unless the declared ``dims`` x ``itemsize`` fit the limit; return the bytes.

    Negative or zero dimensions are refused too (a damaged header).
    """
    dims = [int(d) for d in dims]
    if any(d < 0 for d in dims):
        raise error_cls(path, f"header declares a negative {what} size {'x'.join(map(str, dims))}")
    n = math.prod(dims) * itemsize
    limit = max_image_bytes()
    if n > limit:
        raise error_cls(path, f"header declares a {'x'.join(map(str, dims))} {what} ({_fmt(int(n))} decoded), "
                              f"above the {_fmt(limit)} limit (raise it with {ENV_VAR})")
    return int(n)
