"""Generated images for the tests and benchmarks: no third-party photos, and tasks a tiny model can learn.

In the package (not in ``tests/``) so that a benchmark can use them without importing the test suite.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["CLIP_HEAD_Y", "CLIP_SIZE", "make_dataset", "mask_like", "write_clip"]


def mask_like(size: int, masked: bool, rng: random.Random) -> Image.Image:
    """A 'face': a skin-coloured oval on a random background; masked ones get a pale-blue lower half."""
    bg = tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    m = size // 8 + rng.randint(-2, 2)
    skin = (rng.randint(150, 230), rng.randint(110, 180), rng.randint(80, 140))
    d.ellipse([m, m, size - m, size - m], fill=skin)
    if masked:
        d.rectangle([m, size // 2 + rng.randint(-3, 3), size - m, size - m - 2], fill=(120, 170, 230))
    else:
        d.ellipse([size * 0.4, size * 0.62, size * 0.6, size * 0.7], fill=(150, 40, 40))
    return img


def make_dataset(root: Path, per_class: int = 40, size: int = 64, seed: int = 0,
                 classes: tuple[str, ...] = ("with_mask", "without_mask")) -> Path:
    rng = random.Random(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mask_like(size, c == "with_mask", rng).save(root / c / f"{c}_{i:03d}.jpg", quality=90)
    return root


#: The generated clip: frame size, the astronaut's head and shoulders (scaled), and the row it moves along.
CLIP_SIZE = (320, 240)
CLIP_HEAD = (133, 161)
CLIP_HEAD_Y = 40


def _background(size: tuple[int, int] = CLIP_SIZE):
    """A smooth blue-grey gradient (RGB): no face, and far from the verdict colours."""
    import numpy as np

    w, h = size
    bg = np.empty((h, w, 3), np.uint8)
    bg[..., 0] = np.linspace(60, 120, w)[None, :]
    bg[..., 1] = 90
    bg[..., 2] = np.linspace(140, 100, h)[:, None]
    return bg


def write_clip(path: Path, before: int = 4, moving: int = 18, after: int = 4, fps: float = 10.0,
               size: tuple[int, int] = CLIP_SIZE) -> list:
    """An mp4 of ``before`` empty frames, the head moving left to right, then ``after`` empty frames.

    Returns, per frame, the head's top-left corner or None. Another ``size``
    scales the head with the frame (``benchmarks/speed.py`` uses 640x480). The face-less frames and the
    astronaut (scikit-image's, public domain) make every expectation known: where the face is, how many frames.
    """
    import cv2
    import numpy as np
    from skimage import data

    k = size[0] / CLIP_SIZE[0]
    head_size = (round(CLIP_HEAD[0] * k), round(CLIP_HEAD[1] * k))
    head = Image.fromarray(data.astronaut()).crop((130, 10, 320, 240)).resize(head_size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    where: list = []
    span = size[0] - head_size[0]
    bg = _background(size)
    for i in range(before + moving + after):
        frame = Image.fromarray(bg)
        pos = None
        if before <= i < before + moving:
            pos = (round(span * (i - before) / (moving - 1)), round(CLIP_HEAD_Y * k))
            frame.paste(head, pos)
        where.append(pos)
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return where
