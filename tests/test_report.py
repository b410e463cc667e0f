"""The HTML report: real PNG plots of the right size, tables against published values, results on disk, CLI."""
from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import types as T

from bigdl_medimg.datasets.phantoms import CHEST_LABELS, knee_phantom
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.ml.tfevents import ScalarWriter, read_scalars, read_summaries
from bigdl_medimg.report import ClassificationResults, SegmentationResults, load_results, render_report
from bigdl_medimg.tensor import from_numpy, tensor_type

KNEE = ["femoral cartilage", "tibial cartilage", "patellar cartilage", "meniscus"]


def report_images(text: str) -> list[tuple[str, Image.Image, int, int]]:
    """Every embedded image: (alt text, decoded PNG, declared width, declared height)."""
    out = []
    for m in re.finditer(r'<img src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)" alt="([^"]*)"',
                         text):
        img = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
        img.load()
        out.append((m.group(4), img, int(m.group(2)), int(m.group(3))))
    return out


def assert_real_plot(img: Image.Image, w: int, h: int) -> None:
    assert img.format == "PNG" and img.size == (w, h) and w >= 300 and h >= 250
    grey = np.asarray(img.convert("L"), dtype=np.float64)
    rgb = np.asarray(img.convert("RGB"))
    inked = (grey < 200).mean()
    assert 0.01 < inked < 0.9, inked  # lines, text and areas, not a blank canvas or a solid block
    assert grey.std() > 10
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20  # antialiased drawing, not a flat fill


@pytest.fixture(scope="module")
def classification(spark):
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random((n, 14)) < 0.25).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, (n, 14)) + 1.6 * y - 0.8)))
    rows = [(f"1.2.{i}", s[i].tolist(), y[i].tolist()) for i in range(n)] + [("1.2.999", None, [0] * 14)]
    df = spark.createDataFrame(rows, "sop_instance_uid string, probability array<double>, labels array<int>")
    return ClassificationResults.from_dataframe(df, labelNames=CHEST_LABELS, labelCol="labels", numBootstrap=200,
                                                title="Chest X-ray (synthetic scores)")


@pytest.fixture(scope="module")
def segmentation(spark):
    schema = T.StructType([T.StructField("case", T.StringType()), T.StructField("image", tensor_type()),
                           T.StructField("mask", tensor_type()), T.StructField("segmentation", tensor_type())])
    rows = []
    for i in range(5):
        c = knee_phantom(0, shape=(10, 32, 32))
        pred = c.mask.copy()
        rng = np.random.default_rng(i)
        flip = rng.random(pred.shape) < 0.03 * (i + 1)  # one knee, predictions of graded quality
        pred[flip] = rng.integers(0, 5, int(flip.sum()))
        rows.append((f"case{i}", from_numpy(c.image, c.affine), from_numpy(c.mask, c.affine),
                     from_numpy(pred, c.affine)))
    rows.append(("case_missing", from_numpy(c.image, c.affine), from_numpy(c.mask, c.affine), None))
    df = spark.createDataFrame(rows, schema)
    return SegmentationResults.from_dataframe(df, numClasses=5, classNames=KNEE, keyCol="case",
                                              title="Knee cartilage (perturbed reference masks)")


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    root = tmp_path_factory.mktemp("summ")
    train, val = ScalarWriter(str(root / "segmentation" / "train")), ScalarWriter(str(root / "segmentation" / "validation"))
    for it in range(1, 41):
        train.add_scalar("Loss", 1.5 * np.exp(-it / 15) + 0.05 * np.sin(it), it)
    for ep in range(1, 6):
        val.add_scalar("Dice", 0.2 + 0.15 * ep, ep)
    return root


def test_event_files_read_back_without_the_jvm(summaries):
    got = read_scalars(str(summaries / "segmentation" / "train"))
    assert [p[0] for p in got["Loss"]] == list(range(1, 41))
    assert got["Loss"][0][1] == pytest.approx(1.5 * np.exp(-1 / 15) + 0.05 * np.sin(1), rel=1e-6)
    both = read_summaries(str(summaries))
    assert set(both) == {"segmentation"}
    assert [round(v, 5) for _s, v, _t in both["segmentation"]["validation"]["Dice"]] == [0.35, 0.5, 0.65, 0.8, 0.95]
    assert read_summaries(str(summaries / "segmentation"))["segmentation"]["train"]["Loss"] == got["Loss"]


def test_classification_results_match_the_evaluator_and_published_tables(classification):
    res = classification
    assert res.scores.shape == (300, 14) and res.n_unscored == 1
    from sklearn.metrics import roc_auc_score

    for k, lab in enumerate(res.summary["labels"]):
        assert lab["auroc"] == pytest.approx(roc_auc_score(res.labels[:, k], res.scores[:, k]))
    text = render_report(results=[res])
    assert "Mean AUROC <b>%.3f</b>" % res.summary["mean_auroc"] in text
    assert "CheXNet (Rajpurkar 2017): 0.841" in text and "ChestX-ray14 baseline (Wang 2017): 0.738" in text
    assert "<td>Atelectasis</td>" in text and "<td>0.809</td>" in text and "<td>0.716</td>" in text
    imgs = report_images(text)
    assert [a.split(" ")[0] for a, *_ in imgs] == ["AUROC", "ROC", "Confusion"]
    for _alt, img, w, h in imgs:
        assert_real_plot(img, w, h)
    roc = imgs[1][1]
    assert roc.size == (1200, 1200)  # 14 labels: a 4 x 4 grid of 3-inch panels at 100 dpi


def test_segmentation_results_are_computed_per_volume_and_pick_overlays(segmentation):
    res = segmentation
    assert [v["key"] for v in res.volumes] == [f"case{i}" for i in range(5)] + ["case_missing"]
    assert res.volumes[-1]["error"] == "prediction is null"
    means = [np.nanmean(v["dice"]) for v in res.volumes[:5]]
    assert np.all(np.diff(means) < 0)  # more noise, lower Dice
    assert [o["kind"] for o in res.overlays] == ["best", "median", "worst"]
    assert [o["key"] for o in res.overlays] == ["case0", "case2", "case4"]
    for o in res.overlays:
        assert o["image"].shape == o["reference"].shape == o["prediction"].shape == (32, 32)
        assert (o["reference"] > 0).any()
    assert res.confusion.sum() == 5 * 10 * 32 * 32
    per = res.per_class()
    assert len(per["dice"]) == 4 and all(0.2 < d < 1 for d in per["dice"])
    assert all(h > 0 for h in per["hd"])


def test_full_report_has_real_plots_and_round_trips_through_saved_results(
        classification, segmentation, summaries, tmp_path):
    from bigdl_medimg.report import write_report

    path = write_report(str(tmp_path / "r" / "report.html"), title="Evaluation",
                        results=[classification, segmentation], summary_dirs=[str(summaries)])
    text = open(path, encoding="utf-8").read()
    imgs = report_images(text)
    kinds = [a.split(":")[0].split(" ")[0] for a, *_ in imgs]
    assert kinds == ["segmentation", "AUROC", "ROC", "Confusion", "Dice", "Voxel", "Best,"]
    for _alt, img, w, h in imgs:
        assert_real_plot(img, w, h)
    assert imgs[-1][1].size == (900, 900)  # three rows of overlays
    assert "src=\"http" not in text and "<link" not in text  # self-contained
    assert "Not scored:" in text and "prediction is null" in text
    # the same report from results saved to disk and loaded again
    classification.save(str(tmp_path / "cls"))
    segmentation.save(str(tmp_path / "seg"))
    again = render_report(title="Evaluation", results=load_results(str(tmp_path / "cls"))
                          + load_results(str(tmp_path / "seg")), summary_dirs=[str(summaries)])

    def tables(t):
        return re.findall(r"<table>.*?</table>", t, flags=re.S)

    assert tables(again) == tables(text)
    with pytest.raises(ConfigError, match="no saved results"):
        load_results(str(tmp_path))
    with pytest.raises(ConfigError, match="nothing to report"):
        render_report()
    with pytest.raises(ConfigError, match="no BigDL summaries"):
        render_report(summary_dirs=[str(tmp_path)])


def test_report_command_line(classification, summaries, tmp_path):
    classification.save(str(tmp_path / "cls"))
    out = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "bigdl_medimg", "report", "--results", str(tmp_path / "cls"),
           "--summaries", str(summaries), "--out", str(out), "--title", "CLI report"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"report: {out}" in done.stdout
    assert len(report_images(out.read_text())) == 4
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "nowhere"), "--out", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no saved results" in bad.stderr
