"""The torch engine: DDP on a Spark barrier stage behind the same estimators, models and persistence."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pyspark.ml import PipelineModel

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import get_affine, to_numpy

from test_classification import EASY, _chest_frame
from test_segmentation_estimator import SHAPE, SMALL, _frame

TORCH_EPOCHS = 6  # x 128 patches at batch 16: 48 iterations; held-out mean Dice 0.35-0.5 here


def test_import_never_imports_torch():
    code = ("import sys, bigdl_medimg, bigdl_medimg.ml, bigdl_medimg.models; "
            "from bigdl_medimg.ml import SegmentationEstimator, ClassificationEstimator; "
            "SegmentationEstimator(); ClassificationEstimator(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_engine_torch_without_torch_says_how_to_install_it(monkeypatch):
    from bigdl_medimg.ml import ClassificationEstimator, SegmentationEstimator
    from bigdl_medimg.models import build_network

    monkeypatch.setitem(sys.modules, "torch", None)  # what Python does for a package that is not installed
    for est in (SegmentationEstimator(engine="torch"), ClassificationEstimator(engine="torch", labelNames=["a"])):
        with pytest.raises(ConfigError, match=r"pip install 'bigdl-medimg\[torch\]'"):
            est._validate()
    with pytest.raises(ConfigError, match="needs PyTorch"):
        build_network("unet3d", "torch", n_outputs=2, input_shape=[1, 8, 8, 8])
    with pytest.raises(ConfigError, match="engine must be one of bigdl, torch"):
        SegmentationEstimator(engine="jax")._validate()


def test_torch_losses_equal_the_bigdl_criteria(spark):
    """The torch engine's losses give the BigDL criteria's values on the same inputs."""
    import torch

    from bigdl_medimg.ml import dice_ce_loss as bigdl_dice_ce
    from bigdl_medimg.ml.classification import weighted_bce_loss as bigdl_bce
    from bigdl_medimg.ml.engines.torch_tasks import dice_ce_loss, weighted_bce_loss

    rng = np.random.default_rng(3)
    b, v, c = 3, 40, 4
    logits = rng.normal(size=(b, c, v)).astype(np.float32)
    onehot = np.eye(c, dtype=np.float32)[rng.integers(0, c, (b, v))].transpose(0, 2, 1).copy()
    w = np.array([0.1, 1.0, 2.0, 0.5], np.float32)
    ours = float(dice_ce_loss(torch.from_numpy(logits), torch.from_numpy(onehot), torch.from_numpy(w)))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    theirs = bigdl_dice_ce(v, w).forward(onehot.transpose(0, 2, 1).copy(), p.transpose(0, 2, 1).copy())
    assert ours == pytest.approx(theirs, rel=1e-4)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.integers(0, 2, (4, 3)).astype(np.float32)
    wp, wn = np.array([0.7, 0.5, 0.9], np.float32), np.array([0.3, 0.5, 0.1], np.float32)
    ours = float(weighted_bce_loss(torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(wp), torch.from_numpy(wn)))
    assert ours == pytest.approx(bigdl_bce(3, wp, wn).forward(y, 1 / (1 + np.exp(-z))), rel=1e-4)


def test_every_topology_has_equal_parameter_counts_on_both_engines(spark):
    from bigdl_medimg.models import build_network
    from bigdl_medimg.models.network import NETWORK_TOPOLOGIES, torch_parameter_count

    shapes = {"unet3d": [1, 16, 32, 32], "cnn3d": [1, 24, 24, 64], "cnn3d_small": [1, 24, 24, 64],
              "densenet121": [1, 224, 224], "densenet_small": [1, 64, 64], "densenet_tiny": [1, 64, 64],
              "resnet50": [3, 224, 224], "resnet_small": [1, 64, 64]}
    assert set(shapes) == set(NETWORK_TOPOLOGIES)
    for name, shape in shapes.items():
        kw = dict(batch_norm=True) if name == "unet3d" else {}
        bigdl = build_network(name, "bigdl", n_outputs=5, input_shape=shape, **kw)
        torch_net = build_network(name, "torch", n_outputs=5, input_shape=shape, **kw)
        n_bigdl = sum(int(np.prod(w.shape)) for w in bigdl.get_weights())
        assert torch_parameter_count(torch_net) == n_bigdl, name
    import torch

    out = build_network("unet3d", "torch", n_outputs=3, input_shape=[1, 8, 16, 16], depth=1)(torch.zeros(2, 1, 8, 16, 16))
    assert tuple(out.shape) == (2, 3, 8, 16, 16)


# ------------------------------------------------------------ segmentation ---
@pytest.fixture(scope="module")
def seg_data(spark):
    train = _frame(spark, range(8), False).unionByName(_frame(spark, [500, 501], True))
    return train.cache(), _frame(spark, [900, 901], False).cache()


@pytest.fixture(scope="module")
def torch_seg(spark, seg_data, tmp_path_factory):
    from bigdl_medimg.ml import SegmentationEstimator

    root = tmp_path_factory.mktemp("torch-seg")
    est = SegmentationEstimator(validationIndicatorCol="is_val", maxEpoch=TORCH_EPOCHS, engine="torch",
                                checkpointDir=(root / "ck").as_uri(), summaryDir=str(root / "summ"),
                                classNames=["background", "femoral", "tibial", "patellar", "meniscus"],
                                **{**SMALL, "patchesPerImage": 16})
    return est, est.fit(seg_data[0]), root


@pytest.mark.slow
def test_two_rank_fit_ends_with_identical_weights_and_segments_unseen_volumes(spark, seg_data, torch_seg):
    from bigdl.dllib.optim.optimizer import TrainSummary

    from bigdl_medimg.ml import volume_dice
    from bigdl_medimg.ml.engines.torch import weights_digest

    _est, model, root = torch_seg
    stats = model.training_stats
    assert stats["ranks"] == 2 and len(set(stats["rank_weight_digests"])) == 1
    assert stats["rank_weight_digests"][0] == weights_digest(model.network)  # the driver holds rank 0's weights
    assert [r["epoch"] for r in model.history] == list(range(1, TORCH_EPOCHS + 1))
    assert all(r["patches"] == 128 for r in model.history)
    # the same TensorBoard tags and folders as the BigDL engine, read by BigDL's own reader
    loss = np.array([v[1] for v in TrainSummary(str(root / "summ"), "segmentation").read_scalar("Loss")])
    assert loss.size == TORCH_EPOCHS * 8 and np.all(np.isfinite(loss))
    from bigdl_medimg.ml.tfevents import read_scalars

    assert len(read_scalars(str(root / "summ" / "segmentation" / "validation"))["Dice"]) == TORCH_EPOCHS
    [fit] = (root / "ck").glob("fit-*")  # the fit's own folder under checkpointDir
    assert sorted(p.name for p in fit.glob("epoch_*")) == [f"epoch_{TORCH_EPOCHS - 1:04d}",
                                                                      f"epoch_{TORCH_EPOCHS:04d}"]
    dice = volume_dice(model.transform(seg_data[1]), "segmentation", "mask", 5)
    assert dice["mean"] > 0.2, dice  # chance ~0.03
    assert model.history[-1]["val_dice"] > model.history[0]["val_dice"]
    # best-epoch selection: the network returned is the best validation epoch's and reproduces its Dice
    # (scored here by Spark, there inside the ranks: thread counts differ, so float near-ties may flip a voxel)
    best = max(model.history, key=lambda r: r["val_dice"])
    assert stats["best_epoch"] == best["epoch"]
    again = volume_dice(model.transform(seg_data[0].filter("is_val")), "segmentation", "mask", 5)
    assert again["mean"] == pytest.approx(best["val_dice"], abs=2e-3)


@pytest.mark.slow
def test_sliding_window_on_spark_equals_a_single_process_reference(spark, seg_data, torch_seg):
    import torch

    from bigdl_medimg.ml.inference import sliding_window_predict

    _est, model, _root = torch_seg
    net = model.network.eval()

    def scores(x):  # the plain numpy tiling and blending, the network called directly
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(np.ascontiguousarray(x, np.float32))), 1).numpy()

    from pyspark.sql import functions as F
    from test_segmentation_model import counted

    # a third row: the first volume's voxels under another affine, scored on its own grid
    test = seg_data[1]
    moved = test.limit(1).withColumn("case", F.lit(-1)).withColumn(
        "image", F.struct("image.data", "image.dtype", "image.shape",
                          F.array(*[F.lit(float(v)) for v in np.diag([3.0, 0.5, 0.5, 1.0]).ravel()]).alias("affine")))
    tapped, runs = counted(spark, test.unionByName(moved))
    out = model.setProbabilityCol("prob").transform(tapped).select("case", "image", "prob", "segmentation").collect()
    model.setProbabilityCol("")
    assert runs.value == 3  # the upstream ran once
    by_case = {r.case: r for r in out}
    assert np.array_equal(get_affine(by_case[-1].segmentation), np.diag([3.0, 0.5, 0.5, 1.0]))
    first = next(r for r in out if r.case != -1 and np.array_equal(to_numpy(r.image), to_numpy(by_case[-1].image)))
    assert np.array_equal(to_numpy(first.segmentation), to_numpy(by_case[-1].segmentation))
    assert not np.array_equal(get_affine(first.segmentation), get_affine(by_case[-1].segmentation))
    rows = [r for r in out if r.case != -1]
    assert len(rows) == 2
    for r in rows:
        img = to_numpy(r.image)
        ref = sliding_window_predict(img[np.newaxis], scores, tuple(SMALL["patchShape"]), 0.5, "gaussian", 4)
        got = to_numpy(r.prob)
        assert got.shape == (5,) + SHAPE and np.allclose(got, ref, atol=1e-5)
        seg = to_numpy(r.segmentation)
        assert np.array_equal(seg, np.argmax(got, axis=0))
        # the reference runs with other thread counts: float rounding may flip exact near-ties only
        top2 = np.sort(ref, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-4
        assert clear.mean() > 0.99 and np.array_equal(seg[clear], np.argmax(ref, axis=0)[clear])
        # and the reference is the library's tiling: every window a (4, 16, 32, 32) softmax, Gaussian-blended
        assert np.allclose(ref.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_a_torch_fit_from_its_checkpoint(spark, seg_data, torch_seg):
    from bigdl_medimg.ml import SegmentationEstimator
    from bigdl_medimg.ml.training import read_checkpoint

    est, model, root = torch_seg
    [fit] = (root / "ck").glob("fit-*")
    _where, state = read_checkpoint(str(fit))
    assert state["epoch"] == TORCH_EPOCHS and state["history"] == model.history
    # one more epoch is the same fit continued (maxEpoch is not part of the fingerprint under this schedule)
    more = SegmentationEstimator(**{**{p.name: v for p, v in est.extractParamMap().items()},
                                    "maxEpoch": TORCH_EPOCHS + 1, "summaryDir": "", "resume": "require"})
    resumed = more.fit(seg_data[0])
    assert [r["epoch"] for r in resumed.history] == list(range(1, TORCH_EPOCHS + 2))
    assert resumed.history[:TORCH_EPOCHS] == model.history  # only the last epoch trained
    assert read_checkpoint(str(fit))[1]["epoch"] == TORCH_EPOCHS + 1
    assert [p.name for p in (root / "ck").glob("fit-*")] == [fit.name]


@pytest.mark.slow
def test_torch_model_in_a_pipeline_loads_in_a_fresh_process(spark, seg_data, torch_seg, tmp_path):
    from bigdl_medimg.io import write_tensors
    from bigdl_medimg.transforms import PercentileScale

    _est, model, _root = torch_seg
    # the pipeline starts from the raw phantoms: PercentileScale is its first stage
    pipe = PipelineModel(stages=[PercentileScale(), model])
    pipe.write().overwrite().save(str(tmp_path / "pipe"))
    from test_segmentation_estimator import SCHEMA

    from bigdl_medimg.datasets.phantoms import knee_phantom
    from bigdl_medimg.tensor import from_numpy

    rows = []
    for s in (900, 901):
        c = knee_phantom(s, shape=SHAPE)
        rows.append((s, from_numpy(c.image, c.affine), from_numpy(c.mask, c.affine), False))
    raw = spark.createDataFrame(rows, SCHEMA)
    write_tensors(raw, str(tmp_path / "in"))
    here = {r.case: to_numpy(r.segmentation) for r in pipe.transform(raw).select("case", "segmentation").collect()}
    script = textwrap.dedent(f"""
        import json, numpy as np
        from pyspark.ml import PipelineModel
        from bigdl_medimg import get_spark
        from bigdl_medimg.io import read_tensors
        from bigdl_medimg.tensor import to_numpy
        spark = get_spark("local", master="local[2]")
        pipe = PipelineModel.load({str(tmp_path / "pipe")!r})
        assert pipe.stages[-1].getEngine() == "torch"
        with open({str(tmp_path / "record.json")!r}, "w") as f:
            json.dump({{"history": pipe.stages[-1].history, "stats": pipe.stages[-1].training_stats,
                       "classNames": pipe.stages[-1].getClassNames()}}, f)
        out = pipe.transform(read_tensors(spark, {str(tmp_path / "in")!r})).select("case", "segmentation").collect()
        for r in out:
            np.save({str(tmp_path)!r} + f"/seg_{{r.case}}.npy", to_numpy(r.segmentation))
        print(json.dumps(sorted(r.case for r in out)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [900, 901]
    # the model's record of its fit and the estimator's class names came through the save
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["history"] == json.loads(json.dumps(model.history)) and len(record["history"]) == TORCH_EPOCHS
    assert record["stats"] == json.loads(json.dumps(model.training_stats)) and record["stats"]["ranks"] == 2
    assert record["classNames"] == _est.getClassNames() != []
    for case, seg in here.items():
        assert np.array_equal(np.load(tmp_path / f"seg_{case}.npy"), seg)
        assert seg.max() > 0


# ----------------------------------------------------------- classification ---
@pytest.fixture(scope="module")
def chest_data(spark):
    train = _chest_frame(spark, range(160), False).unionByName(_chest_frame(spark, range(1000, 1048), True))
    return train.cache(), _chest_frame(spark, range(2000, 2048), False).cache()


@pytest.mark.slow
def test_torch_classifier_beats_chance_keeps_its_best_epoch_and_round_trips(spark, chest_data, tmp_path):
    from sklearn.metrics import roc_auc_score

    from bigdl_medimg.ml import ClassificationEstimator, ClassificationModel

    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], engine="torch",
                                  topology="densenet_tiny", validationIndicatorCol="is_val", maxEpoch=5,
                                  batchSize=16, learningRate=3e-3)
    model = est.fit(chest_data[0])
    stats = model.training_stats
    assert stats["ranks"] == 2 and len(set(stats["rank_weight_digests"])) == 1
    assert stats["train_images"] == 160 and stats["val_images"] == 48
    best = max(model.history, key=lambda r: r["val_auroc"])
    assert stats["best_epoch"] == best["epoch"]
    # the returned network is the best epoch's: re-scoring the validation rows gives its AUROC
    val = chest_data[0].filter("is_val")
    rows = model.transform(val).select("probability", "labels").collect()
    p, y = np.array([r.probability for r in rows]), np.array([r.labels for r in rows])
    assert np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(2)]) == pytest.approx(best["val_auroc"], abs=1e-6)
    from test_segmentation_model import counted

    tapped, runs = counted(spark, chest_data[1])
    rows = model.transform(tapped).select("probability", "labels").collect()
    assert runs.value == len(rows) == 48  # the upstream ran once
    p, y = np.array([r.probability for r in rows]), np.array([r.labels for r in rows])
    assert np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(2)]) > 0.8
    model.write().overwrite().save(str(tmp_path / "m"))
    again = ClassificationModel.load(str(tmp_path / "m"))
    assert again.getEngine() == "torch"
    p2 = np.array([r.probability for r in again.transform(chest_data[1]).select("probability").collect()])
    assert np.allclose(p, p2)
    with pytest.raises(ConfigError, match="initModelPath is a BigDL model file"):
        ClassificationEstimator(engine="torch", labelNames=EASY, initModelPath="/x").fit(chest_data[0])


@pytest.mark.slow
def test_torch_multiclass_with_early_stopping(spark, chest_data):
    from bigdl_medimg.ml import ClassificationEstimator

    est = ClassificationEstimator(labelCol="cardio", mode="multiclass", labelNames=["normal", "cardiomegaly"],
                                  inputShape=[1, 64, 64], topology="densenet_tiny", validationIndicatorCol="is_val",
                                  batchSize=16, learningRate=0.5, optimizer="sgd", classBalancing=True,
                                  maxEpoch=12, earlyStoppingPatience=1, engine="torch", cacheMemoryMB=0.5)
    model = est.fit(chest_data[0])
    # 0.5 MB per rank holds 32 of the 64x64 float images: the rest train from memory-mapped files on local disk
    assert model.training_stats["spilled_arrays"] > 0
    hist = model.history
    best = max(range(len(hist)), key=lambda i: hist[i]["val_auroc"])
    assert len(hist) == min(12, best + 2)
    out = model.transform(chest_data[1]).select("probability", "prediction").collect()
    assert all(len(r.probability) == 2 and abs(sum(r.probability) - 1) < 1e-6 for r in out)


@pytest.mark.slow
def test_torch_fits_are_reproducible_for_a_seed(spark, chest_data):
    """Same data, Params and seed on the same machine: the same weights, bit for bit; another seed: others."""
    from bigdl_medimg.ml import ClassificationEstimator

    small = chest_data[0].filter("id < 40")
    kw = dict(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], engine="torch", topology="densenet_tiny",
              maxEpoch=2, batchSize=8, learningRate=3e-3, augment={"flipProb": 0.0, "rot90Prob": 0.0,
                                                                   "affineProb": 0.5, "intensityProb": 0.5})
    digests = [ClassificationEstimator(seed=s, **kw).fit(small).training_stats["rank_weight_digests"][0]
               for s in (1, 1, 2)]
    assert digests[0] == digests[1] != digests[2]
