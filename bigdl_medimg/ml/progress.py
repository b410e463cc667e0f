"""Training progress while BigDL trains: iteration, loss, throughput and time left.

BigDL's optimiser runs in the JVM and reports nothing to Python until an
epoch ends, but it writes every iteration's loss to its TrainSummary event
file.  :class:`EpochProgress` follows that file from a daemon thread during
one epoch's fit and logs a line (logger ``bigdl_medimg.progress``) whenever
new iterations arrive, at most every ``interval`` seconds (default 10, or
``$BIGDL_MEDIMG_PROGRESS_SECONDS``).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from ..console import Progress, format_seconds

__all__ = ["EpochProgress", "RankProgress", "progress_sender", "format_seconds", "epoch_line"]

log = logging.getLogger("bigdl_medimg.progress")


class EpochProgress:
    """Context manager following one epoch's training summary.

    Parameters
    ----------
    train_dir : str or None
        ``<summaryDir>/<app>/train``; without it only the epoch lines are logged.
    epoch, max_epoch : int
    samples, batch_size : int
        Training samples in the epoch and the batch size (iterations per epoch).
    epoch_seconds : list of float
        Durations of the epochs done so far (validation included), for time left.
    """

    def __init__(self, train_dir: str | None, epoch: int, max_epoch: int, samples: int, batch_size: int,
                 epoch_seconds=(), interval: float | None = None):
        self.train_dir, self.epoch, self.max_epoch = train_dir, int(epoch), int(max_epoch)
        self.samples, self.batch = int(samples), max(1, int(batch_size))
        self.iters = max(1, -(-self.samples // self.batch))
        self.epoch_seconds = [float(s) for s in epoch_seconds]
        self.interval = float(interval if interval is not None
                              else os.environ.get("BIGDL_MEDIMG_PROGRESS_SECONDS", 10.0))
        self._stop = threading.Event()
        self._thread = None
        self._seen = 0
        self._start_step = None

    def _points(self):
        from .tfevents import read_scalars

        return read_scalars(self.train_dir).get("Loss", []) if self.train_dir and os.path.isdir(self.train_dir) \
            else []

    def __enter__(self):
        self.t0 = time.time()
        self._bar = None
        if self.train_dir:
            self._bar = Progress(f"epoch {self.epoch}/{self.max_epoch}", self.iters, "it", interval=self.interval)
            pts = self._points()
            self._start_step = pts[-1][0] if pts else 0
            self._thread = threading.Thread(target=self._run, name="bigdl-medimg-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._bar is not None:
            self._bar.close()
        return False

    def line(self, done: int, loss: float | None, now: float) -> str:
        """The progress text after ``done`` iterations of this epoch."""
        return " | ".join([f"epoch {self.epoch}/{self.max_epoch}", f"iteration {min(done, self.iters)}/{self.iters}",
                           *self._details(done, loss, now)])

    def _details(self, done: int, loss: float | None, now: float) -> list[str]:
        """Loss, samples/s, time spent and time left in the whole fit (a bar shows these beside its count)."""
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 and done else 0.0
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if rate:
            parts.append(f"{rate * self.batch:.1f} samples/s")
            left = (self.iters - done) / rate
            later = self.max_epoch - self.epoch
            per_epoch = (sum(self.epoch_seconds) / len(self.epoch_seconds)) if self.epoch_seconds \
                else self.iters / rate
            parts.append(f"elapsed {format_seconds(elapsed)}")
            parts.append(f"~{format_seconds(left + later * per_epoch)} left")
        return parts

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                pts = [p for p in self._points() if p[0] > (self._start_step or 0)]
            except Exception:  # a half-written file: try again next time
                continue
            if len(pts) > self._seen:
                self._seen = len(pts)
                now = time.time()
                self._bar.update(min(len(pts), self.iters), extra=" | ".join(self._details(len(pts), pts[-1][1], now)),
                                 line=self.line(len(pts), pts[-1][1], now), force=True)


def epoch_line(record: dict, max_epoch: int) -> str:
    """One line for a finished epoch's history record."""
    parts = [f"epoch {record['epoch']}/{max_epoch} done in {format_seconds(record.get('seconds', 0))}"]
    for key, label in (("patches", "patches"), ("images", "samples")):
        if key in record:
            parts.append(f"{record[key]} {label}")
    for key in ("val_dice", "val_auroc"):
        if record.get(key) is not None:
            parts.append(f"{key} {record[key]:.4f}")
    if "driver_heap_mb" in record:
        parts.append(f"driver heap {record['driver_heap_mb']} MB")
    return " | ".join(parts)


class RankProgress:
    """Context manager on the driver that logs the progress lines a torch fit's rank 0 sends it over TCP.

    The ranks run inside one Spark stage on the executors, which reach the
    driver over the network anyway (pyspark's ``TorchDistributor`` streams its
    logs the same way), so this works on any cluster, not only where a folder
    is shared.  The server listens on the driver's address, port 0, and takes
    only connections that first send ``token`` (a random secret handed to the
    ranks in the fit's spec).  Lines are plain UTF-8, one per ``\\n``.

    Parameters
    ----------
    host : str
        The address to listen on (``spark.driver.bindAddress`` or ``spark.driver.host``).
    """

    def __init__(self, host: str):
        import secrets
        import socket

        self.token = secrets.token_hex(16)
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.address = (host, self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lines = 0

    @property
    def endpoint(self) -> dict:
        """What a rank needs to connect: host, port and token (for :func:`progress_sender`)."""
        return {"host": self.address[0], "port": self.address[1], "token": self.token}

    def _serve(self, conn) -> None:
        try:
            with conn, conn.makefile("r", encoding="utf-8", errors="replace") as f:
                conn.settimeout(10.0)  # a silent stranger is dropped, not waited for
                if f.readline().strip() != self.token:  # not one of our ranks
                    return
                conn.settimeout(None)  # a rank may be quiet for a whole epoch
                for raw in f:
                    log.info(raw.rstrip("\n"))
                    self.lines += 1
        except OSError:
            return

    def _accept(self) -> None:
        import socket

        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            t = threading.Thread(target=self._serve, args=(conn,), name="bigdl-medimg-rank-lines", daemon=True)
            t.start()
            self._threads.append(t)

    def __enter__(self):
        t = threading.Thread(target=self._accept, name="bigdl-medimg-ranks", daemon=True)
        t.start()
        self._threads.insert(0, t)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:  # a rank's connection ends when its stage is over
            t.join(timeout=5)
        self._sock.close()
        return False


def progress_sender(endpoint: dict | None, timeout: float = 10.0):
    """A ``say(line)`` function that sends lines to a :class:`RankProgress` (best effort).

    Progress is a courtesy: if the driver cannot be reached, or the
    connection breaks, the lines are dropped and training goes on.
    """
    import socket

    state: dict = {"sock": None, "dead": endpoint is None}

    def say(line: str) -> None:
        if state["dead"]:
            return
        try:
            if state["sock"] is None:
                state["sock"] = socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=timeout)
                state["sock"].sendall((endpoint["token"] + "\n").encode())
            state["sock"].sendall((line.replace("\n", " ") + "\n").encode("utf-8"))
        except OSError:
            state["dead"] = True

    def close() -> None:
        if state["sock"] is not None:
            state["sock"].close()
            state["sock"] = None

    say.close = close
    return say
