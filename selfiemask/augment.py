"""Phone-photo and street-photo conditions: one definition for training and for the stress benchmark.

The training photos come from a few sources, each with its own look: sharp,
well-lit celebrity crops without masks, small blurry crowd faces with masks.
A model learns those looks as labels ("blurry face means mask"). Selfies
arrive black and white, under red or blue light, dim, filtered, blurred or
re-compressed by Instagram. :class:`PhoneConditions` applies those changes to
training crops of **both classes alike**, so no condition predicts a label,
and :data:`CONDITIONS` applies the same operations, at fixed strengths, to
whole photos in ``benchmarks/conditions.py``.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from fastai.vision.all import Transform
from fastai.vision.core import PILImage
from PIL import Image, ImageFilter, ImageOps

__all__ = [
    "CONDITIONS",
    "PhoneConditions",
    "blur",
    "colour_cast",
    "exposure",
    "framed_tight",
    "framed_wide",
    "grayscale",
    "jpeg",
    "low_resolution",
]

#: Channel gains of coloured light and of common filters.
CASTS = {"red": (1.0, 0.45, 0.45), "blue": (0.5, 0.65, 1.0), "warm": (1.0, 0.85, 0.6), "green": (0.6, 1.0, 0.6)}


def grayscale(img: Image.Image) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


def colour_cast(img: Image.Image, gains: tuple[float, float, float], strength: float = 1.0) -> Image.Image:
    """Coloured light: each channel scaled towards ``gains`` (strength 1 = fully)."""
    g = np.array([1 + strength * (x - 1) for x in gains], dtype=np.float32)
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) * g
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def exposure(img: Image.Image, gain: float, gamma: float = 1.0) -> Image.Image:
    """Dim (gain < 1) or over-exposed (gain > 1) light, clipped as a sensor clips."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    arr = np.clip((arr**gamma) * gain, 0, 1)
    return Image.fromarray((arr * 255).astype(np.uint8))


def blur(img: Image.Image, radius: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius))


def low_resolution(img: Image.Image, side: int, face_side: float | None = None) -> Image.Image:
    """The photo shrunk so the face (``face_side`` px, or the whole image) is ``side`` px, then scaled back."""
    ref = face_side or min(img.size)
    scale = min(1.0, side / max(1.0, ref))
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    return img.resize((w, h), Image.Resampling.BILINEAR).resize(img.size, Image.Resampling.BILINEAR)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def framed_tight(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The photo cut to its face box plus 10%: how the unmasked training crops were framed."""
    l, t, r, b = box
    mw, mh = 0.1 * (r - l), 0.1 * (b - t)
    return img.crop((max(0, int(l - mw)), max(0, int(t - mh)), min(img.width, int(r + mw)),
                     min(img.height, int(b + mh))))


def framed_wide(img: Image.Image) -> Image.Image:
    """The photo padded with its mean colour to twice its size: a face small in a wide frame."""
    fill = tuple(int(v) for v in np.asarray(img.convert("RGB")).reshape(-1, 3).mean(0))
    return ImageOps.expand(img, border=(img.width // 2, img.height // 2), fill=fill)


#: Fixed-strength conditions for the stress benchmark: name -> f(photo, face_side or None).
#: Blur and low resolution scale with the face, so a large and a small face get the same damage.
CONDITIONS: dict[str, Callable[[Image.Image, float | None], Image.Image]] = {
    "grayscale": lambda im, f: grayscale(im),
    "red light": lambda im, f: colour_cast(im, CASTS["red"]),
    "blue light": lambda im, f: colour_cast(im, CASTS["blue"]),
    "dim": lambda im, f: exposure(im, 0.35, gamma=1.3),
    "bright": lambda im, f: exposure(im, 1.8),
    "blur": lambda im, f: blur(im, max(1.0, (f or min(im.size)) / 40)),
    "low res 32 px": lambda im, f: low_resolution(im, 32, f),
    "low res 48 px": lambda im, f: low_resolution(im, 48, f),
    "jpeg q30": lambda im, f: jpeg(im, 30),
}


class PhoneConditions(Transform):
    """Training-only item transform: each condition, at a random strength, with probability ``p`` each.

    Runs on the face crop after the random crop (order 2), before it becomes a
    tensor; fastai skips it for validation and inference (``split_idx = 0``).
    """

    split_idx = 0
    order = 2

    def __init__(self, p: float = 0.15, seed: int | None = None) -> None:
        super().__init__()
        # A seed only for tests: otherwise the random module, which fastai seeds in each loader worker.
        self.p, self.seed = p, seed
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, img: PILImage) -> PILImage:
        r = self._rng or random
        def maybe() -> bool:
            return r.random() < self.p

        out = img.convert("RGB")
        if maybe():
            out = grayscale(out)
        if maybe():
            out = colour_cast(out, CASTS[r.choice(sorted(CASTS))], r.uniform(0.4, 1.0))
        if maybe():
            out = exposure(out, r.uniform(0.25, 0.7), r.uniform(1.0, 1.5)) if r.random() < 0.5 \
                else exposure(out, r.uniform(1.3, 2.0))
        if maybe():
            out = blur(out, r.uniform(0.6, 2.5) * min(out.size) / 128)
        if maybe():
            # The crop is the face plus a 20% margin: a face of 24-64 px is a crop of about 34-90 px.
            out = low_resolution(out, round(r.uniform(24, 64) * 1.4))
        if maybe():
            out = jpeg(out, r.randint(15, 50))
        return PILImage.create(out) if out is not img else img
