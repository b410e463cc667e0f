"""The preprocessing stages on Spark: pipelines, persistence, masks, row errors, validation."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigdl_medimg.datasets.phantoms import knee_phantom
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import from_numpy, get_affine, tensor_type, to_numpy
from bigdl_medimg.transforms import (Augment, CropAroundLabel, CropForeground, CropOrPad, FromFeatures, IntensityWindow, PatchSampler,
                                     PercentileScale, Reorient, Resample, ResizeImage, ToFeatures, ZScoreNormalize)
from bigdl_medimg.transforms import array as A
from bigdl_medimg.transforms import reorient

SCHEMA = T.StructType([T.StructField("case", T.StringType()), T.StructField("image", tensor_type()),
                       T.StructField("mask", tensor_type())])


@pytest.fixture(scope="module")
def knees(spark):
    rows = []
    for s in range(3):
        c = knee_phantom(s, shape=(12, 40, 40))
        rows.append((f"k{s}", from_numpy(c.image, c.affine), from_numpy(c.mask, c.affine)))
    rows.append(("broken", None, None))  # an error row from a reader
    return spark.createDataFrame(rows, SCHEMA).withColumn(
        "error", F.when(F.col("image").isNull(), F.lit("DicomReadError: not a DICOM file")))


def _by_case(df):
    return {r.case: r for r in df.collect()}


def test_pipeline_fits_saves_loads_and_matches_numpy(spark, knees, tmp_path):
    pipe = Pipeline(stages=[
        Reorient(axcodes="RAS", maskCol="mask"),
        Resample(spacing=[1.5, 1.5, 1.5], maskCol="mask"),
        CropOrPad(shape=[64, 64, 48], maskCol="mask"),
        PercentileScale(lower=1, upper=99),
        ToFeatures(inputCol="image", outputCol="features"),
    ])
    model = pipe.fit(knees)
    out = _by_case(model.transform(knees))
    model.write().overwrite().save(str(tmp_path / "prep"))
    again = _by_case(PipelineModel.load(str(tmp_path / "prep")).transform(knees))
    for s in range(3):
        c = knee_phantom(s, shape=(12, 40, 40))
        a, aff = reorient(c.image, c.affine, "RAS")
        m, _ = reorient(c.mask, c.affine, "RAS")
        a, aff2 = A.resample(a, aff, [1.5, 1.5, 1.5], 1)
        m, _ = A.resample(m, aff, [1.5, 1.5, 1.5], 0)
        a, aff3 = A.crop_or_pad(a, aff2, [64, 64, 48])
        m, _ = A.crop_or_pad(m, aff2, [64, 64, 48])
        a = A.percentile_scale(a, 1, 99)
        row = out[f"k{s}"]
        assert np.allclose(to_numpy(row.image), a, atol=1e-6) and np.array_equal(to_numpy(row.mask), m)
        assert np.allclose(get_affine(row.image), aff3) and np.allclose(get_affine(row.mask), aff3)
        assert np.allclose(np.asarray(row.features), a.ravel(), atol=1e-6)
        assert np.array_equal(to_numpy(again[f"k{s}"].image), to_numpy(row.image))
        assert row.error is None
    assert out["broken"].image is None and out["broken"].error == "DicomReadError: not a DICOM file"


def test_every_stage_round_trips_its_params(tmp_path):
    stages = [Reorient(axcodes="LPS"), Resample(spacing=[1, 2, 3], order=3), IntensityWindow(low=-100, high=300, clip=False),
              ZScoreNormalize(nonzero=True), PercentileScale(lower=2, upper=98), CropOrPad(shape=[4, 5, 6], value=-1),
              CropForeground(margin=3, source="mask", maskCol="m"), ResizeImage(size=[64, 32], antiAliasing=False),
              PatchSampler(patchShape=[8, 8, 8], patchesPerImage=3, posFraction=0.7, seed=9),
              Augment(seed=4, flipProb=0.2, gammaRange=0.1), ToFeatures(outputCol="x"), FromFeatures(argmax=True),
              CropAroundLabel(labels=[4, 3], size=[8, 16, 16], foundCol="f")]
    for i, st in enumerate(stages):
        path = str(tmp_path / f"s{i}")
        st.save(path)
        back = type(st).load(path)
        assert back.extractParamMap() == {back.getParam(p.name): v for p, v in st.extractParamMap().items()}
    assert Resample(spacing=[1, 2, 3]).setOrder(0).getOrder() == 0  # camelCase accessors


def test_validation_errors_are_clear(spark, knees):
    with pytest.raises(ConfigError, match="spacing must be positive"):
        Resample(spacing=[1, 0, 1]).transform(knees)
    with pytest.raises(ConfigError, match="spacing is required"):
        Resample().transform(knees)
    with pytest.raises(ConfigError, match="low < high"):
        IntensityWindow(low=5, high=1).transform(knees)
    with pytest.raises(ConfigError, match="column 'nope' not found"):
        ZScoreNormalize(inputCol="nope").transform(knees)
    with pytest.raises(ConfigError, match="source='mask' needs maskCol"):
        CropForeground(source="mask").transform(knees)
    with pytest.raises(ConfigError, match="axcodes"):
        Reorient(axcodes="XYZ").transform(knees)
    # data-dependent problems become row errors, not failed jobs
    rows = _by_case(PatchSampler(patchShape=[64, 8, 8], labelCol="mask").transform(knees))
    assert rows["k0"].image is None and "larger than the image" in rows["k0"].error
    assert rows["broken"].error.startswith("DicomReadError")


def test_patch_sampler_explodes_with_foreground_share_and_is_reproducible(spark, knees):
    sampler = PatchSampler(patchShape=[8, 16, 16], patchesPerImage=6, posFraction=0.5, labelCol="mask", seed=3)
    rows = sampler.transform(knees).collect()
    good = [r for r in rows if r.case != "broken"]
    assert len(good) == 18 and len([r for r in rows if r.case == "broken"]) == 1
    for r in good:
        img, m = to_numpy(r.image), to_numpy(r.mask)
        assert img.shape == (8, 16, 16) and m.shape == (8, 16, 16)
        if r.patch_foreground:
            assert (m > 0).any()
        full = knee_phantom(int(r.case[1:]), shape=(12, 40, 40))
        s = r.patch_start
        assert np.array_equal(img, full.image[s[0]:s[0] + 8, s[1]:s[1] + 16, s[2]:s[2] + 16])
        assert np.allclose(get_affine(r.image), A.translate(full.affine, s))
    assert sum(r.patch_foreground for r in good) == 9
    again = sampler.transform(knees).collect()
    assert sorted((r.case, r.patch_index, tuple(r.patch_start or ())) for r in again) == \
        sorted((r.case, r.patch_index, tuple(r.patch_start or ())) for r in rows)


def test_augment_is_reproducible_and_moves_mask_with_image(spark, knees):
    aug = Augment(seed=1, flipProb=0.5, rot90Prob=1.0, affineProb=0.0, intensityProb=0, gammaProb=0, maskCol="mask")
    a, b = _by_case(aug.transform(knees)), _by_case(aug.transform(knees))
    other = _by_case(aug.copy({aug.seed: 2}).transform(knees))
    changed = 0
    for s in range(3):
        ra = a[f"k{s}"]
        assert np.array_equal(to_numpy(ra.image), to_numpy(b[f"k{s}"].image))
        c = knee_phantom(s, shape=(12, 40, 40))
        ia, ma = to_numpy(ra.image), to_numpy(ra.mask)
        # the same index permutation on both: the mask's voxels still sit on the same image values
        for k in range(1, 5):
            assert np.isclose(ia[ma == k].mean(), c.image[c.mask == k].mean(), rtol=1e-5)
        changed += not np.array_equal(to_numpy(other[f"k{s}"].image), ia)
    assert changed >= 1


def test_resize_xray_and_features_round_trip(spark, tmp_path):
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    img = rng.integers(0, 4096, (90, 70)).astype(np.uint16)
    df = spark.createDataFrame([("x", from_numpy(img, np.diag([0.2, 0.2, 1, 1])), None)], SCHEMA)
    out = ResizeImage(size=[45, 35]).transform(df)
    out = ToFeatures().transform(out)
    out = FromFeatures(inputCol="features", outputCol="back", referenceCol="image").transform(out).first()
    ref = resize(img, (45, 35), order=1, mode="edge", preserve_range=True, anti_aliasing=True)
    assert np.allclose(to_numpy(out.image), ref, atol=1e-2)
    assert np.allclose(to_numpy(out.back), to_numpy(out.image)) and np.allclose(get_affine(out.back), get_affine(out.image))
    scores = spark.createDataFrame([([0.1, 0.9, 0.8, 0.2, 0.3, 0.1], from_numpy(np.zeros((1, 3)), np.eye(4)))],
                                   "prediction array<float>, image struct<data:binary,dtype:string,shape:array<int>,affine:array<double>>")
    lab = FromFeatures(argmax=True, outputCol="label").transform(scores).first().label
    assert np.array_equal(to_numpy(lab), [[1, 0, 0]])


def test_dicom_series_and_nifti_agree_through_the_reorient_stage(spark, tmp_path):
    from bigdl_medimg import read_dicom_series, read_nifti
    from bigdl_medimg.io.dicom_write import write_dicom_series, write_nifti

    c = knee_phantom(7, shape=(10, 32, 32), oblique=True)
    write_dicom_series(c.image, c.affine, tmp_path / "d")
    write_nifti(c.image, c.affine, tmp_path / "n.nii.gz")
    stage = Reorient(axcodes="RAS")
    d = stage.transform(read_dicom_series(spark, str(tmp_path / "d"))).first()
    n = stage.transform(read_nifti(spark, str(tmp_path / "n.nii.gz"))).first()
    assert np.array_equal(to_numpy(d.image), to_numpy(n.image))
    assert np.allclose(get_affine(d.image), get_affine(n.image), atol=1e-4)


def test_crop_around_label_centres_the_window_on_the_labels(spark, knees):
    st = CropAroundLabel(labels=[4], size=[8, 16, 16], maskCol="mask", maskOutputCol="roi_mask", outputCol="roi",
                         foundCol="found")
    rows = _by_case(st.transform(knees))
    assert rows["broken"].roi is None and rows["broken"].found is None
    for s in range(3):
        r, c = rows[f"k{s}"], knee_phantom(s, shape=(12, 40, 40))
        roi, roi_mask = to_numpy(r.roi), to_numpy(r.roi_mask)
        assert roi.shape == (8, 16, 16) and roi_mask.shape == (8, 16, 16) and r.found
        # the window sits where its affine says: voxel (i, j, k) of the window is voxel start + (i, j, k)
        start = np.linalg.solve(c.affine, get_affine(r.roi) @ [0, 0, 0, 1])[:3].round().astype(int)
        idx = np.argwhere(c.mask == 4)
        centre = (idx.min(0) + idx.max(0) + 1) / 2
        assert np.all(np.abs(start + np.array([4, 8, 8]) - centre) <= 0.5 + 1e-9)
        lo, hi = np.maximum(start, 0), np.minimum(start + [8, 16, 16], c.mask.shape)
        sub = tuple(slice(a, b) for a, b in zip(lo, hi))
        win = tuple(slice(a - s0, b - s0) for a, b, s0 in zip(lo, hi, start))
        assert np.array_equal(roi[win], c.image[sub]) and np.array_equal(roi_mask[win], c.mask[sub])
    # no such label: a window centred on the image, flagged
    none = _by_case(CropAroundLabel(labels=[9], size=[8, 16, 16], maskCol="mask", foundCol="found").transform(knees))
    assert none["k0"].found is False and to_numpy(none["k0"].image).shape == (8, 16, 16)
    # missing="error": no window to score, a row error naming the labels (nothing from an empty window)
    strict = _by_case(CropAroundLabel(labels=[9, 8], size=[8, 16, 16], maskCol="mask", foundCol="found",
                                      missing="error", outputCol="roi", maskOutputCol="roi_mask").transform(knees))
    assert strict["k0"].found is False and strict["k0"].roi is None and strict["k0"].roi_mask is None
    assert to_numpy(strict["k0"].mask).shape == (12, 40, 40)  # the mask it searched is kept
    assert "none of the labels [9, 8] in the mask" in strict["k0"].error
    kept = _by_case(CropAroundLabel(labels=[4], size=[8, 16, 16], maskCol="mask", missing="error",
                                    outputCol="roi").transform(knees))
    assert kept["k1"].error is None and to_numpy(kept["k1"].roi).shape == (8, 16, 16)
    with pytest.raises(ConfigError, match="missing must be"):
        CropAroundLabel(missing="skip", maskCol="mask").transform(knees)
    with pytest.raises(ConfigError, match="maskCol is required"):
        CropAroundLabel(maskCol="").transform(knees)
