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
