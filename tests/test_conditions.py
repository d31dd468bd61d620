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
    assert list(report["conditions"]) == bench.ORDER
    assert bench.ORDER[:1] + list(CONDITIONS) + ["framed tight", "framed wide"] == bench.ORDER[:12]
    assert report["conditions"]["as is"]["photos"] == 8
    for r in report["conditions"].values():
        # 'framed tight' needs a face; the generated faces may not be found, so it may hold no photos
        assert set(r["models"]) == ({"tiny", "tiny+TTA"} if r["photos"] else set())
        for m in r["models"].values():
            assert 0.0 <= m["accuracy"] <= 1.0 and sum(c["support"] for c in m["per_class"].values()) == r["photos"]
    table = bench.table(report)
    assert table.count("\n") == len(report["conditions"]) + 1 and "| grayscale |" in table
    out, rows = tmp_path / "report.json", tmp_path / "verdicts.csv"
    assert bench.main([str(tiny_data), "--model", f"tiny={tiny_model}", "--limit", "6", "--json", str(out),
                       "--photos-csv", str(rows)]) == 0
    written = json.loads(out.read_text())
    assert written["photos"] == 6
    import csv

    verdicts = list(csv.DictReader(rows.open()))
    assert len(verdicts) == sum(r["photos"] for r in written["conditions"].values())  # one row a photo and condition
    as_is = [v for v in verdicts if v["condition"] == "as is"]
    right = sum(v["predicted"] == v["label"] for v in as_is)
    assert right / len(as_is) == written["conditions"]["as is"]["models"]["tiny"]["accuracy"]
    # Each model also with the turned search: the same upright faces, a face found at least as often.
    assert bench.main([str(tiny_data), "--model", f"tiny={tiny_model}", "--limit", "6", "--turned", "both",
                       "--conditions", "tilt", "--json", str(out)]) == 0
    turned = json.loads(out.read_text())
    assert set(turned["models"]) == {"tiny", "tiny turned"} and turned["models"]["tiny turned"]["turned"]
    assert all(r["faces_found_turned"] >= r["faces_found"] for r in turned["conditions"].values())


def test_stress_benchmark_says_when_the_photos_are_missing(tmp_path, capsys):
    assert _benchmark().main([str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


# -- tilt, occlusion, camera (issue 22) --------------------------------------------------------------------------
def test_tilts_turn_the_whole_photo_and_lying_down_keeps_exif_upright(photo):
    from selfiemask.augment import TILTS, lying_down, rolled

    assert len(TILTS) == 7
    quarter = rolled(photo, 90)
    assert np.array_equal(_arr(quarter), _arr(photo.transpose(Image.Transpose.ROTATE_90)))  # exact, no new pixels
    thirty = rolled(photo, 30)
    assert thirty.width > photo.width  # grown to hold the turned photo
    corner = _arr(thirty)[:5, :5].reshape(-1, 3)
    assert np.allclose(corner, _arr(photo).reshape(-1, 3).mean(0), atol=3)  # filled with the mean colour, not black
    lying = lying_down(photo)
    assert lying.size == quarter.size and np.abs(_arr(lying) - _arr(quarter)).mean() < 4  # JPEG, not turned back
    for name, f in TILTS.items():
        assert f(photo).mode == "RGB", name


def test_occluders_cover_mouth_or_eyes_in_the_faces_own_skin_colour(astronaut):
    from selfiemask.augment import hand_from_the_side, hand_over_mouth, sunglasses

    box = (178, 57, 273, 177)
    lm = ((205.0, 101.0), (247.0, 103.0), (224.0, 129.0), (202.0, 138.0), (244.0, 141.0))
    before = _arr(astronaut)
    hand = _arr(hand_over_mouth(astronaut, box, lm))
    changed = np.abs(hand - before).sum(-1) > 0  # a flat fill of the face's own colour: changed, not always by much
    ys, xs = np.nonzero(changed)
    assert ys.min() > 110 and ys.max() < 200 and 150 < xs.mean() < 260  # mouth and chin, not the eyes
    assert changed[140, 224] and not changed[101, 205]
    skin = before[120:129, 215:234].reshape(-1, 3).mean(0)
    assert np.abs(hand[150, 224] - skin).max() < 45  # skin-coloured, about the face's own
    side = np.abs(_arr(hand_from_the_side(astronaut, box, lm)) - before).sum(-1) > 0
    assert side[140, 224] and not side[101, 205] and not np.array_equal(side, changed)  # the mouth, another shape
    glasses = _arr(sunglasses(astronaut, box, lm))
    assert glasses[101, 205].max() < 60 and glasses[103, 247].max() < 60  # dark over each eye
    assert np.array_equal(glasses[140:, :], before[140:, :])  # the mouth is left as it was
    # without landmarks the occluders go where an upright face has them
    assert np.abs(_arr(hand_over_mouth(astronaut, box)) - before).sum(-1)[150, 224] > 30


def test_camera_model_loses_detail_adds_noise_and_is_repeatable(photo):
    from selfiemask.augment import CAMERA_CONDITIONS, camera

    def detail(img):
        return np.abs(np.diff(_arr(img), axis=1)).mean()

    small, bigger = camera(photo, 24, 120), camera(photo, 64, 120)
    assert small.size == photo.size and detail(small) < detail(bigger) < detail(photo)
    assert np.array_equal(_arr(camera(photo, 24, 120, seed=3)), _arr(camera(photo, 24, 120, seed=3)))
    flat = Image.new("RGB", (200, 200), (120, 120, 120))
    assert _arr(camera(flat, 40, 100)).std() > 0.5  # sensor noise survives on a flat grey wall
    assert list(CAMERA_CONDITIONS) == ["camera 24 px", "camera 40 px", "camera 64 px"]


def test_training_occluders_do_not_predict_the_label():
    """Hand and sunglasses equally often on both classes; the hand over the mouth only on unmasked faces."""
    from fastai.vision.core import PILImage

    from selfiemask.augment import OccludeFaces

    crop = PILImage.create(np.full((140, 140, 3), 200, np.uint8))
    occlude = OccludeFaces(p=0.5, unmasked=1, seed=0)
    # per label: [hand over mouth and chin (rows 95+), hand on the forehead (rows < 45), sunglasses (eye rows)]
    hits = {0: [0, 0, 0], 1: [0, 0, 0]}
    for i in range(400):
        label = i % 2
        out = _arr(occlude((crop, label), split_idx=0)[0])
        diff = np.abs(out - 200).sum(-1) > 30
        hits[label][0] += int(diff[95:, :].any())
        hits[label][1] += int(diff[:45, :].any())
        hits[label][2] += int((out[52:62, 40:60].max(-1) < 80).any())  # dark lenses, not the hand
    assert hits[0][0] == 0 and hits[1][1] == 0  # over a mask: never; over an unmasked mouth: never the forehead
    assert abs(hits[1][0] - hits[0][1]) < 30 and 60 < hits[1][0] < 140  # the hand as often on both classes
    assert abs(hits[0][2] - hits[1][2]) < 30 and 60 < hits[0][2] < 140  # sunglasses too
    assert np.array_equal(_arr(occlude((crop, 1), split_idx=1)[0]), _arr(crop))  # validation: untouched


def test_masked_hand_chin_puts_half_the_masked_hands_below_the_mouth_and_leaves_unmasked_faces_alone():
    """``--masked-hand chin``: on a masked face the hand goes low over the chin half the time, its top below the
    mouth (the mask between nose and mouth still shows), else on the forehead; unmasked faces get the same hand
    as before."""
    from fastai.vision.core import PILImage

    from selfiemask.augment import OccludeFaces

    crop = PILImage.create(np.full((140, 140, 3), 200, np.uint8))
    # this crop's face (augment._face_points): eyes at row 58, nose 76, mouth corners 94; lenses above row 70

    def hand_rows(out: np.ndarray) -> np.ndarray:
        skin = (np.abs(out - 200).sum(-1) > 30) & (out.max(-1) >= 80)  # the hand, not the dark lenses
        return np.flatnonzero(skin[70:].any(1)) + 70

    low = 0
    chin = OccludeFaces(p=1.0, unmasked=1, seed=3, masked_hand="chin")
    for _ in range(200):
        rows = hand_rows(_arr(chin((crop, 0), split_idx=0)[0]))
        if len(rows) and rows.max() > 94:  # a hand on the chin: nothing of it over the mask above the mouth
            assert rows.min() > 94
            low += 1
    assert 70 < low < 130
    forehead = OccludeFaces(p=1.0, unmasked=1, seed=3)
    assert not any(hand_rows(_arr(forehead((crop, 0), split_idx=0)[0])).max(initial=0) > 94 for _ in range(100))
    for s in range(20):
        a = OccludeFaces(p=0.5, seed=s)((crop, 1), split_idx=0)[0]
        b = OccludeFaces(p=0.5, seed=s, masked_hand="chin")((crop, 1), split_idx=0)[0]
        assert np.array_equal(_arr(a), _arr(b))
    with pytest.raises(ValueError, match="masked_hand"):
        OccludeFaces(masked_hand="cheek")


def test_a_seeded_hand_is_drawn_in_the_order_earlier_runs_drew_it():
    """A seeded recipe is the same run only while its random draws come in the same order: the shift, three
    jitters, whether to draw the hand, its angle, its scale, its texture, then the sunglasses. The order was
    once swapped (scale before angle), and *tex* run again at its seed became another model (docs/accuracy.md)."""
    import random

    from fastai.vision.core import PILImage

    from selfiemask.augment import OccludeFaces, hand_over_mouth, sunglasses

    crop = PILImage.create(np.full((140, 140, 3), 200, np.uint8))
    for hand in ("flat", "textured"):
        for label in (0, 1):  # masked: the hand on the forehead; unmasked: over the mouth
            occlude = OccludeFaces(p=1.0, unmasked=1, seed=11, hand=hand)
            r = random.Random(11)
            shift = r.randint(-25, 10)
            jitter = tuple(shift + r.randint(-5, 5) for _ in range(3))
            r.random()  # the hand is drawn (p 1)
            angle, scale = r.uniform(-35, 35), r.uniform(0.8, 1.25)
            texture = r.randrange(2**31) if hand == "textured" else None
            k = crop.width / (1 + 2 * occlude.margin)
            box = (occlude.margin * k, occlude.margin * k, occlude.margin * k + k, occlude.margin * k + k)
            want = hand_over_mouth(crop.convert("RGB"), box, jitter=jitter, offset=1.7 if label == 0 else 0.0,
                                   angle=angle, scale=scale, texture_seed=texture)
            r.random()  # the sunglasses are drawn (p 1)
            want = sunglasses(want, box, shade=r.randint(10, 50))
            assert np.array_equal(_arr(occlude((crop, label), split_idx=0)[0]), np.asarray(want)), (hand, label)


def test_phone_conditions_camera_is_off_unless_asked(photo):
    from fastai.vision.core import PILImage

    img = PILImage.create(photo)
    a, b = PhoneConditions(p=0.15, seed=5), PhoneConditions(p=0.15, seed=5, camera_p=0.0)
    assert all(np.array_equal(_arr(a(img, split_idx=0)), _arr(b(img, split_idx=0))) for _ in range(20))
    cam = PhoneConditions(p=0.0, seed=1, camera_p=1.0)
    assert not np.array_equal(_arr(cam(img, split_idx=0)), _arr(photo))


def test_benchmark_variants_apply_each_condition_where_it_belongs(astronaut):
    from selfiemask.faces import Face

    bench = _benchmark()
    face = Face((178, 57, 273, 177), 0.99, ((205.0, 101.0), (247.0, 103.0), (224.0, 129.0), (202.0, 138.0),
                                            (244.0, 141.0)))
    unmasked = bench.variants(astronaut, face, "without_mask")
    masked = bench.variants(astronaut, face, "with_mask")
    assert list(unmasked) == bench.ORDER
    assert "hand over mouth" not in masked and "sunglasses" in masked
    assert "hand from the side (untrained shape)" in unmasked and "hand from the side (untrained shape)" not in masked
    nothing = bench.variants(astronaut, None, "without_mask", ["as is", *bench.GROUPS["occlusion"], "rolled +30°"])
    assert list(nothing) == ["as is", "rolled +30°"]


def test_training_draws_occluders_before_the_random_crop_moves_the_face():
    """The occluders are placed where the crop pass put the face, so they run before fastai's random crop;
    the unmasked class is the vocab's last for two and three classes alike."""
    from selfiemask.augment import OccludeFaces
    from selfiemask.data import THREE_CLASSES, item_transforms
    from selfiemask.settings import default

    tfms = sorted(item_transforms(64, occlude_p=0.1, camera_p=0.15), key=lambda t: t.order)
    assert [type(t).__name__ for t in tfms] == ["OccludeFaces", "RandomResizedCrop", "PhoneConditions"]
    assert tfms[0].p == 0.1 and tfms[0].unmasked == 1 and tfms[2].camera_p == 0.15
    three = [t for t in item_transforms(64, 0.1, classes=THREE_CLASSES) if isinstance(t, OccludeFaces)]
    assert three[0].unmasked == THREE_CLASSES.index("without_mask") == 2
    # off by default (the shipped recipe): no occluder transform at all, the camera model not drawn
    off = item_transforms(64)
    assert default("occlude_p") == default("camera_p") == 0
    assert not any(isinstance(t, OccludeFaces) for t in off) and off[-1].camera_p == 0


def test_stress_benchmark_reuses_kept_detections_and_refuses_other_settings(astronaut, rule_face_model, tmp_path):
    """--detections: a second run detects nothing and gives the same figures; another detector's file is not used."""
    from selfiemask.data import is_valid_item
    from selfiemask.faces import RECOMMENDED

    bench = _benchmark()
    photos = tmp_path / "photos"
    for c, label in enumerate(("with_mask", "without_mask")):
        (photos / label).mkdir(parents=True)
        names = (f"astro{i}.jpg" for i in range(1000))
        kept = [n for n in names if is_valid_item(photos / label / n)][:2]
        for k, n in enumerate(kept):  # two photos a class, no two alike (the file's sha256 is the key)
            astronaut.rotate(4 * k + 2 * c).save(photos / label / n, quality=90)
    cache = tmp_path / "detections.json"
    args = dict(models=[("rule", rule_face_model, False)], progress=False, conditions=["rolled +90°", "sunglasses"])
    fresh = bench.run(photos, **args)
    first = bench.run(photos, **args, detections=cache)
    header = json.loads(cache.read_text())["header"]
    assert len(json.loads(cache.read_text())["entries"]) == 4 * 3  # as is, rolled, sunglasses of 4 photos
    calls = []
    original = bench.FaceDetector.detect
    bench.FaceDetector.detect = lambda self, img: calls.append(1) or original(self, img)
    try:
        second = bench.run(photos, **args, detections=cache)
        assert calls == []  # nothing detected again
        assert second["conditions"] == first["conditions"] == fresh["conditions"]
        assert second["conditions"]["as is"]["faces_found"] == 1.0
        # a file from other detector settings is detected anew and rewritten with these settings
        data = json.loads(cache.read_text())
        data["header"]["detector"]["min_prob"] = RECOMMENDED.min_prob + 0.1
        cache.write_text(json.dumps(data))
        bench.run(photos, **args, detections=cache)
        assert len(calls) >= 4 and json.loads(cache.read_text())["header"] == header
    finally:
        bench.FaceDetector.detect = original
    # every model with and without the orientation check, from the same kept detections
    both = bench.run(photos, **args, detections=cache, orient="both")
    assert set(both["models"]) == {"rule", "rule oriented"} and both["models"]["rule oriented"]["orient"]
    for r in both["conditions"].values():  # RetinaFace is as sure of the astronaut upright: nothing changes
        assert r["models"]["rule"]["accuracy"] == r["models"]["rule oriented"]["accuracy"]



def test_quarter_turns_are_for_training_only_and_off_by_default(photo):
    from fastai.vision.core import PILImage

    from selfiemask.augment import TurnQuarter
    from selfiemask.data import item_transforms

    img = PILImage.create(photo)
    always = TurnQuarter(p=1.0, seed=0)
    turns = set()
    for _ in range(20):
        out = _arr(always(img, split_idx=0))
        if np.array_equal(out, _arr(photo.transpose(Image.Transpose.ROTATE_90))):
            turns.add(90)
        elif np.array_equal(out, _arr(photo.transpose(Image.Transpose.ROTATE_270))):
            turns.add(-90)
    assert turns == {90, -90}  # a quarter either way, nothing else
    assert np.array_equal(_arr(always(img, split_idx=1)), _arr(photo))  # validation and inference: untouched
    some = TurnQuarter(p=0.2, seed=1)
    turned = sum(not np.array_equal(_arr(some(img, split_idx=0)), _arr(photo)) for _ in range(300))
    assert 30 < turned < 90, turned
    assert not any(isinstance(t, TurnQuarter) for t in item_transforms(64))  # the shipped recipe has none
    on = sorted(item_transforms(64, turn_p=0.1), key=lambda t: t.order)
    assert isinstance(on[-1], TurnQuarter) and on[-1].p == 0.1  # last: on the final square crop


def test_rolled_crops_keep_their_size_and_centre_and_have_no_black_corners(photo):
    """``roll_crop``: the face turned about the crop's centre, its corners mirrored from the crop; ``RollFaces``
    only in training, off in the shipped recipe."""
    from fastai.vision.core import PILImage

    from selfiemask.augment import RollFaces, roll_crop
    from selfiemask.data import item_transforms

    square = photo.convert("RGB").crop((0, 0, min(photo.size), min(photo.size))).resize((96, 96))
    out = roll_crop(square, 45)
    assert out.size == square.size
    arr, src = _arr(out).astype(int), _arr(square).astype(int)
    corners = arr[:12, :12].reshape(-1, 3), arr[-12:, -12:].reshape(-1, 3)
    assert all(c.mean() > 20 for c in corners) or src[:12, :12].mean() <= 20  # mirrored, not a black fill
    back = _arr(roll_crop(out, -45)).astype(int)
    mid = slice(30, 66)
    assert np.abs(back[mid, mid] - src[mid, mid]).mean() < 12  # turned about the centre: it comes back
    assert np.abs(arr[mid, mid] - src[mid, mid]).mean() > np.abs(back[mid, mid] - src[mid, mid]).mean()
    img = PILImage.create(square)
    always = RollFaces(p=1.0, seed=0)
    assert not np.array_equal(_arr(always(img, split_idx=0)), _arr(square))
    assert np.array_equal(_arr(always(img, split_idx=1)), _arr(square))  # validation and inference: untouched
    assert not any(isinstance(t, RollFaces) for t in item_transforms(64))
    assert any(isinstance(t, RollFaces) and t.p == 0.2 for t in item_transforms(64, roll_p=0.2))


def test_textured_hand_is_shaded_grainy_and_shows_the_face_between_fingers(astronaut):
    """Training's textured hand: not the flat palm of the benchmark, the same place, the face seen through gaps."""
    from selfiemask.augment import hand_over_mouth

    box = (178, 57, 273, 177)
    lm = ((205.0, 101.0), (247.0, 103.0), (224.0, 129.0), (202.0, 138.0), (244.0, 141.0))
    before = _arr(astronaut)
    flat = _arr(hand_over_mouth(astronaut, box, lm))
    tex = _arr(hand_over_mouth(astronaut, box, lm, texture_seed=3))
    flat_hand = np.abs(flat - before).sum(-1) > 0
    tex_hand = np.abs(tex - before).sum(-1) > 0
    inside = flat_hand & tex_hand
    assert inside.sum() > 0.8 * tex_hand.sum()  # the same place, about the same shape
    pairs = inside[:, 1:] & inside[:, :-1]  # neighbours both on the hand: a flat palm's are equal but at creases

    def grain(arr):
        return float(np.median(np.abs(np.diff(arr, axis=1)).sum(-1)[pairs]))

    assert grain(flat) == 0 and grain(tex) >= 1  # shaded and grainy, not one colour
    gaps = flat_hand & ~tex_hand  # inside the palm's outline, the photo itself
    assert gaps.sum() > 20
    assert np.array_equal(tex, _arr(hand_over_mouth(astronaut, box, lm, texture_seed=3)))  # seeded: repeatable


def test_a_textured_hand_is_never_brightened_afterwards(photo):
    """OccludeFaces marks its crop, the mark survives fastai's random crop, PhoneConditions keeps it dim or as is."""
    from fastai.vision.all import RandomResizedCrop
    from fastai.vision.core import PILImage

    from selfiemask.augment import HandDrawn, OccludeFaces

    square = PILImage.create(photo.convert("RGB").resize((140, 140)))
    marked = OccludeFaces(p=1.0, unmasked=1, seed=0, hand="textured")((square, 1), split_idx=0)[0]
    assert isinstance(marked, HandDrawn)
    assert isinstance(RandomResizedCrop(64, min_scale=0.5)(marked, split_idx=0), HandDrawn)
    assert not isinstance(OccludeFaces(p=1.0, unmasked=1, seed=0)((square, 1), split_idx=0)[0], HandDrawn)  # flat
    unlit = OccludeFaces(p=1.0, unmasked=1, seed=0, hand="unlit")((square, 1), split_idx=0)[0]
    assert isinstance(unlit, HandDrawn)  # the flat palm, never brightened either
    with pytest.raises(ValueError, match="hand: one of"):
        OccludeFaces(hand="glove")

    def brightest(img, seed):
        phone = PhoneConditions(p=1.0, seed=seed)
        # every condition at once but JPEG's and blur's small changes: only exposure can brighten a crop this much
        return max(_arr(phone(img, split_idx=0)).mean() / _arr(img).mean() for _ in range(60))

    # (a copy: fastai's create casts the very image it is given)
    assert brightest(PILImage.create(marked.convert("RGB")), 1) > 1.2  # the same crop unmarked: brightened at times
    assert brightest(marked, 1) < 1.1


def test_filled_edges_fill_the_margin_flat_and_never_the_middle_of_the_face(photo):
    """``FilledEdges``: straight edges with flat fill beyond, over the margin only; both classes, training only."""
    from fastai.vision.core import PILImage

    from selfiemask.augment import CleanView, FilledEdges, filled_edges
    from selfiemask.data import item_transforms

    square = photo.convert("RGB").resize((140, 140))
    src = _arr(square)
    one = _arr(filled_edges(square, [(90, 0.5)], (10, 200, 30)))  # normal pointing down: the bottom band
    edge = round(70 + 0.5 * 140 / 1.4)  # half a face width below the centre: the face is the crop / 1.4
    assert (one[edge + 1:] == (10, 200, 30)).all() and np.array_equal(one[:edge - 1], src[:edge - 1])
    edges = FilledEdges(p=1.0, seed=0)
    img = PILImage.create(square.copy())  # (copies: fastai's create casts the very image it is given)
    yy, xx = np.mgrid[0:140, 0:140]
    middle = np.hypot(yy - 69.5, xx - 69.5) < 38  # eyes, nose, mouth: within 0.38 face widths of the centre
    changed = 0
    for i in range(200):
        out = edges((img, i % 2, CleanView.create(square.copy())), split_idx=0)
        assert isinstance(out[2], CleanView) and np.array_equal(_arr(out[2]), src)  # the teacher's copy untouched
        arr = _arr(out[0])
        assert np.array_equal(arr[middle], src[middle])
        changed += int(not np.array_equal(arr, src))
    assert changed > 190
    assert np.array_equal(_arr(edges((img, 0), split_idx=1)[0]), src)  # validation: untouched
    some = FilledEdges(p=0.3, seed=1)
    hits = [sum(not np.array_equal(_arr(some((img, y), split_idx=0)[0]), src) for _ in range(300)) for y in (0, 1)]
    assert all(60 < h < 120 for h in hits), hits  # at rate p, on both classes alike
    tfms = sorted(item_transforms(64, occlude_p=0.1, edge_p=0.2, hand="textured"), key=lambda t: t.order)
    assert [type(t).__name__ for t in tfms][:3] == ["OccludeFaces", "FilledEdges", "RandomResizedCrop"]
    assert tfms[0].hand == "textured" and tfms[1].p == 0.2
    assert not any(isinstance(t, FilledEdges) for t in item_transforms(64))  # off unless asked


def test_the_card_records_the_edges_the_hand_and_the_roll_fill_as_the_loaders_ran_them():
    from types import SimpleNamespace

    from selfiemask.data import item_transforms
    from selfiemask.training import _augmentation

    def record(**kw):
        fs = sorted(item_transforms(64, **kw), key=lambda t: t.order)
        return _augmentation(SimpleNamespace(train=SimpleNamespace(after_item=SimpleNamespace(fs=fs))))

    on = record(occlude_p=0.15, edge_p=0.1, hand="textured", roll_p=0.1, roll_fill="flat", masked_hand="chin")
    assert on["edge_p"] == 0.1 and on["hand"] == "textured" and on["occlude_p"] == 0.15 and on["roll_fill"] == "flat"
    assert on["masked_hand"] == "chin"
    off = record(occlude_p=0.15, roll_p=0.1)
    assert not {"edge_p", "hand", "roll_fill", "masked_hand"} & set(off)  # the recipes before them read as they did


def test_a_flat_roll_fills_the_corners_with_the_crops_mean_colour(photo):
    """``--roll-fill flat``: the corners as a rolled photo's padding looks (one colour, the crop's mean)."""
    from fastai.vision.core import PILImage

    from selfiemask.augment import RollFaces, roll_crop
    from selfiemask.data import item_transforms

    square = photo.convert("RGB").crop((0, 0, min(photo.size), min(photo.size))).resize((96, 96))
    mean = _arr(square).reshape(-1, 3).mean(0).astype(int)
    out = _arr(roll_crop(square, 45, flat=True)).astype(int)
    assert np.abs(out[:6, :6] - mean).max() <= 1 and np.abs(out[-6:, -6:] - mean).max() <= 1
    mirrored = _arr(roll_crop(square, 45)).astype(int)
    assert mirrored[:6, :6].reshape(-1, 3).std(0).mean() > 2  # the default: a mirror of the photo, not one colour
    flat = next(t for t in item_transforms(64, roll_p=0.1, roll_fill="flat") if isinstance(t, RollFaces))
    assert flat.flat and flat.p == 0.1
    assert not next(t for t in item_transforms(64, roll_p=0.1) if isinstance(t, RollFaces)).flat
    rolled_crop = _arr(RollFaces(p=1.0, seed=0, flat=True)(PILImage.create(square.copy()), split_idx=0)).astype(int)
    assert np.abs(rolled_crop[:3, :3] - mean).max() <= 1 or np.abs(rolled_crop[:3, -3:] - mean).max() <= 1


def test_the_command_line_offers_every_hand_style():
    from selfiemask.augment import HAND_STYLES, MASKED_HAND_PLACES
    from selfiemask.settings import TrainConfig

    hand = next(f for f in __import__("dataclasses").fields(TrainConfig) if f.name == "hand")
    assert tuple(hand.metadata["choices"]) == HAND_STYLES and hand.default in HAND_STYLES
    place = next(f for f in __import__("dataclasses").fields(TrainConfig) if f.name == "masked_hand")
    assert tuple(place.metadata["choices"]) == MASKED_HAND_PLACES and place.default == MASKED_HAND_PLACES[0]
