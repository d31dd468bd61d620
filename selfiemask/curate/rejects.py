"""Setting a file aside: every step that takes a photo out of ``clean/`` does it here, with a logged reason.

Nothing is ever deleted: the file goes to ``rejected/<step>/`` and one row to
``rejected/log.csv`` says where it came from and why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..files import append_rows, now, unique_dest
from ..paths import Layout

__all__ = ["REJECT_FIELDS", "reason_kind", "set_aside"]

REJECT_FIELDS = ["time", "original", "new", "reason", "step", "sha256"]


def set_aside(path: Path, rel: str, layout: Layout, step: str, reason: str, sha256: str = "",
              copy: bool = False) -> Path:
    """Copy or move ``path`` to ``rejected/<step>/<rel>`` and log why; returns the new path."""
    dest = unique_dest(layout.rejected / step / rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(path, dest)
    else:
        shutil.move(path, dest)
    append_rows(layout.reject_log, REJECT_FIELDS, [{"time": now(), "original": str(path), "new": str(dest),
                                                   "reason": reason, "step": step, "sha256": sha256}])
    return dest


def reason_kind(reason: str) -> str:
    """The short kind of a reason, for counts: ``too small (20x20 px ...)`` -> ``too small``."""
    return reason.split(" (")[0].split(":")[0]
