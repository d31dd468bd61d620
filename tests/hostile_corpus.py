"""A corpus of bad and odd inputs, generated here (never third-party photos): ``python tests/hostile_corpus.py DIR``.

:func:`make_corpus` writes every case into a folder and returns what each must give:
``"verdict"`` (a label), ``"any"`` (a verdict or a clear error, as long as it is one row and no traceback)
or a word the error must contain.
"""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from selfiemask.synthetic import mask_like  # noqa: E402


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    if "append_images" in kw:  # fresh copies: PIL keeps an encoder's settings on an image it saved
        kw["append_images"] = [im.copy() for im in kw["append_images"]]
    img.copy().save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    """A valid greyscale PNG of ``w`` x ``h`` black pixels: a few hundred KB that decode to w*h bytes."""
    z = zlib.compressobj(9)
    row = bytes(w + 1)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def forged_jpeg(w: int, h: int) -> bytes:
    data = bytearray(_enc(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(data)


def make_corpus(folder: Path, special: bool = True) -> dict[str, str]:
    """Write the corpus into ``folder``; ``special`` adds a FIFO and symlinks (not regular files)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(15)
    face = mask_like(96, True, rng)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    jpg = _enc(noise, "JPEG", quality=95)
    png = _enc(noise, "PNG")
    deep = np.full((40, 40), 30000, dtype=np.uint16)
    cases: dict[str, tuple[bytes, str]] = {
        "zero.jpg": (b"", "empty file"),
        "text.jpg": (b"just some text\n" * 10, "not an image"),
        "page.jpg": (b"<!doctype html><html><body>Login</body></html>", "not an image"),
        "drawing.jpg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image"),
        "video.jpg": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(200), "not an image"),
        "truncated.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "corrupt.jpg": (jpg[:400] + b"\xff\xd9" * 50 + jpg[500:], "corrupt"),
        "truncated.png": (png[: len(png) // 2], "image"),
        "corrupt.png": (png[:100] + bytes(200) + png[300:], "image"),
        "jpeg_magic_garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "not an image"),
        "good.jpg": (_enc(face, "JPEG"), "verdict"),
        "progressive.jpg": (_enc(face, "JPEG", progressive=True), "verdict"),
        "grey.jpg": (_enc(face.convert("L"), "JPEG"), "verdict"),
        "cmyk.jpg": (_enc(face.convert("CMYK"), "JPEG"), "verdict"),
        "alpha.png": (_enc(face.convert("RGBA"), "PNG"), "verdict"),
        "grey_alpha.png": (_enc(face.convert("LA"), "PNG"), "verdict"),
        "palette.png": (_enc(face.convert("P"), "PNG"), "verdict"),
        "palette_transparent.png": (_enc(face.convert("P"), "PNG", transparency=0), "verdict"),
        "one_bit.png": (_enc(face.convert("1"), "PNG"), "verdict"),
        "deep16.png": (_enc(Image.fromarray(deep), "PNG"), "verdict"),
        "deep16.tif": (_enc(Image.fromarray(deep), "TIFF"), "verdict"),
        "deep32.tif": (_enc(Image.fromarray(deep.astype(np.int32) * 65536), "TIFF"), "verdict"),
        "float.tif": (_enc(Image.fromarray(deep.astype(np.float32) / 65535), "TIFF"), "verdict"),
        "bomb_12000.png": (png_bomb(12000, 12000), "too large"),
        "forged_65000.jpg": (forged_jpeg(65000, 65000), "corrupt image"),
        "forged_3000.jpg": (forged_jpeg(3000, 3000), "corrupt image"),
        "one_pixel.png": (_enc(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "verdict"),
        "five.png": (_enc(Image.new("RGB", (5, 5), (9, 9, 9)), "PNG"), "verdict"),
        "thin_3000x10.png": (_enc(Image.new("RGB", (3000, 10), (9, 9, 9)), "PNG"), "verdict"),
        "line_20000x1.png": (_enc(Image.new("RGB", (20000, 1), (9, 9, 9)), "PNG"), "verdict"),
        "animated.gif": (_enc(face, "GIF", save_all=True, append_images=[noise], duration=100, loop=0), "verdict"),
        "animated.webp": (_enc(face, "WEBP", save_all=True, append_images=[noise], duration=100), "verdict"),
        "pages.tif": (_enc(face, "TIFF", save_all=True, append_images=[noise]), "verdict"),
        "bitmap.bmp": (_enc(face, "BMP"), "verdict"),
        "webp_named.jpg": (_enc(face, "WEBP"), "verdict"),
        "name with spaces, commas and \"quotes\".jpg": (_enc(face, "JPEG"), "verdict"),
        "émoji 😷.jpg": (_enc(face, "JPEG"), "verdict"),
        os.fsdecode(b"latin1_caf\xe9.jpg"): (_enc(face, "JPEG"), "verdict"),
    }
    for orientation in range(2, 10):  # 9 is not a valid orientation: ignored
        exif = Image.Exif()
        exif[0x0112] = orientation
        cases[f"exif_{orientation}.jpg"] = (_enc(face, "JPEG", exif=exif.tobytes()), "verdict")
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        heic = _enc(face, "HEIF")
        cases["iphone.heic"] = (heic, "verdict")
        cases["iphone_named.jpg"] = (heic, "verdict")
    except ImportError:  # pragma: no cover - pillow-heif is a dependency
        pass
    expect = {}
    for name, (data, what) in cases.items():
        (folder / name).write_bytes(data)
        expect[name] = what
    if special:
        os.mkfifo(folder / "fifo.jpg")
        (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
        (folder / "folder.jpg").mkdir()
    return expect


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus")
    print(f"{len(make_corpus(out))} files in {out}")
