"""Param helpers of every Spark ML stage in the library (pyspark.ml conventions).

:func:`param` declares a class-level ``Param``.  Each stage, or the Params
mixin it inherits, writes out a camelCase ``setX`` / ``getX`` pair per Param,
typed and documented, as pyspark.ml's own classes do, so ``help()``, IDEs and
static checkers see them (``tests/test_params.py`` holds every stage to it).
:func:`param_type` is the Python type a Param holds, read from its converter.
"""
from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters

__all__ = ["param", "param_type", "to_settings"]


def to_settings(value) -> dict:
    """Type converter of Params holding a dict of settings (JSON-able: saved with the stage)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict of settings, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


# type converter -> the Python type a Param holds
_TYPES = {
    to_settings: dict,
    TypeConverters.toString: str, TypeConverters.toInt: int, TypeConverters.toFloat: float,
    TypeConverters.toBoolean: bool, TypeConverters.toListInt: list[int], TypeConverters.toListFloat: list[float],
    TypeConverters.toListString: list[str], TypeConverters.toList: list,
}


def param(name: str, doc: str, conv) -> Param:
    """A class-level Param (pyspark.ml convention)."""
    return Param(Params._dummy(), name, doc, typeConverter=conv)


def param_type(p: Param):
    """The Python type a Param holds, from its type converter (``object`` when unknown)."""
    return _TYPES.get(p.typeConverter, object)
