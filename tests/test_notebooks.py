"""Every notebook runs top to bottom in a Jupyter kernel."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# the knee notebook trains with the torch engine here (the knee CLI and example tests cover BigDL)
ENGINES = {"03_knee_segmentation.ipynb": "torch"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    assert NOTEBOOKS, "no notebooks found"
    monkeypatch.setenv("BIGDL_MEDIMG_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("BIGDL_MEDIMG_NOTEBOOK_SMALL", "1")
    engine = ENGINES.get(path.name, "bigdl")
    monkeypatch.setenv("BIGDL_MEDIMG_ENGINE", engine)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    marker = {"01_readers.ipynb": "tensor table rows:"}.get(path.name, "NOTEBOOK OK")
    assert marker in outputs, outputs[-2000:]
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert path.name in ("01_readers.ipynb", "04_meniscus_tear.ipynb") or len(images) >= 1  # plots drawn
    if path.name in ("02_chest_xray.ipynb", "03_knee_segmentation.ipynb"):
        from bigdl_medimg.tasks.common import load_task

        [model] = [p for p in tmp_path.glob("*-run/model")]
        assert load_task(str(model))["config"]["estimator"]["engine"] == engine
        assert bool(list(model.rglob("model.pt"))) == (engine == "torch")  # torch_model/model.pt, weights
