"""Notebooks run on tiny generated data through their parameters cell, and are committed without outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "app.ipynb"]


def committed_text(path: Path) -> str:
    """What the next commit holds for ``path``: git's staged copy (after the notebook filter), or, outside a git
    checkout or for a file git does not know yet, the file itself. A notebook run in JupyterLab keeps its outputs
    on disk; what matters is that they never reach the repository."""
    staged = subprocess.run(["git", "show", f":{path.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                            capture_output=True, text=True)
    return staged.stdout if staged.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_parameterised(path):
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    nb = json.loads(committed_text(path))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    if path.parent.name == "notebooks":
        assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell holds the parameters"



def test_notebooks_cover_the_app_and_every_numbered_notebook():
    names = {p.relative_to(ROOT).as_posix() for p in NOTEBOOKS}
    assert {"app.ipynb", "notebooks/01_scrape.ipynb", "notebooks/02_clean.ipynb", "notebooks/03_train.ipynb"} <= names


def _nbstripout_bin() -> Path:
    on_path = shutil.which("nbstripout")
    for where in (Path(sys.executable).parent, ROOT / ".venv" / "bin", Path(on_path or ".").parent):
        if (where / "nbstripout").exists() and (where / "python").exists():
            return where
    pytest.skip("nbstripout is not installed here (`make setup` installs it)")


def test_setup_makes_git_strip_outputs_when_staging(tmp_path):
    """`make setup`'s notebook-filter step, in a scratch repository: a notebook run with outputs is staged without
    them, byte for byte as committed: nothing to diff, nothing to commit."""
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    bin_dir = _nbstripout_bin()
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", ".gitattributes"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copy(ROOT / "notebooks" / "01_scrape.ipynb", repo / "nb.ipynb")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = subprocess.run(["make", "-s", "-C", str(repo), "notebook-filter", f"BIN={bin_dir}"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "clean"], check=True)
    clean = (repo / "nb.ipynb").read_bytes()
    assert subprocess.run([*git, "show", "HEAD:nb.ipynb"], capture_output=True).stdout == clean, "ids or layout changed"

    nb = json.loads(clean)
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 7
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["a learner's run\n"]}]
    (repo / "nb.ipynb").write_text(json.dumps(nb, indent=1))
    assert subprocess.run([*git, "diff", "--quiet"]).returncode == 0, "git diff shows the outputs"
    subprocess.run([*git, "add", "nb.ipynb"], check=True)
    assert subprocess.run([*git, "show", ":nb.ipynb"], capture_output=True).stdout == clean
    assert subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    # Run again, it leaves the set-up as it is (and .gitattributes untouched).
    assert subprocess.run(["make", "-s", "-C", str(repo), "notebook-filter", f"BIN={bin_dir}"]).returncode == 0
    assert (repo / ".gitattributes").read_bytes() == (ROOT / ".gitattributes").read_bytes()


def parameters(path) -> dict:
    """The values of a notebook's parameters cell."""
    import ast

    cell = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def code_of(path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")


def test_training_defaults_are_written_once():
    """TrainConfig holds each default; the command's options, notebook 03's and 02's parameters show the same values,
    and no document states a default of its own."""
    import argparse
    import dataclasses
    import re

    from selfiemask.commands import train as train_command
    from selfiemask.settings import TrainConfig

    config = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    sub = argparse.ArgumentParser().add_subparsers()
    cli = vars(train_command.add_parser(sub).parse_args(["somewhere"]))
    for name in ("epochs", "size", "bs", "lr", "pretrained", "crops", "arch", "force", "seed", "valid_pct",
                 "freeze_epochs", "distill_temperature", "distill_alpha", "out", "resume", "align", "occlude_p",
                 "camera_p"):
        assert cli[name] == config[name], name
    nb03 = parameters(ROOT / "notebooks" / "03_train.ipynb")
    for name in ("epochs", "size", "bs", "lr", "pretrained", "crops", "force", "seed", "valid_pct"):
        assert nb03[name] == config[name], name
    # The architecture is fastai's own call in the learner cell, as a learner changes it.
    assert f"vision_learner(dls, {config['arch']}," in code_of(ROOT / "notebooks" / "03_train.ipynb")
    assert nb03["data_dir"] == "../data/clean"  # what notebook 02 writes, seen from notebooks/
    assert "shared" not in nb03["data_dir"] and nb03["out"] == "../export.pkl"
    nb02 = parameters(ROOT / "notebooks" / "02_clean.ipynb")
    for name in ("epochs", "size", "bs", "lr", "pretrained", "crops", "force"):
        assert nb02[name] == config[name], name
    # Documents that state a default ("epochs (default: 14)", "--size, default 128 px") state TrainConfig's.
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for f in docs:
        for name in ("epochs", "size", "bs", "seed"):
            for m in re.finditer(rf"\b{name}\b[^.\n]{{0,40}}\bdefaults?\b[^\d\n]{{0,12}}(\d+)", f.read_text()):
                assert int(m[1]) == config[name], f"{f.name} says {m[0]!r}, TrainConfig {config[name]}"


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


def test_training_notebook_calls_fastai_in_fastbook_order():
    code = code_of(ROOT / "notebooks" / "03_train.ipynb")
    calls = ["DataBlock(", "dls.show_batch(", "vision_learner(", "learn.lr_find(", "learn.fine_tune(",
             "learn.fit_one_cycle(", "ClassificationInterpretation.from_learner(", "plot_confusion_matrix(",
             "plot_top_losses(", "keep_if_better("]
    at = [code.find(c) for c in calls]
    assert -1 not in at, [c for c, i in zip(calls, at) if i < 0]
    assert at == sorted(at), "fastbook's order"
    assert "Training(" not in code and "TrainConfig(" not in code


def test_training_notebook_ends_with_the_better_model_and_says_so(tiny_model, tiny_data, tmp_path):
    """Notebook 03 on generated photos, over a copy of the tiny model: its steps show, and it ends with the old
    model kept or replaced, and a message that says which; its card has the fields `selfiemask train` writes."""
    import shutil

    from selfiemask.card import read_card, verify_model
    from selfiemask.history import model_files

    out = tmp_path / "export.pkl"
    for f in model_files(tiny_model):
        shutil.copy2(f, out.with_name(f.name))
    before = out.read_bytes(), out.with_suffix(".json").read_bytes()
    executed = run_training_notebook(tmp_path, data_dir=str(tiny_data), out=str(out), epochs=1, size=32, bs=16,
                                     pretrained="none", crops=False)
    text = outputs_text(executed)
    for step in ("photos in", "starting from from scratch", "estimated time", "lr_find suggests", "train_loss",
                 "validation accuracy", "comparing the new model"):
        assert step in text, step
    assert text.count("image/png") >= 4  # show_batch, lr_find, confusion matrix, top losses
    verify_model(out)  # whatever happened, the learner and its card agree
    kept = (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before
    if kept:
        assert "Kept the current model" in text and "The new model is kept in" in text
    else:
        assert "Replaced" in text and "The previous model is kept in" in text
    assert "selfiemask restore" in text
    # The same card as the command's (tiny_model was made by selfiemask.training.train), and the same rule.
    (version,) = sorted((tmp_path / "models" / "history").iterdir())  # the one that is not current
    new_card = read_card(version / "export.pkl" if kept else out)
    command_card = read_card(tiny_model)
    same = set(command_card) - {"re_export", "detector"}  # the detector's settings: face crops only (not here)
    assert same <= set(new_card), same - set(new_card)
    assert set(command_card["training"]) <= set(new_card["training"])
    assert new_card["re_export"]["decision"] == ("kept the current model" if kept else "replaced")
    # Its ONNX graphs were written at export, beside it, each recorded with its sha256 and measured agreement.
    from selfiemask.engines import graph_path, passes
    from selfiemask.files import sha256_file

    model = version / "export.pkl" if kept else out
    assert "writing the ONNX graphs" in text
    for engine in ("onnx", "int8"):
        rec = new_card["engines"][engine]
        assert sha256_file(graph_path(model, engine)) == rec["sha256"]
        assert rec["agreement"]["photos"] == new_card["validation"]["n"]
        assert rec["passes"] == passes(rec["agreement"])[0]
    assert new_card["engines"]["onnx"]["agreement"]["max_prob_diff"] < 1e-4  # fp32: the learner's probabilities


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


def test_setup_without_nbstripout_says_so_and_goes_on(tmp_path):
    """A venv made before nbstripout was a dev tool: `make app` must still start, with a line saying what to do."""
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = subprocess.run(["make", "-s", "-C", str(repo), "notebook-filter", f"BIN={tmp_path / 'empty'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "git will not strip notebook outputs" in done.stdout and "make clean-venv setup" in done.stdout
    unset = subprocess.run(["git", "-C", str(repo), "config", "filter.nbstripout.clean"], capture_output=True)
    assert unset.returncode == 1, "no filter half set up"
