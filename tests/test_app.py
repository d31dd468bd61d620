"""The app's widget logic in-process: upload, verdicts with their CSS classes, friendly errors."""

from __future__ import annotations

import datetime
import shutil

import pytest
from conftest import jpeg_bytes, noise_image

from selfiemask.app import App


def classes_of(widget) -> list[str]:
    return list(widget._dom_classes)


def find(widget, cls: str) -> list:
    """Every widget below ``widget`` carrying CSS class ``cls``."""
    found = [widget] if cls in classes_of(widget) else []
    for child in getattr(widget, "children", ()):
        found += find(child, cls)
    return found


@pytest.fixture(scope="module")
def app(tiny_model):
    return App(tiny_model)


def upload(app, name: str, data: bytes) -> None:
    # What ipywidgets 8 sends: a tuple of dicts, content as a memoryview.
    app.upload.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime(2026, 1, 1)},)


def test_upload_gives_a_verdict_per_face(app, astronaut):
    upload(app, "astronaut.jpg", jpeg_bytes(astronaut))
    verdicts = find(app.results, "verdict")
    assert len(verdicts) == 1
    cls = [c for c in classes_of(verdicts[0]) if c.startswith("verdict-")]
    assert cls in (["verdict-with_mask"], ["verdict-without_mask"])
    assert "%" in verdicts[0].value and not find(app.results, "no-face")
    assert len(find(app.results, "result-image")) == 1


def test_three_faces_three_verdicts(app, three_faces):
    upload(app, "group.jpg", jpeg_bytes(three_faces))
    assert len(find(app.results, "verdict")) == 3
    assert "3 faces found" in str([w.value for w in app.results.children[0].children[1].children[1].children])


def test_no_face_says_so_and_falls_back(app, no_face):
    upload(app, "coffee.jpg", jpeg_bytes(no_face))
    assert len(find(app.results, "no-face")) == 1
    (v,) = find(app.results, "verdict")
    assert "verdict-fallback" in classes_of(v) and "whole photo" in v.value


@pytest.mark.parametrize("name, data, reason", [
    ("notes.jpg", b"hello, not a photo", "not an image"),
    ("empty.jpg", b"", "empty file"),
    ("cut.jpg", jpeg_bytes(noise_image((300, 300)), quality=95)[:3000], "truncated"),
])
def test_bad_upload_is_friendly_and_app_keeps_working(app, astronaut, name, data, reason):
    upload(app, name, data)
    (msg,) = find(app.results, "upload-error")
    assert reason in msg.value and "Traceback" not in msg.value
    assert not find(app.results, "verdict")
    upload(app, "again.jpg", jpeg_bytes(astronaut))
    assert len(find(app.results, "verdict")) == 1


def test_samples_work_without_upload(app):
    assert len(app.sample_buttons) == 2
    for b, path in zip(app.sample_buttons, app.samples.values()):
        b.click()
        (result,) = find(app.results, "result")  # the sample replaced what was shown before
        assert f">{path.name}</h4>" in result.children[0].value
        # Each sample is one astronaut face: one verdict on the face, no fallback, no error.
        (verdict,) = find(result, "verdict")
        assert "verdict-fallback" not in classes_of(verdict) and "%" in verdict.value
        assert not find(app.results, "no-face") and not find(app.results, "upload-error")
        assert len(find(result, "result-image")) == 1


def test_missing_or_mismatched_model_shows_a_message(tmp_path, tiny_model):
    missing = App(tmp_path / "export.pkl")
    (msg,) = find(missing.results, "model-error")
    assert "not found" in msg.value
    bad = tmp_path / "bad" / "export.pkl"
    bad.parent.mkdir()
    shutil.copy(tiny_model.with_suffix(".json"), bad.with_suffix(".json"))
    bad.write_bytes(b"not the model")
    broken = App(bad)
    assert "does not match" in find(broken.results, "model-error")[0].value
    broken.show([("x.jpg", b"123")])  # still no traceback
    assert find(broken.results, "model-error")
