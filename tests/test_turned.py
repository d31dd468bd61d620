"""Faces lying on their side: the photo searched turned a quarter each way, the crop made upright."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from selfiemask.augment import rolled
from selfiemask.crops import served_detector
from selfiemask.faces import RECOMMENDED, Face, FaceDetector, _unturned, crop_face, eye_angle, trusted_landmarks

TURNED = FaceDetector(replace(RECOMMENDED, turned=True))
UPRIGHT = FaceDetector(RECOMMENDED)


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("turn", [90, -90])
def test_points_found_in_a_turned_copy_map_back_to_the_photo(turn):
    """The mapping is PIL's own rotation undone: a marked pixel found in the turned copy lands where it was."""
    w, h = 61, 37
    for x, y in [(3, 5), (50, 30), (0, 0), (60, 36)]:
        img = Image.new("L", (w, h))
        img.putpixel((x, y), 255)
        ty, tx = np.argwhere(np.asarray(img.rotate(turn, expand=True)) == 255)[0]
        found = Face((int(tx), int(ty), int(tx) + 1, int(ty) + 1), 0.9, ((float(tx), float(ty)),) * 5)
        back = _unturned(found, turn, (w, h))
        assert back.turn == turn
        (bx, by) = back.landmarks[0]
        assert (round(bx), round(by)) in {(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)}, (x, y, bx, by)
        bl, bt, br, bb = back.box
        assert bl <= x + 1 and x <= br and bt <= y + 1 and y <= bb and (br - bl, bb - bt) == (1, 1)


@pytest.mark.parametrize("degrees", [90, -90])
def test_a_face_lying_on_its_side_is_found_and_cropped_upright(astronaut, degrees):
    """The astronaut's photo rolled a quarter: the box is where the face went, and its crop stands upright
    (RetinaFace, run on the crop, finds a face with level eyes and trusted landmarks)."""
    (upright,) = UPRIGHT.detect(astronaut)
    photo = rolled(astronaut, degrees)
    assert photo.size == (astronaut.height, astronaut.width)
    l, t, r, b = upright.box
    w, h = astronaut.size
    expected = (t, w - r, b, w - l) if degrees == 90 else (h - b, l, h - t, r)
    # As if nothing had been found upright: the turned search alone, then the crop through the turn alone.
    found = TURNED.check_turned(photo, [])
    assert found and found[0].turn == -degrees  # turned back the other way to stand up
    # Whatever detect() keeps (here the face is also found upright, with landmarks good enough to align by).
    kept = TURNED.detect(photo)[0]
    for face, align in ((found[0], False), (found[0], True), (kept, True)):
        assert iou(face.box, expected) > 0.6, (face.box, expected)
        crop = crop_face(photo, face, align=align)
        (seen,) = UPRIGHT.detect(crop.resize((256, 256)))
        assert trusted_landmarks(seen) and abs(eye_angle(seen.landmarks)) < 20, (align, face, seen)
    # Without the turn, the same box's crop lies on its side: the check above can fail.
    sideways = crop_face(photo, replace(found[0], turn=0))
    assert not any(trusted_landmarks(f) and abs(eye_angle(f.landmarks)) < 20
                   for f in UPRIGHT.detect(sideways.resize((256, 256))))


def test_upright_faces_are_left_as_they_are(astronaut, no_face):
    """A face found upright with a high score and trusted landmarks is not searched again; no face invented."""
    (face,) = TURNED.detect(astronaut)
    assert face.turn == 0 and face == UPRIGHT.detect(astronaut)[0]
    assert TURNED.detect(no_face) == []


def test_the_card_switches_the_turned_search_and_video_leaves_it_off(rule_face_model, tmp_path):
    from selfiemask.card import card_path
    from selfiemask.predict import Classifier
    from selfiemask.video import FrameAnalyzer

    card = json.loads(card_path(rule_face_model).read_text())
    assert served_detector(card).turned is False  # a card that says nothing: as trained
    out = tmp_path / "export.pkl"
    shutil.copy(rule_face_model, out)
    card.setdefault("inference", {})["turned"] = True
    card_path(out).write_text(json.dumps(card))
    clf = Classifier(out)
    assert clf.detector.settings.turned is True
    assert FrameAnalyzer(clf).detector.settings.turned is False  # two more detections of every empty frame


ORIENTED = FaceDetector(replace(RECOMMENDED, turned=True, orient=True))


def _upright_points(box):
    """Landmarks where an upright face of this box has them: what RetinaFace reported on some faces at 90 degrees."""
    l, t, r, b = box
    rel = [(0.32, 0.38), (0.68, 0.38), (0.5, 0.56), (0.36, 0.74), (0.64, 0.74)]
    return tuple((l + x * (r - l), t + y * (b - t)) for x, y in rel)


@pytest.mark.parametrize("degrees", [90, -90])
def test_a_face_on_its_side_with_landmarks_that_look_upright_is_turned(astronaut, degrees, monkeypatch):
    """The region around the face, searched turned, finds it lying down: box and landmarks are replaced, and the
    aligned crop stands upright where the landmarks it came with would have left it on its side.

    RetinaFace is sure of the astronaut whichever way it lies (0.98 upright, 0.99 turned, rolled 90 degrees);
    on the validation photos whose crops were misread it was less sure upright. So the upright search's
    score is lowered by a tenth here, and everything else (the turned searches, the mapping back, the crop)
    is the real thing."""
    from selfiemask import retinaface

    real, calls = retinaface.retinaface_faces, []

    def less_sure_upright(img, settings):
        found = real(img, settings)
        calls.append(img.size)
        return [(*f[:4], f[4] * 0.9, f[5]) for f in found] if len(calls) == 1 else found

    photo = rolled(astronaut, degrees)
    (true,) = UPRIGHT.detect(photo)  # RetinaFace finds this face with its real landmarks
    fooled = Face(true.box, true.prob, _upright_points(true.box))
    assert trusted_landmarks(fooled) and abs(eye_angle(fooled.landmarks)) < 1  # looks upright, and is not
    assert ORIENTED.check_orientation(photo, [fooled]) == [fooled]  # as sure upright as turned: left alone
    monkeypatch.setattr(retinaface, "retinaface_faces", less_sure_upright)
    (fixed,) = ORIENTED.check_orientation(photo, [fooled])
    assert len(calls) == 3 and fixed.turn == -degrees and iou(fixed.box, true.box) > 0.6
    assert abs(abs(eye_angle(fixed.landmarks)) - 90) < 20  # the eye line runs up and down the photo
    monkeypatch.setattr(retinaface, "retinaface_faces", real)
    for face, upright_after in ((fixed, True), (fooled, False)):
        seen = UPRIGHT.detect(crop_face(photo, face, align=True).resize((256, 256)))
        level = bool(seen) and trusted_landmarks(seen[0]) and abs(eye_angle(seen[0].landmarks)) < 20
        assert level == upright_after, (face, seen)


def test_the_orientation_check_leaves_upright_and_missing_faces_alone(astronaut, no_face):
    (face,) = UPRIGHT.detect(astronaut)
    assert ORIENTED.check_orientation(astronaut, [face]) == [face]
    assert ORIENTED.detect(astronaut) == [face] and ORIENTED.detect(no_face) == []
    assert ORIENTED.check_orientation(astronaut, []) == []
    untrusted = replace(face, landmarks=None)
    assert ORIENTED.check_orientation(astronaut, [untrusted]) == [untrusted]  # check_turned's case, not this one
    mtcnn_only = FaceDetector(replace(RECOMMENDED, backend="mtcnn", orient=True))
    assert mtcnn_only.check_orientation(astronaut, [face]) == [face]


def test_the_card_switches_the_orientation_check_and_video_leaves_it_off(rule_face_model, tmp_path):
    from selfiemask.card import card_path
    from selfiemask.predict import Classifier
    from selfiemask.video import FrameAnalyzer

    card = json.loads(card_path(rule_face_model).read_text())
    assert served_detector(card).orient is False
    out = tmp_path / "export.pkl"
    shutil.copy(rule_face_model, out)
    card.setdefault("inference", {}).update(turned=True, orient=True)
    card_path(out).write_text(json.dumps(card))
    clf = Classifier(out)
    assert clf.detector.settings.orient is True and clf.detector.settings.turned is True
    assert FrameAnalyzer(clf).detector.settings.orient is False
