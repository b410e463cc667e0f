"""Augmentation in the training loop (the estimators' ``augment`` Param), both engines, and its anatomy."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import from_numpy
from bigdl_medimg.transforms import ToFeatures
from bigdl_medimg.transforms.augment import AugmentConfig, anatomical_axis, augment
from bigdl_medimg.transforms.sampling import augment_config

KNEE_AUG = {"flipProb": 1.0, "flipAxes": ["LR"], "rot90Prob": 0.0, "affineProb": 0.3, "intensityProb": 0.5,
            "gammaProb": 0.3, "biasProb": 0.5}


# ------------------------------------------------------------------ numpy core ---
def test_flips_follow_anatomy_not_array_axes():
    # a RIP volume (the knee preset's orientation): axis 0 runs R->L, axis 1 S->I, axis 2 A->P
    rip = np.array([[-1.0, 0, 0, 0], [0, 0, -1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    assert [anatomical_axis(rip, a) for a in range(3)] == ["LR", "SI", "AP"]
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    only_lr = AugmentConfig(flip_prob=1.0, flip_axes=("LR",), rot90_prob=0, affine_prob=0, intensity_prob=0,
                            gamma_prob=0)
    out, aff, _ = augment(vol, rip, None, np.random.default_rng(0), only_lr)
    assert np.array_equal(out, vol[::-1])  # left-right only: never upside down or front-to-back
    # the same flip on an axial (RAS) grid is another array axis
    out, _, _ = augment(vol, np.eye(4), None, np.random.default_rng(0), only_lr)
    assert np.array_equal(out, vol[::-1]) and anatomical_axis(np.eye(4), 0) == "LR"
    no_flip = AugmentConfig(flip_prob=1.0, flip_axes=(), rot90_prob=0, affine_prob=0, intensity_prob=0, gamma_prob=0)
    assert np.array_equal(augment(vol, rip, None, np.random.default_rng(0), no_flip)[0], vol)
    with pytest.raises(ConfigError, match="flip_axes"):
        AugmentConfig(flip_axes=("up",)).validate()


def test_bias_field_is_smooth_and_multiplicative_and_channel_images_stay_2d():
    img = np.full((1, 32, 32), 100.0, np.float32)  # (channels, H, W): spatialDims 2
    cfg = AugmentConfig(flip_prob=0, rot90_prob=0, affine_prob=1.0, max_rotation_deg=5, intensity_prob=0,
                        gamma_prob=0, bias_prob=1.0, bias_strength=0.2, spatial_dims=2)
    out, aff, _ = augment(img, np.eye(4), None, np.random.default_rng(3), cfg)
    assert out.shape == img.shape
    inner = out[0, 4:-4, 4:-4] / 100.0
    assert 0.5 < inner.min() < inner.max() < 2.0 and inner.std() > 1e-3  # a field, not a constant
    assert np.abs(np.diff(inner, axis=0)).max() < 0.05  # and smooth
    assert np.allclose(aff[2], [0, 0, 1, 0])  # a 2-D rotation: the third world axis is untouched


def test_augment_settings_are_checked():
    assert augment_config({}) is None
    assert augment_config({"flipProb": 0.0, "biasProb": 0.3}).bias_prob == 0.3
    with pytest.raises(ConfigError, match="unknown setting.*flipprob"):
        augment_config({"flipprob": 0.5})
    with pytest.raises(ConfigError, match="probability"):
        augment_config({"gammaProb": 2.0})


def test_presets_are_anatomically_plausible():
    from bigdl_medimg.ml import ClassificationEstimator, SegmentationEstimator

    chest = ClassificationEstimator.from_preset("chest_xray14").getAugment()
    assert chest["flipProb"] == 0 and chest["rot90Prob"] == 0 and chest["maxRotationDeg"] <= 10
    assert chest["intensityProb"] > 0 and chest["gammaProb"] > 0
    knee = SegmentationEstimator.from_preset("knee_cartilage").getAugment()
    assert knee["flipAxes"] == ["LR"] and knee["rot90Prob"] == 0 and knee["biasProb"] > 0 and knee["gammaProb"] > 0
    for settings in (chest, knee):
        augment_config(settings)


# ------------------------------------------------------------- in the loop ---
def _knee_frame(spark, seeds):
    from test_segmentation_estimator import SCHEMA, SHAPE

    from bigdl_medimg.datasets.phantoms import knee_phantom

    rows = []
    for s in seeds:
        c = knee_phantom(s, shape=SHAPE)
        img = (c.image.astype(np.float32) / max(1.0, float(c.image.max())))
        rows.append((s, from_numpy(img, c.affine), from_numpy(c.mask, c.affine), False))
    return spark.createDataFrame(rows, SCHEMA)


def _patch_set(features) -> list[bytes]:
    return sorted(np.asarray(f, np.float32).round(4).tobytes() for f in features)


def test_segmentation_patches_are_augmented_every_epoch_alike_in_both_engines(spark):
    """BigDL's per-epoch patches and a torch rank's are the same draws: sampled, then augmented, per epoch."""
    from bigdl_medimg.ml import SegmentationEstimator
    from bigdl_medimg.ml.engines.torch import ShardStore
    from bigdl_medimg.ml.engines.torch_tasks import SegmentationTask

    df = _knee_frame(spark, [1, 2])
    kw = dict(patchShape=[16, 32, 32], patchesPerImage=2, posFraction=1.0, nClasses=5, seed=7)
    plain, aug = SegmentationEstimator(**kw), SegmentationEstimator(augment=KNEE_AUG, **kw)

    def bigdl(est, epoch):
        return _patch_set(r.features for r in est._patches(df, epoch).select("features").collect())

    assert bigdl(aug, 1) == bigdl(aug, 1)  # reproducible for a given seed
    assert bigdl(aug, 1) != bigdl(plain, 1)  # the augmentation changed the patches
    assert bigdl(aug, 1) != bigdl(aug, 2)
    # a torch rank holding the same rows draws the same augmented patches
    rows = df.select(F.col("image").alias("__x"), F.col("mask").alias("__y"), F.col("is_val").alias("__val"))
    params = {p.name: aug.getOrDefault(p) for p in aug.params}
    task = SegmentationTask({"params": params}, ShardStore(64))
    for batch in rows._collect_as_arrow():
        task.add_rows(batch)
    x, y = task.epoch_samples(1)
    assert _patch_set(x.reshape(len(x), -1)) == bigdl(aug, 1)
    assert _patch_set(task.epoch_samples(2)[0].reshape(len(x), -1)) == bigdl(aug, 2)


def test_classification_images_are_augmented_every_epoch_in_both_engines(spark):
    from test_classification import EASY, _chest_frame

    from bigdl_medimg.ml import ClassificationEstimator
    from bigdl_medimg.ml.engines.torch import ShardStore
    from bigdl_medimg.ml.engines.torch_tasks import ClassificationTask

    df = _chest_frame(spark, range(6), False)
    settings = {"flipProb": 0.0, "rot90Prob": 0.0, "affineProb": 1.0, "intensityProb": 1.0, "gammaProb": 0.5}
    kw = dict(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], seed=5)
    est = ClassificationEstimator(augment=settings, **kw)
    base = est._labels(df.select("image", "labels"), "labels")
    images, epoch_data = est._augmented_epochs(base)
    try:
        def epoch(e):
            data, n, release = epoch_data(e)
            got = _patch_set(r.features for r in data.collect())
            release()
            assert n == 6
            return got

        bigdl = {e: epoch(e) for e in (1, 2)}
        assert epoch(1) == bigdl[1] != bigdl[2]  # new draws each epoch, the same for the same seed
    finally:
        images.unpersist()
    plain = _patch_set(r.f for r in ToFeatures(outputCol="f").transform(df).collect())
    assert bigdl[1] != plain
    # torch: a rank's images are augmented as its batches are drawn, with the same draws as BigDL's
    rows = df.select(F.col("image").alias("__x"), F.col("labels").alias("__y"), F.lit(False).alias("__val"))
    spec = {"params": {p.name: est.getOrDefault(p) for p in est.params}, "loss_weights": {},
            "augment": est._augment_settings()}
    idx = list(range(6))
    task = ClassificationTask(spec, ShardStore(64))
    for batch in rows._collect_as_arrow():
        task.add_rows(batch)
    one, again, two = task.epoch_samples(1)[0][idx], task.epoch_samples(1)[0][idx], task.epoch_samples(2)[0][idx]
    assert one.shape == (6, 1, 64, 64) and np.array_equal(one, again) and not np.array_equal(one, two)
    assert _patch_set(one.reshape(6, -1)) == bigdl[1] and _patch_set(two.reshape(6, -1)) == bigdl[2]
    still = ClassificationTask({**spec, "augment": {}}, ShardStore(64))  # without augment: the same every epoch
    for batch in rows._collect_as_arrow():
        still.add_rows(batch)
    assert np.array_equal(still.epoch_samples(1)[0][idx], still.epoch_samples(2)[0][idx])
    assert _patch_set(still.epoch_samples(1)[0][idx].reshape(6, -1)) == plain
