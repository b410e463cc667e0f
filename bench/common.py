"""Shared by the benchmarks: run a measured subprocess, sample its memory, print tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
DATA = ROOT / "data"


def _role(proc, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "driver_python"
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except Exception:  # exited
        return "other"
    if "java" in name:
        return "jvm"
    if "pyspark" in cmd and ("daemon" in cmd or "worker" in cmd):
        return "python_worker"
    return "other"


class RssSampler:
    """Peak resident memory of a process tree, by role, sampled every ``interval`` seconds.

    Roles: ``driver_python`` (the process itself), ``jvm`` (Spark's driver JVM;
    in local mode it is also the executor, where BigDL trains), ``python_worker``
    (the largest single PySpark worker: executor-side Python) and
    ``python_workers_total`` (all workers at one instant).
    """

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        total_workers = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            role = _role(p, self.pid)
            if role == "python_worker":
                total_workers += rss
            self.peak[role] = max(self.peak.get(role, 0), rss)
        self.peak["python_workers_total"] = max(self.peak.get("python_workers_total", 0), total_workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def run_measured(args: list[str], timeout: float = 900) -> dict:
    """Run ``python <args>`` whose last stdout line is JSON; add its peak RSS per role under ``rss``.

    A run exceeding ``timeout`` seconds (a JVM thrashing at its heap limit) is killed and reported.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(ROOT.parent))
    with RssSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            out, err = proc.communicate()
            return {"error": f"killed after {timeout:.0f} s", "cause": f"no result within {timeout:.0f} s "
                             f"(peak JVM {sampler.peak.get('jvm', 0) >> 20} MB)", "rss": dict(sampler.peak)}
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        causes = [ln.strip() for ln in lines if "OutOfMemoryError" in ln or "IllegalArgumentException" in ln
                  or "error: mkldnn" in ln]  # the last: BigDL's native DNN library failing (the JVM dies)
        tail = "\n".join(lines[-15:])
        return {"error": f"exit {proc.returncode}: {tail}", "cause": causes[0][:300] if causes else None}
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": "no result line; stderr: " + "\n".join(err.strip().splitlines()[-10:])}
    res = json.loads(lines[-1])
    res["rss"] = dict(sampler.peak)
    return res


def emit(result: dict) -> None:
    """Print the worker's result as the last stdout line (read by :func:`run_measured`)."""
    print(json.dumps(result), flush=True)


def mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MB"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(c) for c in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def write_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
