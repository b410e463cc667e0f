"""SegmentationEstimator: brief real BigDL training, Dice, checkpoints with resume, summaries, presets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import types as T

from bigdl_medimg.datasets.phantoms import knee_phantom
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import from_numpy, tensor_type, to_numpy
from bigdl_medimg.transforms import PercentileScale

SCHEMA = T.StructType([T.StructField("case", T.IntegerType()), T.StructField("image", tensor_type()),
                       T.StructField("mask", tensor_type()), T.StructField("is_val", T.BooleanType())])
SHAPE = (16, 48, 48)
SMALL = dict(patchShape=[16, 32, 32], patchesPerImage=8, posFraction=0.8, depth=2, baseFilters=8,
             batchSize=16, learningRate=3e-3, classWeights=[0.02, 1, 1, 1, 1])
EPOCHS = 8  # x 128 patches: 64 iterations; calibrated held-out mean Dice 0.28-0.43 after 6 epochs, 0.40 after 8


def _frame(spark, seeds, is_val):
    rows = []
    for s in seeds:
        c = knee_phantom(s, shape=SHAPE)
        rows.append((s, from_numpy(c.image, c.affine), from_numpy(c.mask, c.affine), is_val))
    return PercentileScale().transform(spark.createDataFrame(rows, SCHEMA))


@pytest.fixture(scope="module")
def data(spark):
    train = _frame(spark, range(8), False)
    val = _frame(spark, [500, 501], True)
    test = _frame(spark, [900, 901], False)
    return train.unionByName(val).cache(), test.cache()


@pytest.fixture(scope="module")
def trained(spark, data, tmp_path_factory):
    from bigdl_medimg.ml import SegmentationEstimator

    root = tmp_path_factory.mktemp("seg")
    est = SegmentationEstimator(validationIndicatorCol="is_val", maxEpoch=EPOCHS, checkpointDir=str(root / "ck"),
                                summaryDir=str(root / "summ"), **{**SMALL, "patchesPerImage": 16})
    model = est.fit(data[0])
    return est, model, root


@pytest.mark.slow
def test_brief_training_updates_the_network_and_segments_held_out_volumes(spark, data, trained):
    from bigdl.dllib.optim.optimizer import TrainSummary

    _est, model, root = trained
    assert [r["epoch"] for r in model.history] == list(range(1, EPOCHS + 1))
    assert all(r["patches"] == 128 for r in model.history)
    assert all(0.0 <= r["val_dice"] <= 1.0 and len(r["val_dice_per_class"]) == 4 for r in model.history)
    loss = np.array([v[1] for v in TrainSummary(str(root / "summ"), "segmentation").read_scalar("Loss")])
    assert loss.size == EPOCHS * 8 and np.all(np.isfinite(loss))
    # BigDL really updated the network: the weights moved away from a fresh network's
    from bigdl_medimg.models.unet3d import unet3d

    fresh = unet3d(5, (16, 32, 32), depth=2, base_filters=8, batch_norm=True).get_weights()
    trained_w = model.network.get_weights()
    assert [w.shape for w in fresh] == [w.shape for w in trained_w]
    [fit] = (root / "ck").glob("fit-*")  # the fit's own folder under checkpointDir
    last_ck = json.loads((fit / f"epoch_{EPOCHS:04d}" / "state.json").read_text())
    assert [h["epoch"] for h in last_ck["history"]] == list(range(1, EPOCHS + 1))
    from bigdl.dllib.keras.models import load_model

    assert any(not np.allclose(a, b) for a, b in zip(fresh, trained_w))
    # best-epoch selection: the returned network is the best validation epoch's (weights and batch-norm
    # statistics): it reproduces that epoch's validation Dice, and it is the fit's saved best model
    from bigdl_medimg.ml import volume_dice

    best = max(model.history, key=lambda r: r["val_dice"])
    assert model.training_stats["best_epoch"] == best["epoch"]
    again = volume_dice(model.transform(data[0].filter("is_val")), "segmentation", "mask", 5)
    assert again["mean"] == pytest.approx(best["val_dice"], abs=1e-6)
    assert all(np.allclose(a, b) for a, b in zip(load_model(str(fit / "best_model")).get_weights(), trained_w))
    rows = model.transform(data[1]).collect()
    assert len(rows) == 2
    for r in rows:
        seg = to_numpy(r.segmentation)
        assert seg.shape == SHAPE and seg.dtype == np.uint8 and seg.max() <= 4


@pytest.mark.slow
def test_brief_training_reaches_dice_far_above_chance_on_unseen_phantoms(spark, data, trained):
    from bigdl_medimg.ml import volume_dice

    _est, model, _ = trained
    test = data[1]
    # chance: labelling voxels at random with the class frequencies gives Dice ~ the class's share
    shares = []
    for r in test.collect():
        m = to_numpy(r.mask)
        shares.append([np.mean(m == k) for k in range(1, 5)])
    chance = float(np.mean(shares))
    dice = volume_dice(model.transform(test), "segmentation", "mask", 5)
    assert chance < 0.05
    assert dice["mean"] > 0.2 and dice["mean"] > 5 * chance, (dice, chance)
    assert model.history[-1]["val_dice"] > 2 * model.history[0]["val_dice"]


@pytest.mark.slow
def test_summaries_are_tensorboard_files_bigdl_reads(trained):
    from bigdl.dllib.optim.optimizer import TrainSummary, ValidationSummary

    _est, model, root = trained
    loss = TrainSummary(str(root / "summ"), "segmentation").read_scalar("Loss")
    assert len(loss) == EPOCHS * 8  # every iteration of every epoch
    dice = ValidationSummary(str(root / "summ"), "segmentation").read_scalar("Dice")
    assert [int(d[0]) for d in dice] == list(range(1, EPOCHS + 1))
    assert np.allclose([d[1] for d in dice], [r["val_dice"] for r in model.history], atol=1e-6)


@pytest.mark.slow
def test_evaluators_and_report_on_a_trained_model(spark, data, trained, tmp_path):
    from bigdl_medimg.metrics import DiceEvaluator, SurfaceDistanceEvaluator
    from bigdl_medimg.ml import volume_dice
    from bigdl_medimg.report import SegmentationResults, write_report
    from test_report import assert_real_plot, report_images

    _est, model, root = trained
    scored = model.transform(data[1]).cache()
    dice = DiceEvaluator(numClasses=5).evaluate(scored)
    assert dice == pytest.approx(volume_dice(scored, "segmentation", "mask", 5)["mean"])
    hd = SurfaceDistanceEvaluator(numClasses=5).evaluate(scored)
    assert 0 < hd  # mm; infinite when a class is missed entirely in a volume
    res = SegmentationResults.from_dataframe(scored, numClasses=5, keyCol="case",
                                             classNames=["femoral", "tibial", "patellar", "meniscus"])
    assert np.nanmean([np.nanmean(v["dice"]) for v in res.volumes]) == pytest.approx(
        np.nanmean(list(DiceEvaluator(numClasses=5).per_class(scored).values())), abs=0.05)
    text = open(write_report(str(tmp_path / "r.html"), results=[res], summary_dirs=[str(root / "summ")])).read()
    imgs = report_images(text)
    assert [a.split(":")[0] for a, *_ in imgs][0] == "segmentation"
    assert len(imgs) == 4  # curves, Dice, confusion, overlays
    for _alt, img, w, h in imgs:
        assert_real_plot(img, w, h)
    scored.unpersist()


@pytest.mark.slow
def test_interrupted_fit_resumes_from_the_saved_epoch(spark, data, tmp_path, monkeypatch):
    from bigdl_medimg.ml import SegmentationEstimator
    from bigdl_medimg.ml import segmentation_estimator as mod

    ck = tmp_path / "ck"
    est = SegmentationEstimator(maxEpoch=3, checkpointDir=str(ck), **SMALL)
    real = mod.SegmentationEstimator._patches

    def crash_in_epoch_3(self, df, epoch):
        if epoch == 3:
            raise RuntimeError("executor lost")
        return real(self, df, epoch)

    monkeypatch.setattr(mod.SegmentationEstimator, "_patches", crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="executor lost"):
        est.fit(data[0])
    monkeypatch.setattr(mod.SegmentationEstimator, "_patches", real)
    [fit] = ck.glob("fit-*")  # the fit's own folder under checkpointDir
    saved = SegmentationEstimator.latest_checkpoint(str(fit))
    assert saved.endswith("/epoch_0002")
    state = json.loads(Path(saved, "state.json").read_text())
    from bigdl.dllib.keras.models import load_model

    saved_weights = load_model(str(Path(saved, "model"))).get_weights()
    resumed = SegmentationEstimator(maxEpoch=3, checkpointDir=str(ck), **SMALL)
    from bigdl_medimg.ml.training import read_checkpoint

    where, got = read_checkpoint(str(fit))
    assert got["epoch"] == 2 and [r["epoch"] for r in got["history"]] == [1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(load_model(str(Path(where, "model"))).get_weights(), saved_weights))
    # a volume whose image could not be read (null) is left out and counted, not lost silently
    c = knee_phantom(999, shape=SHAPE)
    broken = PercentileScale().transform(spark.createDataFrame([(999, None, from_numpy(c.mask, c.affine), False)],
                                                               SCHEMA))
    model = resumed.fit(data[0].unionByName(broken))
    assert model.training_stats == {"volumes": 11, "skipped_volumes": 1, "best_epoch": 0}  # nothing validated
    assert [r["epoch"] for r in model.history] == [1, 2, 3]
    assert model.history[:2] == state["history"]  # epochs 1-2 came from the checkpoint, only epoch 3 trained
    # the unreadable volume cannot train, so this is the same fit: it resumed in the same folder
    assert [p.name for p in ck.glob("fit-*")] == [fit.name]
    assert SegmentationEstimator.latest_checkpoint(str(fit)).endswith("/epoch_0003")


@pytest.mark.slow
def test_trained_model_in_a_saved_pipeline(spark, data, trained, tmp_path):
    _est, model, _ = trained
    pipe = PipelineModel(stages=[model])
    before = [to_numpy(r.segmentation) for r in pipe.transform(data[1]).orderBy("case").collect()]
    pipe.write().overwrite().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    after = [to_numpy(r.segmentation) for r in loaded.transform(data[1]).orderBy("case").collect()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # what the fit recorded survives save and load, and the estimator's shared Params reached the model
    back = loaded.stages[0]
    assert back.history == model.history and len(back.history) == EPOCHS
    assert back.training_stats == model.training_stats and back.training_stats["volumes"] > 0
    assert back.getPatchShape() == _est.getPatchShape() and back.getNClasses() == _est.getNClasses()


def test_dice_ce_loss_equals_a_numpy_reference_with_its_gradient(spark):
    from bigdl_medimg.ml import dice_ce_loss

    rng = np.random.default_rng(3)
    b, v, c = 3, 40, 4
    logits = rng.normal(size=(b, v, c)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    t = np.eye(c, dtype=np.float32)[rng.integers(0, c, (b, v))]
    t[0, :, 2] = 0  # a class absent from one sample
    t[0, :, 0] = 1 - t[0].sum(-1) + t[0, :, 0]
    w = np.array([0.1, 1.0, 2.0, 0.5], np.float32)
    crit = dice_ce_loss(v, w, smooth=1.0)

    def ref(pp):  # float64 throughout, so the finite differences below are exact enough
        t64, w64 = t.astype(np.float64), w.astype(np.float64)
        wt = t64 * w64
        ce = -(wt * np.log(pp)).sum((1, 2)) / wt.sum((1, 2))
        dice = (2 * (pp * t64).sum(1) + 1) / (pp.sum(1) + t64.sum(1) + 1)
        return float(np.mean(ce + 1 - dice[:, 1:].mean(1)))

    p64 = p.astype(np.float64)
    assert crit.forward(t, p) == pytest.approx(ref(p64), rel=1e-5)
    grad = np.asarray(crit.backward(t, p))
    for idx in [(0, 5, 1), (2, 17, 3), (1, 0, 0)]:
        up, down = p64.copy(), p64.copy()
        up[idx] += 1e-4
        down[idx] -= 1e-4
        assert grad[idx] == pytest.approx((ref(up) - ref(down)) / 2e-4, rel=2e-2, abs=5e-5)


def test_preset_and_param_validation(data):
    from bigdl_medimg.ml import SegmentationEstimator, load_preset

    preset = load_preset("knee_cartilage")
    est = SegmentationEstimator.from_preset("knee_cartilage", maxEpoch=2)
    assert est.getNClasses() == 5 and est.getMaxEpoch() == 2 and est.getClassWeights()[0] == preset["classWeights"][0]
    assert est.getClassNames()[1:] == ["femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus"]
    with pytest.raises(ConfigError, match="unknown task preset"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="unknown Params"):
        SegmentationEstimator.from_preset("knee_cartilage", wings=2)
    for bad, msg in (({"classWeights": [1.0]}, "classWeights"), ({"patchShape": [15, 32, 32]}, "divisible"),
                     ({"optimizer": "rmsprop"}, "optimizer"), ({"lrSchedule": "exponential"}, "not available with adam"),
                     ({"batchSize": 0}, "batchSize"), ({"loss": "focal"}, "loss must be")):
        with pytest.raises(ConfigError, match=msg):
            SegmentationEstimator(**bad).fit(data[0])
    with pytest.raises(ConfigError, match="column 'nope' not found"):
        SegmentationEstimator(maskCol="nope").fit(data[0])
