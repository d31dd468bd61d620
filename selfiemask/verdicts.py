"""How a verdict is shown to people: wording, colour, and when to say "Not sure". Shared by app, video and CLI.

No widgets and no OpenCV here, so any front end can import it without the others' dependencies.

A verdict is only as good as the model's confidence in it: on the validation
photos, verdicts under :data:`MIN_CONFIDENCE` were right far less often than the
rest (``benchmarks/confidence.py`` prints the table this figure comes from, see
docs/app.md). Below it the app and the video say "Not sure" instead
of a confident label, and ``selfiemask predict`` marks the row ``uncertain``
(its ``label`` stays the model's class, so scripts reading the CSV keep working).
A face that the detector itself barely believes (score under
:data:`MIN_FACE_SCORE`) is "Not sure" for the same reason. And when the detector
found no face at all, the whole photo is judged as a fallback, not a finding: a
blank wall, a landscape or a 3000x10 strip gets the model's guess, marked "Not
sure" whatever its probability (``no_face``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["COLOURS", "DEFAULT_COLOUR", "LABELS", "MIN_CONFIDENCE", "MIN_FACE_SCORE", "UNSURE", "UNSURE_COLOUR",
           "colour", "disagreement", "human_label", "is_uncertain", "shown_colour", "shown_label", "summary"]

LABELS = {"with_mask": "Mask on", "without_mask": "No mask", "incorrect_mask": "Mask worn incorrectly"}
COLOURS = {"with_mask": "#2e7d32", "without_mask": "#c62828", "incorrect_mask": "#ef8f00"}
#: For a class the model knows but this table does not.
DEFAULT_COLOUR = "#1565c0"

#: What an uncertain verdict reads, and its colour (grey: neither the mask green nor the no-mask red).
UNSURE = "Not sure"
UNSURE_COLOUR = "#616161"
#: Below this probability of its class a verdict is "Not sure". Measured by benchmarks/confidence.py on the
#: 936 validation photos, as they are and under 9 phone conditions, shipped model and distilled candidate
#: pooled: verdicts at 0.95-0.99 were right 94.3% of the time, at 0.90-0.95 81.2%, under 0.90 at most 74.5%
#: (docs/app.md has the table).
MIN_CONFIDENCE = 0.95
#: A face the detector scored below this is "Not sure" whatever the classifier says. Measured the same way:
#: faces scored 0.5-0.6 were judged as well as faces scored 0.99+ (96.2% and 93.5%), so no cut above
#: RetinaFace's own (``DetectorSettings.min_score``, 0.5) is justified; it matters for a detector set lower.
MIN_FACE_SCORE = 0.5


def human_label(label: str) -> str:
    """The class as people read it ("Mask on"), whatever the confidence."""
    return LABELS.get(label, label.replace("_", " ").capitalize())


def colour(label: str) -> str:
    """The class's colour as ``#rrggbb``."""
    return COLOURS.get(label, DEFAULT_COLOUR)


def disagreement(labels: Iterable[str]) -> str:
    """``""`` when a photo's faces agree; else how many faces got each label, e.g. ``"2 with_mask, 1 without_mask"``.

    A photo's verdict is its largest face's, which does not speak for a group in which some wear a mask and
    some do not: this says so.
    """
    counts = Counter(labels)
    return ", ".join(f"{n} {label}" for label, n in counts.most_common()) if len(counts) > 1 else ""


def is_uncertain(confidence: float, face_score: float | None = None, no_face: bool = False) -> bool:
    """True when the verdict should read "Not sure": a low confidence, a face the detector doubts, or no face.

    ``face_score`` None: no detector score to judge (a whole-image verdict, or a model without detector).
    ``no_face``: the detector looked and found no face, so this is the whole-image fallback: never confident.
    """
    return no_face or confidence < MIN_CONFIDENCE or (face_score is not None and face_score < MIN_FACE_SCORE)


def shown_label(label: str, confidence: float, face_score: float | None = None, no_face: bool = False) -> str:
    """What a person is told: the class in words, or "Not sure"."""
    return UNSURE if is_uncertain(confidence, face_score, no_face) else human_label(label)


def shown_colour(label: str, confidence: float, face_score: float | None = None, no_face: bool = False) -> str:
    """The colour of what a person is told: the class's, or grey for "Not sure"."""
    return UNSURE_COLOUR if is_uncertain(confidence, face_score, no_face) else colour(label)


def summary(verdicts: Iterable[tuple[str, float, float | None]]) -> str:
    """One line for a photo: "3 faces: 1 mask on, 2 no mask" (verdicts as ``(label, confidence, face_score)``).

    Counts go in the order of :data:`LABELS` (then any other class), "not sure" last.
    """
    counts: dict[str, int] = {}
    n = 0
    for label, confidence, score in verdicts:
        n += 1
        key = UNSURE if is_uncertain(confidence, score) else human_label(label)
        counts[key] = counts.get(key, 0) + 1
    order = [*LABELS.values(), *sorted(k for k in counts if k not in LABELS.values() and k != UNSURE), UNSURE]
    parts = [f"{counts[k]} {k.lower()}" for k in order if counts.get(k)]
    return f"{n} face{'' if n == 1 else 's'}: " + ", ".join(parts) if n else "no face"
