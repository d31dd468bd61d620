"""Generated images for the tests and benchmarks: no third-party photos, and tasks a tiny model can learn.

In the package (not in ``tests/``) so that a benchmark can use them without importing the test suite.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["make_dataset", "mask_like"]


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
