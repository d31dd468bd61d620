"""Cleaning scraped photos before training, step 1: verify, and the ground the other steps share.

The layout, all under one data root (``data/`` by default)::

    raw/<label>/...       what the scraper downloaded; cleaning never modifies it
    clean/<label>/...     verified copies under the same relative path: train on this folder
    clean/sources.csv     which raw file (and which content) was already handled
    rejected/<step>/...   files set aside by verify, duplicate or relabel, one row each in rejected/log.csv
    cache/hashes.csv      facts about each content (size, frames, perceptual hashes), keyed by sha256

Verify *copies* rather than moves: raw/ stays intact, so a wrong rejection costs
nothing and clean/ can be rebuilt from raw/ (delete clean/ with its sources.csv).
Nothing is ever deleted: what leaves clean/ goes to rejected/ with a logged reason.
A re-run is idempotent because clean/sources.csv remembers each raw file by path
and sha256: a handled file is skipped even after dedupe or relabel moved its copy.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from PIL import Image

from .hashing import sha256_file
from .images import HEIC_SUPPORTED, ImageError, is_image_path, load_image

#: Shorter side, in pixels, below which a file is not a usable photo (thumbnails, icons, tracking pixels).
MIN_SIDE = 32
#: Grey-level standard deviation (0-255) of the 32x32 thumbnail below which an image is one flat colour.
MIN_CONTRAST = 1.0
#: Images are decoded at most this large for hashing: JPEGs decode at 1/2..1/8 scale, which is fast.
HASH_SIDE = 256
REJECT_FIELDS = ["time", "original", "new", "reason", "step", "sha256"]
SOURCE_FIELDS = ["source", "sha256", "outcome", "dest", "reason", "time"]


@dataclass(frozen=True)
class Layout:
    """Where each cleaning step reads and writes; :meth:`under` gives the project's standard layout."""

    raw: Path
    clean: Path
    rejected: Path
    cache: Path

    @classmethod
    def under(cls, root: str | Path = "data") -> Layout:
        root = Path(root)
        return cls(root / "raw", root / "clean", root / "rejected", root / "cache")

    @property
    def reject_log(self) -> Path:
        return self.rejected / "log.csv"

    @property
    def hash_cache(self) -> Path:
        return self.cache / "hashes.csv"

    @property
    def sources(self) -> Path:
        return self.clean / "sources.csv"

    @property
    def relabel_log(self) -> Path:
        return self.clean / "relabel_log.csv"


# -- logs and moves ---------------------------------------------------------
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", **CSV_TEXT) as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def unique_dest(dest: Path) -> Path:
    """``dest``, or ``name~1.ext``, ``name~2.ext``...: a move never overwrites another file."""
    if not dest.exists():
        return dest
    i = 1
    while (cand := dest.with_name(f"{dest.stem}~{i}{dest.suffix}")).exists():
        i += 1
    return cand


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


# -- facts about a file's content, cached by sha256 -------------------------
@dataclass
class Facts:
    """What verify and dedupe need to know about one content; a cache row."""

    sha256: str
    width: int = 0
    height: int = 0
    frames: int = 1
    contrast: float = 0.0
    error: str = ""
    phash: str = ""  # 16 hex digits, imagehash.phash of the image
    phash_mirror: str = ""  # the same of the left-right mirrored image

    def problem(self, min_side: int = MIN_SIDE, min_contrast: float = MIN_CONTRAST) -> str:
        """Why this is not a usable photo, or ``""``."""
        if self.error:
            return self.error
        if self.frames > 1:
            return f"animated image ({self.frames} frames), not a photo"
        if min(self.width, self.height) < min_side:
            return f"too small ({self.width}x{self.height} px; the shorter side must be at least {min_side})"
        if self.contrast < min_contrast:
            return "blank image (a single flat colour)"
        return ""


_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff(path: Path) -> str:
    """A better reason than 'not an image' for the usual impostors: videos, HEIC, web pages."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return ""
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIC_BRANDS:
            return "" if HEIC_SUPPORTED else "HEIC image, but no HEIC decoder is installed (pip install pillow-heif)"
        return "a video (MP4/QuickTime) saved under an image name, not a photo"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "a video (WebM/Matroska) saved under an image name, not a photo"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "a video (AVI) saved under an image name, not a photo"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
        return "a web page or text saved under an image name (a failed download?)"
    return ""


def compute_facts(path: Path, sha256: str) -> Facts:
    """Decode once (small) and measure everything: size, frames, contrast and the two perceptual hashes."""
    import imagehash
    import numpy as np

    facts = Facts(sha256)
    try:
        with Image.open(path) as im:
            facts.width, facts.height = im.size
            # iPhone JPEGs open as MPO with a second (depth) frame: still one photo.
            facts.frames = 1 if im.format == "MPO" else int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - load_image below gives the user-facing reason
        pass
    try:
        img = load_image(path, max_side=HASH_SIDE)
    except ImageError as e:
        facts.error = sniff(path) if str(e).startswith("not an image") else ""
        facts.error = facts.error or str(e)
        return facts
    except OSError as e:
        facts.error = f"cannot read file: {e.strerror or e}"
        return facts
    if not facts.width:
        facts.width, facts.height = img.size
    # phash itself shrinks to 32x32 grey; doing it once lets the mirrored hash reuse it.
    small = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    facts.contrast = round(float(np.asarray(small, dtype=np.float32).std()), 3)
    facts.phash = str(imagehash.phash(small))
    facts.phash_mirror = str(imagehash.phash(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return facts


class HashCache:
    """sha256 -> :class:`Facts`, kept in a CSV so a second pass over 10,000 files only reads their bytes."""

    FIELDS = [f.name for f in fields(Facts)]
    SAVE_EVERY = 500

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        self.rows: dict[str, Facts] = {}
        self.hits = self.misses = 0
        self._unsaved = 0
        for row in read_rows(self.path) if self.path else []:
            if set(row) != set(self.FIELDS):
                continue  # written by another version: recompute
            self.rows[row["sha256"]] = Facts(row["sha256"], int(row["width"]), int(row["height"]),
                                             int(row["frames"]), float(row["contrast"]), row["error"],
                                             row["phash"], row["phash_mirror"])

    def facts(self, path: Path, sha256: str | None = None) -> Facts:
        sha256 = sha256 or sha256_file(path)
        if (hit := self.rows.get(sha256)) is not None:
            self.hits += 1
            return hit
        self.misses += 1
        facts = self.rows[sha256] = compute_facts(Path(path), sha256)
        self._unsaved += 1
        if self._unsaved >= self.SAVE_EVERY:
            self.save()  # an interrupted pass keeps what it computed
        return facts

    def save(self) -> None:
        if self.path and (self._unsaved or not self.path.exists()):
            write_rows(self.path, self.FIELDS, [asdict(f) for f in self.rows.values()])
        self._unsaved = 0


# -- verify -------------------------------------------------------------------
@dataclass
class VerifySummary:
    files: int = 0
    copied: int = 0
    rejected: int = 0
    unchanged: int = 0  # handled by an earlier run: skipped
    reasons: Counter = field(default_factory=Counter)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)  # (raw path, reason) of this run

    def __str__(self) -> str:
        why = ", ".join(f"{n} {k}" for k, n in self.reasons.most_common()) or "none"
        return (f"{self.files} files: {self.copied} copied to clean/, {self.rejected} rejected ({why}), "
                f"{self.unchanged} already handled")


def label_files(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder/<label>/``, whatever its name: nothing is ignored silently."""
    out: list[Path] = []
    for d in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")):
        out.extend(sorted(p for p in d.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts)))
    return out


def verify(layout: Layout, min_side: int = MIN_SIDE, min_contrast: float = MIN_CONTRAST,
           progress: bool = True) -> VerifySummary:
    """Copy the usable photos of ``raw/<label>/`` into ``clean/<label>/``; set the others aside with a reason.

    Rejected: unreadable, empty, truncated, not an image (text, web pages, videos
    saved as .jpg, HEIC without a decoder), animated, too small, blank. Each
    rejection is a copy in ``rejected/verify/`` and a row in ``rejected/log.csv``.
    """
    from tqdm.auto import tqdm

    if not layout.raw.is_dir():
        raise FileNotFoundError(f"raw folder not found: {layout.raw} (expected {layout.raw}/<label>/ photos)")
    layout.clean.mkdir(parents=True, exist_ok=True)
    sources = {r["source"]: r for r in read_rows(layout.sources)}
    cache = HashCache(layout.hash_cache)
    summary = VerifySummary()
    files = label_files(layout.raw)
    try:
        for i, path in enumerate(tqdm(files, desc="verify", unit="file", disable=not progress, file=sys.stderr)):
            summary.files += 1
            rel = path.relative_to(layout.raw).as_posix()
            reason = ""
            try:
                sha = sha256_file(path)
            except OSError as e:
                sha, reason = "", f"cannot read file: {e.strerror or e}"
            prev = sources.get(rel)
            if prev and prev["sha256"] == sha:
                summary.unchanged += 1
                continue
            if not sha:  # unreadable bytes cannot be copied either: logged where they are
                dest = path
                append_rows(layout.reject_log, REJECT_FIELDS, [{"time": now(), "original": str(path), "new": "",
                                                               "reason": reason, "step": "verify", "sha256": ""}])
            elif not is_image_path(path):
                reason = f"not an image file (name ends in {path.suffix or 'no suffix'!r})"
            else:
                reason = cache.facts(path, sha).problem(min_side, min_contrast)
            if reason:
                if sha:
                    dest = set_aside(path, rel, layout, "verify", reason, sha, copy=True)
                summary.rejected += 1
                summary.reasons[reason_kind(reason)] += 1
                summary.rejected_files.append((str(path), reason))
                outcome = "rejected"
            else:
                dest = layout.clean / rel
                if not (dest.exists() and sha256_file(dest) == sha):
                    dest = unique_dest(dest)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(dest.name + ".part")
                    shutil.copy2(path, tmp)
                    os.replace(tmp, dest)
                summary.copied += 1
                outcome = "clean"
            sources[rel] = {"source": rel, "sha256": sha, "outcome": outcome, "dest": str(dest), "reason": reason,
                            "time": now()}
            if i % 500 == 499:
                write_rows(layout.sources, SOURCE_FIELDS, list(sources.values()))
    finally:
        # Whatever happened, what was done is recorded, so a re-run resumes instead of repeating;
        # the hash cache is saved even if writing sources.csv fails.
        try:
            write_rows(layout.sources, SOURCE_FIELDS, [sources[k] for k in sorted(sources)])
        finally:
            cache.save()
    return summary
