"""Clinical outputs: NIfTI masks with the source affine, DICOM SEG referencing the source series, tables."""
from __future__ import annotations


import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigdl_medimg import read_dicom_series
from bigdl_medimg.datasets.phantoms import knee_phantom
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.io.dicom_write import write_dicom_series
from bigdl_medimg.tensor import from_numpy, get_affine, tensor_type, to_numpy
from bigdl_medimg.transforms import Reorient

LABELS = {1: "Femoral cartilage", 2: "Tibial cartilage", 3: "Patellar cartilage", 4: "Meniscus"}


@pytest.fixture(scope="module")
def series(spark, tmp_path_factory):
    """Two phantom knees written as DICOM series, read back, with their reference masks on the read grid."""
    root = tmp_path_factory.mktemp("src")
    masks = {}
    for seed in (3, 4):
        c = knee_phantom(seed, shape=(10, 24, 24))
        write_dicom_series(c.image.astype(np.int16), c.affine, root / f"case{seed}", uid_seed=f"exp{seed}")
        masks[seed] = c
    df = read_dicom_series(spark, str(root))
    rows = df.collect()
    assert len(rows) == 2 and all(r.error is None for r in rows)
    by_key, ref = {}, {}
    for r in rows:
        seed = 3 if "case3" in r.path[0] else 4
        c = masks[seed]
        aff = get_affine(r.image)
        flipped = np.allclose(aff[:3, 0], -c.affine[:3, 0], atol=1e-4)
        ref[r.series_key] = c.mask[::-1] if flipped else c.mask
        by_key[r.series_key] = r
    schema = T.StructType([T.StructField("series_key", T.StringType()), T.StructField("truth", tensor_type())])
    truth = spark.createDataFrame([(k, from_numpy(m, get_affine(by_key[k].image))) for k, m in ref.items()], schema)
    # the "prediction" comes out of a pipeline that reoriented the image (and mask) to RAS
    scored = Reorient(axcodes="RAS", inputCol="image", outputCol="image_ras", maskCol="truth",
                      maskOutputCol="segmentation").transform(df.join(truth, "series_key"))
    return scored.cache(), by_key, ref


def test_nifti_masks_carry_the_source_affine(series, tmp_path):
    from bigdl_medimg.export import write_nifti_masks

    df, by_key, ref = series
    assert any(not np.allclose(get_affine(r.segmentation), get_affine(r.image))
               for r in df.select("segmentation", "image").collect()), "the reorientation should change the grid"
    out = write_nifti_masks(df, str(tmp_path / "nii"), nameCol="series_key", referenceCol="image")
    assert out["error"].isna().all() and len(out) == 2
    for _, r in out.iterrows():
        img = nib.load(r["path"])
        src = by_key[r["name"]]
        assert r["path"].endswith(".nii.gz")
        assert np.allclose(img.affine, get_affine(src.image), atol=1e-6)
        assert np.array_equal(np.asarray(img.dataobj), ref[r["name"]])
        assert img.get_data_dtype() == np.uint8
    # without a reference the mask's own (reoriented) grid is written, uncompressed when asked
    own = write_nifti_masks(df, "file:" + str(tmp_path / "own"), nameCol="series_key", compress=False)
    for _, r in own.iterrows():
        row = df.filter(F.col("series_key") == r["name"]).first()
        img = nib.load(r["path"])
        assert np.allclose(img.affine, get_affine(row.segmentation)) and r["path"].endswith(".nii")
        assert np.array_equal(np.asarray(img.dataobj), to_numpy(row.segmentation))


# failfast is expected to raise inside toPandas; pyspark first warns that its Arrow path met that error
@pytest.mark.filterwarnings("ignore:toPandas attempted Arrow optimization:UserWarning")
def test_nifti_export_reports_bad_rows_and_keeps_the_rest(spark, series, tmp_path):
    from bigdl_medimg.export import write_nifti_masks

    df = series[0].select("series_key", "segmentation")
    bad = spark.createDataFrame([("broken", None)], df.schema)
    out = write_nifti_masks(df.unionByName(bad), str(tmp_path), nameCol="series_key").set_index("name")
    assert out.loc["broken", "error"] == "ExportError: ValueError: mask is null"
    assert out["path"].notna().sum() == 2
    with pytest.raises(ConfigError, match="column 'case' not found"):
        write_nifti_masks(df, str(tmp_path), nameCol="case")
    with pytest.raises(Exception, match="mask is null"):
        write_nifti_masks(bad, str(tmp_path), nameCol="series_key", mode="failfast")


def test_dicom_seg_references_and_aligns_with_the_source_slices(series, tmp_path):
    import highdicom as hd

    from bigdl_medimg.export import write_dicom_seg

    df, by_key, ref = series
    out = write_dicom_seg(df, str(tmp_path / "seg"), LABELS, keyCol="series_key")
    assert out["error"].isna().all() and len(out) == 2
    for _, r in out.iterrows():
        src_row, mask = by_key[r["key"]], ref[r["key"]]
        sources = [pydicom.dcmread(p.removeprefix("file:"), stop_before_pixels=True) for p in src_row.path]
        index = {str(s.SOPInstanceUID): i for i, s in enumerate(sources)}
        seg = pydicom.dcmread(r["path"])
        assert seg.Modality == "SEG" and str(seg.SOPInstanceUID) == r["sop_instance_uid"]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src_row.series_instance_uid
        assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
        assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
        assert [s.SegmentLabel for s in seg.SegmentSequence] == list(LABELS.values())
        frames = seg.pixel_array.reshape(-1, *mask.shape[1:])
        assert len(frames) == r["frames"] == sum(int((mask[i] == k).any()) for i in range(len(mask))
                                                  for k in LABELS)
        seen = set()
        for f, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
            sop = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            k = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            i = index[sop]
            assert np.array_equal(f.astype(bool), mask[i] == k), (i, k)
            assert np.allclose([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient],
                               [float(v) for v in sources[i].ImagePositionPatient])
            seen.add((i, k))
        assert seen == {(i, k) for i in range(len(mask)) for k in LABELS if (mask[i] == k).any()}
        # highdicom reads it back into the same label volume, slice by source instance
        hseg = hd.seg.segread(r["path"])
        for i, s in enumerate(sources):
            for k in LABELS:
                if (mask[i] == k).any():
                    px = hseg.get_pixels_by_source_instance(
                        source_sop_instance_uids=[str(s.SOPInstanceUID)], segment_numbers=[k])
                    assert np.array_equal(px[0, :, :, 0].astype(bool), mask[i] == k)


# failfast is expected to raise inside toPandas; pyspark first warns that its Arrow path met that error
@pytest.mark.filterwarnings("ignore:toPandas attempted Arrow optimization:UserWarning")
def test_dicom_seg_errors_name_the_series_and_keep_the_rest(spark, series, tmp_path):
    from bigdl_medimg.export import write_dicom_seg

    df = series[0].select("series_key", "path", "segmentation")
    first = df.first()
    missing = spark.createDataFrame([("gone", [first.path[0] + ".missing"], first.segmentation),
                                     ("nomask", list(first.path), None)], df.schema)
    out = write_dicom_seg(df.unionByName(missing), str(tmp_path), LABELS, keyCol="series_key").set_index("key")
    assert out["path"].notna().sum() == 2
    assert out.loc["nomask", "error"] == "ExportError: ValueError: mask is null"
    assert out.loc["gone", "error"].startswith("ExportError: FileNotFoundError")
    with pytest.raises(Exception, match=r"classes \[2, 3, 4\] without a segment label"):
        write_dicom_seg(df, str(tmp_path / "x"), {1: "Femoral cartilage"}, keyCol="series_key", mode="failfast")
    with pytest.raises(ConfigError, match="classes 1..255"):
        write_dicom_seg(df, str(tmp_path), {0: "background"}, keyCol="series_key")


def test_predictions_are_written_keyed_by_uid_as_parquet_and_csv(spark, tmp_path):
    from bigdl_medimg.export import write_predictions

    rows = [("1.2.3", "1.2.3.4", "1.2.3.4.5", [0.9, 0.2], [1, 0], [1, 0], None),
            ("1.2.3", "1.2.3.4", "1.2.3.4.6", [0.1, 0.7], [0, 1], [0, 1], None),
            ("1.2.3", "1.2.3.4", "1.2.3.4.7", None, None, [0, 1], "DicomReadError: x.dcm: truncated")]
    schema = ("study_instance_uid string, series_instance_uid string, sop_instance_uid string, "
              "probability array<double>, prediction array<int>, labels array<int>, error string")
    df = spark.createDataFrame(rows, schema)
    names = ["Pleural Effusion", "Mass"]
    write_predictions(df, str(tmp_path / "p.parquet"), labelNames=names, labelCol="labels")
    back = spark.read.parquet(str(tmp_path / "p.parquet")).toPandas().sort_values("sop_instance_uid")
    assert list(back.columns) == ["study_instance_uid", "series_instance_uid", "sop_instance_uid",
                                  "prob_Pleural_Effusion", "prob_Mass", "pred_Pleural_Effusion", "pred_Mass",
                                  "true_Pleural_Effusion", "true_Mass", "error"]
    assert back["prob_Mass"].tolist()[:2] == [0.2, 0.7] and np.isnan(back["prob_Mass"].tolist()[2])
    assert back["true_Mass"].tolist() == [0, 1, 1] and back["error"].notna().tolist() == [False, False, True]
    write_predictions(df, str(tmp_path / "p.csv"), labelNames=names, labelCol="labels", format="csv",
                      single_file=True)
    csvs = list((tmp_path / "p.csv").glob("part-*.csv"))
    assert len(csvs) == 1
    table = pd.read_csv(csvs[0]).sort_values("sop_instance_uid")
    assert table["prob_Pleural_Effusion"].tolist()[:2] == [0.9, 0.1] and len(table) == 3
    with pytest.raises(ConfigError, match="pass keyCols"):
        write_predictions(df.drop("study_instance_uid", "series_instance_uid", "sop_instance_uid"),
                          str(tmp_path / "q"), labelNames=names)
    # class-index labels (multi-class) stay one column
    mc = spark.createDataFrame([("a.png", [0.2, 0.8], 1, 1)], "image_index string, probability array<double>, "
                                                             "prediction int, grade int")
    write_predictions(mc, str(tmp_path / "m"), labelNames=["none", "tear"], labelCol="grade",
                      keyCols=["image_index"])
    got = spark.read.parquet(str(tmp_path / "m")).first()
    assert got.asDict() == {"image_index": "a.png", "prob_none": 0.2, "prob_tear": 0.8, "pred_class": 1,
                            "true_class": 1}
