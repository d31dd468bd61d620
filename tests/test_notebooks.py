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


def parameters(path) -> dict:
    """The values of a notebook's parameters cell."""
    import ast

    cell = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def test_training_defaults_agree_in_the_notebook_the_command_and_the_config():
    import argparse
    import dataclasses

    from selfiemask.commands import train as train_command
    from selfiemask.training import TrainConfig

    nb = parameters(ROOT / "notebooks" / "03_train.ipynb")
    sub = argparse.ArgumentParser().add_subparsers()
    cli = vars(train_command.add_parser(sub).parse_args(["somewhere"]))
    config = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in ("epochs", "size", "bs", "lr", "pretrained", "crops", "arch", "force"):
        assert nb[name] == cli[name] == config[name], name
    assert nb["data_dir"] == "../data/clean"  # what notebook 02 writes, seen from notebooks/
    assert "shared" not in nb["data_dir"] and nb["out"] == "../export.pkl"


def run_training_notebook(tmp_path, **parameters):
    import papermill as pm

    out_nb = tmp_path / "03_out.ipynb"
    try:
        pm.execute_notebook(ROOT / "notebooks" / "03_train.ipynb", out_nb, cwd=ROOT / "notebooks",
                            parameters=parameters, progress_bar=False, kernel_name="python3")
    finally:
        executed = json.loads(out_nb.read_text()) if out_nb.exists() else {"cells": []}
    return executed


def outputs_text(executed) -> str:
    return json.dumps([c.get("outputs", []) for c in executed["cells"]])


def test_training_notebook_ends_with_the_better_model_and_says_so(tiny_model, tiny_data, tmp_path):
    """Notebook 03 on generated photos, over a copy of the tiny model: its steps show, and it ends with the old
    model kept or replaced, and a message that says which."""
    import shutil

    from selfiemask.card import model_files, verify_model

    out = tmp_path / "export.pkl"
    for f in model_files(tiny_model):
        shutil.copy2(f, out.with_name(f.name))
    before = out.read_bytes(), out.with_suffix(".json").read_bytes()
    executed = run_training_notebook(tmp_path, data_dir=str(tiny_data), out=str(out), epochs=1, size=32, bs=16,
                                     pretrained=False, crops=False, arch="mobilenet_v2")
    text = outputs_text(executed)
    for step in ("photos in", "batches of", "vision_learner(mobilenet_v2, pretrained=False)", "estimated time",
                 "lr_find: 20 steps", "lr_find suggests", "train_loss", "validation accuracy",
                 "comparing the new model"):
        assert step in text, step
    assert text.count("image/png") >= 4  # show_batch, lr_find, confusion matrix, top losses
    verify_model(out)  # whatever happened, the learner and its card agree
    if (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before:
        assert "Kept the current model" in text and "The new model is kept in" in text
    else:
        assert "Replaced" in text and "The previous model is kept in" in text
    assert "selfiemask restore" in text


def test_training_notebook_without_photos_says_where_they_come_from(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError):
        run_training_notebook(tmp_path, data_dir=str(tmp_path / "clean"), out=str(tmp_path / "export.pkl"))
    executed = json.loads((tmp_path / "03_out.ipynb").read_text())
    error = next(o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error")
    shown = "\n".join(error["traceback"])
    assert shown.startswith("Stopped: training folder not found") and "data/raw/with_mask/" in shown
    assert "Traceback" not in shown and "File " not in shown  # the message alone, no traceback
    assert not (tmp_path / "export.pkl").exists()
