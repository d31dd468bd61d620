"""`selfiemask predict` on good and bad files, through the real command."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest
from conftest import jpeg_bytes, noise_image
from PIL import Image

from selfiemask.synthetic import mask_like


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    import random

    d = tmp_path_factory.mktemp("mixed")
    rng = random.Random(5)
    good = mask_like(64, True, rng)
    good.save(d / "good.jpg")
    (d / "sub").mkdir()
    mask_like(64, False, rng).save(d / "sub" / "nested.png")
    data = jpeg_bytes(noise_image((200, 200)), quality=95)
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "corrupt.jpg").write_bytes(data[:400] + b"\xff\xd9" * 50 + data[500:])
    (d / "text.jpg").write_text("not a photo")
    (d / "empty.jpg").write_bytes(b"")
    rgba = good.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "alpha.png")
    good.convert("CMYK").save(d / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    good.transpose(Image.Transpose.ROTATE_90).save(d / "rotated.jpg", exif=exif.tobytes(), quality=95)
    return d


def test_csv_on_good_and_bad_files(tiny_model, mixed_folder):
    res = run_cli("predict", "--model", tiny_model, "--csv", mixed_folder)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0].keys())[:4] == ["path", "label", "confidence", "error"]
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert set(by_name) == {"good.jpg", "nested.png", "truncated.jpg", "corrupt.jpg", "text.jpg", "empty.jpg",
                            "alpha.png", "cmyk.jpg", "rotated.jpg"}
    reasons = {"truncated.jpg": "truncated", "corrupt.jpg": "corrupt", "text.jpg": "not an image",
               "empty.jpg": "empty"}
    for name, reason in reasons.items():
        assert by_name[name]["label"] == "error" and reason in by_name[name]["error"], by_name[name]
    for name in ("good.jpg", "nested.png", "alpha.png", "cmyk.jpg", "rotated.jpg"):
        r = by_name[name]
        assert r["label"] in {"with_mask", "without_mask"} and not r["error"], r
        assert 0.0 <= float(r["confidence"]) <= 1.0
        assert r["judged_on"] == "whole_image"  # this model was trained on whole images
    # The stored-sideways copy is classified upright: the same verdict as the original.
    assert by_name["rotated.jpg"]["label"] == by_name["good.jpg"]["label"]
    assert float(by_name["rotated.jpg"]["confidence"]) == pytest.approx(float(by_name["good.jpg"]["confidence"]),
                                                                         abs=0.02)
    assert "4 of 9 file(s) could not be read" in res.stderr


def test_missing_model_is_a_clear_error(tmp_path, mixed_folder):
    res = run_cli("predict", "--model", tmp_path / "none.pkl", mixed_folder / "good.jpg")
    assert res.returncode == 2 and "model file not found" in res.stderr and "Traceback" not in res.stderr


def test_model_not_matching_its_card_is_refused(tiny_model, tmp_path, mixed_folder):
    import shutil

    bad = tmp_path / "export.pkl"
    shutil.copy(tiny_model.with_suffix(".json"), bad.with_suffix(".json"))
    bad.write_bytes(tiny_model.read_bytes()[:-10] + b"0123456789")
    res = run_cli("predict", "--model", bad, mixed_folder / "good.jpg")
    assert res.returncode == 2 and "does not match its model card" in res.stderr


def test_plain_output_is_readable(tiny_model, mixed_folder):
    import re

    good, text = mixed_folder / "good.jpg", mixed_folder / "text.jpg"
    res = run_cli("predict", "--model", tiny_model, good, text)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2, res.stdout  # one line per photo, in the order given
    verdict = re.fullmatch(re.escape(f"{good}: ") + r"(with_mask|without_mask) (\d{1,3}\.\d)% "
                           r"\(0 face\(s\), judged on whole image\)", lines[0])
    assert verdict, lines[0]
    csv_row = next(csv.DictReader(io.StringIO(run_cli("predict", "--model", tiny_model, "--csv", good).stdout)))
    assert verdict[1] == csv_row["label"] and float(verdict[2]) == pytest.approx(float(csv_row["confidence"]) * 100,
                                                                                   abs=0.051)
    assert lines[1] == f"{text}: error: not an image (format not recognised)"
    assert "1 of 2 file(s) could not be read" in res.stderr


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
