"""A minimal TensorBoard event-file writer for scalars (validation Dice and friends).

BigDL writes training summaries itself; metrics computed outside its
optimizer (Dice on held-out volumes) are written here in the same format, so
TensorBoard and BigDL's ``ValidationSummary.read_scalar`` read both.
"""
from __future__ import annotations

import os
import socket
import struct
import time

__all__ = ["ScalarWriter", "crc32c"]

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
