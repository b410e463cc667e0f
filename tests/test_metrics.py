"""Evaluation metrics against independent references (scipy distance transforms, scikit-learn)."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import types as T
from scipy import ndimage as ndi
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, recall_score, roc_auc_score

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.metrics.classification import bootstrap_auroc
from bigdl_medimg.metrics.functional import confusion_matrix, dice_per_class, surface_distances
from bigdl_medimg.tensor import from_numpy, tensor_type


def _blobs(seed: int, shape=(14, 20, 18), n_classes=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    for k in range(1, n_classes):
        field = ndi.gaussian_filter(rng.random(shape), 2.0)
        out[(field > np.quantile(field, 0.8)) & (out == 0)] = k
    return out


def _edt_reference(pred, ref, spacing, k, q=95.0):
    """HD-q and mean surface distance via Euclidean distance transforms (independent of the KD-tree code)."""
    def border(m):
        return m & ~ndi.binary_erosion(m, structure=ndi.generate_binary_structure(m.ndim, 1), border_value=0)

    bp, br = border(pred == k), border(ref == k)
    d_to_r = ndi.distance_transform_edt(~br, sampling=spacing)
    d_to_p = ndi.distance_transform_edt(~bp, sampling=spacing)
    a, b = d_to_r[bp], d_to_p[br]
    return max(np.percentile(a, q), np.percentile(b, q)), (a.sum() + b.sum()) / (a.size + b.size)


@pytest.mark.parametrize("affine", [
    np.diag([0.6, 0.45, 2.5, 1.0]),
    # axes permuted and flipped, still axis-aligned: spacing is the column norm
    np.array([[0, 0, -0.7, 30.0], [0, 1.3, 0, -4.0], [-0.5, 0, 0, 12.0], [0, 0, 0, 1]]),
])
def test_hd95_and_msd_equal_a_distance_transform_reference(affine):
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    for seed in range(3):
        ref = _blobs(seed)
        pred = ndi.binary_dilation(ref == 1, iterations=1).astype(np.uint8)
        pred[ref == 2] = 2
        pred[_blobs(seed + 10) == 2] = 2  # extra false positives away from the reference
        got = surface_distances(pred, ref, affine, 3)
        for i, k in enumerate((1, 2)):
            hd, msd = _edt_reference(pred, ref, spacing, k)
            assert got["hd"][i] == pytest.approx(hd, rel=1e-9)
            assert got["msd"][i] == pytest.approx(msd, rel=1e-9)
    # a different percentile is passed through
    hd100 = surface_distances(pred, ref, affine, 3, percentile=100)["hd"][1]
    assert hd100 == pytest.approx(_edt_reference(pred, ref, spacing, 2, q=100)[0], rel=1e-9)


def test_surface_distance_uses_the_full_affine_for_oblique_grids():
    ref = _blobs(4)
    pred = np.roll(ref, 2, axis=1)
    c, s = np.cos(0.4), np.sin(0.4)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 0.8, 3.0])
    aff[:3, :3] += np.array([[0, 0, 0.5], [0, 0, 0], [0, 0, 0]])  # a sheared (gantry-tilt) grid
    from scipy.spatial.distance import cdist

    from bigdl_medimg.metrics.functional import surface_points

    got = surface_distances(pred, ref, aff, 3)
    for i, k in enumerate((1, 2)):
        sp, sr = surface_points(pred == k, aff), surface_points(ref == k, aff)
        d = cdist(sp, sr)
        a, b = d.min(axis=1), d.min(axis=0)
        assert got["hd"][i] == pytest.approx(max(np.percentile(a, 95), np.percentile(b, 95)), rel=1e-9)
        assert got["msd"][i] == pytest.approx((a.sum() + b.sum()) / (a.size + b.size), rel=1e-9)


def test_empty_classes_are_nan_and_one_sided_classes_infinite():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[2:4, 2:4, 2:4] = 1
    pred = np.zeros_like(ref)
    got = surface_distances(pred, ref, None, 3)
    assert np.isinf(got["hd"][0]) and np.isinf(got["msd"][0])
    assert np.isnan(got["hd"][1]) and np.isnan(got["msd"][1])
    same = surface_distances(ref, ref, None, 2)
    assert same["hd"][0] == 0 and same["msd"][0] == 0


def test_dice_and_confusion_equal_scikit_learn():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, size=(5, 7, 9))
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 4, size=ref.shape))
    cm = confusion_matrix(pred, ref, 4)
    assert np.array_equal(cm, sk_confusion(ref.ravel(), pred.ravel(), labels=range(4)))
    f1 = f1_score(ref.ravel(), pred.ravel(), labels=[1, 2, 3], average=None)
    assert np.allclose(dice_per_class(pred, ref, 4), f1)
    with pytest.raises(ValueError, match="outside 0..3"):
        confusion_matrix(pred + 1, ref, 4)
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_class(pred[:-1], ref, 4)


# ------------------------------------------------------------- evaluators ---

SEG_SCHEMA = T.StructType([T.StructField("case", T.StringType()), T.StructField("segmentation", tensor_type()),
                           T.StructField("mask", tensor_type())])
AFF = np.diag([0.5, 0.7, 2.0, 1.0])


def _seg_rows():
    rows, refs = [], []
    for seed in range(4):
        ref = _blobs(seed)
        pred = ndi.binary_dilation(ref == 1, iterations=seed % 2 + 1).astype(np.uint8)
        pred[(ref == 2) & (np.arange(ref.shape[0])[:, None, None] > 2)] = 2
        rows.append((f"case{seed}", from_numpy(pred, AFF), from_numpy(ref, AFF)))
        refs.append((pred, ref))
    return rows, refs


def test_dice_and_surface_evaluators_equal_per_volume_references(spark):
    from bigdl_medimg.metrics import DiceEvaluator, SurfaceDistanceEvaluator

    rows, refs = _seg_rows()
    bad_shape = ("bad_shape", from_numpy(np.zeros((3, 3, 3), np.uint8), AFF), rows[0][2])
    df = spark.createDataFrame(rows + [bad_shape, ("no_pred", None, rows[0][2])], SEG_SCHEMA).repartition(3)
    dice_ref = np.array([dice_per_class(p, r, 3) for p, r in refs])
    spacing = np.array([0.5, 0.7, 2.0])
    hd_ref = np.array([[_edt_reference(p, r, spacing, k)[0] for k in (1, 2)] for p, r in refs])
    msd_ref = np.array([[_edt_reference(p, r, spacing, k)[1] for k in (1, 2)] for p, r in refs])

    # the two volumes that cannot be scored count as the worst (Dice 0, infinite distance) by default
    with_worst = np.vstack([dice_ref, np.zeros((2, 2))])
    dice = DiceEvaluator(numClasses=3)
    assert dice.isLargerBetter() and dice.getUnscored() == "worst"
    assert dice.per_class(df) == pytest.approx({1: with_worst[:, 0].mean(), 2: with_worst[:, 1].mean()})
    assert dice.evaluate(df) == pytest.approx(with_worst.mean())
    assert DiceEvaluator(numClasses=3, classes=[2]).evaluate(df) == pytest.approx(with_worst[:, 1].mean())
    assert SurfaceDistanceEvaluator(numClasses=3).evaluate(df) == float("inf")
    with pytest.raises(ConfigError, match="2 of 6 volume.*could not be scored.*prediction is null"):
        DiceEvaluator(numClasses=3, unscored="error").evaluate(df)
    with pytest.raises(ConfigError, match="unscored must be one of"):
        DiceEvaluator(numClasses=3, unscored="ignore").evaluate(df)
    # 'skip' leaves them out: the mean of the scored volumes alone
    dice = DiceEvaluator(numClasses=3, unscored="skip")
    assert dice.per_class(df) == pytest.approx({1: dice_ref[:, 0].mean(), 2: dice_ref[:, 1].mean()})
    assert dice.evaluate(df) == pytest.approx(dice_ref.mean())
    hd = SurfaceDistanceEvaluator(numClasses=3, unscored="skip")
    assert not hd.isLargerBetter()
    assert hd.evaluate(df) == pytest.approx(hd_ref.mean(), rel=1e-9)
    assert hd.setMetricName("msd").evaluate(df) == pytest.approx(msd_ref.mean(), rel=1e-9)
    # nothing is lost silently: the unscorable rows are listed with their reason
    vols = hd.volume_scores(df, keyCol="case").set_index("case")
    assert len(vols) == 6
    assert "differs from reference shape" in vols.loc["bad_shape", "error"]
    assert vols.loc["no_pred", "error"] == "prediction is null"
    assert np.allclose(np.stack(vols.loc[[f"case{s}" for s in range(4)], "hd"]), hd_ref)
    cm = np.stack(vols.loc[[f"case{s}" for s in range(4)], "confusion"]).sum(axis=0).reshape(3, 3)
    assert np.array_equal(cm, sum(confusion_matrix(p, r, 3) for p, r in refs))


def test_segmentation_evaluators_validate_and_persist(spark, tmp_path):
    from bigdl_medimg.metrics import DiceEvaluator, SurfaceDistanceEvaluator

    rows, _ = _seg_rows()
    df = spark.createDataFrame(rows[:1], SEG_SCHEMA)
    with pytest.raises(ConfigError, match="outside the foreground"):
        DiceEvaluator(numClasses=3, classes=[3]).evaluate(df)
    with pytest.raises(ConfigError, match="hd95' or 'msd"):
        SurfaceDistanceEvaluator(numClasses=3, metricName="hd").evaluate(df)
    with pytest.raises(ConfigError, match="column 'seg' not found"):
        DiceEvaluator(predictionCol="seg").evaluate(df)
    null_only = spark.createDataFrame([("x", None, rows[0][2])], SEG_SCHEMA)
    with pytest.raises(ConfigError, match="no volume could be scored.*prediction is null"):
        DiceEvaluator(numClasses=3).evaluate(null_only)
    ev = SurfaceDistanceEvaluator(numClasses=3, classes=[1], metricName="msd", percentile=90.0)
    ev.save(str(tmp_path / "ev"))
    back = SurfaceDistanceEvaluator.load(str(tmp_path / "ev"))
    assert back.getClasses() == [1] and back.getPercentile() == 90.0 and back.getMetricName() == "msd"
    assert back.evaluate(df) == pytest.approx(ev.evaluate(df))


def test_dice_evaluator_selects_a_model_in_train_validation_split(spark):
    """A real pyspark.ml tuning run: the evaluator picks the threshold that segments best."""
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    from bigdl_medimg.metrics import DiceEvaluator
    from threshold_stage import ThresholdSegmenter

    rng = np.random.default_rng(3)
    rows = []
    for i in range(8):
        ref = _blobs(i, n_classes=2)
        image = ref * 1.0 + rng.normal(0, 0.3, ref.shape)  # foreground ~1, background ~0
        rows.append((f"c{i}", from_numpy(image.astype(np.float32), AFF), from_numpy(ref, AFF)))
    schema = T.StructType([T.StructField("case", T.StringType()), T.StructField("image", tensor_type()),
                           T.StructField("mask", tensor_type())])
    df = spark.createDataFrame(rows, schema)
    est = ThresholdSegmenter()
    grid = ParamGridBuilder().addGrid(est.threshold, [-0.5, 0.5, 1.5]).build()
    tvs = TrainValidationSplit(estimator=est, estimatorParamMaps=grid, evaluator=DiceEvaluator(numClasses=2),
                               trainRatio=0.5, seed=1)
    model = tvs.fit(df)
    assert model.bestModel.getThreshold() == 0.5
    assert model.validationMetrics[1] > 0.8 > max(model.validationMetrics[0], model.validationMetrics[2])


# -------------------------------------------------------------- AUROC ---

def _scores(n=400, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < [0.1, 0.3, 0.5, 0.05][:labels]).astype(int)
    s = np.clip(rng.normal(0.3 + 0.25 * y * np.arange(1, labels + 1) / labels, 0.2), 0, 1).round(2)  # with ties
    return s, y


def test_multilabel_auroc_matches_scikit_learn_with_bootstrap_intervals(spark):
    from bigdl_medimg.metrics import MultiLabelAUCEvaluator

    s, y = _scores()
    names = ["a", "b", "c", "d"]
    df = spark.createDataFrame([(s[i].tolist(), y[i].tolist()) for i in range(len(s))], ["probability", "label"])
    ev = MultiLabelAUCEvaluator(labelNames=names, numBootstrap=300, seed=5, thresholds=[0.5, 0.4, 0.5, 0.6])
    sk = [roc_auc_score(y[:, k], s[:, k]) for k in range(4)]
    assert ev.evaluate(df) == pytest.approx(np.mean(sk), abs=1e-12)
    assert ev.per_label(df) == pytest.approx(sk, abs=1e-12)
    assert ev.copy({ev.metricName: "AUROC", ev.metricLabel: "c"}).evaluate(df) == pytest.approx(sk[2], abs=1e-12)
    sens_b = recall_score(y[:, 1], s[:, 1] >= 0.4)
    spec_b = recall_score(1 - y[:, 1], s[:, 1] < 0.4)
    assert ev.copy({ev.metricName: "sensitivity", ev.metricLabel: "b"}).evaluate(df) == pytest.approx(sens_b)
    assert ev.copy({ev.metricName: "specificity", ev.metricLabel: "b"}).evaluate(df) == pytest.approx(spec_b)
    summ = ev.summary(df)
    assert summ["n"] == 400 and summ["mean_auroc"] == pytest.approx(np.mean(sk))
    for k, lab in enumerate(summ["labels"]):
        assert lab["label"] == names[k] and lab["auroc"] == pytest.approx(sk[k])
        lo, hi = lab["auroc_ci"]
        assert lo < sk[k] < hi and hi - lo < 0.4
        assert lab["tp"] + lab["fn"] == lab["n_pos"] == y[:, k].sum()
    assert summ["labels"][1]["sensitivity"] == pytest.approx(sens_b)
    lo, hi = summ["mean_auroc_ci"]
    assert lo < np.mean(sk) < hi
    # every bootstrap replicate is the AUROC of an explicit resample (scikit-learn on the resampled cases)
    boot = bootstrap_auroc(s, y, n_boot=20, seed=9)
    idx = np.random.default_rng(9).integers(0, len(s), size=(20, len(s)))
    for b in (0, 7, 19):
        for k in range(4):
            assert boot[b, k] == pytest.approx(roc_auc_score(y[idx[b], k], s[idx[b], k]), abs=1e-12)


def test_auroc_evaluator_handles_class_indices_and_bad_configuration(spark):
    from bigdl_medimg.metrics import MultiLabelAUCEvaluator

    rng = np.random.default_rng(2)
    cls = rng.integers(0, 3, 200)
    p = rng.dirichlet([1, 1, 1], 200) + np.eye(3)[cls] * 0.5
    p /= p.sum(axis=1, keepdims=True)
    df = spark.createDataFrame([(p[i].tolist(), int(cls[i])) for i in range(200)], ["probability", "label"])
    ovr = [roc_auc_score(cls == k, p[:, k]) for k in range(3)]
    assert MultiLabelAUCEvaluator().evaluate(df) == pytest.approx(np.mean(ovr))
    assert MultiLabelAUCEvaluator(labelNames=["x", "y"]).per_label(df) == pytest.approx(ovr)  # names unused
    with pytest.raises(ConfigError, match="labelNames has 2 names"):
        MultiLabelAUCEvaluator(labelNames=["x", "y"]).summary(df)
    with pytest.raises(ConfigError, match="metricName must be one of"):
        MultiLabelAUCEvaluator(metricName="auc").evaluate(df)
    with pytest.raises(ConfigError, match="metricLabel 'z'"):
        MultiLabelAUCEvaluator(labelNames=["x", "y", "w"], metricLabel="z").evaluate(df)
    with pytest.raises(ConfigError, match="thresholds has 2 values"):
        MultiLabelAUCEvaluator(thresholds=[0.1, 0.2]).summary(df)
