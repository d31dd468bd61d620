"""The recommended detector (RetinaFace, MTCNN fallback): faces found, none invented, chosen by the card."""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageDraw

from selfiemask.faces import RECOMMENDED, DetectorSettings, FaceDetector
from selfiemask.retinaface import RetinaFaceSettings, retinaface_boxes


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(RECOMMENDED)


def landscape(seed: int = 0, size=(800, 600)) -> Image.Image:
    """Sky, hills and a sun: a photo without a face, drawn here."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size)
    d = ImageDraw.Draw(img)
    for y in range(h):
        d.line([(0, y), (w, y)], fill=(80 + y * 100 // h, 140 + y * 60 // h, 230 - y * 80 // h))
    for _ in range(3):
        base = rng.randint(h // 2, h)
        d.polygon([(0, h)] + [(x, base - rng.randint(0, h // 3)) for x in range(0, w + 80, 80)] + [(w, h)],
                  fill=(rng.randint(20, 90), rng.randint(80, 160), rng.randint(20, 80)))
    d.ellipse([600, 60, 680, 140], fill=(255, 230, 120))
    return img


def test_astronaut_face_found_by_retinaface_alone(astronaut):
    boxes = retinaface_boxes(astronaut, RetinaFaceSettings())
    assert len(boxes) == 1
    l, t, r, b, score = boxes[0]
    assert score > 0.9
    assert 150 < (l + r) / 2 < 260 and 50 < (t + b) / 2 < 160  # the astronaut's head, not her suit or flag


def test_recommended_detector_finds_faces_and_invents_none(detector, astronaut, no_face, three_faces):
    assert len(detector.detect(astronaut)) == 1
    assert detector.detect(landscape()) == []
    assert detector.detect(landscape(seed=3, size=(480, 640))) == []
    assert detector.detect(no_face) == []  # scikit-image's coffee cup
    three = detector.detect(three_faces)
    assert len(three) == 3
    assert [f.area for f in three] == sorted((f.area for f in three), reverse=True)


def test_boxes_are_in_pixels_of_the_given_image(detector, astronaut):
    """The detector works on a smaller copy; boxes must come back at the photo's scale."""
    small = detector.detect(astronaut)[0].box
    big = detector.detect(astronaut.resize((2048, 2048)))[0].box
    assert all(abs(b / 4 - s) < 12 for b, s in zip(big, small))


def test_tight_face_found(detector, astronaut):
    box = detector.detect(astronaut)[0].box
    assert len(detector.detect(astronaut.crop(box))) == 1


def test_card_names_the_detector():
    """Cards written before RetinaFace (no backend) keep MTCNN; new crop passes record the recommended one."""
    old = {"name": "facenet-pytorch MTCNN", "min_prob": 0.8, "min_face": 20, "thresholds": [0.5, 0.6, 0.6],
           "pad_fraction": 0.5, "detect_side": 800}
    assert DetectorSettings.from_dict(old) == DetectorSettings()
    assert DetectorSettings.from_dict(old).backend == "mtcnn"
    from selfiemask.crops import CropSettings

    recorded = CropSettings().as_dict()["detector"]
    assert DetectorSettings.from_dict(recorded) == RECOMMENDED
