"""A minimal TensorBoard event-file writer and reader for scalars (validation Dice and friends).

BigDL writes training summaries itself; metrics computed outside its
optimizer (Dice on held-out volumes) are written here in the same format, so
TensorBoard and BigDL's ``ValidationSummary.read_scalar`` read both.
"""
from __future__ import annotations

import os
import socket
import struct
import time

__all__ = ["ScalarWriter", "crc32c", "read_scalars", "read_summaries"]

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord framing uses."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int, payload: bytes) -> bytes:
    return _varint((num << 3) | wire) + payload


def _event(step: int, tag: str, value: float, wall_time: float) -> bytes:
    tag_b = tag.encode()
    val = _field(1, 2, _varint(len(tag_b)) + tag_b) + _field(2, 5, struct.pack("<f", float(value)))
    summary = _field(1, 2, _varint(len(val)) + val)
    return (_field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
            + _field(5, 2, _varint(len(summary)) + summary))


class ScalarWriter:
    """Append scalar events to ``<log_dir>/bigdl.tfevents.<time>.<host>`` (local file systems)."""

    def __init__(self, log_dir: str):
        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(log_dir, f"bigdl.tfevents.{int(time.time())}.{socket.gethostname()}")
        self._write(_field(1, 1, struct.pack("<d", time.time())) + _field(3, 2, _varint(13) + b"brain.Event:2"))

    def _write(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        with open(self.path, "ab") as f:
            f.write(header + struct.pack("<I", _masked(crc32c(header))) + data
                    + struct.pack("<I", _masked(crc32c(data))))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._write(_event(step, tag, value, time.time()))


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes):
    """Yield ``(field number, wire type, value)`` of a protobuf message (value: int, float bytes or bytes)."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _read_varint(buf, i)
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _read_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, val


def _records(data: bytes):
    i = 0
    while i + 12 <= len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        if i + 12 + n + 4 > len(data):
            return  # a record still being written
        yield data[i + 12:i + 12 + n]
        i += 12 + n + 4


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float, float]]]:
    """Scalars of every TensorBoard event file in ``log_dir``: ``{tag: [(step, value, wall_time), ...]}``.

    Reads what BigDL's ``TrainSummary`` / ``ValidationSummary`` and
    :class:`ScalarWriter` write, without the JVM (a report can be built
    anywhere).  Points are sorted by step; non-scalar values are skipped.
    """
    out: dict[str, list[tuple[int, float, float]]] = {}
    if not os.path.isdir(log_dir):
        return out
    for name in sorted(os.listdir(log_dir)):
        if "tfevents" not in name:
            continue
        with open(os.path.join(log_dir, name), "rb") as f:
            data = f.read()
        for rec in _records(data):
            wall, step, summary = 0.0, 0, None
            for num, _w, val in _fields(rec):
                if num == 1:
                    wall = struct.unpack("<d", val)[0]
                elif num == 2:
                    step = val
                elif num == 5:
                    summary = val
            if summary is None:
                continue
            for num, _w, value in _fields(summary):
                if num != 1:
                    continue
                tag, simple = None, None
                for vnum, vwire, v in _fields(value):
                    if vnum == 1:
                        tag = v.decode("utf-8", "replace")
                    elif vnum == 2 and vwire == 5:
                        simple = struct.unpack("<f", v)[0]
                if tag is not None and simple is not None:
                    out.setdefault(tag, []).append((int(step), float(simple), float(wall)))
    for pts in out.values():
        pts.sort(key=lambda p: (p[0], p[2]))
    return out


def read_summaries(summary_dir: str) -> dict[str, dict[str, dict[str, list]]]:
    """``{app: {"train"|"validation": {tag: points}}}`` under a BigDL ``summaryDir``.

    BigDL writes ``<summaryDir>/<app>/train`` and ``<summaryDir>/<app>/validation``;
    ``summary_dir`` may also be one app's folder.
    """
    out: dict[str, dict[str, dict[str, list]]] = {}
    if not os.path.isdir(summary_dir):
        return out
    candidates = [(os.path.basename(os.path.normpath(summary_dir)), summary_dir)]
    candidates += [(d, os.path.join(summary_dir, d)) for d in sorted(os.listdir(summary_dir))]
    for app, folder in candidates:
        if not os.path.isdir(folder):
            continue
        parts = {kind: read_scalars(os.path.join(folder, kind)) for kind in ("train", "validation")}
        if any(parts.values()):
            out[app] = parts
    return out
