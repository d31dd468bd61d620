"""Model files cannot run code: the allowlisted unpickler (selfiemask.safe_load) in the CLI, the app and the API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from selfiemask.card import ModelError, card_path, read_card, write_card
from selfiemask.files import sha256_file
from selfiemask.safe_load import UnsafeModelError, globals_in, load_learner_safely, not_allowed
from selfiemask.synthetic import mask_like


class Payload:
    """What an attacker pickles: unpickling calls exec, which writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def with_card(model: Path, like: Path | None = None) -> Path:
    """Give ``model`` a card whose sha256 matches it (what an attacker who edits the card does)."""
    card = read_card(like) if like else {"format": 1, "input": "whole images"}
    card["export_sha256"] = sha256_file(model)
    write_card(model, card)
    return model


@pytest.fixture()
def crafted(tmp_path) -> tuple[Path, Path]:
    """A bare malicious pickle saved as export.pkl, with a matching card."""
    import torch

    marker = tmp_path / "marker"
    model = tmp_path / "evil" / "export.pkl"
    model.parent.mkdir()
    torch.save({"learner": Payload(marker)}, model)
    return with_card(model), marker


@pytest.fixture()
def trojan(tiny_model, tmp_path) -> tuple[Path, Path]:
    """A genuine learner with a payload attached, exported by fastai, its card's sha256 edited to match."""
    from fastai.learner import load_learner

    marker = tmp_path / "marker"
    learn = load_learner(tiny_model)
    learn.extra = Payload(marker)
    model = tmp_path / "trojan" / "export.pkl"
    model.parent.mkdir()
    learn.export(model)
    assert not marker.exists()
    return with_card(model, like=tiny_model), marker


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    import random

    p = tmp_path_factory.mktemp("photo") / "face.jpg"
    mask_like(64, True, random.Random(1)).save(p)
    return p


def test_crafted_pickle_is_refused_in_api_cli_and_app(crafted, photo):
    from selfiemask.app import App
    from selfiemask.predict import Classifier

    model, marker = crafted
    with pytest.raises(ModelError, match="builtins.exec"):
        Classifier(model)
    res = run_cli("predict", "--model", model, photo)
    assert res.returncode == 2 and "builtins.exec" in res.stderr and "Traceback" not in res.stderr
    app = App(model)
    assert "builtins.exec" in app.results.children[0].value
    assert not marker.exists()


def test_genuine_learner_with_a_payload_is_refused(trojan, photo):
    from selfiemask.predict import Classifier

    model, marker = trojan
    with pytest.raises(ModelError, match="builtins.exec"):
        Classifier(model)
    res = run_cli("predict", "--model", model, "--csv", photo)
    assert res.returncode == 2 and "builtins.exec" in res.stderr and not res.stdout
    assert not marker.exists()


def test_refused_before_anything_is_imported(tmp_path):
    """A global off the list is refused by name: the module is never imported."""
    import torch

    class Importer:
        def __reduce__(self):
            return __import__, ("antigravity_never_imported",)

    model = tmp_path / "export.pkl"
    torch.save(Importer(), model)
    with pytest.raises(UnsafeModelError, match="builtins.__import__"):
        load_learner_safely(model)
    assert "antigravity_never_imported" not in sys.modules


def test_a_plain_pickle_is_refused(tmp_path):
    import pickle

    model = tmp_path / "export.pkl"
    model.write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    with pytest.raises(UnsafeModelError, match="not a PyTorch export"):
        load_learner_safely(model)
    assert not (tmp_path / "marker").exists()


def test_genuine_export_loads_through_the_allowlist_and_predicts_identically(tiny_model, photo):
    """The tiny export made by the package's own training code needs nothing off the list."""
    import torch
    from fastai.learner import load_learner

    from selfiemask.images import load_image
    from selfiemask.predict import Classifier

    assert not_allowed(tiny_model) == [], "extend ALLOWED_GLOBALS in selfiemask/safe_load.py"
    assert "fastai.learner.Learner" in globals_in(tiny_model)
    safe = Classifier(tiny_model)
    img = load_image(photo)
    ours = safe.classify([img, img.rotate(90)])
    reference = load_learner(tiny_model)  # fastai's unrestricted load, for comparison only
    x = safe.preprocess([img, img.rotate(90)])
    with torch.inference_mode():
        probs = torch.softmax(reference.model.eval()(x), 1).tolist()
    for v, p in zip(ours, probs):
        assert [v.probs[c] for c in safe.classes] == pytest.approx(p, abs=1e-6)
    assert list(reference.dls.vocab) == safe.classes


def test_shipped_export_needs_nothing_off_the_list():
    model = ROOT / "export.pkl"
    if not model.exists():
        pytest.skip("no shipped export.pkl")
    assert not_allowed(model) == []


def test_package_classes_and_functions_are_allowed_by_prefix(tmp_path):
    """New selfiemask transforms need no list edit; other names in its modules are still refused."""
    import torch

    from selfiemask import faces

    model = tmp_path / "export.pkl"
    torch.save({"f": faces.crop_face, "cls": faces.DetectorSettings()}, model)
    with pytest.raises(UnsafeModelError, match="not a fastai learner"):
        load_learner_safely(model)  # it unpickled; it just is not a learner

    class Sneaky:
        def __reduce__(self):
            return faces.lru_cache, (None,)  # functools.lru_cache, imported into selfiemask.faces

    torch.save(Sneaky(), model)
    with pytest.raises(UnsafeModelError, match="functools"):
        load_learner_safely(model)

    from selfiemask import files

    target = tmp_path / "written_by_the_model"

    class Writer:  # a package function that writes files: stored is fine, called while loading is not
        def __reduce__(self):
            return files.write_atomic, (target, "pwned")

    torch.save(Writer(), model)
    with pytest.raises(UnsafeModelError, match="calls selfiemask.files.write_atomic"):
        load_learner_safely(model)
    assert not target.exists()

    from selfiemask.safe_load import _package_object

    assert _package_object("selfiemask.__main__", "main") is None  # importing it would run the CLI
    assert "selfiemask.__main__" not in sys.modules
    assert _package_object("selfiemask.faces", "crop_face") is faces.crop_face


@pytest.mark.parametrize("card", ["missing", "no_sha"])
def test_model_without_a_checked_card_is_refused_unless_asked(tiny_model, tmp_path, photo, card):
    from selfiemask.predict import Classifier

    model = tmp_path / "export.pkl"
    shutil.copy(tiny_model, model)
    if card == "no_sha":
        data = json.loads(card_path(tiny_model).read_text())
        del data["export_sha256"]
        card_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="cannot be checked"):
        Classifier(model)
    res = run_cli("predict", "--model", model, photo)
    assert res.returncode == 2 and "--allow-unverified-model" in res.stderr
    res = run_cli("predict", "--model", model, "--allow-unverified-model", photo)
    assert res.returncode == 0 and "UNVERIFIED" in res.stderr and "mask" in res.stdout


def test_bypassing_the_allowlist_keeps_fastais_warning(tiny_model):
    """``unsafe_pickle`` (Python API only) uses fastai's loader, and its pickle warning is not hidden."""
    from selfiemask.predict import Classifier

    with pytest.warns(UserWarning, match="insecure pickle"):
        Classifier(tiny_model, unsafe_pickle=True)
