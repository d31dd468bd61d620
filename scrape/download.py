"""Download the images of one post into its label folder, with instaloader's download function.

Only pictures: a video post gives nothing, a sidecar (carousel) gives its image nodes. Each image
is fetched with :meth:`Instaloader.download_pic` (its retries, its temporary-name-then-rename
write) into a staging folder, hashed, and only then moved with :func:`os.replace` into
``<dest>/<label>/<shortcode>_<n>.<ext>``. So a label folder never holds a partial file, and an
image whose content is already in the manifest is dropped before it lands.

A post is all or nothing: its images are moved and recorded together once all were fetched; a
post that fails half-way leaves nothing, and is fetched whole next time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import instaloader
from instaloader import Post

from .hashing import sha256_file
from .manifest import Manifest, Row

STAGING = ".partial"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".gif"}


class NotAnImage(instaloader.exceptions.BadResponseException):
    """The server answered an image URL with something else (an HTML page, say)."""


@dataclass
class PostResult:
    """What happened to one post: images stored, images skipped as duplicates, videos left out."""

    stored: list[Row] = field(default_factory=list)
    duplicates: int = 0
    videos: int = 0


def image_urls(post: Post) -> list[tuple[int, str]]:
    """``(position, url)`` of the post's pictures; positions start at 1 and count videos too, so names are stable."""
    if post.typename == "GraphSidecar":
        return [(i, node.display_url) for i, node in enumerate(post.get_sidecar_nodes(), start=1)
                if not node.is_video]
    if post.typename == "GraphImage":
        return [(1, post.url)]
    return []  # GraphVideo: a thumbnail is not a selfie we want


def video_count(post: Post) -> int:
    return sum(post.get_is_videos())


def staging_dir(dest: Path) -> Path:
    return dest / STAGING


def clear_staging(dest: Path) -> None:
    """Remove what an interrupted run left half-fetched (never in a label folder)."""
    shutil.rmtree(staging_dir(dest), ignore_errors=True)


def _fetched_file(staging: Path, stem: str) -> Path:
    """The file ``download_pic`` wrote: it picks the extension from the Content-Type."""
    found = [p for p in staging.glob(stem + ".*") if p.suffix != ".temp"]
    if len(found) != 1:
        raise NotAnImage(f"expected one file for {stem}, found {len(found)}")
    path = found[0]
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        path.unlink(missing_ok=True)
        raise NotAnImage(f"{stem}: the server sent {path.suffix!r} content, not an image")
    return path


def download_post(loader: instaloader.Instaloader, post: Post, *, label: str, source: str, dest: Path,
                  manifest: Manifest, limit: int | None = None, owner: str = "") -> PostResult:
    """Fetch up to ``limit`` pictures of ``post``, then move them into ``dest/label`` and record them.

    Raises what instaloader raises (after its own retries); nothing of the post is kept then.
    """
    result = PostResult(videos=video_count(post))
    urls = image_urls(post)
    if limit is not None:
        urls = urls[:limit]
    staging = staging_dir(dest)
    staging.mkdir(parents=True, exist_ok=True)
    mtime = post.date_local
    posted_at = mtime.astimezone(UTC).isoformat(timespec="seconds")
    fetched: list[tuple[Path, str, str]] = []  # staged file, final name, sha256
    seen: set[str] = set()
    try:
        for position, url in urls:
            stem = f"{post.shortcode}_{position}"
            loader.download_pic(filename=str(staging / stem), url=url, mtime=mtime)
            path = _fetched_file(staging, stem)
            digest = sha256_file(path)
            if digest in manifest.hashes or digest in seen:
                result.duplicates += 1
                path.unlink()
                continue
            seen.add(digest)
            fetched.append((path, stem + path.suffix.lower().replace(".jpeg", ".jpg"), digest))
        folder = dest / label
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        rows = []
        for path, name, digest in fetched:
            os.replace(path, folder / name)
            rows.append(Row(shortcode=post.shortcode, source=source, label=label, file=f"{label}/{name}",
                            sha256=digest, downloaded_at=now, posted_at=posted_at, owner=owner))
        manifest.append(rows)
        result.stored = rows
        return result
    finally:
        for path, _, _ in fetched:
            path.unlink(missing_ok=True)  # only left if the post failed before its move
