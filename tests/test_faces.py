"""Faces: detection on composed photos, the crop cache, per-face output and framing invariance."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from selfiemask.crops import crop_folder
from selfiemask.faces import FaceDetector, crop_face


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_zero_one_and_three_faces(detector, astronaut, no_face, three_faces):
    assert detector.detect(no_face) == []
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    l, t, r, b = faces[0].box
    assert 150 < (l + r) / 2 < 260 and 50 < (t + b) / 2 < 160  # the astronaut's head
    three = detector.detect(three_faces)
    assert len(three) == 3
    assert [f.area for f in three] == sorted((f.area for f in three), reverse=True)
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in three)
    assert all(b - a > 120 for a, b in zip(centres, centres[1:]))


def test_tight_crop_is_found_through_padding(detector, astronaut):
    """A photo that is only the face (like the training set's celebrity crops) still has a face."""
    box = detector.detect(astronaut)[0].box
    tight = astronaut.crop(box)
    assert len(detector.detect(tight)) == 1


def _similar(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.resize((64, 64)), dtype=float)
    y = np.asarray(b.resize((64, 64)), dtype=float)
    return float(np.abs(x - y).mean())


def test_framing_does_not_change_the_face_crop(detector, astronaut):
    """Tighter or wider framing of the same photo finds the same face: the framing shortcut is gone."""
    face = detector.detect(astronaut)[0]
    base = crop_face(astronaut, face.box)
    tight_box = _box_of(astronaut, face.box, 0.35)
    tight = astronaut.crop(tight_box)
    wide = ImageOps.expand(astronaut, border=256, fill=(90, 90, 90))  # twice the size
    for variant, (dx, dy) in ((tight, tight_box[:2]), (wide, (-256, -256))):
        f = detector.detect(variant)
        assert len(f) == 1
        l, t, r, b = f[0].box
        assert _iou((l + dx, t + dy, r + dx, b + dy), face.box) > 0.8
        assert _similar(crop_face(variant, f[0].box), base) < 20


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _box_of(img, box, margin):
    l, t, r, b = box
    w, h = r - l, b - t
    return (max(0, int(l - margin * w)), max(0, int(t - margin * h)), min(img.width, int(r + margin * w)),
            min(img.height, int(b + margin * h)))


def test_crop_pass_is_cached_and_resumable(tmp_path, astronaut, no_face):
    src = tmp_path / "src"
    (src / "with_mask").mkdir(parents=True)
    (src / "without_mask").mkdir()
    astronaut.save(src / "with_mask" / "a.jpg")
    no_face.save(src / "without_mask" / "b.jpg")
    (src / "without_mask" / "broken.jpg").write_text("nope")
    out = tmp_path / "crops"
    first = crop_folder(src, out, progress=False)
    assert (first.detected, first.reused, first.face, first.whole, first.failed) == (2, 0, 1, 1, 1)
    rows = {r["source"]: r for r in csv.DictReader(open(out / "crops.csv"))}
    assert rows["with_mask/a.jpg"]["kind"] == "face" and rows["with_mask/a.jpg"]["box"]
    assert rows["without_mask/b.jpg"]["kind"] == "whole"
    assert "not an image" in rows["without_mask/broken.jpg"]["error"]
    crop = Image.open(out / "with_mask" / "a.jpg")
    assert crop.width < astronaut.width
    second = crop_folder(src, out, progress=False)
    assert (second.detected, second.reused) == (0, 3)
    # A changed photo is detected again; a removed one loses its crop.
    ImageOps.mirror(astronaut).save(src / "with_mask" / "a.jpg")
    (src / "without_mask" / "b.jpg").unlink()
    third = crop_folder(src, out, progress=False)
    assert (third.detected, third.reused) == (1, 1)
    assert not (out / "without_mask" / "b.jpg").exists()


def test_per_face_rows_and_no_face_fallback(rule_face_model, tmp_path, astronaut, no_face, three_faces):
    from test_predict_cli import run_cli

    for name, img in (("one.jpg", astronaut), ("none.jpg", no_face), ("three.jpg", three_faces)):
        img.save(tmp_path / name)
    res = run_cli("predict", "--model", rule_face_model, "--csv", "--faces", tmp_path)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == ["path", "face", "box", "label", "confidence", "error", "uncertain"]
    per = {}
    for r in rows:
        per.setdefault(r["path"].split("/")[-1], []).append(r)
    assert len(per["three.jpg"]) == 3 and [r["face"] for r in per["three.jpg"]] == ["0", "1", "2"]
    for r in per["three.jpg"]:
        l, t, rr, b = map(int, r["box"].split())
        assert 0 <= l < rr <= three_faces.width and 0 <= t < b <= three_faces.height
    assert len(per["one.jpg"]) == 1 and per["one.jpg"][0]["box"]
    (none,) = per["none.jpg"]
    assert none["face"] == "none" and none["box"] == "" and none["label"] in {"with_mask", "without_mask"}
    res = run_cli("predict", "--model", rule_face_model, "--csv", tmp_path)
    rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    # Default rows: one per photo, judged on the largest face.
    assert (rows["three.jpg"]["faces"], rows["three.jpg"]["judged_on"]) == ("3", "largest_face")
    assert (rows["none.jpg"]["faces"], rows["none.jpg"]["judged_on"]) == ("0", "whole_image")


def test_classifier_on_faces_is_framing_invariant(rule_face_model, astronaut):
    """The verdict for the face must not flip when the photo is framed tighter or wider."""
    from selfiemask.predict import Classifier

    clf = Classifier(rule_face_model, detect_faces=True)
    face = clf.detector.detect(astronaut)[0]
    tight = astronaut.crop(_box_of(astronaut, face.box, 0.35))
    wide = ImageOps.expand(astronaut, border=256, fill=(90, 90, 90))
    results = clf.analyze_images([astronaut, tight, wide])
    assert all(len(r.faces) == 1 for r in results)
    labels = {r.main.label for r in results}
    confs = [r.main.confidence for r in results]
    assert len(labels) == 1 and max(confs) - min(confs) < 0.15, (labels, confs)


# -- alignment ------------------------------------------------------------------------------------------------
def _rotated(img: Image.Image, degrees: float) -> Image.Image:
    """The photo turned counter-clockwise, grown to hold it all; the new corners grey (not black, not the face)."""
    return img.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128))


@pytest.fixture(scope="module")
def retina():
    from selfiemask.faces import RECOMMENDED

    return FaceDetector(RECOMMENDED)


@pytest.mark.parametrize("degrees", [60, -60, 30])
def test_a_face_rotated_60_degrees_is_cropped_upright(retina, astronaut, degrees):
    from selfiemask.faces import eye_angle

    upright = crop_face(astronaut, retina.detect(astronaut)[0], align=True)
    turned = _rotated(astronaut, degrees)
    face = retina.detect(turned)[0]
    assert abs(eye_angle(face.landmarks) + degrees) < 15  # the detector sees the tilt
    plain, aligned = crop_face(turned, face), crop_face(turned, face, align=True)
    # the crop's own eye line, measured by the detector on the crop: level when aligned, tilted when not
    tilt_plain = eye_angle(retina.detect(plain)[0].landmarks)
    tilt_aligned = eye_angle(retina.detect(aligned)[0].landmarks)
    assert abs(tilt_aligned) < 12 and abs(tilt_plain) > abs(degrees) - 15, (tilt_plain, tilt_aligned)
    # and the aligned crop looks like the upright photo's crop, the unaligned one does not
    assert _similar(aligned, upright) < 0.6 * _similar(plain, upright)


def test_rotated_corners_come_from_the_photo_never_black():
    """A face at the photo's corner, tilted 45 degrees: the crop's corners lie outside the photo and are mirrored."""
    from selfiemask.faces import Face

    yy, xx = np.mgrid[0:200, 0:300]
    arr = np.stack([80 + xx * 0.5, 90 + yy * 0.5, np.full_like(xx, 160)], axis=-1).astype(np.uint8)
    photo = Image.fromarray(arr)  # a gradient: no pixel darker than 80
    # eyes 40 px apart on a line falling 45 degrees, mouth square to it: a face at the top left corner
    face = Face((0, 0, 100, 100), 0.99, ((30.0, 30.0), (58.0, 58.0), (34.0, 54.0), (14.0, 54.0), (34.0, 74.0)))
    crop = np.asarray(crop_face(photo, face, align=True))
    assert crop.shape[0] == crop.shape[1] == 140  # the full square, not clipped to the photo
    assert crop.min() >= 75, "a rotated corner was filled with black"
    assert not np.array_equal(crop, np.asarray(crop_face(photo, face)))  # it was rotated


def test_alignment_only_where_the_landmarks_can_be_trusted(astronaut):
    from selfiemask.faces import Face, trusted_landmarks

    lm = ((205.0, 101.0), (247.0, 103.0), (224.0, 129.0), (202.0, 138.0), (244.0, 141.0))
    good = Face((178, 57, 273, 177), 0.99, lm)
    assert trusted_landmarks(good)
    assert not trusted_landmarks(Face((178, 57, 273, 177), 0.99, None))
    assert not trusted_landmarks(good, min_face=200)  # too small a face: its landmarks are noise
    mouth_above = lm[:3] + ((202.0, 70.0), (244.0, 70.0))
    assert not trusted_landmarks(Face(good.box, 0.99, mouth_above))  # mouth on the forehead's side
    outside = ((105.0, 101.0),) + lm[1:]
    assert not trusted_landmarks(Face(good.box, 0.99, outside))  # an eye far outside the box
    eyes_together = ((224.0, 101.0), (228.0, 101.0)) + lm[2:]
    assert not trusted_landmarks(Face(good.box, 0.99, eyes_together))
    # untrusted or small: the crop is exactly the plain one
    tilted = Face(good.box, 0.99, ((205.0, 90.0), (247.0, 115.0)) + lm[2:])
    assert np.array_equal(np.asarray(crop_face(astronaut, tilted, align=True, min_face=200)),
                          np.asarray(crop_face(astronaut, tilted)))
    plain = np.asarray(crop_face(astronaut, good))
    assert np.array_equal(np.asarray(crop_face(astronaut, good.box, align=True)), plain)  # a box has no landmarks


def test_the_card_says_whether_a_model_is_served_aligned():
    """Crop settings record align; old cards and crop folders mean unaligned; inference.align overrides."""
    from selfiemask.crops import CropSettings, served_aligned
    from selfiemask.faces import ALIGN_MIN_FACE

    assert served_aligned({}) == (False, ALIGN_MIN_FACE)
    old = CropSettings().as_dict()
    del old["align"], old["align_min_face"]
    assert CropSettings.from_dict(old) == CropSettings()  # a crop cache written before align is reused
    assert served_aligned({"detector": old}) == (False, ALIGN_MIN_FACE)
    trained = CropSettings(align=True, align_min_face=80).as_dict()
    assert served_aligned({"detector": trained}) == (True, 80)
    assert served_aligned({"detector": trained, "inference": {"align": False}})[0] is False
    assert served_aligned({"detector": old, "inference": {"align": True}})[0] is True


def test_crop_pass_aligns_when_its_settings_say_so(tmp_path, astronaut):
    from selfiemask.crops import SETTINGS, CropSettings
    from selfiemask.faces import RECOMMENDED

    for label in ("with_mask", "without_mask"):
        (tmp_path / "src" / label).mkdir(parents=True)
        _rotated(astronaut, 60).save(tmp_path / "src" / label / "a.jpg", quality=95)
    out = {}
    for align in (False, True):
        dest = tmp_path / f"out_{align}"
        crop_folder(tmp_path / "src", dest, settings=CropSettings(detector=RECOMMENDED, align=align), progress=False)
        assert json.loads((dest / SETTINGS).read_text())["align"] is align
        out[align] = Image.open(dest / "without_mask" / "a.jpg").convert("RGB")
    upright = crop_face(astronaut, FaceDetector(RECOMMENDED).detect(astronaut)[0])
    assert _similar(out[True], upright) < 0.6 * _similar(out[False], upright)
