"""Param helpers of every Spark ML stage in the library (pyspark.ml conventions).

:func:`param` declares a class-level ``Param``; :func:`with_accessors` gives a
stage class a camelCase ``setX`` / ``getX`` pair for each of its Params, as
pyspark.ml's own classes have them.  The accessors are real functions with a
name, a qualified name, a numpydoc docstring built from the Param's doc and
type annotations derived from its type converter, so ``help()``,
``inspect.signature`` and IDEs that introspect show them.  A class that
writes an accessor itself keeps its own.
"""
from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters

__all__ = ["param", "with_accessors", "param_type"]

# type converter -> the Python type a Param holds (for annotations and docstrings)
_TYPES = {
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


def _type_name(t) -> str:
    return getattr(t, "__name__", None) if not hasattr(t, "__args__") else str(t)


def _setter(name: str, p: Param, owner: str):
    t = param_type(p)

    def setter(self, value):
        return self._set(**{name: value})

    cap = name[0].upper() + name[1:]
    setter.__name__ = f"set{cap}"
    setter.__qualname__ = f"{owner}.set{cap}"
    setter.__annotations__ = {"value": t, "return": owner}
    setter.__doc__ = (f"Set :py:attr:`{name}`: {p.doc}.\n\n"
                      f"Parameters\n----------\nvalue : {_type_name(t)}\n\n"
                      f"Returns\n-------\n{owner}\n    this stage, for chaining\n")
    return setter


def _getter(name: str, p: Param, owner: str):
    t = param_type(p)

    def getter(self):
        return self.getOrDefault(name)

    cap = name[0].upper() + name[1:]
    getter.__name__ = f"get{cap}"
    getter.__qualname__ = f"{owner}.get{cap}"
    getter.__annotations__ = {"return": t}
    getter.__doc__ = (f"The value of :py:attr:`{name}` (set or default): {p.doc}.\n\n"
                      f"Returns\n-------\n{_type_name(t)}\n")
    return getter


def with_accessors(cls):
    """Add ``setX``/``getX`` for every Param of ``cls`` and its bases that has none yet."""
    params = {name: value for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
              if isinstance(value, Param)}
    for name, p in params.items():
        cap = name[0].upper() + name[1:]
        if not hasattr(cls, "set" + cap):
            setattr(cls, "set" + cap, _setter(name, p, cls.__name__))
        if not hasattr(cls, "get" + cap):
            setattr(cls, "get" + cap, _getter(name, p, cls.__name__))
    return cls
