"""A re-export never loses a model: worse models are not installed, forced ones keep the previous, restore puts
one back, and an interruption leaves the old learner and card together. On the session's tiny model."""

from __future__ import annotations

import shutil
import signal

import pytest

from selfiemask.card import ModelError, card_path, verify_model
from selfiemask.commands import main
from selfiemask.files import sha256_file
from selfiemask.history import install_model, keep_version, list_versions, model_files, version_name
from selfiemask.paths import history_dir
from selfiemask.training import TrainConfig, train


def snapshot(model):
    return {f.name: f.read_bytes() for f in model_files(model)}


@pytest.fixture
def current(tiny_model, tmp_path):
    """The tiny model (with its card and figures) as the current model of a folder of its own."""
    out = tmp_path / "export.pkl"
    for f in model_files(tiny_model):
        shutil.copy2(f, out.with_name(f.name))
    return out


def retrain(data, out, **kw) -> dict:
    """An untrained but real re-export (zero epochs of a small MobileNetV2): far worse than the tiny model."""
    cfg = dict(data_dir=data, out=out, epochs=0, size=32, bs=16, lr=1e-3, pretrained=False, crops=False,
               num_workers=0, arch="mobilenet_v2", engines=False)
    return train(TrainConfig(**{**cfg, **kw}))


def test_a_worse_retrain_leaves_the_model_byte_identical(current, tiny_data):
    before = snapshot(current)
    card = retrain(tiny_data, current)
    outcome = card["re_export"]
    cmp = outcome["comparison"]
    assert cmp["new"]["accuracy"] < cmp["old"]["accuracy"], cmp  # the premise: the new model is worse
    assert outcome["decision"] == "kept the current model"
    assert snapshot(current) == before
    # The new model is not lost: it is kept, whole and verifiable, where the message says.
    kept = history_dir(current) / version_name(outcome["model_at"]) / "export.pkl"
    assert str(kept) == outcome["model_at"] and verify_model(kept)["export_sha256"] == card["export_sha256"]
    assert kept.with_name("export.confusion.png").exists()
    assert "Kept the current model" in outcome["message"] and f"selfiemask restore {kept.parent.name}" in \
        outcome["message"]
    assert not list(current.parent.glob(".*.work")) and not list(current.parent.rglob("*.tmp"))


def test_force_replaces_keeps_the_previous_and_restore_brings_it_back(current, tiny_model, tiny_data, capsys):
    before = snapshot(current)
    old_version = version_name(current)
    card = retrain(tiny_data, current, force=True)
    outcome = card["re_export"]
    assert outcome["decision"] == "replaced" and "replaced anyway" in outcome["reason"]
    assert sha256_file(current) == card["export_sha256"] == verify_model(current)["export_sha256"]
    previous = history_dir(current) / old_version
    assert outcome["previous_kept_at"] == str(previous)
    assert snapshot(previous / "export.pkl") == before  # learner, card and figures, byte for byte

    assert main(["restore", "--model", str(current)]) == 0  # no version: the list
    listing = capsys.readouterr().out
    assert old_version in listing and "restore VERSION" in listing

    assert main(["restore", old_version[-8:], "--model", str(current)]) == 0  # a unique part of the name will do
    assert snapshot(current) == before
    # What the restore replaced is kept too, and listed beside the restored one.
    versions = {v["current"]: v for v in list_versions(current)}
    assert len(list_versions(current)) == 2 and versions[True]["version"] == old_version
    assert sha256_file(versions[False]["path"]) == card["export_sha256"]

    assert main(["restore", "no-such-version", "--model", str(current)]) == 2
    err = capsys.readouterr().err
    assert "no kept version 'no-such-version'" in err and old_version in err


def test_an_interrupted_reexport_leaves_the_old_pair(current, tiny_data, monkeypatch):
    before = snapshot(current)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("selfiemask.training.compare_models", interrupted)
    with pytest.raises(KeyboardInterrupt):
        retrain(tiny_data, current, force=True)
    assert snapshot(current) == before
    assert not history_dir(current).exists()  # nothing was decided, nothing moved


def test_install_interrupted_while_copying_changes_nothing(current, tiny_model, tmp_path, monkeypatch):
    new = tmp_path / "new" / "export.pkl"
    new.parent.mkdir()
    shutil.copy2(tiny_model, new)
    (card_path(new)).write_text(card_path(tiny_model).read_text().replace('"format": 1', '"format": 1, "x": 1'))
    before = snapshot(current)
    real_copy = shutil.copy2

    def copy_then_stop(src, dst, *a, **k):
        if str(dst).endswith("export.pkl.tmp"):  # the learner's temporary copy beside the current one
            raise KeyboardInterrupt
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr("selfiemask.history.shutil.copy2", copy_then_stop)
    with pytest.raises(KeyboardInterrupt):
        install_model(new, current)
    assert snapshot(current) == before
    assert not list(current.parent.glob("*.tmp"))


def test_ctrl_c_during_the_renames_waits_until_the_pair_is_whole(current, tiny_model, tmp_path, monkeypatch):
    """A SIGINT between the learner's rename and the card's would leave a mismatched pair: it is held back."""
    new = tmp_path / "new" / "export.pkl"
    new.parent.mkdir()
    shutil.copy2(tiny_model, new)
    card_path(new).write_text(card_path(tiny_model).read_text().replace('"format": 1', '"format": 1, "x": 1'))
    import os

    real_replace = os.replace
    sent = []

    def replace_with_ctrl_c(src, dst):
        real_replace(src, dst)
        if str(dst) == str(current) and not sent:  # the learner is in place, its card not yet
            sent.append(1)
            signal.raise_signal(signal.SIGINT)

    current.with_name("export.confusion.png").write_bytes(b"the old model's figure")
    monkeypatch.setattr("selfiemask.files.os.replace", replace_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        install_model(new, current)
    assert sent and card_path(current).read_text() == card_path(new).read_text()
    verify_model(current)  # learner and card agree
    # The figures the new model lacks were the old model's: they do not stay beside the new one.
    assert not current.with_name("export.confusion.png").exists()


def test_keep_version_keeps_one_copy_and_refuses_a_missing_card(current, tmp_path):
    kept = keep_version(current)
    assert kept.parent.name == version_name(current) and keep_version(current) == kept
    assert len(list(history_dir(current).iterdir())) == 1
    lone = tmp_path / "lone" / "export.pkl"
    lone.parent.mkdir()
    shutil.copy2(current, lone)
    with pytest.raises(ModelError, match="both needed"):
        install_model(lone, current)
