"""Phantom statistics: determinism, class volumes, tear visibility, label prevalences."""
from __future__ import annotations

import numpy as np
import pytest

from bigdl_medimg.datasets.phantoms import (CHEST_LABELS, CHEST_PREVALENCE, chest_xray_phantom, knee_phantom,
                                            sample_chest_labels)
from bigdl_medimg.errors import ConfigError
from bigdl_medimg.tensor import spacing_from_affine


def test_knee_is_deterministic_and_has_every_class():
    a, b = knee_phantom(7), knee_phantom(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.tear == b.tear
    assert not np.array_equal(a.image, knee_phantom(8).image)
    for seed in range(6):
        c = knee_phantom(seed)
        counts = np.bincount(c.mask.ravel(), minlength=5)
        assert counts.size == 5 and np.all(counts[1:] > 100), (seed, counts)
        frac = counts[1:] / c.mask.size
        assert np.all(frac < 0.05)  # thin structures, not blobs
        # anisotropic spacing, int16 image, every tissue distinguishable from its class mean
        sp = spacing_from_affine(c.affine)
        assert sp[0] > 2 * sp[1]
        assert c.image.dtype == np.int16 and c.mask.dtype == np.uint8
        means = [c.image[c.mask == k].mean() for k in range(5)]
        assert means[4] < 0.5 * means[1]  # menisci dark, cartilage bright


def test_knee_tear_is_a_bright_cleft_in_the_meniscus():
    torn, intact = knee_phantom(3, tear=1), knee_phantom(3, tear=0)
    assert torn.tear == 1 and intact.tear == 0 and torn.info["tear_voxels"] > 10
    men = torn.mask == 4
    assert np.percentile(torn.image[men], 99) > np.percentile(intact.image[intact.mask == 4], 99) * 1.5
    tears = [knee_phantom(s).tear for s in range(40)]
    assert 10 <= sum(tears) <= 30


def test_knee_oblique_and_parameter_errors():
    ob = knee_phantom(1, oblique=True)
    assert not np.allclose(np.abs(ob.affine[:3, :3]) > 1e-9, np.abs(knee_phantom(1, oblique=False).affine[:3, :3]) > 1e-9)
    small = knee_phantom(2, shape=(12, 40, 40))
    assert small.image.shape == (12, 40, 40) and np.all(np.bincount(small.mask.ravel(), minlength=5)[1:] > 0)
    with pytest.raises(ConfigError, match="shape"):
        knee_phantom(0, shape=(4, 4))
    with pytest.raises(ConfigError, match="spacing"):
        knee_phantom(0, spacing=(0, 1, 1))


def test_chest_findings_change_the_image_where_expected():
    base = chest_xray_phantom(5, labels=[0] * 14)
    assert base.image.dtype == np.uint16 and base.image.shape == (256, 256) and base.labels.sum() == 0
    for name in CHEST_LABELS:
        case = chest_xray_phantom(5, labels=[name])
        assert case.labels[CHEST_LABELS.index(name)] == 1 and case.labels.sum() == 1
        diff = np.abs(case.image.astype(float) - base.image.astype(float))
        assert diff.mean() > 1.0, name  # every finding is drawn
    cm = chest_xray_phantom(5, labels=["Cardiomegaly"]).image.astype(float)
    mid = slice(150, 230)
    assert (cm[mid] > 2600).sum() > (base.image[mid].astype(float) > 2600).sum()  # a bigger bright heart
    assert chest_xray_phantom(1, bits=8).image.dtype == np.uint8
    assert np.array_equal(chest_xray_phantom(9).image, chest_xray_phantom(9).image)


def test_chest_label_prevalences_are_realistic():
    rng = np.random.default_rng(0)
    labs = np.array([sample_chest_labels(rng) for _ in range(20000)])
    want = np.array([CHEST_PREVALENCE[k] for k in CHEST_LABELS])
    assert np.allclose(labs.mean(0), want, atol=0.01)
    assert np.allclose(np.array([sample_chest_labels(rng, 0.5) for _ in range(2000)]).mean(), 0.5, atol=0.03)
    with pytest.raises(ConfigError, match="unknown chest labels"):
        sample_chest_labels(rng, {"Flu": 0.1})
    with pytest.raises(ConfigError, match="14 entries"):
        chest_xray_phantom(0, labels=[1, 0])
