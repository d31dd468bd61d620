"""The shipped export.pkl: intact, loadable, right on the project's own samples, and on real data when asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ROOT

from selfiemask.card import verify_model

MODEL = ROOT / "export.pkl"
SHARED = Path(os.environ.get("SELFIEMASK_SHARED", ROOT.parent / "shared" / "data" / "train"))
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no shipped export.pkl in this checkout")


@pytest.fixture(scope="module")
def shipped():
    from selfiemask.predict import Classifier

    return Classifier(MODEL)


def test_matches_its_card_and_says_how_it_was_made():
    card = verify_model(MODEL)
    assert card["classes"] == ["with_mask", "without_mask"]
    assert card["input"] == "face crops" and card["detector"]["counts"]["photos"] > 0
    assert card["validation"]["accuracy"] >= 0.97
    assert "pretrained" in card and card["weights"]


def test_samples_are_judged_on_their_face(shipped):
    from selfiemask.app import SAMPLES
    from selfiemask.images import load_image

    results = shipped.analyze_images([load_image(SAMPLES / "mask.jpg"), load_image(SAMPLES / "no_mask.jpg")])
    assert [len(r.faces) for r in results] == [1, 1]
    assert [r.main.label for r in results] == ["with_mask", "without_mask"]


@pytest.mark.slow
def test_accuracy_on_real_validation_photos(shipped):
    """Real photos from ../shared that the model never trained on (its validation split)."""
    from selfiemask.data import validation_items
    from selfiemask.evaluate import class_metrics

    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: real-data check needs ../shared beside the checkout")
    items = validation_items(SHARED)[::3]
    results = shipped.analyze_files(items)
    truth = [shipped.classes.index(p.parent.name) for p in items]
    got = [shipped.classes.index(r.main.label) for r in results]
    m = class_metrics(truth, got, shipped.classes)
    assert m["accuracy"] >= 0.95, m
    assert min(c["recall"] for c in m["per_class"].values()) >= 0.9, m
