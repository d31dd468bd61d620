"""Loading user images safely.

Every entry point (training crops, CLI, app, cleaning) reads images through
:func:`load_image`, so that a phone selfie stored sideways, a PNG with
transparency, a CMYK JPEG, an animated GIF or a 12000x12000 photo all reach the
model the same way, and a broken file raises one clear :class:`ImageError`
instead of a PIL traceback.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["HEIC_SUPPORTED", "IMAGE_SUFFIXES", "MAX_PIXELS", "MAX_SIDE", "ImageError", "find_images", "is_image_path",
           "list_labelled_images", "load_image", "thumbnail"]

#: Largest side kept after loading. Faces are detected and classified at a few
#: hundred pixels, so more only costs memory.
MAX_SIDE = 1600
#: Non-JPEG images above this many pixels are refused: PIL would decode them
#: whole (12000x12000 RGB is 432 MB) before we could shrink them.
MAX_PIXELS = 64_000_000
#: JPEGs are decoded at 1/8 scale when huge, but above this many pixels even that costs
#: hundreds of MB; no camera makes such a photo (the largest phone sensors are 200 MP), and a small
#: file whose header claims 65000x65000 decodes to a blank picture.
MAX_JPEG_PIXELS = 400_000_000
#: A real JPEG has at least this many bytes per 1,000 pixels it claims (a flat grey one has about
#: 16, whatever the quality); fewer means a forged or damaged header.
MIN_JPEG_BYTES_PER_KPIXEL = 1.0
#: Key of ``Image.info`` where :func:`load_image` records the photo's upright size before shrinking.
ORIGINAL_SIZE = "selfiemask_original_size"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}

# Never accept half-decoded images silently: a truncated file is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own MAX_PIXELS check replaces PIL's bomb warning, which fires at 89 MP.
Image.MAX_IMAGE_PIXELS = None

try:  # HEIC, the format iPhones save selfies in (pillow-heif is a dependency; its absence is explained)
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIC_SUPPORTED = False


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message is meant for users."""


#: ISO-BMFF brands of HEIC/HEIF files (bytes 8-12): an upload has no name suffix to go by.
HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def _looks_heic(fp: io.BytesIO | Path) -> bool:
    if isinstance(fp, Path):
        with open(fp, "rb") as f:
            head = f.read(12)
    else:
        head = fp.getvalue()[:12]
    return head[4:8] == b"ftyp" and head[8:12] in HEIC_BRANDS


def _open(source: str | Path | bytes | bytearray | memoryview) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("empty file (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(data)
    else:
        fp = Path(source)
        if fp.is_symlink() and not fp.exists():
            raise ImageError("a broken symbolic link or a link loop")
        if not fp.exists():
            raise ImageError(f"no such file: {fp}")
        if fp.is_dir():
            raise ImageError(f"is a folder, not an image: {fp}")
        if not fp.is_file():  # opening a FIFO would wait forever for a writer
            raise ImageError("not a regular file (a FIFO, device or socket)")
        if fp.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
    try:
        return Image.open(fp)
    except UnidentifiedImageError:
        suffix = fp.suffix.lower() if isinstance(fp, Path) else ""
        if (suffix in {".heic", ".heif"} or _looks_heic(fp)) and not HEIC_SUPPORTED:
            raise ImageError("HEIC image, but no HEIC decoder is installed (pip install pillow-heif)") from None
        raise ImageError("not an image (format not recognised)") from None
    except OSError as e:  # pragma: no cover - rare PIL header errors
        raise ImageError(f"cannot read image: {e}") from None


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greys scaled to 0-255: PIL's ``convert`` clips them, so a 16-bit scan
    would turn white (89% of its pixels here) and get a confident verdict on nothing.

    16-bit data (also when PIL holds it in a 32-bit mode) is divided by 257, floats in [0, 1] are
    multiplied by 255; anything else is stretched from its own minimum to maximum.
    """
    import numpy as np

    a = np.asarray(img, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= 65535):
        a = a / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    else:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white: that is how a viewer shows the picture."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def _check_jpeg_header(img: Image.Image, source: str | Path | bytes | bytearray | memoryview) -> None:
    """Refuse a JPEG whose header claims more pixels than any photo, or than its bytes can hold."""
    w, h = img.size
    if w * h > MAX_JPEG_PIXELS:
        raise ImageError(f"corrupt image (the header claims {w}x{h} pixels, more than any photo)")
    size = len(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).stat().st_size
    if size * 1000 < w * h * MIN_JPEG_BYTES_PER_KPIXEL:
        raise ImageError(f"corrupt image (the header claims {w}x{h} pixels, but the file has only {size} bytes)")


def load_image(source: str | Path | bytes | bytearray | memoryview, max_side: int = MAX_SIDE) -> Image.Image:
    """Open ``source`` (a path or the raw bytes) as an upright RGB image.

    Applies the EXIF orientation, takes the first frame of animations, and
    shrinks the result to at most ``max_side`` pixels on its longer side.
    Raises :class:`ImageError` with a short reason for anything unusable.
    """
    img = _open(source)
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError("image has no pixels")
    if img.format == "JPEG":
        _check_jpeg_header(img, source)
        # Decode at 1/2, 1/4 or 1/8 scale straight from the JPEG: a huge photo
        # never exists at full size in memory.
        img.draft("RGB", (max_side, max_side))
    elif w * h > MAX_PIXELS:
        raise ImageError(f"image too large ({w}x{h} pixels); the limit is {MAX_PIXELS // 1_000_000} megapixels")
    try:
        img.seek(0)  # first frame of an animated GIF/WEBP/PNG
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg:
            raise ImageError("truncated image (the file ends early; was the download interrupted?)") from None
        raise ImageError(f"corrupt image ({msg or type(e).__name__})") from None
    before = img.size
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo
        pass
    upright = (h, w) if img.size == before[::-1] and before[0] != before[1] else (w, h)
    img = _to_rgb(img)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # Faces are found on this working copy; boxes are reported in pixels of the upright original.
    img.info[ORIGINAL_SIZE] = upright
    return img


def original_size(img: Image.Image) -> tuple[int, int]:
    """The upright size of the photo ``img`` was loaded from (its own size if it was not shrunk)."""
    return tuple(img.info.get(ORIGINAL_SIZE, img.size))  # type: ignore[return-value]


def is_image_path(path: Path) -> bool:
    """True for files whose name says image; hidden files and folders are skipped."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def find_images(paths: list[str | Path], skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image paths.

    Files named explicitly are kept whatever their suffix, so a broken file
    the user asked about gets an error row rather than silence. Entries of a
    folder that are named like images but are not files (FIFOs, broken links,
    link loops, folders called ``x.jpg``), and folders without images, are
    added to ``skipped`` as (path, reason) so the caller can say so.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(q for q in p.rglob("*") if is_image_path(q))
            if skipped is not None:
                skipped.extend((str(q), why) for q in sorted(p.rglob("*")) if (why := _not_a_file(q)))
                if not inside:
                    skipped.append((str(p), "a folder with no images in it"))
            found.extend(inside)
        else:
            found.append(p)
    return found


def _label_folders(src: Path, classes: list[str] | None) -> list[Path]:
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        missing = [c for c in classes if not (src / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{src} has no folder for class(es) {missing}; found {[p.name for p in folders]}")
        folders = [src / c for c in classes]
    return folders


def list_labelled_images(src: Path, classes: list[str] | None = None) -> list[Path]:
    """Images in ``src/<label>/`` (recursively below each label folder)."""
    return [p for folder in _label_folders(src, classes) for p in sorted(folder.rglob("*")) if is_image_path(p)]


def thumbnail(path: Path, side: int, pad: bool = False) -> Image.Image:
    """A preview at most ``side`` pixels (``pad``: centred on a white square); a grey square when unreadable.

    Review grids and contact sheets show every file they list: a broken one
    is a grey tile, not a failure of the whole sheet.
    """
    try:
        img = load_image(path, max_side=side)
    except (ImageError, OSError):
        return Image.new("RGB", (side, side), (90, 90, 90))
    return ImageOps.pad(img, (side, side), color=(255, 255, 255)) if pad else img


def _not_a_file(path: Path) -> str:
    """Why an entry named like an image is skipped by a folder search ('' for files and other names)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or path.is_file():
        return ""
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link or a link loop"
    if path.is_dir():
        return "a folder named like an image (searched as a folder)"
    return "not a regular file (a FIFO, device or socket)"
