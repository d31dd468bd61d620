"""Cleaning step 1, verify: usable photos of ``raw/<label>/`` are copied to ``clean/<label>/``, the rest set aside.

Verify *copies* rather than moves: raw/ stays intact, so a wrong rejection costs
nothing and clean/ can be rebuilt from raw/ (delete clean/ with its sources.csv).
``clean/sources.csv`` remembers each raw file by path and sha256, so a handled
file is skipped on a re-run even after dedupe or relabel moved its copy.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..files import append_rows, atomic_path, now, read_rows, sha256_file, unique_dest, write_rows
from ..images import is_image_path
from ..paths import Layout
from .facts import MIN_CONTRAST, MIN_SIDE, HashCache
from .rejects import REJECT_FIELDS, reason_kind, set_aside

__all__ = ["SOURCE_FIELDS", "VerifySummary", "label_files", "verify"]

SOURCE_FIELDS = ["source", "sha256", "outcome", "dest", "reason", "time"]


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
                    with atomic_path(dest, ".part") as tmp:
                        shutil.copy2(path, tmp)
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
