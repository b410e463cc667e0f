"""Every stage's Params have written-out, typed and documented setX/getX (pyspark.ml convention)."""
from __future__ import annotations

import ast
import inspect
import typing

import pytest

import bigdl_medimg.deid as deid
import bigdl_medimg.metrics as metrics
import bigdl_medimg.ml as ml
import bigdl_medimg.transforms as transforms
from bigdl_medimg.params import param_type

# the packages load their members lazily: walk their public names
STAGES = sorted({obj for mod in (ml, transforms, metrics, deid) for obj in (getattr(mod, n) for n in mod.__all__)
                 if inspect.isclass(obj) and obj.__module__.startswith("bigdl_medimg")
                 and hasattr(obj, "params") and any(hasattr(obj, n) for n in ("_transform", "_fit", "_evaluate"))},
                key=lambda c: c.__name__)


def _declared_in_source(fn) -> bool:
    """The function is a ``def`` in a module's source (not made at import time)."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(fn)))
    return any(isinstance(n, ast.FunctionDef) and n.name == fn.__name__ and n.lineno == fn.__code__.co_firstlineno
               for n in ast.walk(tree))


def test_stage_list_is_complete():
    names = {c.__name__ for c in STAGES}
    assert {"SegmentationEstimator", "SegmentationModel", "ClassificationEstimator", "ClassificationModel",
            "PatchSampler", "Resample", "DiceEvaluator", "MultiLabelAUCEvaluator", "Deidentify"} <= names


@pytest.mark.parametrize("cls", STAGES, ids=lambda c: c.__name__)
def test_accessors_written_out_typed_documented(cls):
    stage = cls()
    assert stage.params, cls
    for p in stage.params:
        cap = p.name[0].upper() + p.name[1:]
        setter, getter = getattr(cls, "set" + cap, None), getattr(cls, "get" + cap, None)
        assert setter is not None and getter is not None, f"{cls.__name__}.{p.name}"
        for fn in (setter, getter):
            assert fn.__module__.startswith("bigdl_medimg"), fn
            assert _declared_in_source(fn), fn.__qualname__
            assert p.name in (fn.__doc__ or ""), fn.__qualname__
        hints = typing.get_type_hints(getter)
        assert hints["return"] == param_type(p), getter.__qualname__
        assert list(inspect.signature(setter).parameters) == ["self", "value"]
        assert typing.get_type_hints(setter)["value"] == param_type(p), setter.__qualname__
        # behaviour: the getter gives the default (or raises when there is none), the setter chains and sets
        if stage.hasDefault(p):
            assert getattr(stage, "get" + cap)() == stage.getOrDefault(p)
            value = stage.getOrDefault(p)
            assert getattr(stage, "set" + cap)(value) is stage
            assert stage.isSet(p) and getattr(stage, "get" + cap)() == value
