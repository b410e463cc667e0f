"""Sliding-window segmentation with a BigDL network on Spark: stitching, references, persistence."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import types as T

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.ml.inference import blend_weights, sliding_window_predict, stitch, window_starts
from bigdl_medimg.tensor import from_numpy, get_affine, tensor_type, to_numpy

SCHEMA = T.StructType([T.StructField("id", T.LongType()), T.StructField("image", tensor_type())])


def test_window_starts_cover_every_voxel():
    for shape, patch, ov in (((10, 20, 24), (8, 16, 16), 0.5), ((8, 16, 16), (8, 16, 16), 0.25), ((33,), (8,), 0.0)):
        starts = window_starts(shape, patch, ov)
        cover = np.zeros(shape, int)
        for st in starts:
            cover[tuple(slice(s, s + p) for s, p in zip(st, patch))] += 1
        assert cover.min() >= 1
        assert all(0 <= s <= n - p for st in starts for s, n, p in zip(st, shape, patch))
    with pytest.raises(ConfigError, match="overlap"):
        window_starts((4,), (2,), 1.0)


def test_stitch_is_a_weighted_mean():
    w = blend_weights((4, 4), "gaussian")
    assert w.max() == 1 and w.min() > 0 and w[1, 1] > w[0, 0]
    tiles = [np.full((2, 4, 4), 1.0, np.float32), np.full((2, 4, 4), 3.0, np.float32)]
    out = stitch((4, 6), [(0, 0), (0, 2)], tiles, np.ones((4, 4), np.float32))
    assert np.allclose(out[:, :, :2], 1) and np.allclose(out[:, :, 2:4], 2) and np.allclose(out[:, :, 4:], 3)


def _softmax_predict(net, patch, n_classes):
    def predict(x):
        y = np.asarray(net.predict(x, distributed=False)).reshape(len(x), int(np.prod(patch)), n_classes)
        y = y.transpose(0, 2, 1).reshape((len(x), n_classes) + tuple(patch))
        y = y - y.max(1, keepdims=True)
        e = np.exp(y)
        return e / e.sum(1, keepdims=True)
    return predict


def test_spark_sliding_window_equals_the_numpy_reference(spark):
    from bigdl_medimg.ml.segmentation import SegmentationModel
    from bigdl_medimg.models.unet3d import unet3d

    net = unet3d(3, (8, 16, 16), depth=1, base_filters=4)
    rng = np.random.default_rng(0)
    vols = [rng.normal(size=(10, 20, 24)).astype(np.float32), rng.normal(size=(6, 12, 40)).astype(np.float32)]
    df = spark.createDataFrame([(i, from_numpy(v, np.diag([2.0, 1, 1, 1]))) for i, v in enumerate(vols)]
                               + [(9, None)], SCHEMA)
    model = SegmentationModel(network=net, patchShape=[8, 16, 16], nClasses=3, overlap=0.5, probabilityCol="prob")
    rows = {r.id: r for r in model.transform(df).collect()}
    predict = _softmax_predict(net, (8, 16, 16), 3)
    for i, v in enumerate(vols):
        ref = sliding_window_predict(v[None], predict, (8, 16, 16), 0.5)
        assert np.allclose(to_numpy(rows[i].prob), ref, atol=1e-5)
        seg = to_numpy(rows[i].segmentation)
        assert seg.dtype == np.uint8 and seg.shape == v.shape and np.array_equal(seg, ref.argmax(0))
        assert np.array_equal(get_affine(rows[i].segmentation), np.diag([2.0, 1, 1, 1]))
    assert rows[9].segmentation is None  # a null image gives a null mask, the row stays


def test_sliding_window_matches_full_volume_prediction(spark):
    """With a pointwise network the tiled prediction must equal one whole-volume pass."""
    from bigdl_medimg.ml.segmentation import SegmentationModel
    from bigdl_medimg.models.unet3d import unet3d

    vol_shape = (12, 24, 20)
    tiled_net = unet3d(4, (4, 8, 8), depth=0, base_filters=3, kernel=1)
    full_net = unet3d(4, vol_shape, depth=0, base_filters=3, kernel=1)
    full_net.set_weights(tiled_net.get_weights())
    vol = np.random.default_rng(1).normal(size=vol_shape).astype(np.float32)
    df = spark.createDataFrame([(0, from_numpy(vol, np.eye(4)))], SCHEMA)
    tiled = SegmentationModel(network=tiled_net, patchShape=[4, 8, 8], nClasses=4, overlap=0.5,
                              probabilityCol="prob").transform(df).first()
    full = SegmentationModel(network=full_net, patchShape=list(vol_shape), nClasses=4,
                             probabilityCol="prob").transform(df).first()
    assert np.allclose(to_numpy(tiled.prob), to_numpy(full.prob), atol=1e-5)
    assert np.array_equal(to_numpy(tiled.segmentation), to_numpy(full.segmentation))


def test_save_load_and_pipeline_model(spark, tmp_path):
    from bigdl_medimg.ml.segmentation import SegmentationModel
    from bigdl_medimg.models.unet3d import unet3d
    from bigdl_medimg.transforms import PercentileScale, Reorient

    net = unet3d(2, (8, 8, 8), depth=1, base_filters=2)
    vol = np.random.default_rng(2).integers(0, 1000, (9, 10, 11)).astype(np.int16)
    df = spark.createDataFrame([(0, from_numpy(vol, np.diag([-1.0, 1, 1, 1])))], SCHEMA)
    seg = SegmentationModel(network=net, patchShape=[8, 8, 8], nClasses=2, blendMode="constant")
    pipe = PipelineModel(stages=[Reorient(axcodes="RAS"), PercentileScale(), seg])
    before = to_numpy(pipe.transform(df).first().segmentation)
    pipe.write().overwrite().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    assert isinstance(loaded.stages[-1], SegmentationModel) and loaded.stages[-1].getBlendMode() == "constant"
    after = loaded.transform(df).first()
    assert np.array_equal(to_numpy(after.segmentation), before)
    assert np.allclose(get_affine(after.segmentation), get_affine(after.image))
    with pytest.raises(ConfigError, match="no network"):
        SegmentationModel(patchShape=[8, 8, 8], nClasses=2).transform(df)
    with pytest.raises(ConfigError, match="overlap"):
        SegmentationModel(network=net, patchShape=[8, 8, 8], nClasses=2, overlap=1.5).transform(df)
    with pytest.raises(ConfigError, match="divisible"):
        unet3d(2, (6, 8, 8), depth=2)


def counted(spark, df):
    """``df`` passed through a stage that counts the rows it yields (an accumulator): the upstream's runs."""
    acc = spark.sparkContext.accumulator(0)

    def tap(batches):
        for b in batches:
            acc.add(b.num_rows)
            yield b

    return df.mapInArrow(tap, df.schema), acc


def test_transform_runs_its_upstream_once_and_keeps_equal_images_apart(spark):
    """Rows are keyed by position, not bytes: the same voxels under two affines give two masks on their own grids."""
    from bigdl_medimg.ml.segmentation import SegmentationModel
    from bigdl_medimg.models.unet3d import unet3d

    vol = np.random.default_rng(4).normal(size=(8, 12, 10)).astype(np.float32)
    affines = {0: np.diag([2.0, 1, 1, 1]), 1: np.diag([3.0, 0.5, 0.5, 1]), 2: None}
    df = spark.createDataFrame([(i, None if a is None else from_numpy(vol, a)) for i, a in affines.items()], SCHEMA)
    tapped, runs = counted(spark, df.repartition(2))
    model = SegmentationModel(network=unet3d(2, (8, 8, 8), depth=1, base_filters=2), patchShape=[8, 8, 8],
                              nClasses=2, probabilityCol="prob")
    rows = {r.id: r for r in model.transform(tapped).collect()}
    assert runs.value == 3  # every input row read once: no second pass for a join back
    assert sorted(rows) == [0, 1, 2] and rows[2].segmentation is None and rows[2].prob is None
    for i in (0, 1):
        assert np.array_equal(get_affine(rows[i].segmentation), affines[i])
        assert np.array_equal(get_affine(rows[i].image), affines[i]) and to_numpy(rows[i].segmentation).shape == vol.shape
    # equal voxels, equal network: equal masks, each on its own grid
    assert np.array_equal(to_numpy(rows[0].segmentation), to_numpy(rows[1].segmentation))
