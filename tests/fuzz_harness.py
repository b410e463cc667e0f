"""Mutation fuzzing of the decoders, run in a subprocess by ``test_reliability.py``.

Seeds are real files (pydicom's and nibabel's test data) and small PNG/JPEG
files; hypothesis draws mutations: truncations, bit flips, overwritten bytes,
bogus 2/4-byte lengths and sizes, inserted bytes, and header dimensions set to
60000.  Every input must give a row with a valid image or a one-line error: an
exception escaping the decoder, a hang (per-input alarm) or a peak resident
memory above the budget is a failure.  A crash of the interpreter (a native
decoder faulting) shows as a non-zero exit of this process.

Usage: ``python tests/fuzz_harness.py --examples N`` prints one JSON line of counts.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import struct
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DICOM_SEEDS = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm", "MR_small_bigendian.dcm",
               "ExplVR_LitEndNoMeta.dcm", "SC_rgb_dcmtk_+eb+cr.dcm"]
NIFTI_SEEDS = ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz"]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def seeds() -> dict[str, list[tuple[str, bytes]]]:
    import nibabel
    import pydicom.data
    from PIL import Image

    dcm = Path(pydicom.data.__file__).parent / "test_files"
    nii = Path(nibabel.__file__).parent / "tests" / "data"
    img = np.linspace(0, 255, 64 * 48).reshape(48, 64).astype(np.uint8)
    pngs = []
    for mode, arr in (("L", img), ("I;16", (img.astype(np.uint16) * 200))):
        buf = io.BytesIO()
        Image.fromarray(arr, mode=mode if mode == "L" else None).save(buf, format="PNG")
        pngs.append((f"seed_{mode}.png", buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    pngs.append(("seed.jpg", buf.getvalue()))
    return {"dicom": [(n, (dcm / n).read_bytes()) for n in DICOM_SEEDS if (dcm / n).exists()],
            "nifti": [(n, (nii / n).read_bytes()) for n in NIFTI_SEEDS if (nii / n).exists()],
            "image": pngs}


def huge_dims(kind: str, content: bytes) -> bytes:
    """The seed with its header's image dimensions set to 60000 (each axis), for the allocation check."""
    if kind == "nifti":
        import gzip

        raw = bytearray(gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content)
        for end in "<>":
            size = struct.unpack_from(end + "i", raw, 0)[0]
            if size == 348:  # NIfTI-1: dim[0..3] int16 at byte 40 (int16 caps a side at 32767)
                struct.pack_into(end + "hhhh", raw, 40, 3, 30000, 30000, 30000)
            elif size == 540:  # NIfTI-2: dim int64 at byte 16
                struct.pack_into(end + "qqqq", raw, 16, 3, 60000, 60000, 60000)
        return bytes(raw)
    if kind == "dicom":
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(content), force=True)
        ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 60000
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    raw = bytearray(content)
    if raw[:4] == b"\x89PNG":  # IHDR width/height at 16..24, with a correct CRC as a hostile file would have
        import zlib

        struct.pack_into(">II", raw, 16, 60000, 60000)
        struct.pack_into(">I", raw, 29, zlib.crc32(bytes(raw[12:29])))
    else:  # JPEG: the frame header (SOFn) height and width
        i = 2
        while i + 9 < len(raw) and raw[i] == 0xFF:
            marker, seg = raw[i + 1], struct.unpack_from(">H", raw, i + 2)[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                struct.pack_into(">HH", raw, i + 5, 60000, 60000)
                break
            i += 2 + seg
    return bytes(raw)


def mutate(content: bytes, ops) -> bytes:
    b = bytearray(content)
    for op, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if op == "truncate":
            del b[i:]
        elif op == "flip":
            b[i] ^= 1 << (val % 8)
        elif op == "byte":
            b[i] = val % 256
        elif op == "len16":
            b[i:i + 2] = struct.pack("<H", [0xFFFF, 0, 0x8000, val % 65536][val % 4])
        elif op == "len32":
            b[i:i + 4] = struct.pack("<I", [0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0, val % 2**32][val % 5])
        elif op == "insert":
            b[i:i] = bytes([val % 256]) * (1 + val % 16)
        elif op == "delete":
            del b[i:i + 1 + val % 64]
    return bytes(b)


def decode(kind: str, content: bytes, name: str) -> dict:
    """One decoded row (the first, when an enhanced object gives a row per stack)."""
    from bigdl_medimg.io.dicom import decode_dicom
    from bigdl_medimg.io.images import decode_image
    from bigdl_medimg.io.nifti import decode_nifti

    if kind == "dicom":
        got = decode_dicom(content, name)
        return got[0] if isinstance(got, list) else got
    if kind == "nifti":
        return decode_nifti(content, name)
    return decode_image(content, name, modalities=None)


def check_row(row: dict) -> str:
    """'image' or 'error'; raises AssertionError for a row that is neither (or both)."""
    from bigdl_medimg.tensor import to_numpy

    if row.get("error"):
        assert row.get("image") is None, "a row with an error also has an image"
        assert "\n" not in row["error"], "error text is not one line"
        return "error"
    assert row.get("image") is not None, "a row with neither image nor error"
    to_numpy(row["image"])  # a valid tensor value
    return "image"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=150, help="mutated inputs per decoder")
    ap.add_argument("--timeout", type=int, default=20, help="seconds allowed per input")
    ap.add_argument("--rss-budget-mb", type=int, default=3000)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    os.environ.setdefault("BIGDL_MEDIMG_MAX_IMAGE_BYTES", "1g")
    all_seeds = seeds()
    report: dict = {}
    failures: list[str] = []
    op = st.tuples(st.sampled_from(["truncate", "flip", "byte", "len16", "len32", "insert", "delete"]),
                   st.integers(0, 2**31), st.integers(0, 2**32))
    for kind, files in all_seeds.items():
        counts = {"seeds": len(files), "tried": 0, "images": 0, "errors": 0, "failures": 0, "hangs": 0}
        # the allocation check: every seed with a 60000^3 (or 60000^2) header must be refused, quickly
        for name, content in files:
            row = decode(kind, huge_dims(kind, content), name)
            counts["tried"] += 1
            if not row.get("error") or row.get("image") is not None:
                failures.append(f"{kind}/{name}: 60000-sized header was not refused")
                counts["failures"] += 1
            else:
                counts["errors"] += 1
                counts.setdefault("huge_header_errors", []).append(row["error"][:160])

        @settings(max_examples=args.examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(seed=st.sampled_from(files), ops=st.lists(op, min_size=1, max_size=4))
        def run(seed, ops):
            name, content = seed
            data = mutate(content, ops)
            counts["tried"] += 1
            signal.alarm(args.timeout)
            try:
                counts[check_row(decode(kind, data, name)) + "s"] += 1
            except Hang:
                counts["hangs"] += 1
                failures.append(f"{kind}/{name}: no result within {args.timeout} s for ops {ops}")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # escaping the decoder (a native panic too) or an invalid row
                counts["failures"] += 1
                failures.append(f"{kind}/{name}: {type(exc).__name__}: {str(exc)[:200]} for ops {ops}")
            finally:
                signal.alarm(0)

        run()
        report[kind] = counts
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["peak_rss_mb"] = round(peak_mb)
    if peak_mb > args.rss_budget_mb:
        failures.append(f"peak resident memory {peak_mb:.0f} MB above the {args.rss_budget_mb} MB budget")
    report["failures"] = failures[:50]
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
