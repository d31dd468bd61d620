"""How a verdict is shown to people: wording and colour per class, shared by the app, the video and the CLI.

No widgets and no OpenCV here, so either front end can import it without the other's dependencies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["COLOURS", "DEFAULT_COLOUR", "LABELS", "colour", "disagreement", "human_label"]

LABELS = {"with_mask": "Mask on", "without_mask": "No mask", "incorrect_mask": "Mask worn incorrectly"}
COLOURS = {"with_mask": "#2e7d32", "without_mask": "#c62828", "incorrect_mask": "#ef8f00"}
#: For a class the model knows but this table does not.
DEFAULT_COLOUR = "#1565c0"


def human_label(label: str) -> str:
    return LABELS.get(label, label.replace("_", " ").capitalize())


def colour(label: str) -> str:
    """The verdict's colour as ``#rrggbb``."""
    return COLOURS.get(label, DEFAULT_COLOUR)


def disagreement(labels: Iterable[str]) -> str:
    """``""`` when a photo's faces agree; else how many faces got each label, e.g. ``"2 with_mask, 1 without_mask"``.

    A photo's verdict is its largest face's, which does not speak for a group in which some wear a mask and
    some do not: this says so.
    """
    counts = Counter(labels)
    return ", ".join(f"{n} {label}" for label, n in counts.most_common()) if len(counts) > 1 else ""
