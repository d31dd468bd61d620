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
