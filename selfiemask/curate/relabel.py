"""Cleaning step 3, relabel: move a photo in ``clean/`` to another label or to ``rejected/``, logged and undoable.

Every move is appended to ``clean/relabel_log.csv`` (time, file, old label, new
label, where it went); :func:`undo` reverses the last N moves, or all, and
marks them undone, so the log stays a full history.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..files import append_rows, now, read_rows, unique_dest, write_rows
from ..paths import Layout
from .rejects import REJECT_FIELDS, set_aside

__all__ = ["KEEP", "REJECT", "RELABEL_FIELDS", "relabel", "undo"]

REJECT = "rejected"
KEEP = "<keep>"
RELABEL_FIELDS = ["time", "file", "old_label", "new_label", "new_file", "undone"]


def _layout(clean_dir: Path, rejected_dir: Path | None) -> Layout:
    clean_dir = Path(clean_dir)
    return Layout(clean_dir.parent / "raw", clean_dir, Path(rejected_dir or clean_dir.parent / "rejected"),
                  clean_dir.parent / "cache")


def relabel(path: str | Path, new_label: str, clean_dir: str | Path, rejected_dir: str | Path | None = None,
            log_path: str | Path | None = None) -> Path:
    """Move ``clean/<old>/name`` to ``clean/<new_label>/name`` (or to ``rejected/relabel/``) and log it.

    Returns the new path; a file already there is never overwritten (``name~1.jpg``).
    """
    layout = _layout(Path(clean_dir).resolve(), Path(rejected_dir).resolve() if rejected_dir else None)
    path = Path(path).resolve()
    if not path.is_relative_to(layout.clean) or len(path.relative_to(layout.clean).parts) < 2:
        raise ValueError(f"{path} is not a photo under {layout.clean}/<label>/")
    rel = path.relative_to(layout.clean)
    old_label, inner = rel.parts[0], Path(*rel.parts[1:])
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    if new_label in ("", ".", "..") or "/" in new_label or "\\" in new_label:
        raise ValueError(f"not a label name: {new_label!r}")
    if new_label == old_label:
        return path
    if new_label == REJECT:
        dest = set_aside(path, rel.as_posix(), layout, "relabel", f"rejected in review (was {old_label})")
    else:
        dest = unique_dest(layout.clean / new_label / inner)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
    append_rows(Path(log_path or layout.relabel_log), RELABEL_FIELDS, [{
        "time": now(), "file": rel.as_posix(), "old_label": old_label, "new_label": new_label,
        "new_file": Path(os.path.relpath(dest, layout.clean)).as_posix(), "undone": ""}])
    return dest


def undo(clean_dir: str | Path, n: int | None = 1, rejected_dir: str | Path | None = None,
         log_path: str | Path | None = None) -> list[dict]:
    """Reverse the last ``n`` relabel moves not yet undone (``n=None``: all of them), newest first.

    The rows stay in the log, marked with the time they were undone. Returns the
    rows undone; a move whose file is no longer where it went is skipped and
    left unmarked (``FileNotFoundError`` lists them after the others are undone).
    """
    layout = _layout(Path(clean_dir), rejected_dir)
    log = Path(log_path or layout.relabel_log)
    rows = read_rows(log)
    active = [i for i, r in enumerate(rows) if not r["undone"]]
    todo = active[::-1] if n is None else active[::-1][:max(0, n)]
    done, missing = [], []
    for i in todo:
        r = rows[i]
        src = Path(os.path.normpath(layout.clean / r["new_file"]))
        if not src.exists():
            missing.append(str(src))
            continue
        dest = unique_dest(layout.clean / r["file"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dest)
        if r["new_label"] == REJECT:
            append_rows(layout.reject_log, REJECT_FIELDS, [{
                "time": now(), "original": str(src), "new": str(dest), "reason": "restored by undo",
                "step": "relabel", "sha256": ""}])
        r["undone"] = now()
        done.append(r)
    if done:
        write_rows(log, RELABEL_FIELDS, rows)
    if missing:
        raise FileNotFoundError(f"undid {len(done)} move(s); these files are no longer where they were moved: "
                                + ", ".join(missing))
    return done
