"""Forgetting every copy: what cleaning and training derived from forgotten images, found by sha256.

``forget`` removes a post's images from ``data/raw/``; the cleaning steps made copies of them
(``data/clean/<label>/``, ``data/rejected/<step>/``), the crop pass made face crops (``data/cache/crops/``),
and their logs and hash caches name them. This module finds each by content: a copy has the image's
sha256; a crop is linked to it by its manifest's ``source_sha256``; a CSV row carries the sha256 or
names a removed file. It removes them all and names the models whose card lists a forgotten image
among the photos they were trained on (``data.photo_sha256`` of the card), so that they can be retrained.

It reads the files under ``data/`` and model cards as plain CSV and JSON: like the rest of the scraper,
it imports nothing from ``selfiemask``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ForgetReport", "affected_models", "forget_derived"]

#: CSV columns that hold an image's sha256 (verify's sources.csv, the reject log, the hash cache, crops.csv).
SHA_COLUMNS = ("sha256", "source_sha256")
#: The folders under the data root that hold copies, and the cache (crops, hash cache).
COPY_FOLDERS = ("clean", "rejected")


@dataclass
class ForgetReport:
    """What was removed besides the raw images, and which models still carry the forgotten photos."""

    files: list[Path] = field(default_factory=list)  # copies and crops deleted
    rows: dict[str, int] = field(default_factory=dict)  # CSV file -> rows dropped
    models: list[tuple[Path, str]] = field(default_factory=list)  # (model card, why it is named)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _is_csv(p: Path) -> bool:
    return p.suffix.lower() == ".csv"


def _rewrite_csv(path: Path, keep) -> int:
    """Drop the rows for which ``keep(row)`` is false (atomically); returns how many were dropped."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    kept = [r for r in rows if keep(r)]
    if len(kept) == len(rows):
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(kept)
    os.replace(tmp, path)
    return len(rows) - len(kept)


def forget_derived(data_root: str | Path, hashes: set[str], names: set[str] = frozenset()) -> ForgetReport:
    """Remove every copy, crop and log row under ``data_root`` derived from images with these ``hashes``.

    ``names``: paths of the removed raw images relative to ``raw/`` (``label/file.jpg``), so that rows that name
    a file rather than its hash (verify's ``source``, a relabel log) go too. ``raw/`` itself is left to the
    manifest's own forget.
    """
    root = Path(data_root)
    report = ForgetReport()
    if not hashes or not root.is_dir():
        return report
    # 1. Byte-identical copies: verify copies raw/ to clean/, and rejections to rejected/<step>/.
    for folder in COPY_FOLDERS:
        for p in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            if p.is_file() and not p.is_symlink() and not _is_csv(p) and _sha256(p) in hashes:
                p.unlink()
                report.files.append(p)
    # 2. Face crops: each crop folder's manifest links a crop to the sha256 of its source photo.
    for manifest in sorted(root.rglob("crops.csv")):
        with open(manifest, encoding="utf-8", errors="surrogateescape", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("source_sha256") in hashes and row.get("crop"):
                    crop = manifest.parent / row["crop"]
                    if crop.is_file():
                        crop.unlink()
                        report.files.append(crop)
    # 3. Rows: by sha256 where a CSV has one, else by the name of a file removed here or from raw/.
    gone = {p.relative_to(root).as_posix() for p in report.files} | {f"raw/{n}" for n in names}
    tails = gone | {g.split("/", 1)[1] for g in gone if "/" in g}  # relative to clean/, raw/, rejected/...

    def names_a_removed_file(value: str) -> bool:
        v = value.replace(os.sep, "/")
        return bool(v) and (v in tails or any(v.endswith("/" + t) for t in tails))

    def keep(row: dict) -> bool:
        if any(row.get(c) in hashes for c in SHA_COLUMNS):
            return False
        return not any(names_a_removed_file(v or "") for v in row.values() if isinstance(v, str))

    for path in sorted(root.rglob("*.csv")):
        if path.parent == root / "raw" or not path.is_file():
            continue  # the manifest: rewritten by Manifest.forget
        dropped = _rewrite_csv(path, keep)
        if dropped:
            report.rows[str(path)] = dropped
    return report


def _cards(places: list[Path]) -> list[Path]:
    """Model cards (``*.json`` beside a ``.pkl``) in these files or folders and their ``models/history/``."""
    found: list[Path] = []
    for place in places:
        if place.is_file():
            candidates = [place.with_suffix(".json")]
        else:
            candidates = sorted(place.glob("*.json"))
            history = place / "models" / "history"
            candidates += sorted(history.glob("*/*.json")) if history.is_dir() else []
        found += [c for c in candidates if c.is_file() and c.with_suffix(".pkl").exists() and c not in found]
    return found


def affected_models(places: list[Path], hashes: set[str]) -> list[tuple[Path, str]]:
    """The models whose card says they were trained on one of these images, or cannot say.

    A card lists its training photos' sha256 under ``data.photo_sha256``; a card from before that lists none,
    and such a model may have seen them.
    """
    out: list[tuple[Path, str]] = []
    for card_file in _cards(places):
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or "export_sha256" not in card:
            continue
        listed = (card.get("data") or {}).get("photo_sha256")
        model = card_file.with_suffix(".pkl")
        if listed is None:
            out.append((model, "its card does not list its training photos (made before forget could tell): "
                               "it may have been trained on them"))
        elif hashes & set(listed):
            out.append((model, f"trained on {len(hashes & set(listed))} of the forgotten image(s)"))
    return out
