"""The teacher's ImageNet weights, and knowledge distillation into a from-scratch student."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from selfiemask.arches import (
    MOBILENET_V2_SHA256,
    WeightsError,
    mobilenet_v2_offline,
    mobilenet_v2_weights_path,
    verified_weights,
)
from selfiemask.distill import KnowledgeDistillation, distillation_loss


def test_shipped_weights_verify_and_load():
    path = mobilenet_v2_weights_path()
    assert verified_weights(path) == path
    model = mobilenet_v2_offline(pretrained=True)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["features.0.0.weight"], ref["features.0.0.weight"])


def test_weights_with_another_sha256_are_refused(tmp_path):
    bad = tmp_path / "mobilenet_v2-b0353104.pth"
    shutil.copy(mobilenet_v2_weights_path(), bad)
    with open(bad, "r+b") as f:  # one byte changed in the middle of the tensors
        f.seek(bad.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match="refusing"):
        verified_weights(bad)
    with pytest.raises(WeightsError, match=MOBILENET_V2_SHA256[:16]):
        mobilenet_v2_offline(pretrained=True, weights_file=bad)
    with pytest.raises(WeightsError, match="not found"):
        verified_weights(tmp_path / "missing.pth")


def test_loss_is_cross_entropy_when_the_teacher_weighs_nothing():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    target = torch.randint(0, 2, (16,), generator=g)
    ce = F.cross_entropy(student, target)
    assert torch.allclose(distillation_loss(student, teacher, target, temperature=4, alpha=0), ce)
    # With weight, the soft term is there: it is zero only where student and teacher agree.
    assert not torch.allclose(distillation_loss(student, teacher, target, temperature=4, alpha=0.5), ce)
    assert torch.allclose(distillation_loss(teacher, teacher, target, temperature=4, alpha=1.0),
                          torch.tensor(0.0), atol=1e-6)


def test_only_right_learns_the_teachers_mistakes_from_their_labels():
    """With ``only_right``, an item the teacher labels wrong costs plain cross-entropy; the others the usual mixture."""
    student = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.5], [0.3, 0.1]])
    teacher = torch.tensor([[3.0, -2.0], [2.0, -1.0], [-2.0, 2.0], [-1.0, 2.0]])  # wrong on items 1 and 3
    target = torch.tensor([0, 1, 1, 0])
    ce = F.cross_entropy(student, target, reduction="none")
    mixed = torch.stack([distillation_loss(student[i:i + 1], teacher[i:i + 1], target[i:i + 1], 4, 0.5)
                         for i in range(4)])
    expected = torch.stack([mixed[0], ce[1], mixed[2], ce[3]]).mean()
    got = distillation_loss(student, teacher, target, 4, 0.5, only_right=True)
    assert torch.allclose(got, expected)
    assert not torch.allclose(got, distillation_loss(student, teacher, target, 4, 0.5))
    # where the teacher is right on every item, nothing changes
    right = target.clone()
    right[1], right[3] = 0, 1
    assert torch.allclose(distillation_loss(student, teacher, right, 4, 0.5, only_right=True),
                          distillation_loss(student, teacher, right, 4, 0.5))


def test_distillation_trains_a_tiny_model_above_chance(tiny_model, tiny_data):
    """A small CNN from scratch, taught by the session's tiny model, beats chance on held-out images."""
    from fastai.learner import Learner, load_learner
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from torch import nn

    from selfiemask.data import make_dls

    set_seed(0)
    teacher = load_learner(tiny_model, cpu=True).model
    dls = make_dls(tiny_data, size=64, bs=16, num_workers=0)
    student = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    kd = KnowledgeDistillation(teacher, temperature=4.0, alpha=0.7)
    learn = Learner(dls, student, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, cbs=kd)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(8, 1e-2)
    preds, targs = learn.get_preds(ds_idx=1)
    acc = (preds.argmax(1) == targs).float().mean().item()
    assert acc > 0.75, acc
    assert all(not p.requires_grad for p in teacher.parameters())  # the teacher was not trained


def _flat_photos(root, n: int = 8):
    """Red faces masked, green unmasked: a rule teacher reads them by colour, which the phone conditions change."""
    from PIL import Image

    for label, colour in (("with_mask", (200, 40, 40)), ("without_mask", (40, 200, 40))):
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (48, 48), tuple(c + 3 * i for c in colour)).save(root / label / f"{i}.png")
    return root


def test_clean_view_is_the_crop_before_the_training_conditions():
    """The copy shares the random crop and misses the conditions: with a quarter turn on every crop and
    nothing else, the crop is its clean copy turned; with every phone condition on, they differ."""
    import random

    import numpy as np
    from fastai.torch_core import TensorCategory
    from fastai.vision.core import PILImage
    from fasttransform import Pipeline
    from PIL import Image

    from selfiemask.augment import CleanView, PhoneConditions
    from selfiemask.data import item_transforms

    rng = np.random.default_rng(0)
    photo = PILImage.create(Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)))
    tfms = item_transforms(32, occlude_p=0.0, camera_p=0.0, turn_p=1.0, clean_view=True)
    phone = next(f for f in tfms if isinstance(f, PhoneConditions))
    phone.p = 0.0
    for seed in range(6):
        random.seed(seed)
        crop, label, clean = Pipeline(tfms, split_idx=0)((photo, TensorCategory(1)))
        assert isinstance(clean, CleanView) and not isinstance(crop, CleanView) and int(label) == 1
        crop, clean = np.asarray(crop), np.asarray(clean)
        assert crop.shape == clean.shape == (32, 32, 3)
        assert np.array_equal(crop, np.rot90(clean, 1)) or np.array_equal(crop, np.rot90(clean, -1)), seed
    phone.p, phone._rng = 1.0, random.Random(0)
    crop, _, clean = Pipeline(tfms, split_idx=0)((photo, TensorCategory(1)))
    assert not np.array_equal(np.rot90(np.asarray(crop), 1), np.asarray(clean))
    # validation and inference items are left as they are: no copy
    assert len(Pipeline(tfms, split_idx=1)((photo, TensorCategory(1)))) == 2


def test_distillation_with_a_clean_view_asks_the_teacher_about_the_clean_copy(rule_model, tmp_path):
    """In a real fit on loaders made with ``clean_view``, the loss is the distillation loss against the
    teacher's reading of the clean copies, not of the crops the student sees; the copies never reach the loss."""
    from fastai.callback.core import Callback
    from fastai.learner import Learner, load_learner
    from fastai.torch_core import set_seed
    from torch import nn

    from selfiemask.augment import PhoneConditions
    from selfiemask.data import make_datablock

    set_seed(0)
    teacher = load_learner(rule_model, cpu=True).model  # P(with_mask) from mean red - mean green
    dblock = make_datablock(size=32, clean_view=True)
    for f in dblock.item_tfms:
        if isinstance(f, PhoneConditions):
            f.p = 1.0  # grey, coloured light, exposure...: the colours the teacher reads are changed
    dls = dblock.dataloaders(_flat_photos(tmp_path / "train"), bs=8, num_workers=0)
    assert len(dls.train.one_batch()) == 3 and len(dls.valid.one_batch()) == 2
    kd = KnowledgeDistillation(teacher, temperature=2.0, alpha=0.5)

    class Check(Callback):
        order = kd.order + 1
        seen: list[tuple[float, float, float]] = []

        def after_loss(self) -> None:
            if not self.training:
                return
            assert len(self.learn.yb) == 1
            y = self.learn.yb[0]
            with torch.no_grad():
                on_clean = distillation_loss(self.pred, teacher(kd._clean), y, 2.0, 0.5)
                on_crops = distillation_loss(self.pred, teacher(self.learn.xb[0]), y, 2.0, 0.5)
            self.seen.append((float(self.learn.loss), float(on_clean), float(on_crops)))

    student = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 2))
    learn = Learner(dls, student, loss_func=nn.CrossEntropyLoss(), cbs=[kd, Check()])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    assert Check.seen
    for loss, on_clean, on_crops in Check.seen:
        assert loss == pytest.approx(on_clean, rel=1e-5)
        assert abs(on_clean - on_crops) > 1e-3


def test_train_with_a_clean_view_records_it_and_exports_a_loadable_model(tiny_model, tiny_data, tmp_path):
    """``selfiemask train --teacher M --distill-clean`` end to end: the card says how the teacher read the crops,
    and the export (whose training pipeline held the copy) loads through the safe loader and predicts."""
    from selfiemask.safe_load import load_learner_safely
    from selfiemask.training import TrainConfig, train

    out = tmp_path / "student" / "export.pkl"
    card = train(TrainConfig(data_dir=tiny_data, out=out, epochs=1, size=64, bs=16, lr=2e-3, pretrained="imagenet",
                             arch="mobilenet_v2", crops=True, crop_cache=tmp_path / "crops", engines=False,
                             teacher=tiny_model, distill_clean=True, distill_alpha=0.5, occlude_p=0.5, turn_p=0.5))
    distillation = card["training"]["distillation"]
    assert distillation["clean"] is True and "without the training-only conditions" in distillation["method"]
    assert card["training"]["augmentation"]["occlude_p"] == 0.5
    label, _, probs = load_learner_safely(out).predict(next(tiny_data.rglob("*.jpg")))
    assert label in ("with_mask", "without_mask") and float(probs.sum()) == pytest.approx(1.0)


def test_a_clean_view_without_a_teacher_is_refused_before_any_work(tmp_path):
    from selfiemask.training import TrainConfig, train

    with pytest.raises(ValueError, match="--teacher"):
        train(TrainConfig(data_dir=tmp_path / "nowhere", out=tmp_path / "export.pkl", distill_clean=True))
    assert not (tmp_path / "export.pkl").exists()
