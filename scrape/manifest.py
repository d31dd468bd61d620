"""``data/raw/manifest.csv``: one row per downloaded image, and the list of forgotten posts.

The manifest is what makes a run resumable: a post whose shortcode has rows is not fetched again,
and an image whose sha256 is already there is not stored twice. Rows are appended (and flushed)
as soon as a post's images are in place, so an interrupted run loses at most the post it was on.

It is private by default: the ``owner`` column stays empty unless the run was asked to keep owners,
and captions are never stored. ``forget`` removes a post's images and rows and remembers its
shortcode in ``forgotten.txt``, so that a later run does not download it again.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .hashing import owner_key, owner_sha256

MANIFEST = "manifest.csv"
FORGOTTEN = "forgotten.txt"


@dataclass(frozen=True)
class Row:
    """One stored image. ``file`` is relative to the destination folder, with ``/`` separators."""

    shortcode: str
    source: str
    label: str
    file: str
    sha256: str
    downloaded_at: str
    posted_at: str
    owner: str = ""


COLUMNS = [f.name for f in fields(Row)]


class Manifest:
    """The manifest of one destination folder, loaded once and appended to as images arrive."""

    def __init__(self, dest: str | Path):
        self.dest = Path(dest)
        self.path = self.dest / MANIFEST
        self._load()

    def _load(self) -> None:
        self.rows: list[Row] = self._read()
        self.shortcodes = {r.shortcode for r in self.rows}
        self.hashes = {r.sha256 for r in self.rows}
        self.per_source = Counter(r.source for r in self.rows)
        self.forgotten_shortcodes, self.forgotten_owners = self._read_forgotten()

    def _read(self) -> list[Row]:
        if not self.path.exists():
            return []
        rows = []
        with open(self.path, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                # A line cut short by a crash has empty fields: it is ignored, and its post fetched again.
                if all(rec.get(c) for c in ("shortcode", "source", "label", "file", "sha256")):
                    rows.append(Row(**{c: rec.get(c) or "" for c in COLUMNS}))
        return rows

    def _read_forgotten(self) -> tuple[set[str], set[str]]:
        path = self.dest / FORGOTTEN
        codes: set[str] = set()
        owners: set[str] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                kind, _, value = line.strip().partition(":")
                if kind == "shortcode" and value:
                    codes.add(value)
                elif kind == "owner-sha256" and value:
                    owners.add(value)
        return codes, owners

    def is_forgotten(self, shortcode: str, owner: str | None = None) -> bool:
        return shortcode in self.forgotten_shortcodes or (
            owner is not None and owner_sha256(owner) in self.forgotten_owners)

    def append(self, rows: list[Row]) -> None:
        """Add rows and make them durable before the next post starts."""
        if not rows:
            return
        self.dest.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            if new_file:
                w.writeheader()
            for r in rows:
                w.writerow(asdict(r))
            f.flush()
            os.fsync(f.fileno())
        for r in rows:
            self.rows.append(r)
            self.shortcodes.add(r.shortcode)
            self.hashes.add(r.sha256)
            self.per_source[r.source] += 1

    def _rewrite(self, rows: list[Row]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow(asdict(r))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._load()

    def forget(self, shortcodes: Iterable[str] = (), owners: Iterable[str] = ()) -> list[Row]:
        """Delete the images and rows of these posts or owners; remember them so no later run brings them back.

        An owner matches rows where it was stored (``--keep-owner``) and rows of a profile source
        named after it (stored as the username or its hash). Returns the removed rows.
        """
        codes = set(shortcodes)
        names = {o.strip().lstrip("@").lower() for o in owners}
        profile_keys = {f"profile:{n}" for n in names} | {f"profile:{owner_key(n)}" for n in names}

        def gone(r: Row) -> bool:
            return r.shortcode in codes or r.owner.lower() in names or r.source in profile_keys

        removed = [r for r in self.rows if gone(r)]
        for r in removed:
            (self.dest / r.file).unlink(missing_ok=True)
        lines = [f"shortcode:{c}" for c in sorted(codes | {r.shortcode for r in removed})]
        lines += [f"owner-sha256:{owner_sha256(n)}" for n in sorted(names)]
        if lines:
            self.dest.mkdir(parents=True, exist_ok=True)
            with open(self.dest / FORGOTTEN, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        if self.path.exists():
            self._rewrite([r for r in self.rows if not gone(r)])
        else:
            self._load()
        return removed


def read_manifest(dest: str | Path) -> list[Row]:
    """The rows of ``dest/manifest.csv`` (empty if there is none yet)."""
    return Manifest(dest).rows


def forget(dest: str | Path = "data/raw", shortcodes: Iterable[str] = (), owners: Iterable[str] = ()) -> list[Row]:
    """Remove every image and manifest row of these posts (shortcodes or post URLs) or owners.

    See :meth:`Manifest.forget`; returns the removed rows.
    """
    from .sources import shortcode_from

    return Manifest(dest).forget([shortcode_from(s) for s in shortcodes], owners)
