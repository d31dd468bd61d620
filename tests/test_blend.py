"""tools/blend_models.py: a model between the start of a fine-tune and its result (WiSE-FT)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("blend_models", ROOT / "tools" / "blend_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blend_state_averages_weights_and_keeps_counters():
    tool = _tool()
    a = {"w": torch.zeros(2, 2), "bn.running_mean": torch.full((2,), 4.0), "bn.n": torch.tensor(3)}
    b = {"w": torch.ones(2, 2), "bn.running_mean": torch.zeros(2), "bn.n": torch.tensor(9)}
    half = tool.blend_state(a, b, 0.25)
    assert torch.allclose(half["w"], torch.full((2, 2), 0.25)) and torch.allclose(half["bn.running_mean"],
                                                                                     torch.full((2,), 3.0))
    assert half["bn.n"].item() == 9 and half["bn.n"].dtype == torch.int64
    assert torch.equal(tool.blend_state(a, b, 0.0)["w"], a["w"]) and torch.equal(tool.blend_state(a, b, 1.0)["w"],
                                                                                   b["w"])
    with pytest.raises(ValueError, match="not the same network"):
        tool.blend_state(a, {**b, "extra": torch.ones(1)}, 0.5)
    with pytest.raises(ValueError, match="not the same network"):
        tool.blend_state(a, {**b, "w": torch.ones(3, 2)}, 0.5)


def test_blended_model_is_a_verified_model_with_graphs(tiny_model, tiny_data, tmp_path):
    """Blending a model with itself changes nothing the classifier says; the card is the new file's, measured."""
    from selfiemask.card import read_card
    from selfiemask.images import load_image
    from selfiemask.predict import Classifier

    out = tmp_path / "blend" / "export.pkl"
    rc = _tool().main(["--start", str(tiny_model), "--tuned", str(tiny_model), "--weight", "0.3",
                       "--crops", str(tiny_data), "--out", str(out)])
    assert rc == 0
    card = read_card(out)
    assert card["blend"]["weight"] == 0.3 and card["engines"]["int8"]["sha256"]
    assert card["validation"]["n"] > 0 and card["model"] == "export.pkl"
    photos = sorted(tiny_data.rglob("*.jpg"))[:6]
    mine, theirs = Classifier(out, engine="torch"), Classifier(tiny_model, engine="torch")
    images = [load_image(p) for p in photos]
    for v, w in zip(mine.classify(images), theirs.classify(images)):
        assert v.label == w.label and abs(v.confidence - w.confidence) < 1e-5
    # a share outside 0..1 is refused before anything is written
    with pytest.raises(SystemExit):
        _tool().main(["--start", str(tiny_model), "--tuned", str(out), "--weight", "2", "--crops", str(tiny_data),
                      "--out", str(tmp_path / "x.pkl")])
    assert not (tmp_path / "x.pkl").exists()
