"""SparkSession with BigDL's engine, configured from ``conf/spark/<profile>.conf``.

``get_spark`` is the one way the library, its CLI, examples, notebooks and
tests obtain Spark.  It layers settings (later wins):

1. BigDL's required settings (``spark-bigdl.conf`` shipped in its wheel),
2. the profile file (``local``, ``standalone``, ``yarn`` or a path),
3. ``conf={...}``,
4. keyword overrides (``master="local[2]"``, ``spark_driver_memory="8g"``),

then adds BigDL's jars (``spark.jars``, and the driver class path for local
masters), points PYSPARK_PYTHON at the running interpreter for local masters,
creates (or reuses) the session and initialises BigDL's engine once.
"""
from __future__ import annotations

import glob
import logging
import os
import sys
from pathlib import Path
from typing import Mapping

from .errors import ConfigError
from .version import bigdl_install_command

__all__ = ["get_spark", "load_profile", "conf_dir", "bigdl_jars", "resolve_settings"]

log = logging.getLogger(__name__)

_KEY_ALIASES = {"master": "spark.master", "app_name": "spark.app.name"}
_engine_ready: set[int] = set()


def conf_dir() -> Path:
    """Folder holding ``spark/<profile>.conf`` and ``log4j2.properties``.

    Looked up in ``$BIGDL_MEDIMG_CONF``, the source checkout's ``conf/``, then
    ``<prefix>/share/bigdl-medimg/conf`` of an installed wheel.
    """
    candidates = []
    if os.environ.get("BIGDL_MEDIMG_CONF"):
        candidates.append(Path(os.environ["BIGDL_MEDIMG_CONF"]))
    candidates.append(Path(__file__).resolve().parents[1] / "conf")
    candidates.append(Path(sys.prefix) / "share" / "bigdl-medimg" / "conf")
    for c in candidates:
        if (c / "spark").is_dir():
            return c
    raise ConfigError(
        "no bigdl-medimg conf folder found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set BIGDL_MEDIMG_CONF to a folder with spark/<profile>.conf"
    )


def _parse_conf_text(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line.split(None, 1)[0]:
            key, _, value = line.partition("=")
        else:
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise ConfigError(f"{where}:{n}: expected 'key value', got {line!r}")
            key, value = parts
        key, value = key.strip(), value.strip()
        if not key.startswith("spark."):
            raise ConfigError(f"{where}:{n}: {key!r} is not a Spark setting (must start with 'spark.')")
        out[key] = value
    return out


def load_profile(profile: str) -> dict[str, str]:
    """Read a Spark profile: a name under ``conf/spark/`` or a path to a ``.conf`` file."""
    path = Path(profile)
    if not (path.suffix == ".conf" and path.is_file()):
        folder = conf_dir() / "spark"
        path = folder / f"{profile}.conf"
        if not path.is_file():
            names = sorted(p.stem for p in folder.glob("*.conf"))
            raise ConfigError(f"unknown Spark profile {profile!r}; available: {', '.join(names)}")
    return _parse_conf_text(path.read_text(), str(path))


def bigdl_jars() -> list[str]:
    """Paths of the jars shipped in the installed BigDL wheels."""
    try:
        import bigdl
    except ImportError:
        raise ConfigError(f"BigDL is not installed: {bigdl_install_command()} completes the install "
                          "(pip cannot: BigDL's wheels pin pyspark 3.1.3)") from None
    share = Path(bigdl.__file__).parent / "share"
    jars = sorted(glob.glob(str(share / "*" / "lib" / "*.jar")))
    if not jars:
        raise ConfigError(f"no BigDL jars under {share}; reinstall: {bigdl_install_command()}")
    return jars


def _bigdl_defaults() -> dict[str, str]:
    import bigdl

    out: dict[str, str] = {}
    for f in glob.glob(str(Path(bigdl.__file__).parent / "share" / "*" / "conf" / "spark-bigdl.conf")):
        for line in Path(f).read_text(encoding="latin-1").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and len(line.split(None, 1)) == 2:
                k, v = line.split(None, 1)
                # BigDL's file sets a log4j flag in extraJavaOptions; we manage that below.
                if k != "spark.driver.extraJavaOptions":
                    out[k] = v
    return out


def _merge_list(existing: str | None, items: list[str], sep: str) -> str:
    parts = [p for p in (existing or "").split(sep) if p]
    for it in items:
        if it not in parts:
            parts.append(it)
    return sep.join(parts)


def _explicit_local_cores(master: str) -> str:
    """``local[*]`` / ``local`` as ``local[N]`` with N the CPUs this process may use.

    BigDL sizes its training threads from the master string and reads
    ``local[*]`` as half the machine's cores (it assumes hyper-threading), which
    on a 2-core box trains on one core; a ``local[N]`` master gives it all N.
    """
    m = master.strip()
    if m in ("local", "local[*]"):
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
        return f"local[{n if m == 'local[*]' else 1}]"
    return master


def resolve_settings(profile: str = "local", conf: Mapping[str, object] | None = None,
                     **overrides: object) -> dict[str, str]:
    """All Spark settings ``get_spark`` would use, without starting anything."""
    settings: dict[str, str] = {}
    settings.update(_bigdl_defaults())
    settings.update(load_profile(profile))
    for k, v in (conf or {}).items():
        settings[str(k)] = str(v)
    for k, v in overrides.items():
        key = _KEY_ALIASES.get(k, k.replace("_", ".") if k.startswith("spark_") else None)
        if key is None:
            raise ConfigError(
                f"unknown get_spark() option {k!r}: use master=, app_name=, "
                "spark_<key_with_underscores>= or conf={'spark.key': value}"
            )
        settings[key] = str(v)
    master = settings["spark.master"] = _explicit_local_cores(settings.get("spark.master", "local[*]"))
    jars = bigdl_jars()
    settings["spark.jars"] = _merge_list(settings.get("spark.jars"), jars, ",")
    if master.startswith("local"):
        settings["spark.driver.extraClassPath"] = _merge_list(
            settings.get("spark.driver.extraClassPath"), jars, os.pathsep)
        settings.setdefault("spark.pyspark.python", sys.executable)
        settings.setdefault("spark.pyspark.driver.python", sys.executable)
    log4j = conf_dir() / "log4j2.properties"
    if log4j.is_file() and "log4j2.configurationFile" not in settings.get("spark.driver.extraJavaOptions", ""):
        from .console import is_verbose

        settings["spark.driver.extraJavaOptions"] = (
            settings.get("spark.driver.extraJavaOptions", "") + f" -Dlog4j2.configurationFile=file:{log4j}"
            + f" -Dbigdl_medimg.console.level={'INFO' if is_verbose() else 'WARN'}"
        ).strip()
    return settings


def get_spark(profile: str = "local", *, conf: Mapping[str, object] | None = None, log_dir=None,
              **overrides: object):
    """Return a SparkSession with BigDL's engine initialised.

    Parameters
    ----------
    profile : str
        ``"local"`` (default), ``"standalone"``, ``"yarn"`` or a path to a
        ``.conf`` file in spark-defaults format.
    conf : mapping, optional
        Extra Spark settings, ``{"spark.key": value}``.
    log_dir : str or Path, optional
        Where the JVM's own stdout goes when this call starts it (BigDL's
        pickler registrations, Java notices): ``jvm-stdout.log`` there, else
        under :func:`bigdl_medimg.console.default_log_dir`.  Shown on the
        console instead when verbose (:func:`bigdl_medimg.console.set_verbose`).
    **overrides
        ``master=``, ``app_name=`` or ``spark_<key>=`` where underscores stand for
        dots (``spark_driver_memory="8g"``).

    Returns
    -------
    pyspark.sql.SparkSession

    Notes
    -----
    JVM settings (driver memory, class path) only take effect when this call
    starts the JVM.  If a session already runs (a Jupyter Spark kernel,
    ``spark-submit``), it is reused: runtime ``spark.sql.*`` settings are
    applied and BigDL's engine is initialised on it; BigDL's jars must then
    have been given to ``spark-submit`` (``--jars``).
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    settings = resolve_settings(profile, conf, **overrides)
    if os.environ.get("PYSPARK_GATEWAY_PORT") and SparkContext._active_spark_context is None:
        # Launched by spark-submit: its command line (--master, --conf, ...) wins over the profile.
        SparkContext._ensure_initialized()
        for k, v in SparkConf().getAll():
            if k == "spark.jars":
                settings[k] = _merge_list(v, settings.get(k, "").split(","), ",")
            elif k not in overrides and k not in (conf or {}):
                settings[k] = v
    master = settings["spark.master"] = _explicit_local_cores(settings.get("spark.master", "local[*]"))
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    if SparkContext._active_spark_context is not None:
        spark = SparkSession.builder.getOrCreate()
        for k, v in settings.items():
            if k.startswith("spark.sql."):
                spark.conf.set(k, v)
        log.info("reusing the running SparkSession; JVM settings of profile %r not applied", profile)
    else:
        from .console import default_log_dir, jvm_stdout_to

        builder = SparkSession.builder
        for k, v in settings.items():
            builder = builder.config(k, v)
        out = Path(log_dir) / "jvm-stdout.log" if log_dir else default_log_dir() / f"jvm-stdout-{os.getpid()}.log"
        with jvm_stdout_to(out):
            spark = builder.getOrCreate()
        # No setLogLevel: conf/log4j2.properties logs INFO for the run's spark.log and
        # filters the console to WARN itself.
    _init_bigdl(spark)
    return spark


def _init_bigdl(spark) -> None:
    sc = spark.sparkContext
    key = id(sc._jsc)
    if key in _engine_ready:
        return
    try:
        sc._jvm.java.lang.Class.forName(
            "com.intel.analytics.bigdl.dllib.utils.python.api.PythonBigDL", True,
            sc._jvm.Thread.currentThread().getContextClassLoader())
    except Exception:
        raise ConfigError(
            "BigDL's classes are not on the driver's class path: start Spark through "
            "bigdl_medimg.get_spark(), or pass the jars from bigdl_medimg.session.bigdl_jars() "
            "to spark-submit with --jars and --driver-class-path"
        ) from None
    from bigdl.dllib.utils.common import init_engine

    from .console import quiet_bigdl

    quiet_bigdl()
    init_engine()
    _engine_ready.add(key)
