"""Label-mask post-processing: KeepLargestComponent against scikit-image's and scipy.ndimage's labelling, and as a stage."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import types as T

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import from_numpy, get_affine, tensor_type, to_numpy
from bigdl_medimg.transforms.labels import KeepLargestComponent, keep_largest_components


def _reference(mask, label, keep, connectivity, by="skimage"):
    """By scikit-image's (or scipy.ndimage's) labelling: the voxels the ``keep`` largest components of ``label``
    hold, their total size, and whether a tie in size at the cut leaves the choice open."""
    if by == "skimage":
        from skimage.measure import label as sk_label

        comp = sk_label(mask == label, connectivity=connectivity, background=0)
    else:
        from scipy import ndimage

        comp = ndimage.label(mask == label, structure=ndimage.generate_binary_structure(mask.ndim, connectivity))[0]
    sizes = np.bincount(comp.ravel())[1:]
    order = sorted(range(1, len(sizes) + 1), key=lambda c: -sizes[c - 1])
    ranked = sorted(sizes, reverse=True)
    tie = len(ranked) > keep and ranked[keep - 1] == ranked[keep]
    return np.isin(comp, order[:keep]), sum(ranked[:keep]), tie


@pytest.mark.parametrize("by", ["skimage", "scipy"])
@pytest.mark.parametrize("seed,connectivity", [(0, 1), (1, 2), (2, 3), (3, 1)])
def test_keeps_the_largest_components_as_scikit_image_labels_them(seed, connectivity, by):
    rng = np.random.default_rng(seed)
    mask = (rng.random((12, 14, 10)) < 0.35).astype(np.uint8) * rng.integers(1, 4, (12, 14, 10)).astype(np.uint8)
    keep = {1: 1, 2: 2}
    out = keep_largest_components(mask, labels=[1, 2], components=[keep[1], keep[2]], connectivity=connectivity)
    for lab in (1, 2):
        want, size, tie = _reference(mask, lab, keep[lab], connectivity, by)
        got = out == lab
        assert got.sum() == size  # the largest components' sizes, whichever a tie keeps
        if not tie:
            assert np.array_equal(got, want)
        assert not np.any(got & (mask != lab))  # only removals
    assert np.array_equal(out == 3, mask == 3)  # labels not asked for are untouched
    removed = (mask != 0) & (out == 0)
    assert removed.any() and np.all(np.isin(mask[removed], [1, 2]))  # removed voxels become background


def test_defaults_every_present_label_and_bad_settings():
    m = np.zeros((5, 5), np.uint8)
    m[0, 0] = m[4, 4] = 2
    m[1:3, 1:3] = 2
    m[0, 4] = 1
    out = keep_largest_components(m)  # every label present, one component each
    assert out[0, 0] == out[4, 4] == 0 and (out[1:3, 1:3] == 2).all() and out[0, 4] == 1
    assert keep_largest_components(m, connectivity=2)[0, 0] == 2  # the corner joins the square
    with pytest.raises(ConfigError, match="one count or one per label"):
        keep_largest_components(m, labels=[1, 2], components=[1, 1, 1])
    with pytest.raises(ConfigError, match="connectivity must be 1..2"):
        keep_largest_components(m, connectivity=3)


def test_the_stage_cleans_a_prediction_and_round_trips_in_a_pipeline(spark, tmp_path):
    m = np.zeros((6, 8, 8), np.uint8)
    m[1:4, 1:4, 1:4] = 4
    m[5, 7, 7] = 4  # an island far from the structure
    m[1:3, 5:7, 5:7] = 4  # a second meniscus
    aff = np.diag([2.0, 0.5, 0.5, 1.0])
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("segmentation", tensor_type())])
    df = spark.createDataFrame([(1, from_numpy(m, aff)), (2, None)], schema)
    stage = KeepLargestComponent(labels=[4], components=[2])
    pipe = PipelineModel(stages=[stage])
    pipe.write().overwrite().save(str(tmp_path / "pm"))
    back = PipelineModel.load(str(tmp_path / "pm"))
    assert back.stages[0].getComponents() == [2] and back.stages[0].getLabels() == [4]
    rows = {r.id: r for r in back.transform(df).collect()}
    got = to_numpy(rows[1].segmentation)
    assert got[5, 7, 7] == 0 and (got[1:4, 1:4, 1:4] == 4).all() and (got[1:3, 5:7, 5:7] == 4).all()
    assert np.array_equal(get_affine(rows[1].segmentation), aff) and rows[2].segmentation is None
    with pytest.raises(ConfigError, match="components needs"):
        KeepLargestComponent(labels=[1, 2], components=[1, 2, 3]).transform(df)
