"""What a user sees: the console, the run's log files and progress displays.

The console shows what the library says (stage headers, one progress display
per long step, results, warnings and errors) and nothing else.  BigDL's
Python-side prints (``creating: createZooKeras...``), the JVM's own stdout
(BigDL's pickler registrations) and Spark's and BigDL's INFO logs are
captured, not shown: they go to ``RUN/logs/`` (:func:`run_logs`), or to
``$TMPDIR/bigdl-medimg-logs/`` when no run folder is known.  Spark and BigDL
still print WARN and above (``conf/log4j2.properties``).

``--verbose`` on the command line, :func:`set_verbose` or
``BIGDL_MEDIMG_VERBOSE=1`` show everything again (set it before the Spark
session starts: the JVM's console level is fixed at its launch).

Progress is a live bar (tqdm) on a terminal and plain lines, at most one
every ``$BIGDL_MEDIMG_PROGRESS_SECONDS`` (default 10), when the output is
not a terminal (CI, YARN logs).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["set_verbose", "is_verbose", "setup_console", "quiet_bigdl", "run_logs", "start_run", "default_log_dir",
           "jvm_stdout_to", "Progress", "format_seconds", "counter", "track_job"]

log = logging.getLogger("bigdl_medimg")
_captured = logging.getLogger("bigdl_medimg.captured")

#: BigDL modules that ``print`` on every object they create or load.
BIGDL_PRINTING_MODULES = ("bigdl.dllib.utils.common", "bigdl.dllib.keras.base", "bigdl.dllib.utils.triggers",
                          "bigdl.dllib.optim.optimizer", "bigdl.dllib.nn.layer", "bigdl.dllib.nncontext",
                          "bigdl.dllib.utils.spark", "bigdl.dllib.keras.engine.topology")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def set_verbose(flag: bool = True) -> None:
    """Show (``True``) or capture (``False``) BigDL's prints and Spark's INFO lines.

    Kept in ``$BIGDL_MEDIMG_VERBOSE`` so that Spark workers and child
    processes started afterwards follow it.
    """
    os.environ["BIGDL_MEDIMG_VERBOSE"] = "1" if flag else "0"
    for h in log.handlers:
        if getattr(h, "_bigdl_medimg", False):
            h.setLevel(logging.DEBUG if flag else logging.INFO)


def is_verbose() -> bool:
    """Whether the console shows everything (``$BIGDL_MEDIMG_VERBOSE``)."""
    return os.environ.get("BIGDL_MEDIMG_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS message``; warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            head, _, rest = text.partition(" ")
            return f"{head} {record.levelname}: {rest}"
        return text


def setup_console(stream=None) -> None:
    """Send the library's messages (logger ``bigdl_medimg``) to ``stream`` (default: stdout).

    Idempotent: a second call only points the handler at the current stream.
    """
    stream = stream or sys.stdout
    mine = [h for h in log.handlers if getattr(h, "_bigdl_medimg", False)]
    if mine:
        mine[0].stream = stream  # the old stream may be closed: no flush through setStream
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_ConsoleFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._bigdl_medimg = True
        log.addHandler(handler)
        mine = [handler]
    mine[0].setLevel(logging.DEBUG if is_verbose() else logging.INFO)
    log.setLevel(logging.DEBUG)  # the run's log file takes everything; the console handler filters
    log.propagate = False


def _bigdl_print(*args, sep=" ", end="\n", file=None, flush=False):
    """Stands in for ``print`` inside BigDL's modules: the text goes to the log, the console only when verbose."""
    if file not in (None, sys.stdout, sys.__stdout__):
        print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    _captured.debug(sep.join(str(a) for a in args))
    if is_verbose():
        print(*args, sep=sep, end=end, flush=flush)


def quiet_bigdl() -> None:
    """Route BigDL's Python-side prints to the log (a module-level ``print`` shadows the builtin).

    Done per module rather than by wrapping ``sys.stdout``, so a notebook's
    or an application's own output is never touched.
    """
    import importlib

    for name in BIGDL_PRINTING_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # an optional BigDL module that fails to import has nothing to silence
            continue
        mod.print = _bigdl_print


def default_log_dir() -> Path:
    """Where the JVM's stdout goes when no run folder was given."""
    d = Path(tempfile.gettempdir()) / "bigdl-medimg-logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def jvm_stdout_to(path):
    """While the JVM is launched inside this block, its stdout (inherited fd 1) goes to ``path``.

    The JVM prints BigDL's pickler registrations and Java's own notices on
    stdout; pyspark launches it with our fd 1, so it is pointed at the file
    for the launch only: Python's own output is back on the console after.
    """
    if is_verbose() or path is None:
        yield None
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    saved = os.dup(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 1)
        yield path
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)


def _attach_spark_file(spark, path: Path):
    """Add a log4j2 file appender on the driver JVM's root logger (INFO and above); returns a detach function."""
    jvm = spark.sparkContext._jvm
    name = f"bigdl-medimg-run-{os.getpid()}-{time.time_ns()}"
    ctx = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    config = ctx.getConfiguration()
    layout = jvm.org.apache.logging.log4j.core.layout.PatternLayout.newBuilder() \
        .withPattern("%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex").build()
    appender = jvm.org.apache.logging.log4j.core.appender.FileAppender.newBuilder() \
        .withFileName(str(path)).setName(name).setLayout(layout).setConfiguration(config).build()
    appender.start()
    config.addAppender(appender)
    config.getRootLogger().addAppender(appender, None, None)
    ctx.updateLoggers()

    def detach() -> None:
        config.getRootLogger().removeAppender(name)
        ctx.updateLoggers()
        appender.stop()

    return detach


@contextlib.contextmanager
def run_logs(folder, spark=None):
    """Keep a run's logs in ``folder/logs``: the library's log, BigDL's captured prints, warnings and Spark's log.

    ``bigdl-medimg.log`` gets every message of the library (DEBUG and up),
    BigDL's prints and Python warnings; ``spark.log`` gets the driver JVM's
    log at INFO and up (Spark, BigDL's optimiser) while the block runs.
    Yields the folder.
    """
    logs = Path(folder) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs / "bigdl-medimg.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    warn_log = logging.getLogger("py.warnings")
    log.addHandler(handler)
    warn_log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    detach = None
    if spark is not None:
        try:
            detach = _attach_spark_file(spark, logs / "spark.log")
        except Exception as exc:  # a JVM without log4j2 core (a vendor's Spark): the library's log still works
            log.debug("no Spark log file for this run: %s", exc)
    try:
        yield logs
    finally:
        if detach is not None:
            with contextlib.suppress(Exception):
                detach()
        log.removeHandler(handler)
        warn_log.removeHandler(handler)
        handler.close()


def start_run(folder, *, verbose: bool = False, profile: str = "local", **spark_options):
    """Set up a script's run the way the command line does; returns the SparkSession.

    The console shows the library's messages (everything with ``verbose``),
    the JVM's stdout and the run's logs go to ``folder/logs`` (kept until the
    process exits), and Spark starts with
    :func:`~bigdl_medimg.session.get_spark` (``profile``, ``master=``,
    ``conf=``...).
    """
    import atexit

    from .session import get_spark

    global _script_logs
    if verbose:
        set_verbose(True)
    setup_console()
    spark = get_spark(profile, log_dir=Path(folder) / "logs", **spark_options)
    if _script_logs is None:
        atexit.register(lambda: _script_logs is not None and _script_logs.__exit__(None, None, None))
    else:  # a second run in the same process (a notebook, a test): the first one's logs end here
        _script_logs.__exit__(None, None, None)
    _script_logs = run_logs(folder, spark)
    _script_logs.__enter__()
    return spark


_script_logs = None


def format_seconds(s: float) -> str:
    """``42s``, ``3m07s``, ``1h05m``."""
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """One progress display: a tqdm bar on a terminal, throttled plain lines otherwise.

    Parameters
    ----------
    desc : str
        What is being done (``"ingest"``, ``"epoch 3/30"``).
    total : int or None
        Units of work; ``None`` when unknown.
    unit : str
        ``"files"``, ``"it"``, ``"volumes"``...
    interval : float, optional
        Seconds between plain lines (``$BIGDL_MEDIMG_PROGRESS_SECONDS``, default 10).
    stream : file, optional
        Default: stdout.
    """

    def __init__(self, desc: str, total: int | None, unit: str = "it", interval: float | None = None, stream=None):
        self.desc, self.total, self.unit = desc, total, unit
        self.interval = float(interval if interval is not None
                              else os.environ.get("BIGDL_MEDIMG_PROGRESS_SECONDS", 10.0))
        self.stream = stream or sys.stdout
        self.t0 = time.time()
        self.done = 0
        self._last_line, self._last_done = 0.0, 0
        self._bar = None
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True,
                             leave=True)

    def text(self, done: int, extra: str = "") -> str:
        """The plain line after ``done`` units."""
        elapsed = time.time() - self.t0
        parts = [f"{self.desc}: {done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if done and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:.1f} {self.unit}/s")
            if self.total:
                parts.append(f"~{format_seconds((self.total - done) / rate)} left")
        if extra:
            parts.append(extra)
        return " | ".join(parts)

    def update(self, done: int, extra: str = "", line: str | None = None, force: bool = False) -> None:
        """Show ``done`` units (absolute); ``extra`` is appended; ``line`` replaces the plain line."""
        self.done = int(done)
        if self._bar is not None:
            self._bar.n = self.done
            if extra:
                self._bar.set_postfix_str(extra, refresh=False)
            self._bar.refresh()
            return
        now = time.time()
        if self.done == self._last_done and not line:  # nothing new to say (a final update after the last line)
            return
        if force or (self.done and now - self._last_line >= self.interval):
            self._last_line, self._last_done = now, self.done
            log.info(line if line is not None else self.text(self.done, extra))

    def close(self, extra: str = "") -> None:
        """End the display with a final count."""
        if self._bar is not None:
            if extra:
                self._bar.set_postfix_str(extra, refresh=False)
            self._bar.close()
            self._bar = None


# ------------------------------------------------------------ Spark jobs ---

_counters: dict[str, object] = {}


def counter(name: str):
    """The accumulator a running :func:`track_job` block counts ``name`` with, or None.

    Code that builds an executor-side function (a reader's decoder, a model's
    inference) asks for it on the driver and adds to it on the executors;
    Spark merges the counts as tasks finish.
    """
    return _counters.get(name)


@contextlib.contextmanager
def track_job(spark, desc: str, total: int | None, unit: str, *, count: str, errors: str | None = None):
    """Show the progress of the Spark jobs run inside the block, counted by executor-side accumulators.

    ``count`` and ``errors`` name the counters (:func:`counter`) the
    executor code adds to; the display shows ``count`` out of ``total`` and
    the errors so far.  Yields the display.
    """
    sc = spark.sparkContext
    names = [count] + ([errors] if errors else [])
    for n in names:
        _counters[n] = sc.accumulator(0)
    bar = Progress(desc, total, unit)
    stop = threading.Event()

    def extra() -> str:
        return f"{_counters[errors].value} errors" if errors else ""

    def poll() -> None:
        seen = -1
        while not stop.wait(0.5):
            done = _counters[count].value
            if done != seen:
                seen = done
                bar.update(done, extra())

    t = threading.Thread(target=poll, name="bigdl-medimg-job-progress", daemon=True)
    t.start()
    try:
        yield bar
    finally:
        stop.set()
        t.join(timeout=2)
        done = _counters[count].value
        bar.update(done, extra(), force=True)
        bar.close(extra())
        for n in names:
            _counters.pop(n, None)
