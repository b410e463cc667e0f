"""Reading DICOM element values leniently: a missing, empty or malformed value is None, never an exception."""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["as_str", "as_int", "as_float", "as_first_int", "as_floats", "get_value", "first_item"]


def as_str(v: Any) -> str | None:
    """A stripped string, None when empty."""
    s = str(v).strip()
    return s or None


def as_int(v: Any) -> int | None:
    """An int (IS, US, ...)."""
    return int(v)


def as_float(v: Any) -> float | None:
    """A float (DS, FD, ...)."""
    return float(v)


def as_first_int(v: Any) -> int | None:
    """The first value of a possibly multi-valued IS (EchoNumbers may list several)."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return int(v)
    return int(list(v)[0]) if len(v) else None


def as_floats(v: Any) -> list[float] | None:
    """A list of floats of a single- or multi-valued element."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return [float(v)]
    return [float(x) for x in v]


def get_value(ds, keyword: str, conv: Callable[[Any], Any]):
    """``conv`` of element ``keyword`` of ``ds``; None when absent, empty or not convertible."""
    try:
        el = ds.get(keyword)
        if el is None or el == "":
            return None
        return conv(el)
    except Exception:
        return None


def first_item(ds, seq: str):
    """The first item of sequence ``seq`` of ``ds`` (None when absent or empty)."""
    try:
        s = ds.get(seq)
        return s[0] if s else None
    except Exception:
        return None
