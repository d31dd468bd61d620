"""A genuine exported learner whose verdict the tests can predict: its weights are set by hand.

Built with the project's own DataBlock (``selfiemask.data.make_datablock``), exported by fastai, with a
card like any model's, and loaded through the same safe loader and card check. Its network is standard
torch modules only (average pool, flatten, one linear layer), so the allowlist needs no entry for it.

The rule: ``P(with_mask) = sigmoid(GAIN * (mean red - mean green))`` over the image after the learner's
validation transforms, with channels in 0..1. A flat colour is judged the same at any size, so a test
knows the verdict and its confidence before it runs: red (200, 40, 40) is ``with_mask`` at 98.2%,
green (40, 200, 40) ``without_mask`` at 98.2%, and (130, 110, 120) ``with_mask`` at 62.3%, "Not sure"
(measured through ``Classifier``: within 1e-7 of :func:`rule_probability`).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

__all__ = ["GAIN", "GREEN", "RED", "UNSURE_GREY", "export_rule_model", "rule_probability", "rule_verdict"]

#: The slope of the rule: a red-green difference of 0.5 (of 1) gives P = sigmoid(4) = 98.2%.
GAIN = 6.4
RED, GREEN, UNSURE_GREY = (200, 40, 40), (40, 200, 40), (130, 110, 120)


def rule_probability(rgb: tuple[int, int, int]) -> float:
    """P(with_mask) the rule model gives a photo of one flat colour ``rgb`` (0-255)."""
    return 1 / (1 + math.exp(-GAIN * (rgb[0] - rgb[1]) / 255))


def rule_verdict(rgb: tuple[int, int, int]) -> tuple[str, float]:
    """The label and confidence the rule model gives a photo of one flat colour."""
    p = rule_probability(rgb)
    return ("with_mask", p) if p >= 0.5 else ("without_mask", 1 - p)


def _training_folder(root: Path) -> Path:
    """A few flat-colour photos per class: the DataBlock needs a folder; nothing is trained on it."""
    for label, colour in (("with_mask", RED), ("without_mask", GREEN)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            Image.new("RGB", (32, 32), tuple(min(255, c + 3 * i) for c in colour)).save(root / label / f"{i}.png")
    return root


def export_rule_model(out: Path) -> Path:
    """Export the rule model to ``out`` (an ``export.pkl``) with its card, which says "whole images"."""
    import datetime as dt

    import torch
    from fastai.layers import Flatten
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.vision.all import imagenet_stats
    from torch import nn

    from selfiemask.arches import mobilenet_v2_split
    from selfiemask.card import write_card
    from selfiemask.data import make_datablock
    from selfiemask.files import sha256_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _training_folder(out.parent / "rule_data")
    dls = make_datablock(size=32).dataloaders(data, bs=4, num_workers=0)
    assert list(dls.vocab) == ["with_mask", "without_mask"]
    linear = nn.Linear(3, 2)
    # The input is normalised, x = (v - mean) / std per channel: undo it inside the weights, so that
    # logit(with_mask) - logit(without_mask) = GAIN * (v_red - v_green).
    (mr, mg, _), (sr, sg, _) = imagenet_stats
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0, 0], linear.weight[0, 1] = GAIN * sr, -GAIN * sg
        linear.bias[0] = GAIN * (mr - mg)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), Flatten(), linear)
    # A splitter of the package (fastai's default, trainable_params, is on no allowlist, as no export of this
    # project holds it); it is never called: the rule model is not trained.
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), splitter=mobilenet_v2_split)
    learn.path, learn.model_dir = Path("."), "models"
    learn.export(out.resolve())
    card = {"format": 1, "model": out.name, "export_sha256": sha256_file(out),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "classes": list(dls.vocab),
            "architecture": f"hand-set rule for tests: P(with_mask) = sigmoid({GAIN} * (mean red - mean green))",
            "image_size": 32, "pretrained": False,
            "input": "whole images", "data": {"source_dir": str(data), "files": 24}}
    write_card(out, card)
    return out
