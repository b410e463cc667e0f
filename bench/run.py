"""``make bench``: run every benchmark, print their tables, write JSON under bench/out/."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference  # noqa: E402
import ingest  # noqa: E402
import training  # noqa: E402
import transforms_memory  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def machine() -> dict:
    import os

    import numpy
    import pyspark

    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_bytes": mem, "pyspark": pyspark.__version__, "numpy": numpy.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine()}
    print("== preprocessing stages: peak memory (target < 4x the volume's float32 size per task)")
    results["transforms_memory"] = transforms_memory.main(["--json", str(OUT / "transforms_memory.json")])
    print("\n== ingest and series assembly vs a pydicom loop")
    results["ingest"] = ingest.main([])
    print("\n== training throughput vs PyTorch (BigDL levers tried), scaling")
    results["training"] = training.main([])
    print("\n== sliding-window inference vs PyTorch")
    results["inference"] = inference.main([])
    tables = [results["ingest"]["table"], results["training"]["table"], results["inference"]["table"]]
    (OUT / "tables.md").write_text("\n\n".join(tables) + "\n")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(f"all results: {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
