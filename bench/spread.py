"""``make spread``: the README's task commands run several times per engine, reported as mean and min/max.

A single run of a training recipe is an anecdote: each run here changes only
``--seed`` (initial weights with torch, patch draws, augmentation; the
phantoms stay the same), so the table shows what a user re-running the
documented command can expect.  The meniscus run of each seed uses the knee
run of the same seed and engine as its stage 1 (``--seg-model``), as the
README's commands chain them.

    python bench/spread.py [--engines torch,bigdl] [--tasks knee,meniscus,whole,chest] [--seeds 0,1,2]

Writes ``bench/out/spread.json`` and prints one table per task.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "spread"

#: The README's documented command of each task (without --out, --engine, --seed).
COMMANDS = {
    "knee": ["examples/knee_cartilage_segmentation.py", "--train", "24", "--val", "4", "--test", "6"],
    "meniscus": ["examples/meniscus_tear.py", "--train", "120", "--val", "24", "--test", "40"],
    "whole": ["examples/meniscus_tear.py", "--train", "120", "--val", "24", "--test", "40", "--whole-volume"],
    "chest": ["examples/chest_xray14.py", "--patients", "1500", "--size", "128", "--topology", "densenet_small",
              "--epochs", "12"],
}


def run_one(task: str, engine: str, seed: int) -> dict:
    """One run of ``task``'s command; its ``result.json`` (or the error)."""
    out = OUT / engine / f"{task}-seed{seed}"
    args = [*COMMANDS[task], "--out", str(out), "--engine", engine, "--seed", str(seed)]
    if task == "meniscus":
        args += ["--seg-model", str(OUT / engine / f"knee-seed{seed}" / "model")]
    t0 = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    (out.parent / f"{task}-seed{seed}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: " + proc.stderr.strip().splitlines()[-1][:300]}
    res = json.loads((out / "result.json").read_text())
    res["wall_seconds"] = round(time.time() - t0, 1)
    return res


def metrics(task: str, res: dict) -> dict:
    """The numbers the tables report, flat."""
    if "error" in res:
        return {}
    if task == "knee":
        m = {"mean Dice": res["mean_dice"]}
        m.update({f"Dice {k}": v for k, v in res["dice_per_class"].items()})
        m.update({f"HD95 {k} (mm)": v for k, v in res["hd95_mm_per_class"].items()})
        m["fit (min)"] = res["fit_seconds"] / 60
        return m
    if task in ("meniscus", "whole"):
        m = {"test AUROC": res["auroc"], "validation AUROC": res.get("val_auroc"),
             "fit (min)": (res["classifier_fit_seconds"] + res["segmentation_fit_seconds"]) / 60}
        if task == "meniscus":
            m["test series without a meniscus"] = res.get("test_no_meniscus")
        return m
    m = {"mean AUROC": res["mean_auroc"], "fit (min)": res["fit_seconds"] / 60}
    m.update({f"AUROC {k}": v for k, v in res["auroc_per_label"].items()})
    return m


def summarise(runs: list[dict]) -> dict:
    """``{metric: {mean, min, max, runs}}`` over the runs that finished."""
    out: dict = {}
    for key in dict.fromkeys(k for r in runs for k in r):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "runs": len(vals)}
    return out


def table(task: str, by_engine: dict) -> str:
    engines = list(by_engine)
    keys = list(dict.fromkeys(k for e in engines for k in by_engine[e]))
    lines = [f"| {task} | " + " | ".join(f"{e}: mean [min, max]" for e in engines) + " |",
             "|---|" + "---|" * len(engines)]
    for k in keys:
        cells = []
        for e in engines:
            s = by_engine[e].get(k)
            cells.append("-" if s is None else f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}] (n={s['runs']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="torch,bigdl")
    ap.add_argument("--tasks", default="knee,meniscus,whole,chest")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    engines, tasks = args.engines.split(","), args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    done: dict = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                              "date": time.strftime("%Y-%m-%d %H:%M")}, "commands": COMMANDS, "runs": {}}
    summary_path = ROOT / "bench" / "out" / "spread.json"
    if summary_path.exists():
        # Runs not asked for now (other engines, tasks or seeds) are kept: the engines
        # and seeds are measured in separate sessions (a BigDL knee fit takes 5x the torch one).
        old = json.loads(summary_path.read_text()).get("runs", {})
        done["runs"] = {t: {e: [r for r in rs if not (t in tasks and e in engines and r["seed"] in seeds)]
                            for e, rs in by.items()}
                        for t, by in old.items()}
    for engine in engines:
        for seed in seeds:
            for task in tasks:
                res = run_one(task, engine, seed)
                runs = done["runs"].setdefault(task, {}).setdefault(engine, [])
                runs.append({"seed": seed, **res})
                runs.sort(key=lambda r: r["seed"])
                print(f"{task} {engine} seed {seed}: " + json.dumps(metrics(task, res) or res), flush=True)
                summary_path.write_text(json.dumps(done, indent=2))
    done["summary"] = {t: {e: summarise([metrics(t, r) for r in rs]) for e, rs in by.items()}
                       for t, by in done["runs"].items()}
    summary_path.write_text(json.dumps(done, indent=2))
    for task, by in done["summary"].items():
        print("\n" + table(task, by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
