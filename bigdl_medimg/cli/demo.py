"""The embedded demo: phantom data generated on the spot, read by every reader, then the whole chain.

It writes knee MRI phantoms as DICOM series (one with a corrupt slice) and as
NIfTI image/mask pairs, and chest X-ray phantoms as PNG and DICOM DX, under
``<out>/data``; ingests each kind into a Parquet tensor table under
``<out>/tables``; checks that the DICOM and NIfTI copies of every knee agree
after reorientation to RAS; and renders ``<out>/preview.png``.  Then (unless
``readers_only``) it trains the three tasks briefly on fresh phantoms
(knee segmentation, meniscus tear on top of it, chest X-ray on a ChestX-ray14
replica), evaluates each on its held-out split, writes the clinical outputs
(NIfTI masks, DICOM SEG, prediction tables) and one HTML report.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "write_demo_archive", "run_training_chain"]

#: Brief training settings of the demo chain (2 cores, a few minutes per task).
DEMO_TRAINING = {
    # a 4-epoch taste: poly (the preset's) would decay to zero by epoch 4, the near-constant rate learns more
    "knee_cartilage": {"estimator": {"maxEpoch": 4, "patchesPerImage": 12, "lrSchedule": "inverse", "lrDecay": 1e-4}},
    "meniscus_tear": {"estimator": {"maxEpoch": 8, "batchSize": 4}},
    "chest_xray14": {"preprocessing": {"size": [64, 64]},
                     "estimator": {"topology": "densenet_tiny", "batchSize": 8, "maxEpoch": 6}},
}


def write_demo_archive(root: Path, seed: int = 0, spark=None) -> dict[str, Path]:
    """Write the demo's synthetic files; returns the folder of each kind."""
    from ..datasets.synth import synth_dataset

    knee = synth_dataset("knee", root, 4, seed=seed, shape=(16, 64, 64), spark=spark)
    chest = synth_dataset("chest", root, 8, seed=seed, size=128, spark=spark)
    bad = sorted((knee / "dicom" / "case_0003").iterdir())[7]
    bad.write_bytes(bad.read_bytes()[:-300])  # one corrupt slice: that series must be reported, not stacked
    return {"dicom": knee / "dicom", "nifti": knee / "nifti", "xray": chest}


def run_training_chain(spark, root: Path, seed: int = 0) -> dict:
    """Train, evaluate and predict the three tasks on fresh phantoms; one report. Returns what was written."""
    from .. import tasks
    from ..datasets.layouts import write_chestxray14_replica
    from ..datasets.synth import synth_dataset
    from ..report import load_results, write_report

    knee_data = synth_dataset("knee", root / "data" / "train", 32, seed=seed + 100, shape=(16, 48, 48))
    chest_data = write_chestxray14_replica(root / "data" / "chestxray14", n_patients=150, size=64, seed=seed + 7,
                                           prevalence=0.3)
    runs = root / "runs"
    done = {}
    for task, data, extra in (("knee_cartilage", knee_data, {}),
                              ("meniscus_tear", knee_data, {"seg_model": str(runs / "knee_cartilage" / "model")}),
                              ("chest_xray14", chest_data, {})):
        t0 = time.time()
        print(f"\n== {task}: train")
        cfg = tasks.task_config(task, overrides=DEMO_TRAINING[task])
        tasks.train(spark, task, str(data), str(runs / task), cfg, **extra)
        print(f"== {task}: evaluate")
        metrics = tasks.evaluate(spark, str(runs / task / "model"), str(data), str(runs / task / "evaluation"),
                                 split="test")
        headline = {k: metrics[k] for k in ("dice", "mean_auroc", "auroc") if k in metrics}
        print(f"== {task}: {headline} ({time.time() - t0:.0f}s)")
        done[task] = metrics
    print("\n== knee_cartilage: predict on the DICOM series (NIfTI masks + DICOM SEG)")
    done["predict"] = tasks.predict(spark, str(runs / "knee_cartilage" / "model"), str(knee_data / "dicom"),
                                    str(runs / "knee_cartilage" / "predictions"))
    results = [r for t in ("knee_cartilage", "meniscus_tear", "chest_xray14")
               for r in load_results(str(runs / t / "evaluation" / "results"))]
    done["report"] = write_report(str(root / "report.html"), title="bigdl-medimg demo", results=results,
                                  summary_dirs=[str(runs / t / "summaries") for t in
                                                ("knee_cartilage", "meniscus_tear", "chest_xray14")])
    return done


def run_demo(spark, out: str, *, seed: int = 0, summary=None, readers_only: bool = False) -> int:
    """Run the demo; returns the process exit code (0 when every check holds)."""
    from ..datasets.synth import render_preview
    from ..io.readers import read_dicom_series, read_images, read_nifti, read_tensors, write_tensors
    from ..tensor import get_affine, to_numpy
    from ..transforms import reorient

    t0 = time.time()
    root = Path(out).resolve()
    folders = write_demo_archive(root / "data", seed, spark)
    tables = root / "tables"
    jobs = {"series": (read_dicom_series, [folders["dicom"].as_uri()]),
            "nifti": (read_nifti, [folders["nifti"].as_uri()]),
            "images": (read_images, [(folders["xray"] / "png").as_uri(), (folders["xray"] / "dicom").as_uri()])}
    for name, (reader, paths) in jobs.items():
        write_tensors(reader(spark, paths), str(tables / name), mode="overwrite")
        summary(read_tensors(spark, str(tables / name)), f"{name:7s}")
    series = {Path(r.path[0]).parent.name: r for r in read_tensors(spark, str(tables / "series")).collect()}
    niftis = {Path(r.path).name: r for r in read_tensors(spark, str(tables / "nifti")).collect()}
    agree = failed = 0
    for case, row in sorted(series.items()):
        if row.image is None:
            failed += 1
            print(f"{case}: not assembled ({row.error})")
            continue
        n = niftis[f"{case}_image.nii.gz"]
        a, aa = reorient(to_numpy(row.image), get_affine(row.image), "RAS")
        b, ba = reorient(to_numpy(n.image), get_affine(n.image), "RAS")
        same = bool(np.array_equal(a, b) and np.allclose(aa, ba, atol=1e-4))
        agree += same
        print(f"{case}: {a.shape} voxels; DICOM series and NIfTI agree after RAS reorientation: {same}")
    preview = render_preview(root / "preview.png", seed=seed)
    print(f"preview of the phantoms: {preview}")
    ok = agree == 3 and failed == 1
    if not readers_only:
        done = run_training_chain(spark, root, seed)
        ok = ok and done["predict"]["masks"]["failed"] == 0
        print(f"\nreport: {done['report']}")
    print(f"demo finished in {time.time() - t0:.1f}s; tensor tables in {tables}")
    return 0 if ok else 1
