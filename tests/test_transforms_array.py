"""Pure-numpy transforms against independent references (nibabel, scipy, scikit-image)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from nibabel.processing import resample_from_to
from skimage.transform import resize

from bigdl_medimg.datasets.phantoms import knee_phantom
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.transforms import array as A
from bigdl_medimg.transforms import reorient
from bigdl_medimg.transforms.augment import AugmentConfig, augment


@pytest.fixture(scope="module")
def anatomical(nibabel_data):
    img = nib.load(str(nibabel_data / "anatomical.nii"))
    return np.asanyarray(img.dataobj), img.affine


def _world_value_check(src, src_aff, dst, dst_aff, n=25, seed=0):
    """Voxels of dst hold the value of src at the same world position (exact index ops)."""
    rng = np.random.default_rng(seed)
    inv = np.linalg.inv(src_aff)
    for _ in range(n):
        j = tuple(int(rng.integers(0, s)) for s in dst.shape[-3:])
        i = np.rint((inv @ dst_aff @ [*j, 1])[:3]).astype(int)
        if np.all(i >= 0) and np.all(i < src.shape[-3:]):
            assert dst[(...,) + j] == src[(...,) + tuple(i)]


def test_reorient_matches_nibabel_on_a_real_file(anatomical):
    arr, aff = anatomical
    for codes in ("RAS", "LPS", "PIR"):
        got, gaff = reorient(arr, aff, codes)
        x = ornt_transform(io_orientation(aff), axcodes2ornt(codes))
        assert np.array_equal(got, apply_orientation(arr, x))
        assert np.allclose(gaff, aff @ inv_ornt_aff(x, arr.shape))
        assert nib.aff2axcodes(gaff) == tuple(codes)
    with pytest.raises(ConfigError, match="axcodes"):
        reorient(arr, aff, "RAR")


@pytest.mark.parametrize("order", [0, 1, 3])
def test_resample_matches_nibabel_resample_from_to(anatomical, order):
    arr, aff = anatomical
    arr = arr.astype(np.float32) if order else arr
    out, oaff = A.resample(arr, aff, [1.7, 2.3, 1.1], order=order)
    ref = resample_from_to(nib.Nifti1Image(arr, aff), (out.shape, oaff), order=order, mode="nearest")
    assert np.allclose(out, np.asanyarray(ref.dataobj), atol=1e-3 * max(1, float(np.abs(arr).max())))
    assert np.allclose(np.sqrt((oaff[:3, :3] ** 2).sum(0)), [1.7, 2.3, 1.1])
    assert np.allclose(oaff[:3, 3], aff[:3, 3])  # first voxel centre stays
    assert out.dtype == (arr.dtype if order == 0 else np.float32)


def test_resample_mask_keeps_labels_and_validates():
    case = knee_phantom(0, shape=(12, 40, 40))
    m, _ = A.resample(case.mask, case.affine, [1.5, 1.5, 1.5], order=0)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= set(np.unique(case.mask))
    for bad in ([0, 1, 1], [1, 1], [1, -1, 1]):
        with pytest.raises(ConfigError, match="spacing"):
            A.resample(case.image, case.affine, bad)
    two_d, aff2 = A.resample(np.ones((10, 20), np.float32), np.diag([0.5, 0.5, 1, 1]), [1.0, 1.0])
    assert two_d.shape == (5, 10) and np.allclose(np.diag(aff2)[:2], [1, 1])


def test_crop_or_pad_and_crop_foreground_keep_world_positions():
    case = knee_phantom(1, shape=(12, 40, 40))
    for shape in ((8, 48, 30), (16, 20, 64)):
        out, oaff = A.crop_or_pad(case.image, case.affine, shape)
        assert out.shape == shape
        _world_value_check(case.image, case.affine, out, oaff)
    box = A.foreground_box(case.mask, 0, margin=2)
    idx = np.argwhere(case.mask > 0)
    assert box[0] == [max(0, int(v) - 2) for v in idx.min(0)]
    cropped, caff = A.crop_foreground(case.mask, case.affine, box)
    assert (cropped > 0).sum() == (case.mask > 0).sum()
    _world_value_check(case.mask, case.affine, cropped, caff)
    assert A.crop_foreground(case.mask, case.affine, None)[0] is case.mask
    assert A.foreground_box(np.zeros((3, 3, 3)), 0) is None


def test_resize_image_matches_skimage_and_moves_the_affine():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 4096, (100, 80)).astype(np.uint16)
    aff = np.diag([0.2, 0.3, 1.0, 1.0])
    out, oaff = A.resize_image(img, aff, (50, 64))
    ref = resize(img, (50, 64), order=1, mode="edge", preserve_range=True, anti_aliasing=True)
    assert out.dtype == np.float32 and np.allclose(out, ref, atol=1e-2)
    # new pixel j is centred at old index (j + 0.5) * s - 0.5
    s = np.array([100 / 50, 80 / 64])
    j = np.array([7, 11])
    assert np.allclose((oaff @ [*j, 0, 1])[:2], (aff @ [*((j + 0.5) * s - 0.5), 0, 1])[:2])
    mask = (img > 2000).astype(np.uint8)
    m, _ = A.resize_image(mask, aff, (50, 64), order=0, anti_aliasing=False)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    with pytest.raises(ConfigError, match="size"):
        A.resize_image(img, aff, (0, 5))


def test_intensity_functions():
    rng = np.random.default_rng(3)
    x = rng.normal(100, 20, (2, 5, 6, 7)).astype(np.float32)
    w = A.intensity_window(x, 80, 120)
    assert w.dtype == np.float32 and w.min() == 0 and w.max() == 1
    assert np.allclose(A.intensity_window(x, 80, 120, clip=False), (x - 80) / 40, atol=1e-5)
    z = A.zscore_normalize(x)
    assert np.allclose(z.reshape(2, -1).mean(1), 0, atol=1e-4) and np.allclose(z.reshape(2, -1).std(1), 1, atol=1e-4)
    y = x.copy()
    y[:, :2] = 0
    zn = A.zscore_normalize(y, nonzero=True)
    assert np.all(zn[:, :2] == 0) and abs(zn[y != 0].mean()) < 1e-3
    p = A.percentile_scale(x, 5, 95)
    lo, hi = np.percentile(x[0], [5, 95])
    assert np.allclose(p[0], np.clip((x[0] - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert A.zscore_normalize(x.astype(np.int16)).dtype == np.float32
    with pytest.raises(ConfigError):
        A.intensity_window(x, 5, 5)
    with pytest.raises(ConfigError):
        A.percentile_scale(x, 50, 10)


def test_patch_sampling_bounds_foreground_and_determinism():
    case = knee_phantom(4, shape=(16, 48, 48))
    rng = np.random.default_rng(0)
    starts = A.patch_starts(case.mask.shape, (8, 16, 16), 20, 0.5, case.mask, rng)
    assert len(starts) == 20 and sum(fg for _, fg in starts) == 10
    for start, fg in starts:
        p = A.extract_patch(case.mask, start, (8, 16, 16))
        assert p.shape == (8, 16, 16)
        if fg:
            assert (p > 0).any()
    again = A.patch_starts(case.mask.shape, (8, 16, 16), 20, 0.5, case.mask, np.random.default_rng(0))
    assert again == starts
    with pytest.raises(ConfigError, match="larger than the image"):
        A.patch_starts((4, 4, 4), (8, 2, 2), 1, 0, None, rng)


def test_augment_keeps_image_and_mask_aligned_and_the_affine_true():
    case = knee_phantom(5, shape=(12, 32, 32))
    img = case.mask.astype(np.float32) * 10  # the image is a function of the mask
    exact = AugmentConfig(flip_prob=0.5, rot90_prob=1.0, affine_prob=0, intensity_prob=0, gamma_prob=0)
    for seed in range(6):
        a, aff, m = augment(img, case.affine, case.mask, np.random.default_rng(seed), exact)
        assert np.array_equal(a, m.astype(np.float32) * 10)
        _world_value_check(case.mask, case.affine, m, aff)
    full = AugmentConfig(affine_prob=1.0, max_rotation_deg=10)
    a, aff, m = augment(img, case.affine, case.mask, np.random.default_rng(1), full)
    assert a.dtype == np.float32 and m.dtype == np.uint8 and a.shape == img.shape
    agree = np.mean((m > 0) == (a > a.min() + 0.5 * (a.max() - a.min()) * 0.1))
    assert agree > 0.9
    b = augment(img, case.affine, case.mask, np.random.default_rng(1), full)
    assert np.array_equal(a, b[0]) and np.array_equal(m, b[2])
    with pytest.raises(ConfigError, match="flip_prob"):
        AugmentConfig(flip_prob=2).validate()


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.float32])
def test_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(4)
    x = (rng.normal(500, 300, (9, 11, 13))).clip(0, 255 if dtype == np.uint8 else None).astype(dtype)
    for qs in ((1, 99), (0, 100), (0.5, 99.5), (37, 63)):
        assert np.allclose(A._percentiles(x, qs), np.percentile(x, qs))
