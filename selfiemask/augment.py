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
import math
import random
from collections.abc import Callable

import numpy as np
from fastai.vision.all import ItemTransform, Transform
from fastai.vision.core import PILImage
from PIL import Image, ImageDraw, ImageFilter, ImageOps

__all__ = [
    "CAMERA_CONDITIONS",
    "CONDITIONS",
    "MASKED_HAND_PLACES",
    "OCCLUSIONS",
    "TILTS",
    "CleanView",
    "FilledEdges",
    "HandDrawn",
    "KeepCleanView",
    "OccludeFaces",
    "PhoneConditions",
    "RollFaces",
    "TurnQuarter",
    "blur",
    "camera",
    "colour_cast",
    "exposure",
    "filled_edges",
    "framed_tight",
    "framed_wide",
    "grayscale",
    "jpeg",
    "hand_from_the_side",
    "hand_over_mouth",
    "low_resolution",
    "lying_down",
    "roll_crop",
    "rolled",
    "sunglasses",
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


# -- the whole photo turned: detection, alignment and classification tested together ------------------------
def rolled(img: Image.Image, degrees: float) -> Image.Image:
    """The photo turned ``degrees`` counter-clockwise (a phone rolled), grown to hold it all.

    Quarter turns are exact (no new pixels); other angles fill the new corners
    with the photo's mean colour, as ``framed_wide`` pads.
    """
    img = img.convert("RGB")
    if degrees % 90 == 0:
        quarter = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
        k = int(degrees) % 360
        return img.transpose(quarter[k]) if k else img.copy()
    fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def lying_down(img: Image.Image, degrees: float = 90) -> Image.Image:
    """A selfie taken lying on one side: the face turned a quarter, and the file's EXIF saying "upright".

    The phone's orientation sensor sees the phone upright relative to gravity, so
    it writes Orientation 1 (no turn) while the face lies at 90 degrees: the
    photo goes through a JPEG file with that tag and back through ``exif_transpose``,
    as an upload does, and nothing may turn it back.
    """
    turned = rolled(img, degrees)
    exif = Image.Exif()
    exif[0x0112] = 1  # Orientation: top-left, "as stored"
    buf = io.BytesIO()
    turned.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    buf.seek(0)
    return ImageOps.exif_transpose(Image.open(buf)).convert("RGB")


#: Tilt conditions of the stress benchmark: name -> f(photo), applied before detection.
TILTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    **{f"rolled {d:+d}°": (lambda im, d=d: rolled(im, d)) for d in (30, -30, 60, -60, 90, -90)},
    "lying down (90°, EXIF upright)": lambda im: lying_down(im, 90),
}


# -- occluders over a face: what a hand or sunglasses do to an unmasked face ---------------------------------
def _face_points(box: tuple[float, float, float, float], landmarks=None) -> np.ndarray:
    """The five landmarks, or where they lie on an upright face of this box when there are none."""
    if landmarks is not None:
        return np.asarray(landmarks, dtype=np.float64)
    l, t, r, b = box
    w, h = r - l, b - t
    rel = [(0.32, 0.38), (0.68, 0.38), (0.5, 0.56), (0.36, 0.74), (0.64, 0.74)]
    return np.asarray([(l + x * w, t + y * h) for x, y in rel], dtype=np.float64)


def _skin(img: Image.Image, pts: np.ndarray, jitter: tuple[int, int, int] = (0, 0, 0)) -> tuple[int, int, int]:
    """The face's own skin colour (the median between and just above the eyes), a little changed.

    A hand is about the colour of its face: taking the face's colour keeps the patch
    right for every skin tone rather than drawing one tone on all. The patch is taken
    above the nose bridge because a mask covers the nose: sampled lower, a masked face's
    "hand" took the mask's colour, and a white hand over an unmasked mouth looks like a mask.
    """
    d = max(4.0, float(np.hypot(*(pts[1] - pts[0]))))
    cx, cy = (pts[0] + pts[1]) / 2
    arr = np.asarray(img.convert("RGB"))
    x0, x1 = int(max(0, cx - d / 5)), int(min(arr.shape[1], cx + d / 5 + 1))
    y0, y1 = int(max(0, cy - d / 2.5)), int(min(arr.shape[0], cy - d / 10 + 1))
    patch = arr[y0:y1, x0:x1].reshape(-1, 3)
    base = np.median(patch, axis=0) if patch.size else np.array([190, 150, 120])
    return tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(base, jitter))  # type: ignore[return-value]


def _hand(draw: ImageDraw.ImageDraw, centre: np.ndarray, width: float, colour: tuple[int, int, int]) -> None:
    """A palm with four fingers lying across it, seen from the front: rounded, not a rectangle."""
    cx, cy = centre
    w, h = width, 0.62 * width
    shade = tuple(max(0, int(c * 0.82)) for c in colour)
    draw.rounded_rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], radius=h / 2.5, fill=colour)
    for k in range(4):  # fingers: horizontal bands with a darker crease between them
        y = cy - h / 2 + (k + 0.5) * h / 4
        draw.line([cx - w / 2 + h / 8, y + h / 8, cx + w / 2 - h / 8, y + h / 8], fill=shade, width=max(1, int(h / 40)))
    draw.ellipse([cx - w / 2 - h / 6, cy - h / 6, cx - w / 2 + h / 3, cy + h / 2], fill=colour)  # the thumb


def _texture(layer: Image.Image, centre: np.ndarray, width: float, rng: np.random.Generator) -> Image.Image:
    """The drawn hand made to look like skin in light: gaps between some fingers, shading across it, fine grain.

    The flat drawing taught the retrains that a flat pale patch over the mouth means "no mask", and a white
    or light-blue mask washed out by bright light is exactly that (docs/accuracy.md): a real hand is shaded,
    grainy and shows the face between its fingers, a washed-out mask is none of these.
    """
    cx, cy = centre
    w, h = width, 0.62 * width
    draw = ImageDraw.Draw(layer)
    for k in rng.permutation(3)[: int(rng.integers(1, 4))]:  # fingers apart: the face shows through the gap
        y = cy - h / 2 + (k + 1) * h / 4
        gap = max(1, round(h * rng.uniform(0.04, 0.09)))
        draw.line([cx - w / 6, y, cx + w / 2 + 2, y], fill=(0, 0, 0, 0), width=gap)
    arr = np.asarray(layer, dtype=np.float32).copy()
    yy, xx = np.mgrid[0:arr.shape[0], 0:arr.shape[1]].astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    along = ((xx - cx) * math.cos(phi) + (yy - cy) * math.sin(phi)) / max(1.0, w)
    light = 1.0 + rng.uniform(0.15, 0.35) * along - rng.uniform(0.0, 0.15) * (along ** 2) * 4  # lit side, rounded edge
    grain = np.asarray(Image.fromarray(np.clip(128 + rng.normal(0, 40, arr.shape[:2]), 0, 255).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(max(0.5, w / 60))), dtype=np.float32) - 128
    amount = rng.uniform(0.15, 0.35)  # skin grain of a few levels, blotchier on a larger hand
    arr[..., :3] = arr[..., :3] * light[..., None] + amount * grain[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")


def hand_over_mouth(img: Image.Image, box, landmarks=None, jitter: tuple[int, int, int] = (-8, -12, -10),
                    offset: float = 0.0, angle: float = 0.0, scale: float = 1.0,
                    texture_seed: int | None = None) -> Image.Image:
    """A hand-like, skin-coloured patch over the mouth and chin (the face's own skin colour, a little darker).

    ``offset`` moves it up by that many eye distances (training uses it to put the
    same shape elsewhere on masked faces, see :class:`OccludeFaces`); ``angle`` (degrees,
    counter-clockwise) and ``scale`` vary the palm in training, so that what is learnt is skin over
    the mouth rather than one level drawing; ``texture_seed`` draws it shaded and grainy with fingers
    apart (:func:`_texture`). The benchmark's condition uses none of them: a flat, level palm.
    """
    out = img.convert("RGB").copy()
    pts = _face_points(box, landmarks)
    d = max(4.0, float(np.hypot(*(pts[1] - pts[0]))))
    mouth = (pts[3] + pts[4]) / 2
    centre = mouth + np.array([0.0, 0.25 * d - offset * d])
    colour = _skin(img, pts, jitter)
    if not angle and texture_seed is None:
        _hand(ImageDraw.Draw(out), centre, 2.0 * d * scale, colour)
        return out
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    _hand(ImageDraw.Draw(layer), centre, 2.0 * d * scale, colour)
    if texture_seed is not None:
        layer = _texture(layer, centre, 2.0 * d * scale, np.random.default_rng(texture_seed))
    layer = layer.rotate(angle, resample=Image.Resampling.BILINEAR, center=(float(centre[0]), float(centre[1])))
    return Image.alpha_composite(out.convert("RGBA"), layer).convert("RGB")


def hand_from_the_side(img: Image.Image, box, landmarks=None) -> Image.Image:
    """A hand raised from below, fingers up, over the mouth and one cheek: a shape training never draws.

    Training draws :func:`hand_over_mouth`'s palm only; this one tells whether what was learnt is "skin over
    the mouth is not a mask" rather than that one drawing.
    """
    out = img.convert("RGB").copy()
    pts = _face_points(box, landmarks)
    d = max(4.0, float(np.hypot(*(pts[1] - pts[0]))))
    cx, cy = (pts[3] + pts[4]) / 2 + np.array([0.3 * d, 0.35 * d])
    w, h = 1.25 * d, 1.9 * d
    colour = _skin(img, pts, (-14, -18, -16))
    shade = tuple(max(0, int(c * 0.8)) for c in colour)
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], radius=w / 2.2, fill=colour)
    for k in range(1, 4):  # the gaps between four upright fingers, down to the knuckles
        x = cx - w / 2 + k * w / 4
        draw.line([x, cy - h / 2 + w / 8, x, cy], fill=shade, width=max(1, int(d / 25)))
    return out


def sunglasses(img: Image.Image, box, landmarks=None, shade: int = 25) -> Image.Image:
    """Sunglasses-like dark lenses over both eyes, joined by a bridge, each with a faint reflection."""
    out = img.convert("RGB").copy()
    pts = _face_points(box, landmarks)
    d = max(4.0, float(np.hypot(*(pts[1] - pts[0]))))
    draw = ImageDraw.Draw(out)
    rx, ry = 0.36 * d, 0.26 * d
    dark = (shade, shade, shade + 5)
    for x, y in pts[:2]:
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=dark)
        draw.ellipse([x - rx * 0.5, y - ry * 0.6, x - rx * 0.1, y - ry * 0.3], fill=(shade + 45,) * 3)
    (lx, ly), (rx2, ry2) = pts[0], pts[1]
    draw.line([lx + rx * 0.9, ly, rx2 - rx * 0.9, ry2], fill=dark, width=max(1, int(d / 12)))
    return out


#: Occlusion conditions of the stress benchmark: name -> (f(photo, box, landmarks), classes it applies to or None).
#: The hand goes on unmasked faces only: over a mask it would hide the very thing judged.
OCCLUSIONS: dict[str, tuple[Callable[..., Image.Image], tuple[str, ...] | None]] = {
    "hand over mouth": (hand_over_mouth, ("without_mask",)),
    "hand from the side (untrained shape)": (hand_from_the_side, ("without_mask",)),
    "sunglasses": (sunglasses, None),
}


# -- a small face through a phone's camera -------------------------------------------------------------------
def camera(img: Image.Image, side: int, face_side: float | None = None, noise: float = 1.0, quality: int = 30,
           seed: int = 0) -> Image.Image:
    """The photo as a camera records a face ``side`` px across, scaled back up: what small street faces look like.

    ``low_resolution`` only resamples; a small face in a real photo is also
    blurred by the lens and demosaicing (about 0.8 px at the sensor's size),
    carries sensor noise (shot noise growing with brightness plus read noise,
    ``noise`` scales both) and is JPEG-compressed at that size, where blocks of
    8 px are a large part of the face. Deterministic for a given ``seed``.
    """
    img = img.convert("RGB")
    ref = face_side or min(img.size)
    scale = min(1.0, side / max(1.0, ref))
    w, h = max(8, round(img.width * scale)), max(8, round(img.height * scale))
    small = img.resize((w, h), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(0.8))
    rng = np.random.default_rng(seed)
    arr = np.asarray(small, dtype=np.float32)
    sigma = noise * np.sqrt(4.0 + 0.06 * arr)  # read noise 2 levels, shot noise ~ sqrt(signal)
    arr = arr + rng.normal(0.0, 1.0, arr.shape).astype(np.float32) * sigma
    small = jpeg(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), quality)
    return small.resize(img.size, Image.Resampling.BICUBIC)


#: Camera conditions of the stress benchmark: name -> f(photo, face_side or None).
CAMERA_CONDITIONS: dict[str, Callable[[Image.Image, float | None], Image.Image]] = {
    f"camera {s} px": (lambda im, f, s=s, q=q: camera(im, s, f, quality=q))
    for s, q in ((24, 25), (40, 30), (64, 40))
}


class CleanView(PILImage):
    """A training crop as the crop pass gave it, before the training-only conditions: what a teacher judges."""


#: How training draws its hand (:class:`OccludeFaces`): flat, flat and never brightened, textured and never
#: brightened. (``settings.TrainConfig.hand`` offers the same three: settings is below this module.)
HAND_STYLES = ("flat", "unlit", "textured")
#: Where :class:`OccludeFaces` draws the hand on masked faces: always on the forehead, or half the time low over the
#: chin with the mask still showing above it (``chin``).
MASKED_HAND_PLACES = ("forehead", "chin")


class HandDrawn(PILImage):
    """A training crop with a hand drawn on it by :class:`OccludeFaces` (hand unlit or textured): never brightened.

    Bright light washes a white or light-blue mask into a pale patch over the mouth; a hand brightened the
    same way is a pale patch over an unmasked mouth, and the model learnt to call both "no mask"
    (docs/accuracy.md). :class:`PhoneConditions` keeps such a crop's exposure to the dim side.
    """


class KeepCleanView(ItemTransform):
    """Training-only: a copy of each crop kept beside it, for the teacher of ``--distill-clean``.

    With the teacher on the same augmented pixels, a hand over an unmasked mouth or a face on its side
    is judged by a teacher that reads them wrongly too, and its soft targets teach the student its
    mistakes. With the copy, the teacher reads the face as it was cropped, and the student learns to
    read the stressed face as the teacher reads the clean one. The copy shares the random crop (drawn
    once per item) and the batch's flips, rotations and lighting (drawn once per batch); the hand,
    the phone and camera conditions, the quarter turn and the roll pass it by. Runs first (order -1), before
    :class:`OccludeFaces`. Items become (crop, label, clean copy): ``distill.KnowledgeDistillation``
    takes the copy off the batch before the loss.
    """

    split_idx = 0
    order = -1

    def encodes(self, x):
        if len(x) != 2 or not isinstance(x[0], Image.Image):
            return x
        # a copy: fastai's create casts an image in place, and the crop itself must stay a PILImage
        return (*x, CleanView(x[0].convert("RGB")))


class PhoneConditions(Transform):
    """Training-only item transform: each condition, at a random strength, with probability ``p`` each.

    Runs on the face crop after the random crop (order 2), before it becomes a
    tensor; fastai skips it for validation and inference (``split_idx = 0``).
    """

    split_idx = 0
    order = 2

    def __init__(self, p: float = 0.15, seed: int | None = None, camera_p: float = 0.0) -> None:
        """``camera_p``: the chance of :func:`camera` with the face at 24-64 px (off by default: the
        shipped model's recipe does not use it; new models may)."""
        super().__init__()
        # A seed only for tests: otherwise the random module, which fastai seeds in each loader worker.
        self.p, self.seed, self.camera_p = p, seed, camera_p
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, img: PILImage) -> PILImage:
        if isinstance(img, CleanView):
            return img
        r = self._rng or random
        def maybe() -> bool:
            return r.random() < self.p

        out = img.convert("RGB")
        if maybe():
            out = grayscale(out)
        if maybe():
            out = colour_cast(out, CASTS[r.choice(sorted(CASTS))], r.uniform(0.4, 1.0))
        if maybe():
            dim = r.random() < 0.5 or isinstance(img, HandDrawn)  # (the draw made either way: same stream)
            out = exposure(out, r.uniform(0.25, 0.7), r.uniform(1.0, 1.5)) if dim \
                else exposure(out, r.uniform(1.3, 2.0))
        if maybe():
            out = blur(out, r.uniform(0.6, 2.5) * min(out.size) / 128)
        if maybe():
            # The crop is the face plus a 20% margin: a face of 24-64 px is a crop of about 34-90 px.
            out = low_resolution(out, round(r.uniform(24, 64) * 1.4))
        if maybe():
            out = jpeg(out, r.randint(15, 50))
        # Drawn only when enabled, so the other conditions' random draws are those of the shipped recipe.
        if self.camera_p and r.random() < self.camera_p:
            # the crop is the face plus a 20% margin on each side: face px = crop px / 1.4
            out = camera(out, r.randint(24, 64), min(out.size) / 1.4, noise=r.uniform(0.5, 1.5),
                         quality=r.randint(20, 50), seed=r.randrange(2**31))
        return PILImage.create(out) if out is not img else img


class OccludeFaces(ItemTransform):
    """Training-only: a hand or sunglasses drawn on face crops, placed so that no occluder predicts a label.

    Sunglasses go on both classes alike (the eyes are not what is judged). The hand
    goes over the mouth and chin of **unmasked** faces only (over a mask it would hide
    the label), and the same hand, same size and colour rule, over the **forehead** of
    masked faces at the same rate: so a hand's presence, shape or colour says
    nothing about the label, and only what lies under the mouth does. Crops have no
    landmarks: the face is where the crop pass put it (the middle, a 20% margin on
    each side), upright when the crops are aligned. Works on (image, label) pairs,
    so it knows the class; ``unmasked`` is the index of the unmasked class in the vocab.
    Runs first (order 0), while the face is still where the crop pass put it: after
    the random crop it could be anywhere.
    """

    split_idx = 0
    order = 0

    def __init__(self, p: float = 0.1, unmasked: int = 1, margin: float = 0.2, seed: int | None = None,
                 hand: str = "flat", masked_hand: str = "forehead") -> None:
        """``hand``: ``flat``, the flat palm of the retrains up to *camonly*, brightened as any crop may be;
        ``unlit``, the same palm never brightened afterwards (:class:`HandDrawn`); ``textured``, shaded and
        grainy with fingers apart, never brightened either (docs/accuracy.md).

        ``masked_hand``: ``chin`` puts the hand on half the masked faces low over the chin, smaller, its top
        below the mouth, so the mask still shows above it. Retrains drawing the flat hand over unmasked mouths
        only read masked faces worse on the conditions they were not taught, as if a patch of skin low on the
        face meant "no mask"; this shows them one on masked faces. Tried once (*chin*, docs/accuracy.md): no
        better on masked faces than the forehead alone."""
        super().__init__()
        if hand not in HAND_STYLES:
            raise ValueError(f"hand: one of {', '.join(HAND_STYLES)}, not {hand!r}")
        if masked_hand not in MASKED_HAND_PLACES:
            raise ValueError(f"masked_hand: one of {', '.join(MASKED_HAND_PLACES)}, not {masked_hand!r}")
        self.p, self.unmasked, self.margin, self.hand, self.masked_hand = p, unmasked, margin, hand, masked_hand
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, x):
        img, y = x[0], x[1]
        if not isinstance(img, Image.Image):
            return x
        r = self._rng or random
        out = img.convert("RGB")
        k = out.width / (1 + 2 * self.margin)
        off = self.margin * k
        box = (off, off, off + k, off + k)
        shift = r.randint(-25, 10)  # a little darker or lighter, the hue kept (a hand is the face's own colour)
        jitter = tuple(shift + r.randint(-5, 5) for _ in range(3))
        changed, kind = False, PILImage
        if r.random() < self.p:
            unmasked = int(y) == self.unmasked
            # unmasked: over mouth and chin; masked: the same hand 1.7 eye distances higher, on the forehead
            # tilted up to 35 degrees either way, 80-125% of the benchmark's size: varied, so no one drawing is learnt
            # The draws keep their order (angle, then scale): a seeded recipe is the same run only while the
            # stream is (an order swapped here once made tex's rerun another model; docs/accuracy.md).
            angle, offset, scale = r.uniform(-35, 35), (0.0 if unmasked else 1.7), r.uniform(0.8, 1.25)
            if not unmasked and getattr(self, "masked_hand", "forehead") == "chin" and r.random() < 0.5:
                # 0.45 eye distances lower and 55-75% the size: its top about 0.3 eye distances below the mouth
                offset, scale = -0.45, r.uniform(0.55, 0.75)
            out = hand_over_mouth(out, box, jitter=jitter, offset=offset, angle=angle,  # type: ignore[arg-type]
                                  scale=scale, texture_seed=r.randrange(2**31) if self.hand == "textured" else None)
            changed, kind = True, PILImage if self.hand == "flat" else HandDrawn
        if r.random() < self.p:
            out = sunglasses(out, box, shade=r.randint(10, 50))
            changed = True
        return (kind.create(out), *x[1:]) if changed else x


class TurnQuarter(Transform):
    """Training-only: the crop turned a quarter, either way, with probability ``p``, on both classes alike.

    Faces are cropped upright where their landmarks are trusted, but on a photo taken lying down RetinaFace
    can find a face with landmarks that look right and are not, and the crop is then judged on its side. A
    model fine-tuned on upright crops alone read such unmasked faces as masked more often than the shipped
    model (docs/accuracy.md); seeing some faces on their side in training, with their own labels, teaches
    that a turn says nothing about a mask. Runs last (order 3), on the final square crop.
    """

    split_idx = 0
    order = 3

    def __init__(self, p: float = 0.0, seed: int | None = None) -> None:
        super().__init__()
        self.p = p
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, img: PILImage) -> PILImage:
        r = self._rng or random
        if isinstance(img, CleanView) or not self.p or r.random() >= self.p:
            return img
        turn = Image.Transpose.ROTATE_90 if r.random() < 0.5 else Image.Transpose.ROTATE_270
        return PILImage.create(img.transpose(turn))


def roll_crop(img: Image.Image, degrees: float, flat: bool = False) -> Image.Image:
    """The crop turned ``degrees`` counter-clockwise about its centre, the same size, its corners mirrored from
    the crop (never black, as ``faces.crop_face`` fills an aligned crop), or with ``flat`` filled with the crop's
    mean colour, as a rolled photo's padding surrounds a face near its edge (``rolled``)."""
    arr = np.asarray(img.convert("RGB"))
    h, w = arr.shape[:2]
    if flat:
        fill = tuple(int(v) for v in arr.reshape(-1, 3).mean(0))
        return Image.fromarray(arr).rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    pad = math.ceil(max(h, w) * (math.sqrt(2) - 1) / 2) + 2  # the turned crop's corners lie within this
    big = Image.fromarray(np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric"))
    return big.rotate(degrees, resample=Image.Resampling.BILINEAR).crop((pad, pad, pad + w, pad + h))


class RollFaces(Transform):
    """Training-only: the crop rolled up to ``max_degrees`` either way with probability ``p``, both classes alike.

    Faces are served upright only where their landmarks are trusted (64 px and up, landmarks that fit); a
    smaller face on a rolled photo is judged as it lies. Fine-tuned on upright crops alone, the model forgot
    some of the tilt it had seen in the unaligned crops it was first trained on: rolled -60 deg lost 9 photos
    (docs/accuracy.md). Runs last (order 3), on the final square crop; a teacher's clean copy passes it by.
    """

    split_idx = 0
    order = 3

    def __init__(self, p: float = 0.0, max_degrees: float = 60.0, seed: int | None = None, flat: bool = False) -> None:
        """``flat``: corners in the crop's mean colour (:func:`roll_crop`): after every fine-tune on upright crops,
        unmasked faces on photos rolled -60 degrees, tilted and padded flat around, read "mask", and the same
        photos padded with a mirror of themselves did not (docs/accuracy.md)."""
        super().__init__()
        self.p, self.max_degrees, self.flat = p, max_degrees, flat
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, img: PILImage) -> PILImage:
        r = self._rng or random
        if isinstance(img, CleanView) or not self.p or r.random() >= self.p:
            return img
        return PILImage.create(roll_crop(img, r.uniform(-self.max_degrees, self.max_degrees), self.flat))


def filled_edges(img: Image.Image, edges: list[tuple[float, float]], colour: tuple[int, int, int],
                 margin: float = 0.2) -> Image.Image:
    """The crop with everything beyond each straight edge filled flat with ``colour``.

    Each edge is ``(direction in degrees, distance)``: the line whose normal points that way, ``distance``
    face widths from the crop's centre (the face is the crop's middle, ``margin`` of it on each side).
    """
    out = img.convert("RGB").copy()
    w, h = out.size
    face = min(w, h) / (1 + 2 * margin)
    mask = Image.new("L", out.size, 0)
    draw = ImageDraw.Draw(mask)
    far = 2.0 * max(w, h)
    for direction, distance in edges:
        n = np.array([math.cos(math.radians(direction)), math.sin(math.radians(direction))])
        t = np.array([-n[1], n[0]])
        p = np.array([w / 2, h / 2]) + n * distance * face
        corners = (p + t * far, p - t * far, p - t * far + n * far, p + t * far + n * far)
        draw.polygon([tuple(c) for c in corners], fill=255)
    out.paste(Image.new("RGB", out.size, colour), mask=mask)
    return out


class FilledEdges(ItemTransform):
    """Training-only: with probability ``p``, one to three straight edges across the crop's margin, the photo
    beyond them filled flat, on both classes alike.

    A face near the edge of a photo rolled and padded (the stress benchmark's rolled photos, a photo
    straightened in an editor, a screenshot, a letterboxed frame) comes out of the crop with flat bands or
    wedges around it. The data's unmasked faces are tight crops and many masked ones wide scenes (the data
    README's shortcut), so a face framed by anything but face reads as "mask": after every fine-tune, unmasked
    faces on photos rolled -60 degrees did, and the same photos padded with a mirror of themselves were read
    right (docs/accuracy.md). Alone (*tex*) these upright edges did not bring those faces back: they lie tilted
    in padding on every side, which ``RollFaces(flat=True)`` draws. The fill is the crop's own mean colour
    (what the benchmark's padding is near a tight photo), at times black or white (editors' and letterboxes'
    fill); edges are axis-aligned half the time (the photo's own edge, turned upright with the face) and at any
    angle otherwise, and stop 0.4-0.7 face widths from the centre: over the margin and the face's rim, never
    over the mouth and nose that are judged. Runs first (order 0), where the crop pass put the face.
    """

    split_idx = 0
    order = 0

    def __init__(self, p: float = 0.0, margin: float = 0.2, seed: int | None = None) -> None:
        super().__init__()
        self.p, self.margin = p, margin
        self._rng = random.Random(seed) if seed is not None else None

    def encodes(self, x):
        img = x[0]
        r = self._rng or random
        if not isinstance(img, Image.Image) or isinstance(img, CleanView) or not self.p or r.random() >= self.p:
            return x
        edges = []
        for _ in range(r.choice((1, 1, 2, 3))):
            direction = r.choice((0, 90, 180, 270)) if r.random() < 0.5 else r.uniform(0, 360)
            edges.append((direction, r.uniform(0.4, 0.7)))
        rgb = img.convert("RGB")
        k = r.random()
        colour = tuple(int(v) for v in np.asarray(rgb).reshape(-1, 3).mean(0)) if k < 0.7 else \
            ((0, 0, 0) if k < 0.85 else (255, 255, 255))
        out = filled_edges(rgb, edges, colour, self.margin)  # type: ignore[arg-type]
        return (type(img).create(out) if isinstance(img, PILImage) else PILImage.create(out), *x[1:])
