"""Lazy package exports: public names are imported on first use (no JVM, no pyspark at import time)."""
from __future__ import annotations

import importlib
from typing import Callable, Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, namespace: dict, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``exports`` (name -> module, relative names like ``".stages"`` allowed).

    The resolved value is cached in ``namespace`` (the package's ``globals()``).
    """
    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
