"""Classification networks, losses, metrics and the ClassificationEstimator/Model stages (real BigDL training)."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import types as T

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import from_numpy, tensor_type


def _n_params(model) -> int:
    return int(sum(w.size for w in model.get_weights()))


def test_auroc_equals_scikit_learn_and_the_pairwise_definition():
    from sklearn.metrics import roc_auc_score

    from bigdl_medimg.metrics.classification import auroc, auroc_per_label, sensitivity_specificity

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    pairs = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc(s, y) == pytest.approx(pairs, abs=1e-12)
    assert np.isnan(auroc(s, np.zeros(200)))
    per = auroc_per_label(np.stack([s, -s], 1), np.stack([y, y], 1))
    assert per[0] == pytest.approx(1 - per[1])
    sens, spec = sensitivity_specificity([0.9, 0.2, 0.7, 0.1], [1, 1, 0, 0], 0.5)
    assert (sens, spec) == (0.5, 0.5)


def test_topologies_have_the_published_sizes(spark):
    from bigdl_medimg.models.classifiers import build_topology

    # torchvision's DenseNet-121 / ResNet-50 parameter counts, re-headed for 1 input channel and 14 outputs
    d121 = 7978856 - (1024 * 1000 + 1000) + (1024 * 14 + 14) - 64 * 7 * 7 * 2
    r50 = 25557032 - (2048 * 1000 + 1000) + (2048 * 14 + 14) - 64 * 7 * 7 * 2
    assert _n_params(build_topology("densenet121", 14, (1, 224, 224))) == d121
    assert _n_params(build_topology("resnet50", 14, (1, 224, 224))) == r50
    tiny = build_topology("densenet_tiny", 3, (1, 64, 64))
    assert np.asarray(tiny.forward(np.zeros((2, 1, 64, 64), np.float32))).shape == (2, 3)
    small = build_topology("resnet_small", 2, (3, 32, 32))
    assert np.asarray(small.forward(np.zeros((1, 3, 32, 32), np.float32))).shape == (1, 2)
    c3 = build_topology("cnn3d_small", 1, (1, 8, 16, 16))
    assert np.asarray(c3.forward(np.zeros((2, 1, 8, 16, 16), np.float32))).shape == (2, 1)
    with pytest.raises(ConfigError, match="unknown topology"):
        build_topology("vgg", 2, (1, 32, 32))
    with pytest.raises(ConfigError, match="takes 3-D images"):
        build_topology("cnn3d", 2, (1, 32, 32))


def test_weighted_bce_and_chexnet_weights(spark):
    from bigdl_medimg.ml.classification import chexnet_weights, weighted_bce_loss

    wp, wn = chexnet_weights([10, 0, 50], 100)
    assert np.allclose(wp, [0.9, 1.0, 0.5]) and np.allclose(wn, [0.1, 1.0, 0.5])
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    y = rng.integers(0, 2, (4, 3)).astype(np.float32)
    crit = weighted_bce_loss(3, wp, wn)
    ref = -np.mean(y * wp * np.log(p) + (1 - y) * wn * np.log(1 - p))
    assert crit.forward(y, p) == pytest.approx(ref, rel=1e-5)


# ----------------------------------------------------------------- training ---
EASY = ["Cardiomegaly", "Effusion"]  # large patterns, learnable at 64 px in a few epochs


def _chest_frame(spark, seeds, is_val, size=64):
    from bigdl_medimg.datasets.phantoms import CHEST_LABELS, chest_xray_phantom

    idx = [CHEST_LABELS.index(n) for n in EASY]
    rows = []
    for s in seeds:
        c = chest_xray_phantom(s, size=size, prevalence={n: 0.5 for n in EASY}, bits=8)
        img = (c.image.astype(np.float32) / 255.0)[None]
        rows.append((int(s), from_numpy(img, np.eye(4)), [float(c.labels[i]) for i in idx], int(c.labels[idx[0]]),
                     bool(is_val)))
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("image", tensor_type()),
                           T.StructField("labels", T.ArrayType(T.DoubleType())),
                           T.StructField("cardio", T.IntegerType()), T.StructField("is_val", T.BooleanType())])
    return spark.createDataFrame(rows, schema)


@pytest.fixture(scope="module")
def chest(spark):
    train = _chest_frame(spark, range(160), False)
    val = _chest_frame(spark, range(1000, 1048), True)
    test = _chest_frame(spark, range(2000, 2048), False)
    return train.unionByName(val).cache(), test.cache()


@pytest.fixture(scope="module")
def chest_model(spark, chest, tmp_path_factory):
    from bigdl_medimg.ml import ClassificationEstimator

    root = tmp_path_factory.mktemp("cls")
    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64],
                                  topology="densenet_tiny", validationIndicatorCol="is_val", maxEpoch=6,
                                  batchSize=16, learningRate=3e-3, checkpointDir=str(root / "ck"),
                                  summaryDir=str(root / "summ"))
    return est, est.fit(chest[0]), root


@pytest.mark.slow
def test_multilabel_training_beats_chance_on_held_out_images(chest, chest_model):
    from bigdl_medimg.ml import AUCEvaluator

    est, model, root = chest_model
    assert [r["epoch"] for r in model.history] == list(range(1, 7))
    assert all(len(r["val_auroc_per_label"]) == 2 for r in model.history)
    assert model.training_stats["train_images"] == 160
    assert len(model.training_stats["pos_weights"]) == 2
    out = model.transform(chest[1])
    auc = AUCEvaluator(labelCol="labels").evaluate(out)
    assert auc > 0.8, auc  # chance is 0.5
    best = max(model.history, key=lambda r: r["val_auroc"])
    assert model.training_stats["best_epoch"] == best["epoch"]
    # the returned network is the best epoch's: it reproduces that epoch's validation AUROC
    val = chest[0].filter("is_val")
    assert AUCEvaluator(labelCol="labels").evaluate(model.transform(val)) == pytest.approx(best["val_auroc"], abs=1e-6)
    from bigdl.dllib.optim.optimizer import TrainSummary, ValidationSummary

    assert len(TrainSummary(str(root / "summ"), "classification").read_scalar("Loss")) == 6 * 10
    assert len(ValidationSummary(str(root / "summ"), "classification").read_scalar("AUC")) == 6


@pytest.mark.slow
def test_report_of_a_trained_classifier_reads_the_bigdl_summaries(chest, chest_model, tmp_path):
    from bigdl.dllib.optim.optimizer import TrainSummary, ValidationSummary

    from bigdl_medimg.ml.tfevents import read_summaries
    from bigdl_medimg.report import ClassificationResults, write_report
    from test_report import assert_real_plot, report_images

    _est, model, root = chest_model
    summ = read_summaries(str(root / "summ"))["classification"]
    bigdl_loss = TrainSummary(str(root / "summ"), "classification").read_scalar("Loss")
    assert [(p[0], p[1]) for p in summ["train"]["Loss"]] == [(int(s), pytest.approx(v)) for s, v, _ in bigdl_loss]
    bigdl_auc = ValidationSummary(str(root / "summ"), "classification").read_scalar("AUC")
    assert [p[1] for p in summ["validation"]["AUC"]] == pytest.approx([v for _s, v, _ in bigdl_auc])
    res = ClassificationResults.from_dataframe(model.transform(chest[1]), labelNames=EASY, labelCol="labels",
                                               numBootstrap=100)
    text = open(write_report(str(tmp_path / "r.html"), results=[res], summary_dirs=[str(root / "summ")])).read()
    imgs = report_images(text)
    # the learning rate of every iteration is recorded too (both engines), so the report plots it
    assert len(imgs) == 4 and imgs[0][0].startswith("classification: AUC, LearningRate, Loss")
    assert len(summ["train"]["LearningRate"]) == len(summ["train"]["Loss"])
    for _alt, img, w, h in imgs:
        assert_real_plot(img, w, h)


@pytest.mark.slow
def test_model_columns_thresholds_and_pipeline_save_load(spark, chest, chest_model, tmp_path):
    _est, model, _ = chest_model
    m = model.copy().setLabelColumns(True).setThresholds([0.0, 1.0])
    rows = m.transform(chest[1]).orderBy("id").collect()
    r = rows[0]
    assert len(r.probability) == 2 and all(0 <= p <= 1 for p in r.probability)
    assert r.prediction == [1, 0]  # threshold 0 -> always 1, threshold 1 -> always 0
    assert r.probability_Cardiomegaly == r.probability[0] and r.probability_Effusion == r.probability[1]
    with pytest.raises(Exception, match="resize or crop the images upstream"):  # wrong-sized images: clear error
        model.copy().setInputShape([1, 32, 32]).transform(chest[1]).collect()
    # a reader's error row (null image) comes through with null outputs instead of vanishing
    from pyspark.sql import functions as F

    test = chest[1]
    broken = test.limit(1).withColumn("image", F.lit(None).cast(test.schema["image"].dataType)) \
        .withColumn("id", F.lit(-1))
    from test_segmentation_model import counted

    tapped, runs = counted(spark, test.unionByName(broken))
    out = {r.id: r for r in model.transform(tapped).collect()}
    assert len(out) == test.count() + 1 == runs.value  # the upstream ran once: no filter-and-union of two passes
    assert out[-1].probability is None and out[-1].prediction is None
    # and validation rows without an image do not count in the per-epoch AUROC
    val = chest[0].filter("is_val").select("image", F.col("labels").alias("__y"))
    with_null = val.unionByName(val.limit(1).withColumn("image", F.lit(None).cast(val.schema["image"].dataType)))
    got, want = _est._validation_auroc(model.network, with_null), _est._validation_auroc(model.network, val)
    assert got["val_auroc"] == pytest.approx(want["val_auroc"]) and np.isfinite(got["val_auroc"])
    pipe = PipelineModel(stages=[model])
    pipe.write().overwrite().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    again = loaded.transform(chest[1]).orderBy("id").collect()
    before = model.transform(chest[1]).orderBy("id").collect()
    assert all(np.allclose(a.probability, b.probability, atol=1e-6) for a, b in zip(again, before))
    # the fit's record survives the save; the estimator's Params reached the model through _copyValues
    assert loaded.stages[0].history == model.history and len(model.history) == 6
    assert loaded.stages[0].training_stats == model.training_stats and "best_epoch" in model.training_stats
    assert loaded.stages[0].getLabelNames() == EASY and loaded.stages[0].getInputShape() == [1, 64, 64]


@pytest.mark.slow
def test_user_supplied_bigdl_model_file_for_inference_and_as_a_start(spark, chest, chest_model, tmp_path):
    from bigdl_medimg.ml import ClassificationEstimator, ClassificationModel

    est, model, _ = chest_model
    path = str(tmp_path / "user.model")
    model.network.saveModel(path, over_write=True)
    wrapped = ClassificationModel.from_bigdl_file(path, labelNames=EASY, inputShape=[1, 64, 64])
    a = wrapped.transform(chest[1]).orderBy("id").collect()
    b = model.transform(chest[1]).orderBy("id").collect()
    assert all(np.allclose(x.probability, y.probability, atol=1e-6) for x, y in zip(a, b))
    start = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64],
                                    initModelPath=path)._build_network()
    assert all(np.array_equal(u, v) for u, v in zip(start.get_weights(), model.network.get_weights()))


@pytest.mark.slow
def test_multiclass_mode_resume_and_early_stopping(spark, chest, tmp_path, monkeypatch):
    from bigdl_medimg.ml import ClassificationEstimator
    from bigdl_medimg.ml.engines import bigdl as mod

    ck = tmp_path / "ck"
    kw = dict(labelCol="cardio", mode="multiclass", labelNames=["normal", "cardiomegaly"], inputShape=[1, 64, 64],
              topology="densenet_tiny", validationIndicatorCol="is_val", batchSize=16, learningRate=3e-3,
              classBalancing=True, checkpointDir=ck.as_uri())  # a Hadoop-style file: URI, as hdfs:// would be
    real = mod.fit_one_epoch
    calls = []

    def crash_in_epoch_3(df, est, data, progress=None, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("executor lost")
        return real(df, est, data, progress, **kw)

    monkeypatch.setattr(mod, "fit_one_epoch", crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="executor lost"):
        ClassificationEstimator(maxEpoch=3, **kw).fit(chest[0])
    monkeypatch.setattr(mod, "fit_one_epoch", real)
    [fit] = ck.glob("fit-*")  # the fit's own folder under checkpointDir
    assert ClassificationEstimator.latest_checkpoint(str(fit)).endswith("/epoch_0002")
    with pytest.raises(ConfigError, match=r"no checkpoint of this fit.*differs in: learningRate \(0\.003 there, 0\.001 here\)"):
        ClassificationEstimator(maxEpoch=3, resume="require", **{**kw, "learningRate": 1e-3}).fit(chest[0])
    model = ClassificationEstimator(maxEpoch=3, resume="require", **kw).fit(chest[0])
    assert [r["epoch"] for r in model.history] == [1, 2, 3]
    assert model.training_stats["class_weights"] is not None
    out = model.transform(chest[1]).select("probability", "prediction").collect()
    assert all(len(r.probability) == 2 and abs(sum(r.probability) - 1) < 1e-6 for r in out)
    assert {r.prediction for r in out} <= {0, 1}
    # early stopping: patience 1 stops one epoch after the best, whatever maxEpoch says
    est = ClassificationEstimator(**{**kw, "checkpointDir": "", "maxEpoch": 12, "earlyStoppingPatience": 1,
                                     "learningRate": 0.5, "optimizer": "sgd"})
    hist = est.fit(chest[0]).history
    best = max(range(len(hist)), key=lambda i: hist[i]["val_auroc"])
    assert len(hist) == min(12, best + 2) and len(hist) < 12


@pytest.mark.slow
def test_train_validation_split_in_parallel_with_checkpoints_trains_every_candidate_fully(spark, chest, tmp_path):
    import json

    from pyspark.ml.tuning import TrainValidationSplit

    from bigdl_medimg.ml import AUCEvaluator, ClassificationEstimator, ClassificationModel

    ck = tmp_path / "ck"
    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], maxEpoch=2,
                                  batchSize=16, checkpointDir=str(ck))
    grid = [{est.topology: "densenet_tiny", est.learningRate: 3e-3}, {est.topology: "resnet_small", est.learningRate: 1e-5}]
    # two candidates fitted at once on one checkpointDir: each in its own folder, neither resuming the other
    tvs = TrainValidationSplit(estimator=est, estimatorParamMaps=grid, evaluator=AUCEvaluator(labelCol="labels"),
                               trainRatio=0.75, seed=1, parallelism=2)
    fitted = tvs.fit(chest[0].filter("NOT is_val"))
    assert len(fitted.validationMetrics) == 2 and all(0 <= m <= 1 for m in fitted.validationMetrics)
    assert fitted.validationMetrics[0] != fitted.validationMetrics[1]
    fits = {json.loads((f / "fit.json").read_text())["params"]["learningRate"]: f for f in ck.glob("fit-*")}
    assert len(list(ck.glob("fit-*"))) == 3  # two candidates and the refit of the winner
    for f in ck.glob("fit-*"):  # every fit trained both of its epochs
        state = json.loads((f / "epoch_0002" / "state.json").read_text())
        assert [r["epoch"] for r in state["history"]] == [1, 2]
    assert set(fits) == {3e-3, 1e-5}
    best = int(np.argmax(fitted.validationMetrics))
    assert isinstance(fitted.bestModel, ClassificationModel)
    assert [r["epoch"] for r in fitted.bestModel.history] == [1, 2]
    # the best model is the chosen candidate's network: its topology's parameter count
    from bigdl_medimg.models.classifiers import build_topology

    chosen = grid[best][est.topology]
    assert _n_params(fitted.bestModel.network) == _n_params(build_topology(chosen, 2, (1, 64, 64)))


def test_param_validation(chest):
    from bigdl_medimg.ml import ClassificationEstimator

    base = dict(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], topology="densenet_tiny")
    for bad, msg in (({"mode": "ordinal"}, "mode must be"), ({"topology": "vgg"}, "unknown topology"),
                     ({"labelNames": []}, "labelNames"), ({"optimizer": "rmsprop"}, "optimizer"),
                     ({"lrSchedule": "exponential"}, "not available with adam"), ({"labelWeighting": "x"}, "labelWeighting"),
                     ({"inputShape": [1, 32, 32]}, "resize or crop")):
        with pytest.raises(ConfigError, match=msg):
            ClassificationEstimator(**{**base, **bad}).fit(chest[0])
    with pytest.raises(ConfigError, match="array of 3"):
        ClassificationEstimator(**{**base, "labelNames": ["a", "b", "c"]}).fit(chest[0])
    with pytest.raises(ConfigError, match="class index in 0..1"):
        ClassificationEstimator(**{**base, "labelCol": "id", "mode": "multiclass",
                                   "labelNames": ["a", "b"]}).fit(chest[0])


def test_presets_load(chest):
    from bigdl_medimg.ml import ClassificationEstimator

    chest_est = ClassificationEstimator.from_preset("chest_xray14")
    assert chest_est.getTopology() == "densenet121" and chest_est.getInputShape() == [1, 224, 224]
    from bigdl_medimg.datasets.phantoms import CHEST_LABELS

    assert chest_est.getLabelNames() == list(CHEST_LABELS)
    tear = ClassificationEstimator.from_preset("meniscus_tear")
    assert tear.getLabelNames() == ["tear"] and len(tear.getInputShape()) == 4
