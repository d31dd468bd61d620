"""How a verdict is shown to people: wording and colour per class, shared by the app and the video.

No widgets and no OpenCV here, so either front end can import it without the other's dependencies.
"""

from __future__ import annotations

__all__ = ["COLOURS", "DEFAULT_COLOUR", "LABELS", "colour", "human_label"]

LABELS = {"with_mask": "Mask on", "without_mask": "No mask", "incorrect_mask": "Mask worn incorrectly"}
COLOURS = {"with_mask": "#2e7d32", "without_mask": "#c62828", "incorrect_mask": "#ef8f00"}
#: For a class the model knows but this table does not.
DEFAULT_COLOUR = "#1565c0"


def human_label(label: str) -> str:
    return LABELS.get(label, label.replace("_", " ").capitalize())


def colour(label: str) -> str:
    """The verdict's colour as ``#rrggbb``."""
    return COLOURS.get(label, DEFAULT_COLOUR)
