"""Cleaning step 2: exact and near duplicates, found across all labels before any train/validation split.

The split (:func:`selfiemask.data.is_valid_item`) hashes file names, so two
copies of one photo under different names can land on both sides of it and
inflate validation accuracy. Deduplicating the whole ``clean/`` folder first
means copies never straddle the split.

* exact: same sha256; near: perceptual hashes (``imagehash.phash``, 64 bits)
  within a Hamming distance (default 6), comparing each image with the
  others *and with their mirror images*, so a flipped selfie counts too;
* one file is kept per cluster (the highest resolution), the others move to
  ``rejected/duplicate/`` with a logged reason;
* a cluster spanning two labels is not guessed at: it is left in place and
  listed in ``clean/duplicates_review.csv`` for a person to decide.

The search is vectorised: XOR and popcount over uint64 arrays, a block of rows
at a time, so 10,000 images are 50 million comparisons in about a second.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..files import sha256_file, write_rows
from ..images import list_labelled_images, thumbnail
from ..paths import Layout
from .facts import HashCache
from .rejects import set_aside

__all__ = ["DEFAULT_THRESHOLD", "Cluster", "DedupeReport", "Member", "apply_dedupe", "contact_sheet", "dedupe",
           "find_duplicates", "is_unchanged", "near_pairs", "popcount", "write_reports"]

#: Hamming distance (of 64 bits) up to which two perceptual hashes are the same picture. A phash sets the
#: bits above the median of 64 coefficients, so distances come out even: 6 means "at most 3 bits moved".
#: 6 also catches re-framed shots of one scene, and now and then two different tight face crops: check
#: the contact sheet (``--dry-run``), or use 4 where precision matters more than recall.
DEFAULT_THRESHOLD = 6
REPORT_FIELDS = ["cluster", "kind", "cross_label", "action", "file", "label", "width", "height", "distance",
                 "mirrored", "sha256", "moved_to"]


@dataclass
class Member:
    """One file of a duplicate cluster."""

    path: Path  # where the file is now (updated when it is moved)
    rel: str  # label/name, relative to the folder searched
    sha256: str
    width: int
    height: int
    bytes: int
    distance: int = 0  # Hamming distance to the cluster's keeper (mirror-aware)
    mirrored: bool = False  # closest to the keeper's mirror image
    moved_to: Path | None = None

    @property
    def label(self) -> str:
        return self.rel.split("/")[0]


@dataclass
class Cluster:
    members: list[Member]  # the keeper first

    @property
    def keeper(self) -> Member:
        return self.members[0]

    @property
    def duplicates(self) -> list[Member]:
        return self.members[1:]

    @property
    def labels(self) -> list[str]:
        return sorted({m.label for m in self.members})

    @property
    def cross_label(self) -> bool:
        return len(self.labels) > 1

    @property
    def kind(self) -> str:
        return "exact" if len({m.sha256 for m in self.members}) == 1 else "near"


@dataclass
class DedupeReport:
    folder: Path
    images: int
    threshold: int
    clusters: list[Cluster] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): run verify first
    moved: int = 0

    @property
    def review(self) -> list[Cluster]:
        """Clusters spanning labels: for a person to decide, never resolved automatically."""
        return [c for c in self.clusters if c.cross_label]

    def counts(self) -> dict:
        same = [c for c in self.clusters if not c.cross_label]
        return {"images": self.images, "clusters": len(self.clusters),
                "exact_clusters": sum(c.kind == "exact" for c in self.clusters),
                "near_clusters": sum(c.kind == "near" for c in self.clusters),
                "duplicates_to_remove": sum(len(c.duplicates) for c in same),
                "cross_label_clusters": len(self.review), "moved": self.moved, "unreadable": len(self.unreadable)}

    def __str__(self) -> str:
        c = self.counts()
        return (f"{c['images']} images: {c['clusters']} duplicate clusters ({c['exact_clusters']} exact, "
                f"{c['near_clusters']} near); {c['duplicates_to_remove']} duplicates within a label "
                f"({c['moved']} moved to rejected/), {c['cross_label_clusters']} clusters across labels to review")


# -- the vectorised search ----------------------------------------------------
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has it built in; a byte table otherwise)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _POP8[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)  # pragma: no cover


def hex_to_u64(hashes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def near_pairs(h: np.ndarray, m: np.ndarray | None = None, threshold: int = DEFAULT_THRESHOLD,
               block: int = 512) -> list[tuple[int, int]]:
    """All ``(i, j)``, ``i < j``, whose hashes differ in at most ``threshold`` bits.

    ``m`` holds the hashes of the mirrored images: ``i`` is also compared with
    the mirror of ``j`` and the other way round. Works on a block of rows
    against the columns to their right, so memory stays at block x n.
    """
    n = len(h)
    pairs: list[tuple[int, int]] = []
    for s in range(0, n, block):
        e = min(n, s + block)
        d = popcount(h[s:e, None] ^ h[None, s:])
        if m is not None:
            np.minimum(d, popcount(h[s:e, None] ^ m[None, s:]), out=d)
            np.minimum(d, popcount(m[s:e, None] ^ h[None, s:]), out=d)
        r, c = np.nonzero(d <= threshold)
        upper = c > r  # column s+c against row s+r: keep each pair once, and no self-pairs
        pairs.extend(zip((r[upper] + s).tolist(), (c[upper] + s).tolist()))
    return pairs


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in {i for pair in pairs for i in pair}:
        groups.setdefault(root(i), []).append(i)
    return [sorted(g) for g in groups.values()]


def _distance(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, bool]:
    """Mirror-aware Hamming distance between (hash, mirror hash) pairs, and whether the mirror was closer."""
    straight = (a[0] ^ b[0]).bit_count()
    flipped = min((a[0] ^ b[1]).bit_count(), (a[1] ^ b[0]).bit_count())
    return min(straight, flipped), flipped < straight


# -- finding and applying -----------------------------------------------------
def find_duplicates(folder: str | Path, cache: HashCache | Path | None = None, threshold: int = DEFAULT_THRESHOLD,
                    mirror: bool = True, progress: bool = True) -> DedupeReport:
    """Clusters of copies among the images of ``folder/<label>/``; nothing is moved."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    cache = cache if isinstance(cache, HashCache) else HashCache(cache)
    files = list_labelled_images(folder)
    rows: list[Member] = []
    hashes: list[tuple[int, int]] = []
    report = DedupeReport(folder, len(files), threshold)
    try:
        for p in tqdm(files, desc="hashes", unit="img", disable=not progress, file=sys.stderr):
            facts = cache.facts(p)
            rel = p.relative_to(folder).as_posix()
            if not facts.phash:
                report.unreadable.append((rel, facts.error or "no hash"))
                continue
            rows.append(Member(p, rel, facts.sha256, facts.width, facts.height, p.stat().st_size))
            hashes.append((int(facts.phash, 16), int(facts.phash_mirror, 16)))
    finally:
        cache.save()
    if not rows:
        return report
    h = np.array([a for a, _ in hashes], dtype=np.uint64)
    m = np.array([b for _, b in hashes], dtype=np.uint64) if mirror else None
    for group in _components(len(rows), near_pairs(h, m, threshold)):
        # Keep the largest picture; among equals the largest file, then the first name.
        group.sort(key=lambda i: (-rows[i].width * rows[i].height, -rows[i].bytes, rows[i].rel))
        k = group[0]
        for i in group[1:]:
            kh = hashes[k] if mirror else (hashes[k][0], hashes[k][0])
            ih = hashes[i] if mirror else (hashes[i][0], hashes[i][0])
            rows[i].distance, rows[i].mirrored = _distance(kh, ih)
        report.clusters.append(Cluster([rows[i] for i in group]))
    report.clusters.sort(key=lambda c: (not c.cross_label, c.keeper.rel))
    return report


def apply_dedupe(report: DedupeReport, layout: Layout) -> int:
    """Move the duplicates of single-label clusters to ``rejected/duplicate/``; returns how many moved."""
    moved = 0
    for c in report.clusters:
        if c.cross_label:
            continue
        for d in c.duplicates:
            if d.moved_to or not is_unchanged(d.path, d.sha256) or not c.keeper.path.exists():
                continue  # already moved, or changed since it was found (e.g. relabelled): leave it
            what = "exact copy" if d.sha256 == c.keeper.sha256 else \
                f"near duplicate, distance {d.distance}{', mirrored' if d.mirrored else ''}"
            d.moved_to = set_aside(d.path, d.rel, layout, "duplicate", f"duplicate of {c.keeper.rel} ({what})",
                                   d.sha256)
            d.path = d.moved_to
            moved += 1
    report.moved += moved
    return moved


def write_reports(report: DedupeReport, folder: Path) -> tuple[Path, Path]:
    """``duplicates.csv`` (every cluster, with what was done) and ``duplicates_review.csv`` (across labels)."""
    rows = []
    for n, c in enumerate(report.clusters):
        for i, mbr in enumerate(c.members):
            action = "review" if c.cross_label else "keep" if i == 0 else "moved" if mbr.moved_to else "duplicate"
            rows.append({"cluster": n, "kind": c.kind, "cross_label": int(c.cross_label), "action": action,
                         "file": mbr.rel, "label": mbr.label, "width": mbr.width, "height": mbr.height,
                         "distance": mbr.distance, "mirrored": int(mbr.mirrored), "sha256": mbr.sha256,
                         "moved_to": str(mbr.moved_to or "")})
    all_csv, review_csv = folder / "duplicates.csv", folder / "duplicates_review.csv"
    write_rows(all_csv, REPORT_FIELDS, rows)
    write_rows(review_csv, REPORT_FIELDS, [r for r in rows if r["cross_label"]])
    return all_csv, review_csv


def dedupe(layout: Layout, threshold: int = DEFAULT_THRESHOLD, mirror: bool = True, apply: bool = True,
           progress: bool = True) -> DedupeReport:
    """The whole step on ``clean/``: find, move the duplicates (unless ``apply=False``), write the reports."""
    report = find_duplicates(layout.clean, HashCache(layout.hash_cache), threshold, mirror, progress)
    if apply:
        apply_dedupe(report, layout)
    write_reports(report, layout.clean)
    return report


# -- the contact sheet --------------------------------------------------------
_COLOURS = {"keep": (40, 160, 60), "duplicate": (200, 40, 40), "review": (240, 150, 0)}


def contact_sheet(clusters: list[Cluster], max_clusters: int = 12, per_row: int = 6, thumb: int = 96) -> Image.Image:
    """One row per cluster, keeper first: green kept, red duplicate, orange clusters across labels (review)."""
    shown = clusters[:max_clusters]
    pad, text_h = 6, 26
    cell_w, cell_h = thumb + 2 * pad, thumb + 2 * pad + text_h
    sheet = Image.new("RGB", (max(1, per_row) * cell_w, max(1, len(shown)) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    if not shown:
        draw.text((pad, pad), "no duplicates found", fill="black")
        return sheet
    for r, c in enumerate(shown):
        for k, mbr in enumerate(c.members[:per_row]):
            role = "review" if c.cross_label else "keep" if k == 0 else "duplicate"
            x, y = k * cell_w, r * cell_h
            draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + thumb + 2 * pad - 2], outline=_COLOURS[role], width=4)
            sheet.paste(thumbnail(mbr.path, thumb, pad=True), (x + pad, y + pad))
            name = mbr.rel if len(mbr.rel) <= 18 else "…" + mbr.rel[-17:]
            info = f"{mbr.width}x{mbr.height}" + ("" if k == 0 else f" d={mbr.distance}{'m' if mbr.mirrored else ''}")
            draw.text((x + pad, y + thumb + 2 * pad), name, fill="black")
            draw.text((x + pad, y + thumb + 2 * pad + 12), info, fill=(80, 80, 80))
    return sheet


def is_unchanged(path: Path, sha256: str) -> bool:
    """Whether ``path`` still holds the content it was hashed with (a report may be stale)."""
    return path.exists() and sha256_file(path) == sha256
