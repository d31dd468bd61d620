"""When a verdict reads "Not sure", the photo summary, and the `uncertain` mark of `selfiemask predict`."""

from __future__ import annotations

import pytest

from selfiemask import verdicts
from selfiemask.commands.predict import _print_row
from selfiemask.predict import FACE_FIELDS, PREDICT_FIELDS, FaceVerdict, PhotoResult, result_rows
from selfiemask.verdicts import MIN_CONFIDENCE, UNSURE, is_uncertain, shown_colour, shown_label, summary


def test_below_the_measured_confidence_is_not_sure():
    assert 0.5 < MIN_CONFIDENCE < 1  # two classes: a threshold at or under 0.5 would never say "Not sure"
    below, above = MIN_CONFIDENCE - 0.001, MIN_CONFIDENCE + 0.001
    assert is_uncertain(below) and not is_uncertain(above) and not is_uncertain(MIN_CONFIDENCE)
    assert shown_label("with_mask", below) == UNSURE and shown_label("with_mask", above) == "Mask on"
    assert shown_colour("with_mask", below) == verdicts.UNSURE_COLOUR != shown_colour("with_mask", above)


def test_a_doubtful_face_is_not_sure_whatever_the_confidence(monkeypatch):
    monkeypatch.setattr(verdicts, "MIN_FACE_SCORE", 0.9)
    assert is_uncertain(0.999, face_score=0.85)
    assert not is_uncertain(0.999, face_score=0.95)
    assert not is_uncertain(0.999, face_score=None)  # whole-image verdicts have no face score


def test_summary_counts_each_verdict_as_shown():
    sure, unsure = MIN_CONFIDENCE + 0.01, MIN_CONFIDENCE - 0.01
    assert summary([("with_mask", sure, None), ("without_mask", sure, None), ("without_mask", 0.999, None)]) == \
        "3 faces: 1 mask on, 2 no mask"
    assert summary([("without_mask", sure, None), ("with_mask", unsure, None)]) == "2 faces: 1 no mask, 1 not sure"
    assert summary([("incorrect_mask", sure, None)]) == "1 face: 1 mask worn incorrectly"
    assert summary([]) == "no face"


def photo(confidences: list[float]) -> PhotoResult:
    faces = [FaceVerdict("without_mask", c, {"with_mask": 1 - c, "without_mask": c}, (0, 0, 10, 10), 0.99)
             for c in confidences]
    return PhotoResult("p.jpg", faces=faces)


def test_csv_rows_mark_uncertain_and_keep_the_model_label():
    sure, unsure = MIN_CONFIDENCE + 0.01, MIN_CONFIDENCE - 0.01
    (row,) = result_rows(photo([unsure, sure]), per_face=False)  # the largest face (the first) decides
    # The CSV columns in order (a row may carry more for the plain output; the CSV writer ignores it).
    assert [k for k in row if k in PREDICT_FIELDS] == PREDICT_FIELDS and PREDICT_FIELDS[-1] == "uncertain"
    assert row["label"] == "without_mask" and row["uncertain"] == 1
    rows = result_rows(photo([unsure, sure]), per_face=True)
    assert [list(r) for r in rows] == [FACE_FIELDS] * 2
    assert [r["uncertain"] for r in rows] == [1, 0] and {r["label"] for r in rows} == {"without_mask"}
    (error,) = result_rows(PhotoResult("x.jpg", error="not an image"), per_face=False)
    assert error["uncertain"] == ""


@pytest.mark.parametrize("per_face", [False, True])
def test_plain_output_says_not_sure_with_the_guess(capsys, per_face):
    sure, unsure = MIN_CONFIDENCE + 0.01, MIN_CONFIDENCE - 0.01
    for row in result_rows(photo([unsure, sure]), per_face):
        _print_row(row, None, per_face)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"p.jpg: not sure (without_mask {unsure:.1%})")
    if per_face:
        assert lines[1].startswith(f"p.jpg: without_mask {sure:.1%} face 1")


def test_no_face_found_is_not_sure_whatever_the_confidence():
    assert is_uncertain(0.999, no_face=True) and not is_uncertain(0.999)
    assert shown_label("with_mask", 0.999, no_face=True) == UNSURE
    assert shown_colour("with_mask", 0.999, no_face=True) == verdicts.UNSURE_COLOUR
    searched = FaceVerdict("with_mask", 0.999, {"with_mask": 0.999, "without_mask": 0.001}, no_face=True)
    unsearched = FaceVerdict("with_mask", 0.999, {"with_mask": 0.999, "without_mask": 0.001})  # a whole-image model
    for per_face in (False, True):
        (row,) = result_rows(PhotoResult("wall.jpg", fallback=searched), per_face)
        assert row["uncertain"] == 1 and row["label"] == "with_mask" and row["confidence"] == "0.9990"
        assert result_rows(PhotoResult("wall.jpg", fallback=unsearched), per_face)[0]["uncertain"] == 0
