"""What verify and dedupe need to know about a file's content, measured once and cached by sha256."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PIL import Image

from ..files import read_rows, sha256_file, write_rows
from ..images import HEIC_SUPPORTED, ImageError, load_image

__all__ = ["HASH_SIDE", "MIN_CONTRAST", "MIN_SIDE", "Facts", "HashCache", "compute_facts", "sniff"]

#: Shorter side, in pixels, below which a file is not a usable photo (thumbnails, icons, tracking pixels).
MIN_SIDE = 32
#: Grey-level standard deviation (0-255) of the 32x32 thumbnail below which an image is one flat colour.
MIN_CONTRAST = 1.0
#: Images are decoded at most this large for hashing: JPEGs decode at 1/2..1/8 scale, which is fast.
HASH_SIDE = 256


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
