"""The app's widget logic in-process: upload, verdicts with their CSS classes, friendly errors."""

from __future__ import annotations

import datetime
import re
import shutil
import threading

import pytest
from conftest import jpeg_bytes, noise_image

from selfiemask import app as app_module
from selfiemask.app import App, verdict_widget
from selfiemask.verdicts import MIN_CONFIDENCE, UNSURE, human_label


def classes_of(widget) -> list[str]:
    return list(widget._dom_classes)


def find(widget, cls: str) -> list:
    """Every widget below ``widget`` carrying CSS class ``cls``."""
    found = [widget] if cls in classes_of(widget) else []
    for child in getattr(widget, "children", ()):
        found += find(child, cls)
    return found


@pytest.fixture(scope="module")
def app(rule_face_model):
    return App(rule_face_model)


def upload(app, name: str, data: bytes) -> None:
    # What ipywidgets 8 sends: a tuple of dicts, content as a memoryview.
    app.upload.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime(2026, 1, 1)},)


def test_upload_gives_a_verdict_per_face(app, astronaut):
    upload(app, "astronaut.jpg", jpeg_bytes(astronaut))
    verdicts = find(app.results, "verdict")
    assert len(verdicts) == 1
    cls = [c for c in classes_of(verdicts[0]) if c.startswith("verdict-") and c != "verdict-uncertain"]
    assert cls in (["verdict-with_mask"], ["verdict-without_mask"])  # the model's class, sure or not
    # What it says is what the classifier says of that face (the rule model: the crop's red minus green).
    (face,) = app.classifier.analyze_images([astronaut])[0].faces
    assert f"verdict-{face.label}" in classes_of(verdicts[0]) and f"{face.confidence * 100:.1f}%" in verdicts[0].value
    assert shown(verdicts[0]) == (UNSURE if face.uncertain else human_label(face.label))
    assert "%" in verdicts[0].value and not find(app.results, "no-face")
    assert len(find(app.results, "result-image")) == 1


def shown(verdict) -> str:
    """What a verdict widget tells people (its ``verdict-label`` span)."""
    return re.search(r"class='verdict-label'[^>]*>([^<]*)<", verdict.value)[1]


def test_three_faces_three_verdicts_after_a_summary(app, three_faces):
    upload(app, "group.jpg", jpeg_bytes(three_faces))
    verdicts = find(app.results, "verdict")
    assert len(verdicts) == 3
    (count,) = find(app.results, "face-count")
    (column,) = find(app.results, "verdicts")
    assert column.children[0] is count  # the summary comes first, then each face
    text = re.search(r">([^<]*)<", count.value)[1]
    assert text.startswith("3 faces: ")
    # The summary counts what the verdicts below it say (whatever this tiny model says).
    said = [shown(v) for v in verdicts]
    assert sorted(text.split(": ")[1].split(", ")) == sorted(f"{said.count(k)} {k.lower()}" for k in set(said))


@pytest.mark.parametrize("confidence", [MIN_CONFIDENCE - 0.05, MIN_CONFIDENCE + 0.05])
def test_low_confidence_reads_not_sure_with_the_guess(confidence):
    w = verdict_widget("without_mask", confidence, "Face 1")
    unsure = confidence < MIN_CONFIDENCE
    assert shown(w) == (UNSURE if unsure else human_label("without_mask"))
    assert ("verdict-uncertain" in classes_of(w)) == unsure
    assert "verdict-without_mask" in classes_of(w)  # the model's class stays on the element
    assert f"{confidence * 100:.1f}%" in w.value
    assert ("the model's guess: No mask" in w.value) == unsure


def test_no_face_says_so_and_falls_back(app, no_face):
    upload(app, "coffee.jpg", jpeg_bytes(no_face))
    assert len(find(app.results, "no-face")) == 1
    (v,) = find(app.results, "verdict")
    assert "verdict-fallback" in classes_of(v) and "whole photo" in v.value
    assert shown(v) == UNSURE and "verdict-uncertain" in classes_of(v)  # a fallback, never a confident verdict


def test_no_face_found_reads_not_sure_even_when_the_model_is_sure(app):
    """A flat red photo: the rule model is 98% sure of with_mask, but no face was found, so it is a guess."""
    from PIL import Image
    from rule_model import RED, rule_verdict

    label, p = rule_verdict(RED)
    assert p > MIN_CONFIDENCE
    upload(app, "wall.jpg", jpeg_bytes(Image.new("RGB", (300, 200), RED), quality=95))
    assert len(find(app.results, "no-face")) == 1
    (v,) = find(app.results, "verdict")
    assert shown(v) == UNSURE and "verdict-uncertain" in classes_of(v) and f"verdict-{label}" in classes_of(v)
    assert f"the model's guess: {human_label(label)}, {p * 100:.1f}%" in v.value


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


def test_missing_or_mismatched_model_shows_a_message(tmp_path, rule_face_model):
    missing = App(tmp_path / "export.pkl")
    (msg,) = find(missing.results, "model-error")
    assert "not found" in msg.value
    bad = tmp_path / "bad" / "export.pkl"
    bad.parent.mkdir()
    shutil.copy(rule_face_model.with_suffix(".json"), bad.with_suffix(".json"))
    bad.write_bytes(b"not the model")
    broken = App(bad)
    assert "does not match" in find(broken.results, "model-error")[0].value
    broken.show([("x.jpg", b"123")])  # still no traceback
    assert find(broken.results, "model-error")


def test_page_layout_wraps_for_phones(app):
    page = app.widget()
    assert "selfiemask-app" in classes_of(page)
    css = page.children[0].value
    assert "@media (max-width: 600px)" in css and ".result-row" in css
    (controls,) = find(page, "controls")
    assert controls.layout.flex_flow == "row wrap"
    assert all(b.layout.flex == "0 0 auto" and b.layout.width == "auto" for b in app.sample_buttons)
    app.sample_buttons[0].click()
    (row,) = find(app.results, "result-row")
    assert row.layout.flex_flow == "row wrap"
    (img,) = find(row, "result-image")
    assert img.layout.max_width == "100%"


def test_loading_note_shows_until_the_model_is_loaded(rule_face_model, monkeypatch, astronaut):
    release = threading.Event()
    real = app_module.get_classifier

    def slow(path):
        release.wait(60)
        return real(path)

    monkeypatch.setattr(app_module, "get_classifier", slow)
    a = App(rule_face_model, background=True)  # returns at once, the model still loading
    assert a.loading.layout.display != "none" and not a.loaded.is_set() and a.classifier is None
    assert a.loading in a.widget().children
    # A photo chosen now waits for the model, then gets its verdict.
    shown_thread = threading.Thread(target=a.show, args=([("a.jpg", jpeg_bytes(astronaut))],))
    shown_thread.start()
    shown_thread.join(0.5)
    assert shown_thread.is_alive() and "Waiting for the model" in a.status.value
    release.set()
    shown_thread.join(60)
    assert a.loaded.is_set() and a.loading.layout.display == "none" and a.classifier is not None
    assert len(find(a.results, "verdict")) == 1 and a.status.value == ""


def test_a_model_that_fails_to_load_in_the_background_is_explained(tmp_path):
    a = App(tmp_path / "export.pkl", background=True)
    assert a.loaded.wait(60)
    assert a.loading.layout.display == "none"
    (msg,) = find(a.results, "model-error")
    assert "not found" in msg.value
