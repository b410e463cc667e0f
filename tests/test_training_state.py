"""Per-fit checkpoint folders: which checkpoint a fit may resume (ml.training.fit_folder), without Spark."""
from __future__ import annotations

import json
import logging

import pytest

from bigdl_medimg.errors import ConfigError
from bigdl_medimg.ml.training import fit_folder, latest_checkpoint, save_checkpoint

A = {"params": {"learningRate": 0.003, "engine": "bigdl", "topology": "densenet_tiny"}, "rows": 40, "keys": 123}


def _done(folder, epoch):
    save_checkpoint(folder, epoch, lambda tmp: None, {"history": []})


def test_the_same_fit_resumes_and_any_other_starts_afresh_in_its_own_folder(tmp_path, caplog):
    ck = str(tmp_path / "ck")
    mine = fit_folder("Est", ck, A)
    assert mine == fit_folder("Est", ck, dict(A)) and json.loads((tmp_path / "ck" / mine.rsplit("/", 1)[-1]
                                                                 / "fit.json").read_text()) == A
    _done(mine, 1)
    assert latest_checkpoint(fit_folder("Est", ck, A, "require")).endswith("/epoch_0001")
    caplog.set_level(logging.WARNING, logger="bigdl_medimg.ml.training")
    other_lr = {**A, "params": {**A["params"], "learningRate": 1e-5}}
    theirs = fit_folder("Est", ck, other_lr)
    assert theirs != mine and latest_checkpoint(theirs) is None
    assert "learningRate (0.003 there, 1e-05 here)" in caplog.text and "trains from scratch" in caplog.text
    other_rows = fit_folder("Est", ck, {**A, "rows": 38})  # a tuning fold: other training rows
    assert other_rows not in (mine, theirs)
    assert "training rows (40 there, 38 here)" in caplog.text
    same_count = fit_folder("Est", ck, {**A, "keys": 124})
    assert same_count != mine and "the training rows' content" in caplog.text


def test_require_names_the_folder_and_what_differs_and_never_starts_afresh(tmp_path):
    ck = str(tmp_path / "ck")
    mine = fit_folder("Est", ck, A)
    _done(mine, 1)
    _done(mine, 2)
    with pytest.raises(ConfigError, match=r"resume='require' but .*ck holds no checkpoint of this fit .*"
                                          r"differs in: engine \('bigdl' there, 'torch' here\)"):
        fit_folder("Est", ck, {**A, "params": {**A["params"], "engine": "torch"}}, "require")
    with pytest.raises(ConfigError, match="holds no fit at all"):
        fit_folder("Est", str(tmp_path / "empty"), A, "require")
    with pytest.raises(ConfigError, match="needs a checkpointDir"):
        fit_folder("Est", "", A, "require")
    with pytest.raises(ConfigError, match="resume must be one of"):
        fit_folder("Est", ck, A, "sometimes")
    assert latest_checkpoint(fit_folder("Est", ck, A, "never")) is None  # its checkpoints are gone
    assert fit_folder("Est", "", A) == ""  # no checkpointDir: no checkpoints


def test_checkpoints_of_the_earlier_layout_are_named_not_resumed(tmp_path, caplog):
    ck = tmp_path / "ck"
    (ck / "epoch_0003").mkdir(parents=True)
    (ck / "epoch_0003" / "state.json").write_text("{}")
    caplog.set_level(logging.WARNING, logger="bigdl_medimg.ml.training")
    folder = fit_folder("Est", str(ck), A)
    assert latest_checkpoint(folder) is None and "1 checkpoint(s) of an earlier layout" in caplog.text
