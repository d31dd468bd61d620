"""Phone-photo conditions (selfiemask.augment) and the stress benchmark (benchmarks/conditions.py) on generated data."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from selfiemask.augment import CONDITIONS, PhoneConditions, colour_cast, exposure, framed_wide, low_resolution

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _benchmark():
    spec = importlib.util.spec_from_file_location("conditions_benchmark", ROOT / "benchmarks" / "conditions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo(astronaut) -> Image.Image:
    """scikit-image's astronaut, smaller: a real photo's texture (generated faces are flat colour)."""
    return astronaut.resize((160, 160))


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def test_each_condition_changes_the_photo_and_keeps_its_size(photo):
    for name, f in CONDITIONS.items():
        out = f(photo, 60)
        assert out.size == photo.size and out.mode == "RGB", name
        assert np.abs(_arr(out) - _arr(photo)).mean() > 1.0, f"{name} left the photo as it was"


def test_conditions_do_what_their_names_say(photo):
    gray = _arr(CONDITIONS["grayscale"](photo, None))
    assert np.allclose(gray[..., 0], gray[..., 1]) and np.allclose(gray[..., 1], gray[..., 2])
    red = _arr(colour_cast(photo, (1.0, 0.45, 0.45))).mean((0, 1))
    assert red[0] > 1.5 * red[1] and red[0] > 1.5 * red[2]
    assert _arr(exposure(photo, 0.35, 1.3)).mean() < 0.5 * _arr(photo).mean()
    # low resolution: the face shrunk to 32 px loses the fine detail (high-frequency energy)
    def detail(img):
        return np.abs(np.diff(_arr(img), axis=1)).mean()

    assert detail(low_resolution(photo, 32, 120)) < 0.6 * detail(photo)
    wide = framed_wide(photo)
    assert wide.size == (2 * photo.width, 2 * photo.height)


def test_phone_conditions_are_for_training_only_and_hit_crops_at_rate_p(photo):
    from fastai.vision.core import PILImage

    assert PhoneConditions.split_idx == 0  # fastai skips it for validation and inference
    img = PILImage.create(photo)
    never, always = PhoneConditions(p=0.0, seed=1), PhoneConditions(p=1.0, seed=1)
    assert np.array_equal(_arr(never(img, split_idx=0)), _arr(photo))
    assert np.array_equal(_arr(always(img, split_idx=1)), _arr(photo))  # validation: untouched
    assert not np.array_equal(_arr(always(img, split_idx=0)), _arr(photo))
    some = PhoneConditions(p=0.15, seed=2)
    changed = sum(not np.array_equal(_arr(some(img, split_idx=0)), _arr(photo)) for _ in range(200))
    assert 40 < changed < 140, changed  # 1 - 0.85**6 = 62% of crops get at least one condition


def test_stress_benchmark_runs_on_generated_photos(tiny_data, tiny_model, tmp_path):
    bench = _benchmark()
    report = bench.run(tiny_data, [("tiny", tiny_model, False), ("tiny+TTA", tiny_model, True)], limit=8,
                       progress=False)
    assert report["photos"] == 8
    assert list(report["conditions"]) == bench.ORDER[:1] + list(CONDITIONS) + ["framed tight", "framed wide"]
    assert report["conditions"]["as is"]["photos"] == 8
    for r in report["conditions"].values():
        # 'framed tight' needs a face; the generated faces may not be found, so it may hold no photos
        assert set(r["models"]) == ({"tiny", "tiny+TTA"} if r["photos"] else set())
        for m in r["models"].values():
            assert 0.0 <= m["accuracy"] <= 1.0 and sum(c["support"] for c in m["per_class"].values()) == r["photos"]
    table = bench.table(report)
    assert table.count("\n") == len(report["conditions"]) + 1 and "| grayscale |" in table
    out = tmp_path / "report.json"
    assert bench.main([str(tiny_data), "--model", f"tiny={tiny_model}", "--limit", "6", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["photos"] == 6


def test_stress_benchmark_says_when_the_photos_are_missing(tmp_path, capsys):
    assert _benchmark().main([str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
