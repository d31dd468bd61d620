"""The recommended detector (RetinaFace, MTCNN fallback): faces found, none invented, chosen by the card."""

from __future__ import annotations

import random

import numpy as np
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


def test_landmarks_decoded_where_the_astronauts_eyes_nose_and_mouth_are(astronaut):
    """Eyes at about (205, 101) and (247, 103) of the 512x512 photo, nose (224, 129), mouth corners near y 140."""
    from selfiemask.retinaface import retinaface_faces

    (l, t, r, b, _, lm), = retinaface_faces(astronaut, RetinaFaceSettings())
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = lm
    assert lx < nx < rx and mlx < mrx  # the first eye and mouth corner are on the image's left
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose, the nose above the mouth
    assert all(l <= x <= r and t <= y <= b for x, y in lm)
    for (x, y), (ex, ey) in zip(lm, [(205, 101), (247, 103), (224, 129), (202, 138), (244, 141)]):
        assert abs(x - ex) < 8 and abs(y - ey) < 8, (x, y, ex, ey)
    # the detector's downscaled copy: points come back at the photo's scale, as boxes do
    (*_, big), = retinaface_faces(astronaut.resize((1024, 1024)), RetinaFaceSettings())
    assert all(abs(bx / 2 - x) < 6 and abs(by / 2 - y) < 6 for (bx, by), (x, y) in zip(big, lm))


def test_both_detectors_carry_landmarks_through_padding_and_clipping(astronaut):
    """MTCNN (the fallback) returns the same five points; the padded retry moves them back with the box."""
    for settings in (RECOMMENDED, DetectorSettings()):
        face = FaceDetector(settings).detect(astronaut)[0]
        assert face.landmarks is not None and len(face.landmarks) == 5
        (lx, ly), (rx, ry) = face.landmarks[:2]
        assert abs(lx - 205) < 10 and abs(rx - 247) < 10 and abs(ly - 101) < 10, settings.backend
        l, t, r, b = face.box
        tight = astronaut.crop((l, t, r, b))  # found only through the padded retry
        found = FaceDetector(settings).detect(tight)
        assert found and found[0].landmarks is not None
        (tx, ty) = found[0].landmarks[0]
        assert abs(tx + l - lx) < 10 and abs(ty + t - ly) < 10, settings.backend


def test_network_input_is_bgr_minus_the_training_means():
    """The fast per-channel input equals the plain definition: BGR pixels as floats, minus (104, 117, 123)."""
    from selfiemask.retinaface import _network_input

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for img in (Image.fromarray(rgb), Image.fromarray(rgb[..., 0]), Image.fromarray(rgb).convert("RGBA")):
        plain = np.asarray(img.convert("RGB"), np.float64)[..., ::-1] - [104.0, 117.0, 123.0]
        x = _network_input(img)
        assert x.shape == (1, 3, 37, 53) and x.dtype == np.float32
        assert np.array_equal(x[0], plain.transpose(2, 0, 1).astype(np.float32))
