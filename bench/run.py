"""``make bench``: run every benchmark, print their tables, write JSON under bench/out/."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dicomweb  # noqa: E402
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


def _num(x, key):
    return None if not isinstance(x, dict) or x.get(key) is None else round(float(x[key]), 3)


def summary(results: dict) -> dict:
    """The measured value of every target (ratios), with the throughputs and memory peaks behind them."""
    ing, tr, inf = results["ingest"], results["training"], results["inference"]
    out = {"machine": results["machine"], "targets": {}}
    t = out["targets"]
    t["ingest_vs_pydicom (>= 1.6)"] = _num(ing["ingest"], "ratio_spark")
    t["ingest_tuned_vs_pydicom"] = _num(ing["ingest"], "ratio_spark_tuned")
    t["ingest_j2k_vs_pydicom"] = _num(ing.get("j2k"), "ratio_spark")
    t["series_task_peak_x_series (<= 3)"] = _num(ing["series"], "task_ratio")
    t["dicomweb_vs_loop (>= 1.5)"] = _num(results.get("dicomweb"), "ratio")
    for run in tr["runs"]:
        t[f"training_{run['model']}_{run['lever']} (>= 1.0)"] = None if run["ratio"] is None else round(run["ratio"], 3)
    for sc in tr["scaling"]:
        t[f"scaling_{sc['model']}_local2_over_local1 (>= 1.8)"] = None if sc["speedup"] is None else round(
            sc["speedup"], 3)
    for b in tr.get("breakdown", []):
        if b.get("iteration"):
            out.setdefault("bigdl_iteration_seconds", {})[b["model"]] = {
                k: None if b.get(k) is None else round(b[k], 4)
                for k in ("iteration", "get_weights", "compute", "aggregate_gradients", "send_weights",
                          "spark_overhead")}
    for model in ("unet", "densenet"):
        runs = {e["lever"]: e["run"] for e in tr.get("epochs", []) if e["model"] == model}
        one, per = (runs.get(k, {}).get("wall_samples_per_s") for k in ("one fit of 3 epochs",
                                                                       "3 fits of one epoch (the library)"))
        if one and per:
            t[f"bigdl_epochs_{model}_one_fit_over_fit_per_epoch"] = round(one / per, 3)
    t["inference_vs_pytorch (>= 0.8)"] = None if inf["ratio"] is None else round(inf["ratio"], 3)
    for e in tr.get("torch_engine", []):
        name = {"unet": "unet", "densenet": "densenet"}[e["model"]]
        t[f"torch_training_{name} (>= 1.0)"] = None if e["ratio"] is None else round(e["ratio"], 3)
        t[f"torch_scaling_{name} (>= 1.8)"] = None if e["scaling"] is None else round(e["scaling"], 3)
        t[f"torch_fit_seconds_{name}"] = _num(e["local2"], "fit_seconds")
    t["torch_inference (>= 0.9)"] = None if inf.get("torch_engine_ratio") is None else round(
        inf["torch_engine_ratio"], 3)
    out["transforms_memory_task_ratio (< 4)"] = {k: round(v["task_ratio"], 2)
                                                  for k, v in results["transforms_memory"]["stages"].items()
                                                  if v.get("task_ratio") is not None}
    out["samples_per_s"] = {f"{r['model']} {r['lever']}": {"bigdl": _num(r["bigdl"], "samples_per_s"),
                                                           "pytorch": _num(r["torch"], "samples_per_s")}
                            for r in tr["runs"]}
    out["peak_rss_mb"] = {
        "ingest read_dicom": {k: v >> 20 for k, v in ing["ingest"]["spark"].get("rss", {}).items()},
        "ingest pydicom loop": {k: v >> 20 for k, v in ing["ingest"]["pydicom"].get("rss", {}).items()},
        "inference BigDL": {k: v >> 20 for k, v in inf["bigdl"].get("rss", {}).items()},
        "inference PyTorch": {k: v >> 20 for k, v in inf["torch"].get("rss", {}).items()},
        "inference torch engine": {k: v >> 20 for k, v in inf.get("torch_engine", {}).get("rss", {}).items()},
        **{f"training {r['model']} {r['lever']} BigDL": {k: v >> 20 for k, v in r["bigdl"].get("rss", {}).items()}
           for r in tr["runs"]},
    }
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine()}
    print("== preprocessing stages: peak memory (target < 4x the volume's float32 size per task)")
    results["transforms_memory"] = transforms_memory.main(["--json", str(OUT / "transforms_memory.json")])
    print("\n== ingest and series assembly vs a pydicom loop")
    results["ingest"] = ingest.main([])
    print("\n== read_dicomweb vs a dicomweb-client loop (a local Orthanc)")
    results["dicomweb"] = dicomweb.main([])
    print("\n== training throughput vs PyTorch (BigDL levers tried, the torch engine), scaling")
    results["training"] = training.main([])
    print("\n== sliding-window inference vs PyTorch")
    results["inference"] = inference.main([])
    tables = [results["ingest"]["table"], results["dicomweb"]["table"], results["training"]["table"],
              results["inference"]["table"]]
    (OUT / "tables.md").write_text("\n\n".join(tables) + "\n")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    (OUT / "summary.json").write_text(json.dumps(summary(results), indent=1))
    print(f"all results: {OUT / 'results.json'}; targets: {OUT / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
