"""`bigdl-medimg doctor`: a healthy environment passes (exit 0); a missing piece fails with its fix (exit 1)."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

from bigdl_medimg.version import BIGDL_REQUIREMENTS, bigdl_install_command

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["python", "java", "pyspark", "bigdl", "numpy", "torch", "highdicom", "pixel decoders", "mlflow",
          "driver memory", "spark + bigdl"]


def _doctor(env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if k != "PYSPARK_GATEWAY_PORT"}
    return subprocess.run([sys.executable, "-m", "bigdl_medimg", "doctor", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_a_healthy_environment_is_ready(tmp_path):
    proc = _doctor(dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in CHECKS:
        assert any(line.startswith("[  ok] " + name + ":") for line in lines), (name, proc.stdout)
    assert "Java 17" in proc.stdout and "bigdl-dllib-spark3 2.4.0" in proc.stdout
    assert "a job and a BigDL layer in" in proc.stdout and lines[-1] == "doctor: ready"
    assert "creating:" not in proc.stdout + proc.stderr and proc.stderr.strip() == ""


def test_no_java_fails_with_the_fix_and_spark_is_not_tried():
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = venv_bin  # a PATH without java (the venv's own scripts only)
    proc = _doctor(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] java: no java on PATH and no JAVA_HOME" in proc.stdout
    assert "fix: install a JDK 17" in proc.stdout
    assert "[FAIL] spark + bigdl: not tried" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "doctor: cannot run: java, spark + bigdl"


def test_the_bigdl_command_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = dict(line.split("==") for line in cfg["bigdl_medimg"]["no_deps_requires"].split())
    assert pins == BIGDL_REQUIREMENTS
    assert bigdl_install_command() == "pip install --no-deps bigdl-dllib-spark3==2.4.0 bigdl-core==2.4.0.dev0"
    # the README's first lines give it to those who do not use make
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert bigdl_install_command() in head


def test_the_bigdl_engine_names_the_install_command_when_bigdl_is_missing():
    code = ("import sys; sys.modules['bigdl'] = None; sys.modules['bigdl.dllib'] = None\n"
            "try:\n    import bigdl_medimg.ml.engines.bigdl\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "from bigdl_medimg.session import bigdl_jars\n"
            "try:\n    bigdl_jars()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("ConfigError") for line in lines), out
    assert all(bigdl_install_command() in line for line in lines), out
