"""Files on disk: content hashes, atomic writes and the CSV logs every step keeps.

One temp-file-then-rename helper serves every writer (cards, CSV files, crops,
model backups), so a crash anywhere leaves the old file or the new one, never
half of one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["append_rows", "atomic_path", "fingerprint", "now", "photo_digests", "read_rows", "sha256_file",
           "unique_dest", "write_atomic", "write_rows"]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(root: Path, files: list[Path]) -> dict:
    """Which data a model came from: file count and a hash of the sorted relative paths."""
    rel = sorted(p.relative_to(root).as_posix() for p in files)
    return {"files": len(rel), "file_list_sha256": hashlib.sha256("\n".join(rel).encode()).hexdigest()}


def photo_digests(files: list[Path]) -> list[str]:
    """The sorted sha256 of each training photo, for a model's card (``data.photo_sha256``).

    ``python -m scrape forget`` reads it to name the models trained on a forgotten photo: a path list's hash
    cannot say whether one photo was in it. The clean photos are byte copies of the raw ones, so these are
    the sha256 the scraper's manifest recorded.
    """
    return sorted({sha256_file(p) for p in files})


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed over ``path`` only if the block succeeds.

    Readers see the old file or the complete new one: the rename is atomic on
    one filesystem. On an error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# -- CSV logs ---------------------------------------------------------------------
def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


#: How the state CSVs are read and written: UTF-8, and a file name that is not UTF-8 (a byte such as
#: 0xE9 from an old camera or a Latin-1 system) is kept byte for byte as Python's surrogate escapes,
#: so it is written, read back and matched on the next run instead of stopping the run.
CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, **CSV_TEXT) as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Append to a CSV log, writing the header for a new file: logs are only ever appended to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", **CSV_TEXT) as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Rewrite a CSV atomically (a crash leaves the old file, never half of one)."""
    with atomic_path(path) as tmp, open(tmp, "w", **CSV_TEXT) as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def unique_dest(dest: Path) -> Path:
    """``dest``, or ``name~1.ext``, ``name~2.ext``...: a move never overwrites another file."""
    if not dest.exists():
        return dest
    i = 1
    while (cand := dest.with_name(f"{dest.stem}~{i}{dest.suffix}")).exists():
        i += 1
    return cand
