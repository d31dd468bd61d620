"""Shared fixtures: generated images and one tiny model trained once per test session."""

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
    """A face-crop model from scratch on the synthetic task: about 30 s on 2 cores.

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
    train(TrainConfig(data_dir=tiny_data, out=out, epochs=4, size=64, bs=16, lr=2e-3, pretrained=False,
                      crops=True, crop_cache=tmp / "crops"))
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
