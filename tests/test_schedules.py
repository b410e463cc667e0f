"""Learning-rate schedules as the engines apply them: Adam under ``poly`` steps once per epoch on both."""
from __future__ import annotations

import os

import pytest

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.ml.training import lr_factor

BASE = 4e-3


def test_poly_factor_held_per_epoch_and_per_iteration():
    assert lr_factor("poly", 1.0, 5, 10) == pytest.approx(0.5)
    assert lr_factor("poly", 0.9, 7, 10, held=5) == pytest.approx(0.5 ** 0.9)  # the value at iteration 5
    assert lr_factor("poly", 0.9, 4, 10, held=5) == 1.0
    assert lr_factor("inverse", 1e-2, 10, 99) == pytest.approx(1 / 1.1)
    assert lr_factor("constant", 3.0, 8, 9) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["bigdl", "torch"])
def test_adam_poly_sets_each_epochs_rate_on_both_engines(spark, tmp_path, engine):
    """The learning rate each iteration used, as each engine's training summary records it."""
    from test_classification import EASY, _chest_frame

    from bigdl_medimg.ml import ClassificationEstimator
    from bigdl_medimg.ml.tfevents import read_scalars

    df = _chest_frame(spark, range(48), False)
    est = ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], engine=engine,
                                  topology="densenet_tiny", maxEpoch=3, batchSize=16, optimizer="adam",
                                  learningRate=BASE, lrSchedule="poly", lrDecay=0.9, summaryDir=str(tmp_path))
    model = est.fit(df)
    assert len(model.history) == 3
    train = tmp_path / "classification" / "train"
    if engine == "bigdl":  # one summary per fit: BigDL truncates an event file made in the same second as another
        assert len([f for f in os.listdir(train) if "tfevents" in f]) == 1
    pts = read_scalars(str(train))["LearningRate"]
    rates = [abs(v) for _, v, _ in pts]  # BigDL records an optimiser's rate with its sign convention
    per_epoch = len(rates) // 3
    assert per_epoch >= 2 and len(rates) == 3 * per_epoch
    for e in range(3):  # (1 - e/3)^0.9 over the whole epoch e (0-based)
        want = BASE * (1 - e / 3) ** 0.9
        assert rates[e * per_epoch:(e + 1) * per_epoch] == pytest.approx([want] * per_epoch, rel=1e-5)


def test_exponential_still_needs_sgd(spark):
    from test_classification import EASY, _chest_frame

    from bigdl_medimg.ml import ClassificationEstimator

    with pytest.raises(ConfigError, match="not available with adam"):
        ClassificationEstimator(labelCol="labels", labelNames=EASY, inputShape=[1, 64, 64], optimizer="adam",
                                lrSchedule="exponential").fit(_chest_frame(spark, range(4), False))
