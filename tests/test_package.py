"""Package, session and stack checks."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.session import load_profile, resolve_settings


def test_import_does_not_start_jvm_or_import_pyspark():
    code = ("import sys, bigdl_medimg; bigdl_medimg.__version__; "
            "assert 'pyspark' not in sys.modules, 'pyspark imported'; "
            "assert 'py4j' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("profile", ["local", "standalone", "yarn"])
def test_profiles_resolve_with_bigdl_jars(profile):
    s = resolve_settings(profile)
    assert s["spark.driver.memory"]
    jars = s["spark.jars"].split(",")
    assert any("bigdl-dllib" in j for j in jars) and any("core" in j for j in jars)
    assert s["spark.serializer"] == "org.apache.spark.serializer.JavaSerializer"  # BigDL requirement
    if profile == "local":
        assert s["spark.pyspark.python"] == sys.executable
        assert "bigdl-dllib" in s["spark.driver.extraClassPath"]
    else:
        assert "spark.driver.extraClassPath" not in s or "bigdl" not in s.get("spark.pyspark.python", "")


def test_overrides_and_conf_take_precedence():
    s = resolve_settings("local", conf={"spark.sql.shuffle.partitions": 3}, master="local[1]",
                         spark_driver_memory="2g")
    assert s["spark.master"] == "local[1]"
    assert s["spark.driver.memory"] == "2g"
    assert s["spark.sql.shuffle.partitions"] == "3"


def test_local_star_becomes_explicit_core_count():
    # BigDL reads local[*] as half the cores (hyper-threading assumed): one training thread on 2 cores
    import os

    cores = len(os.sched_getaffinity(0))
    assert resolve_settings("local")["spark.master"] == f"local[{cores}]"  # profile says local[*]
    assert resolve_settings("local", master="local[*]")["spark.master"] == f"local[{cores}]"
    assert resolve_settings("local", master="local")["spark.master"] == "local[1]"
    assert resolve_settings("local", master="local[3]")["spark.master"] == "local[3]"
    assert resolve_settings("standalone", master="spark://h:7077")["spark.master"] == "spark://h:7077"


def test_bad_profile_and_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown Spark profile 'nope'.*local"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="unknown get_spark.. option 'driver_memory'"):
        resolve_settings("local", driver_memory="1g")
    bad = tmp_path / "bad.conf"
    bad.write_text("spark.master local[1]\nnot_spark 1\n")
    with pytest.raises(ConfigError, match=r"bad.conf:2: 'not_spark' is not a Spark setting"):
        load_profile(str(bad))
    good = tmp_path / "mine.conf"
    good.write_text("# comment\nspark.master=local[1]\nspark.executor.memory 1g\n")
    assert load_profile(str(good)) == {"spark.master": "local[1]", "spark.executor.memory": "1g"}


def test_session_has_bigdl_engine_and_settings(spark):
    from bigdl.dllib.utils.common import get_bigdl_engine_type

    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.driver.memory") == "12g"
    assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "4"
    assert get_bigdl_engine_type() in ("MklBlas", "MklDnn")
    # a second call reuses the session
    from bigdl_medimg import get_spark

    assert get_spark(master="local[2]") is spark


def test_bigdl_nnestimator_trains_and_transforms(spark):
    """Smoke test of the whole stack: a tiny regression trained with BigDL on local[2]."""
    from bigdl.dllib.keras.layers import Dense
    from bigdl.dllib.keras.models import Sequential
    from bigdl.dllib.nn.criterion import MSECriterion
    from bigdl.dllib.nnframes import NNEstimator
    from bigdl.dllib.optim.optimizer import Adam

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    w = np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")
    y = x @ w + 0.25
    df = spark.createDataFrame([(r.tolist(), [float(v)]) for r, v in zip(x, y)], ["features", "label"])
    df = df.repartition(2)
    model = Sequential()
    model.add(Dense(1, input_shape=(4,)))
    est = (NNEstimator(model, MSECriterion()).setBatchSize(32).setMaxEpoch(40)
           .setOptimMethod(Adam(learningrate=0.05)))
    fitted = est.fit(df)
    rows = fitted.transform(df).select("label", "prediction").collect()
    err = np.mean([(r.label[0] - r.prediction[0]) ** 2 for r in rows])
    base = np.var(y)
    assert len(rows) == 256
    assert err < 0.01 * base, (err, base)


def test_no_private_module_is_imported_from_another_package():
    """House rule: a module named ``_x`` is used only inside its own package; a shared piece is public."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "bigdl_medimg"
    offenders = []
    for path in root.rglob("*.py"):
        package = ".".join(("bigdl_medimg",) + path.relative_to(root).parent.parts).rstrip(".")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            names = [target + "." + a.name for a in node.names] if not node.module else [target]
            for name in names:
                parts = name.split(".")
                private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
                if private and ".".join(parts[:private[0]]) != package:
                    offenders.append(f"{path.relative_to(root)}: {name}")
    assert offenders == []
