"""Notebooks run on tiny generated data through their parameters cell, and are committed without outputs."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "app.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_parameterised(path):
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    if path.parent.name == "notebooks":
        assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell holds the parameters"


def test_training_notebook_runs_on_tiny_data(tiny_data, tmp_path):
    import papermill as pm

    out = tmp_path / "export.pkl"
    pm.execute_notebook(ROOT / "notebooks" / "03_train.ipynb", tmp_path / "03_out.ipynb", cwd=ROOT / "notebooks",
                        parameters={"data_dir": str(tiny_data), "out": str(out), "epochs": 2, "size": 32, "bs": 16,
                                    "pretrained": False, "crops": False, "lr": 2e-3},
                        progress_bar=False, kernel_name="python3")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["epochs"] == 2 and out.exists()
    executed = json.loads((tmp_path / "03_out.ipynb").read_text())
    text = json.dumps(executed["cells"])
    assert "validation accuracy" in text and "image/png" in text
