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
