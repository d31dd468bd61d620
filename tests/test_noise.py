"""Nothing on stderr that a user cannot act on: building the package, `--help`, and a prediction.

Each of these printed warnings before: setuptools at every `pip install -e .` (the licence as a TOML table, the
samples folder missing from `packages`, the editable-install notice) and torch's "`torch.jit.script` is
deprecated" FutureWarning at every command that imports fastai.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from selfiemask.synthetic import mask_like

# What setuptools itself says about this machine, not about the project (PYTHONDONTWRITEBYTECODE is set here).
_NOT_OURS = re.compile(r"byte-compiling is disabled")


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *args], capture_output=True, text=True, cwd=cwd)


def test_building_the_package_prints_no_warnings(tmp_path):
    """The build `pip install -e .` and `pip wheel .` run (setuptools' PEP 517 hooks), on a copy of the sources."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build needs (>=77, a dev dependency)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("selfiemask", "scrape"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    out.mkdir()
    build = ("from setuptools import build_meta as b; "
             f"print(b.build_editable({str(out)!r})); print(b.build_wheel({str(out)!r}))")
    done = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines()
            if re.search(r"warn|deprecat|careful", line, re.I) and not _NOT_OURS.search(line)]
    assert not said, "\n".join(said)
    wheel = out / done.stdout.split()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    assert {"selfiemask/samples/mask.jpg", "selfiemask/samples/no_mask.jpg"} <= set(names), "the app's samples ship"
    assert "scrape/run.py" in names and not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.parametrize("args", [["--help"], ["predict", "--help"], ["train", "--help"], ["clean", "--help"]],
                         ids=" ".join)
def test_help_prints_nothing_on_stderr(args):
    done = run_cli(*args)
    assert done.returncode == 0 and done.stdout and done.stderr == "", done.stderr


def test_a_prediction_prints_no_warnings(tmp_path):
    """The shipped model on a generated photo: fastai is imported (its jit-scripted layers), the model loaded."""
    photo = tmp_path / "photo.jpg"
    mask_like(160, True, random.Random(1)).save(photo)
    done = run_cli("predict", str(photo), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{photo}: "), done.stdout
    assert done.stderr == "", done.stderr
