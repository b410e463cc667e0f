"""Shared fixtures: one local[2] SparkSession (with BigDL) for the whole run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from bigdl_medimg import get_spark

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = get_spark("local", master="local[2]", app_name="bigdl-medimg-tests",
                        conf={"spark.local.dir": str(tmp_path_factory.mktemp("spark-local")),
                              "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"
