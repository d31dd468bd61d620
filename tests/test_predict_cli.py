"""`selfiemask predict` on good and bad files, through the real command, with the hand-set rule model.

Every verdict asserted here is one the rule model's weights fix (``tests/rule_model.py``), not one a trained
model happened to give on the machine where the test was written.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys

import pytest
from conftest import jpeg_bytes, noise_image
from PIL import Image
from rule_model import GREEN, RED, UNSURE_GREY, rule_verdict

from selfiemask.predict import PREDICT_FIELDS
from selfiemask.verdicts import MIN_CONFIDENCE


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def red_photo(size=(80, 60)) -> Image.Image:
    """A red photo with a dark patch in one corner: the rule model says with_mask, and a rotation shows."""
    img = Image.new("RGB", size, RED)
    img.paste((110, 20, 20), (0, 0, size[0] // 3, size[1] // 3))
    return img


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    good = red_photo()
    good.save(d / "good.jpg", quality=95)
    (d / "sub").mkdir()
    Image.new("RGB", (64, 64), GREEN).save(d / "sub" / "nested.png")
    Image.new("RGB", (64, 64), UNSURE_GREY).save(d / "unsure.png")
    data = jpeg_bytes(noise_image((200, 200)), quality=95)
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "corrupt.jpg").write_bytes(data[:400] + b"\xff\xd9" * 50 + data[500:])
    (d / "text.jpg").write_text("not a photo")
    (d / "empty.jpg").write_bytes(b"")
    rgba = good.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "alpha.png")
    good.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer turns it 90 degrees clockwise, back to ``good``
    good.transpose(Image.Transpose.ROTATE_90).save(d / "rotated.jpg", exif=exif.tobytes(), quality=95)
    return d


def test_exif_rotated_copy_loads_upright(mixed_folder):
    """On pixels, not on a model: the loaded sideways copy equals the loaded original within JPEG noise."""
    import numpy as np

    from selfiemask.images import load_image

    original = np.asarray(load_image(mixed_folder / "good.jpg"), dtype=np.float32)
    rotated = np.asarray(load_image(mixed_folder / "rotated.jpg"), dtype=np.float32)
    assert rotated.shape == original.shape == (60, 80, 3)
    assert np.abs(rotated - original).mean() < 3, np.abs(rotated - original).mean()
    # ...and the test can fail: the bytes as stored are the other way round.
    assert Image.open(mixed_folder / "rotated.jpg").size == (60, 80)


def test_csv_on_good_and_bad_files(rule_model, mixed_folder):
    res = run_cli("predict", "--model", rule_model, "--csv", mixed_folder)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0].keys()) == PREDICT_FIELDS
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert set(by_name) == {"good.jpg", "nested.png", "unsure.png", "truncated.jpg", "corrupt.jpg", "text.jpg",
                            "empty.jpg", "alpha.png", "cmyk.jpg", "rotated.jpg"}
    reasons = {"truncated.jpg": "truncated", "corrupt.jpg": "corrupt", "text.jpg": "not an image",
               "empty.jpg": "empty"}
    for name, reason in reasons.items():
        r = by_name[name]
        assert r["label"] == "error" and reason in r["error"] and r["confidence"] == r["uncertain"] == "", r
    # The rule model: red reads with_mask, green without_mask, surely; the greyish one is a guess, "not sure".
    expected = {"good.jpg": "with_mask", "alpha.png": "with_mask", "cmyk.jpg": "with_mask",
                "rotated.jpg": "with_mask", "nested.png": "without_mask", "unsure.png": "with_mask"}
    for name, label in expected.items():
        r = by_name[name]
        assert (r["label"], r["error"], r["faces"], r["judged_on"]) == (label, "", "0", "whole_image"), r
        assert r["uncertain"] == ("1" if name == "unsure.png" else "0"), r
    assert float(by_name["nested.png"]["confidence"]) == pytest.approx(rule_verdict(GREEN)[1], abs=1e-4)
    assert float(by_name["unsure.png"]["confidence"]) == pytest.approx(rule_verdict(UNSURE_GREY)[1], abs=1e-4)
    # The stored-sideways copy is classified upright: the same pixels, so the same verdict.
    assert float(by_name["rotated.jpg"]["confidence"]) == pytest.approx(float(by_name["good.jpg"]["confidence"]),
                                                                         abs=0.005)
    assert "4 of 10 file(s) could not be read" in res.stderr


def test_missing_model_is_a_clear_error(tmp_path, mixed_folder):
    res = run_cli("predict", "--model", tmp_path / "none.pkl", mixed_folder / "good.jpg")
    assert res.returncode == 2 and "model file not found" in res.stderr and "Traceback" not in res.stderr


def test_model_not_matching_its_card_is_refused(rule_model, tmp_path, mixed_folder):
    import shutil

    bad = tmp_path / "export.pkl"
    shutil.copy(rule_model.with_suffix(".json"), bad.with_suffix(".json"))
    bad.write_bytes(rule_model.read_bytes()[:-10] + b"0123456789")
    res = run_cli("predict", "--model", bad, mixed_folder / "good.jpg")
    assert res.returncode == 2 and "does not match its model card" in res.stderr


#: Every form a plain line takes: ``with_mask 97.3%``, ``not sure (without_mask 60.1%)``, then what was judged.
PLAIN = re.compile(r"(?P<path>.+?): (?:(?P<label>\w+) (?P<pct>\d{1,3}\.\d)%|not sure \((?P<ulabel>\w+) "
                   r"(?P<upct>\d{1,3}\.\d)%\)) \((?P<faces>\d+) face\(s\), judged on (?P<on>whole image|largest face)"
                   r"(?:; the faces disagree: [^)]*)?\)")
ERROR = re.compile(r"(?P<path>.+?): error: (?P<error>.+)")


def parse_plain(line: str) -> dict:
    """A plain output line as the CSV row it stands for (label, confidence in %, uncertain, faces, judged_on)."""
    if m := ERROR.fullmatch(line):
        return {"path": m["path"], "label": "error", "error": m["error"]}
    m = PLAIN.fullmatch(line)
    assert m, f"not a form the product prints: {line!r}"
    unsure = m["ulabel"] is not None
    return {"path": m["path"], "label": m["ulabel"] if unsure else m["label"],
            "pct": float(m["upct"] if unsure else m["pct"]), "uncertain": str(int(unsure)), "faces": m["faces"],
            "judged_on": m["on"].replace(" ", "_")}


@pytest.mark.parametrize("model", ["rule_model", "rule_face_model"])
def test_plain_output_is_readable_and_agrees_with_the_csv(request, model, mixed_folder):
    model = request.getfixturevalue(model)
    files = [mixed_folder / n for n in ("good.jpg", "unsure.png", "sub/nested.png", "text.jpg")]
    res = run_cli("predict", "--model", model, *files)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [parse_plain(line)["path"] for line in lines] == list(map(str, files))  # one line each, in order
    rows = list(csv.DictReader(io.StringIO(run_cli("predict", "--model", model, "--csv", *files).stdout)))
    for line, row in zip(lines, rows):
        said = parse_plain(line)
        assert said["label"] == row["label"], (line, row)
        if row["label"] == "error":
            assert said["error"] == row["error"]
            continue
        assert said["pct"] == pytest.approx(float(row["confidence"]) * 100, abs=0.051), (line, row)
        assert (said["uncertain"], said["faces"], said["judged_on"]) == (row["uncertain"], row["faces"],
                                                                        row["judged_on"]), (line, row)
    said = [parse_plain(line) for line in lines]
    # Whole-image model: red and green are sure, the greyish one is not. Face model: no face in any of them,
    # so every verdict is the whole-image fallback, and none is sure whatever the probability.
    face_model = model.parent.name.startswith("rule_faces")
    assert [s["uncertain"] for s in said[:3]] == (["1", "1", "1"] if face_model else ["0", "1", "0"])
    assert said[0]["pct"] > MIN_CONFIDENCE * 100 and said[2]["pct"] > MIN_CONFIDENCE * 100
    assert lines[3] == f"{files[3]}: error: not an image (format not recognised)"
    assert "1 of 4 file(s) could not be read" in res.stderr


# -- no face found: never a confident verdict ------------------------------------------------------------
def no_face_photos(folder) -> dict[str, Image.Image]:
    """Photos in which no face can be found, each red enough that the rule model is over 95% sure of with_mask."""
    from PIL import ImageDraw

    landscape = Image.new("RGB", (480, 320), (220, 60, 50))  # a red sunset sky
    draw = ImageDraw.Draw(landscape)
    draw.ellipse((300, 60, 380, 140), fill=(250, 120, 60))  # the sun
    draw.polygon([(0, 320), (0, 220), (120, 170), (260, 230), (400, 180), (480, 210), (480, 320)],
                 fill=(150, 30, 30))  # hills against it
    photos = {"blank.jpg": Image.new("RGB", (400, 300), RED), "landscape.jpg": landscape,
              "strip.png": Image.new("RGB", (3000, 10), RED)}
    for name, img in photos.items():
        img.save(folder / name)
    return photos


@pytest.mark.parametrize("per_face", [False, True])
def test_no_face_found_is_never_a_confident_verdict(rule_face_model, rule_model, tmp_path, per_face):
    no_face_photos(tmp_path)
    res = run_cli("predict", "--model", rule_face_model, "--csv", *(["--faces"] if per_face else []), tmp_path)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == ["blank.jpg", "landscape.jpg", "strip.png"]
    for r in rows:
        # The model is sure (over the threshold), and the row still says "uncertain": no face was found.
        assert r["label"] == "with_mask" and float(r["confidence"]) > MIN_CONFIDENCE, r
        assert r["uncertain"] == "1", r
        assert (r["face"] == "none") if per_face else (r["judged_on"] == "whole_image" and r["faces"] == "0")
    plain = run_cli("predict", "--model", rule_face_model, *(["--faces"] if per_face else []), tmp_path)
    assert all(": not sure (with_mask " in line for line in plain.stdout.splitlines()), plain.stdout
    # A whole-image model looks for no face: its whole-image verdict is its finding, stated as such.
    sure = list(csv.DictReader(io.StringIO(run_cli("predict", "--model", rule_model, "--csv", tmp_path).stdout)))
    assert [r["uncertain"] for r in sure] == ["0", "0", "0"], sure


# -- python -OO strips docstrings: every command still works -----------------------------------------------
@pytest.mark.parametrize("module, args", [("selfiemask", ["--help"]), ("selfiemask", ["clean", "--help"]),
                                          ("selfiemask", ["predict", "--help"]), ("scrape", ["--help"]),
                                          ("scrape", ["forget", "--help"])])
def test_help_works_under_python_OO(module, args):
    res = subprocess.run([sys.executable, "-OO", "-m", module, *args], capture_output=True, text=True)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout.startswith("usage: ")
    if args == ["--help"] and module == "scrape":
        assert "python -m scrape forget CODE_OR_URL" in res.stdout and "Exit status: 0 done" in res.stdout
    if args == ["clean", "--help"]:
        assert "selfiemask clean verify" in res.stdout


def test_predict_works_under_python_OO(rule_face_model, mixed_folder):
    files = [mixed_folder / "good.jpg", mixed_folder / "text.jpg"]
    res = subprocess.run([sys.executable, "-OO", "-m", "selfiemask", "predict", "--model", str(rule_face_model),
                          "--csv", *map(str, files)], capture_output=True, text=True)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["label"] for r in rows] == ["with_mask", "error"] and rows[0]["uncertain"] == "1"


def test_disagreement_names_each_verdict_only_when_faces_differ():
    from selfiemask.verdicts import disagreement

    assert disagreement([]) == "" and disagreement(["with_mask"]) == ""
    assert disagreement(["without_mask", "without_mask"]) == ""
    assert disagreement(["with_mask", "without_mask", "with_mask"]) == "2 with_mask, 1 without_mask"


def test_a_group_whose_faces_disagree_says_so_and_points_to_faces(tmp_path):
    """The app's two samples side by side (the shipped model: one masked face, one not), and one sample alone."""
    from selfiemask.paths import SAMPLES

    masked, bare = Image.open(SAMPLES / "mask.jpg"), Image.open(SAMPLES / "no_mask.jpg")
    group = Image.new("RGB", (masked.width + bare.width, max(masked.height, bare.height)), "white")
    group.paste(masked, (0, 0))
    group.paste(bare, (masked.width, 0))
    group.save(tmp_path / "group.jpg", quality=95)
    done = run_cli("predict", tmp_path / "group.jpg", SAMPLES / "mask.jpg")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert "(2 face(s), judged on largest face; the faces disagree: 1 " in lines[str(tmp_path / "group.jpg")]
    assert {"1 with_mask", "1 without_mask"} <= set(lines[str(tmp_path / "group.jpg")].rstrip(")").split(": ")[-1]
                                                   .split(", "))
    assert lines[str(SAMPLES / "mask.jpg")].endswith("(1 face(s), judged on largest face)")
    note = done.stderr.strip().splitlines()[-1]
    assert "in 1 photo(s) the faces got different verdicts" in note and "--faces" in note
