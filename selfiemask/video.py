"""Live video: box every face with a verdict that does not flicker, and show how fast it goes.

A camera, a video file or a stream is read frame by frame with OpenCV. Faces
are found with the classifier's own detector (every frame, or every
``every`` frames with the boxes reused in between, because detection costs
more than classification; RetinaFace's MTCNN fallback on empty frames only
now and then, see ``FrameAnalyzer._detect``), every face crop of a frame is classified in
one batch, and each face is followed from frame to frame by box overlap so
that its verdict can be averaged over the last few frames: a single frame's
verdict jumps with motion blur and lighting, the average does not.

Frames go to a window when OpenCV has a GUI and a display exists; otherwise
(``opencv-python-headless``, servers, CI) to a video file. Ctrl-C stops the
run and the file is still finalised, so a recording can be ended at any time.

OpenCV is imported only when a video is read or written: it is a dev extra,
and the rest of the package (CLI ``predict``, the app) must not need it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .faces import DEFAULT_MARGIN, FaceDetector
from .predict import Classifier
from .verdicts import colour, is_uncertain, shown_label

__all__ = ["DEFAULT_SMOOTH", "FALLBACK_EVERY", "FaceTracker", "FrameAnalyzer", "FrameRecord", "VideoOut", "WatchError",
           "WatchResult", "box_colour", "class_probs", "count_frames", "default_out", "display_available", "draw",
           "iou", "open_source", "watch"]

Box = tuple[int, int, int, int]

#: Frames whose class probabilities are averaged for a face's shown verdict.
DEFAULT_SMOOTH = 5
#: Two boxes in consecutive detections are the same face when they overlap at least this much.
MIN_IOU = 0.3
#: A face missed by this many detections in a row is forgotten (its history with it).
MAX_MISSED = 3
#: The shown verdict changes only when another class leads the smoothed probabilities by this much:
#: a face near 50/50 would otherwise still flip now and then, even averaged.
DEFAULT_HYSTERESIS = 0.1
#: Written when the source is a camera or a stream and no ``--out`` is given.
DEFAULT_OUT = Path("watch_out.mp4")
#: Frame rate written when the source does not report one (cameras often say 0).
FALLBACK_FPS = 25.0
WINDOW = "selfiemask watch"
#: On frames where RetinaFace finds no face, its MTCNN fallback runs on one frame in this many (see
#: ``FrameAnalyzer._detect``): a third of a second at 30 frames/s before a face only MTCNN sees is found.
FALLBACK_EVERY = 10


class WatchError(RuntimeError):
    """The source or the output cannot be used; the message is meant for users."""


def class_probs(clf: Classifier, images: list[Image.Image]) -> np.ndarray:
    """Class probabilities (N, classes) of already-cropped images, in one batch, through ``clf.classify``."""
    if not images:
        return np.zeros((0, len(clf.classes)), dtype=np.float32)
    verdicts = clf.classify(images, bs=len(images))
    return np.array([[v.probs[c] for c in clf.classes] for v in verdicts], dtype=np.float32)


# -- following faces ------------------------------------------------------------------------------
def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed across frames: its latest box, its last ``k`` probability vectors, its verdict."""

    id: int
    box: Box
    history: deque
    missed: int = 0
    verdict: int = -1  # index of the shown class; -1 before the first frame

    @property
    def probs(self) -> np.ndarray:
        """The smoothed probabilities: the mean over the kept frames."""
        return np.mean(np.stack(list(self.history)), axis=0)

    def add(self, probs: np.ndarray, hysteresis: float) -> None:
        """One more frame's probabilities; the verdict follows the smoothed leader, with hysteresis."""
        self.history.append(np.asarray(probs, dtype=np.float32))
        p = self.probs
        best = int(p.argmax())
        if self.verdict < 0 or (best != self.verdict and p[best] - p[self.verdict] > hysteresis):
            self.verdict = best


class FaceTracker:
    """Matches each frame's faces to the previous ones by box overlap and smooths their verdicts.

    Greedy matching by decreasing IoU is enough here: faces in a selfie video
    are few and move little between frames. A face missed by a detection is
    kept (not shown) for ``max_missed`` detections, so one missed frame does
    not throw its history away.
    """

    def __init__(self, k: int = DEFAULT_SMOOTH, min_iou: float = MIN_IOU, max_missed: int = MAX_MISSED,
                 hysteresis: float = DEFAULT_HYSTERESIS) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k, self.min_iou, self.max_missed, self.hysteresis = k, min_iou, max_missed, hysteresis
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, boxes: list[Box], probs: np.ndarray) -> list[Track]:
        """Add one frame's faces (boxes and their class probabilities); return their tracks, in order."""
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or bi in track_of:
                continue
            used.add(ti)
            track_of[bi] = self.tracks[ti]
        for ti, t in enumerate(self.tracks):
            if ti not in used:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        shown = []
        for bi, box in enumerate(boxes):
            t = track_of.get(bi)
            if t is None:
                t = Track(self._next_id, box, deque(maxlen=self.k))
                self._next_id += 1
                self.tracks.append(t)
            t.box, t.missed = box, 0
            t.add(probs[bi], self.hysteresis)
            shown.append(t)
        return shown


# -- one frame ------------------------------------------------------------------------------------
@dataclass
class FaceState:
    """What is shown for one face in one frame."""

    track: int
    box: Box
    label: str  # smoothed verdict
    confidence: float  # smoothed probability of that verdict
    raw_label: str  # this frame's own verdict, before smoothing


@dataclass
class FrameRecord:
    index: int
    detected: bool  # detection ran on this frame (else the previous boxes were reused)
    faces: list[FaceState]
    seconds: float  # analysis time of this frame (detection + classification + smoothing)
    fallback: bool = False  # the detector's fallback (MTCNN) ran on this frame


class FrameAnalyzer:
    """Detect (or reuse boxes), classify the crops in one batch, smooth: the per-frame work of ``watch``.

    A model trained on whole images (no detector in its classifier) gets one
    "face" covering the whole frame, smoothed the same way.
    """

    def __init__(self, clf: Classifier, every: int = 1, smooth: int = DEFAULT_SMOOTH,
                 margin: float = DEFAULT_MARGIN, fallback_every: int = FALLBACK_EVERY) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.clf, self.every, self.margin = clf, every, margin
        if fallback_every < 1:
            raise ValueError("fallback_every must be at least 1")
        self.fallback_every = fallback_every
        # No padded retry on frames without a face: it searches a frame twice the size again, which
        # doubles the cost of every empty frame, and a camera rarely frames a face edge to edge.
        # Nor the turned search (two more detections of every empty frame) or the orientation check (three small
        # ones of every face): a camera is rarely held sideways.
        settings = (replace(clf.detector.settings, pad_fraction=0.0, turned=False, orient=False)
                    if clf.detector is not None else None)
        self.detector = FaceDetector(settings) if settings is not None else None
        # RetinaFace with the MTCNN fallback: the two run apart, so that an empty scene does not pay
        # MTCNN (46 ms at 640x480, more than the rest of a frame) on every frame (see _detect).
        self._first = self._fallback = None
        if settings is not None and settings.backend == "retinaface+mtcnn":
            self._first = FaceDetector(replace(settings, backend="retinaface"))
            self._fallback = FaceDetector(replace(settings, backend="mtcnn"))
        self.tracker = FaceTracker(k=smooth, max_missed=MAX_MISSED * every)
        self._boxes: list[Box] = []
        self._faces: list = []  # the faces of the last detection, landmarks included, reused with their boxes
        self._n = 0
        self._fallback_finds = False  # the last frame's faces came from the fallback alone
        self._since_fallback = fallback_every  # detections since the fallback last ran (due on the first empty one)
        self._ran_fallback = False

    def _detect(self, img: Image.Image) -> list:
        """The frame's faces: RetinaFace, then MTCNN where it finds none, as in photos, but not on every frame.

        On an empty frame MTCNN runs once every ``fallback_every`` detections; once it has found a face that
        RetinaFace misses (a masked face from the side, say), it runs on every frame until it loses that
        face again, so such a face is followed like any other. An empty scene, most of a camera's
        frames, then costs RetinaFace alone on all but one frame in ``fallback_every``.
        """
        if self._first is None or self._fallback is None:
            return self.detector.detect(img) if self.detector is not None else []
        faces = self._first.detect(img)
        self._since_fallback += 1
        if faces:
            self._fallback_finds = False
            return faces
        if not self._fallback_finds and self._since_fallback < self.fallback_every:
            return []
        self._since_fallback = 0
        self._ran_fallback = True
        faces = self._fallback.detect(img)
        self._fallback_finds = bool(faces)
        return faces

    def __call__(self, img: Image.Image) -> FrameRecord:
        start = time.perf_counter()
        detect = self._n % self.every == 0
        self._ran_fallback = False
        if self.detector is None:
            self._boxes = [(0, 0, img.width, img.height)]
        elif detect:
            self._faces = self._detect(img)
            self._boxes = [f.box for f in self._faces]
        crops = [self.clf.crop(img, f, self.margin) for f in self._faces] if self.detector else [img]
        probs = class_probs(self.clf, crops)
        tracks = self.tracker.update(list(self._boxes), probs)
        classes = self.clf.classes
        faces = []
        for t, p in zip(tracks, probs):
            faces.append(FaceState(t.id, t.box, classes[t.verdict], float(t.probs[t.verdict]),
                                   classes[int(p.argmax())]))
        record = FrameRecord(self._n, detect, faces, time.perf_counter() - start, self._ran_fallback)
        self._n += 1
        return record


# -- drawing --------------------------------------------------------------------------------------
def _bgr(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def box_colour(label: str) -> tuple[int, int, int]:
    """The app's colour for a verdict, as OpenCV's BGR."""
    return _bgr(colour(label))


def draw(frame: np.ndarray, faces: list[FaceState], fps: float | None, whole_frame: bool = False) -> None:
    """Boxes, smoothed verdicts and the frame rate, drawn on the BGR ``frame`` in place."""
    import cv2

    h, w = frame.shape[:2]
    # At least 3 px, drawn inside the face's box: video codecs keep colour at half resolution (4:2:0), which
    # washes a thinner line's colour out into the face behind it.
    thick = max(3, round(max(w, h) / 160))
    inset = thick // 2
    scale = max(0.4, max(w, h) / 900)
    for f in faces:
        colour = box_colour(f.label)  # the model's guess, even when the words say "Not sure"
        l, t, r, b = f.box
        # "Not sure" alone: a percentage beside it would read as confidence in being unsure.
        text = shown_label(f.label, f.confidence) + ("" if is_uncertain(f.confidence) else f" {f.confidence:.0%}")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if whole_frame:  # a whole-image model: a banner at the bottom, no box
            cv2.rectangle(frame, (0, h - th - base - 6), (tw + 8, h), colour, -1)
            cv2.putText(frame, text, (4, h - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
            continue
        cv2.rectangle(frame, (l + inset, t + inset), (r - 1 - inset, b - 1 - inset), colour, thick)
        ty = t - th - base - 4 if t - th - base - 4 >= 0 else b  # above the box, or below it at the top edge
        cv2.rectangle(frame, (l, ty), (l + tw + 6, ty + th + base + 4), colour, -1)
        cv2.putText(frame, text, (l + 3, ty + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    if fps is not None:
        text = f"{fps:.1f} fps"
        org = (6, 6 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1])
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


# -- sources and sinks ----------------------------------------------------------------------------
def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise WatchError("OpenCV is not installed: pip install opencv-python (or opencv-python-headless)") from None
    return cv2


def describe_source(source: str | int) -> str:
    s = str(source)
    if s.isdigit():
        return f"camera {s}"
    return s


def open_source(source: str | int):
    """A ``cv2.VideoCapture`` that has delivered its first frame, or a :class:`WatchError` saying why not."""
    cv2 = _cv2()
    s = str(source)
    is_camera = s.isdigit()
    is_url = "://" in s
    if not is_camera and not is_url:
        p = Path(s)
        if not p.exists():
            raise WatchError(f"cannot open video source {s!r}: no such file (give a camera index such as 0, "
                             "a video file or a stream URL)")
        if p.is_dir():
            raise WatchError(f"cannot open video source {s!r}: it is a folder, not a video")
    cap = cv2.VideoCapture(int(s) if is_camera else s)
    if not cap.isOpened():
        cap.release()
        why = ("no camera with that index, or it is busy" if is_camera
               else "the stream did not answer" if is_url else "not a video OpenCV can read")
        raise WatchError(f"cannot open video source {describe_source(s)!r}: {why}")
    return cap


def frames(cap) -> Iterator[np.ndarray]:
    """BGR frames until the source ends."""
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


def display_available() -> bool:
    """True when ``cv2.imshow`` can open a window: a GUI build of OpenCV and, on Linux, a display.

    ``opencv-python-headless`` has no GUI at all: ``namedWindow`` raises
    "The function is not implemented", which is what is checked here.
    """
    cv2 = _cv2()
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


def default_out(source: str | int) -> Path:
    """Next to a video file (``clip.mp4`` -> ``clip.watch.mp4``); ``watch_out.mp4`` for cameras and streams."""
    s = str(source)
    if s.isdigit() or "://" in s:
        return DEFAULT_OUT
    p = Path(s)
    return p.with_name(f"{p.stem}.watch.mp4")


class VideoOut:
    """An OpenCV video file written frame by frame; mp4v for .mp4, MJPG for .avi (both in headless wheels)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self.writer.isOpened():
            raise WatchError(f"cannot write video {self.path} (codec {fourcc}); try an .mp4 or .avi name")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def count_frames(path: str | Path) -> int:
    """Frames that can actually be decoded from a video file (not the header's claim)."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        return sum(1 for _ in frames(cap)) if cap.isOpened() else 0
    finally:
        cap.release()


# -- the loop -------------------------------------------------------------------------------------
@dataclass
class WatchResult:
    frames: int = 0
    out: Path | None = None
    out_frames: int | None = None  # decoded back from ``out`` after it was finalised
    interrupted: bool = False
    seconds: float = 0.0  # wall time of the frame loop
    records: list[FrameRecord] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def watch(source: str | int, clf: Classifier, out: str | Path | None = None, every: int = 1,
          max_frames: int = 0, smooth: int = DEFAULT_SMOOTH, display: bool | None = None,
          on_frame: Callable[[FrameRecord], None] | None = None, log: Callable[[str], None] | None = None,
          fallback_every: int = FALLBACK_EVERY) -> WatchResult:
    """Read ``source``, box and label every face, show or write the frames; see the module docstring.

    ``display`` None: a window if one can be opened, else a file. ``out``
    given: always written (as well as shown). ``max_frames`` 0: until the
    source ends (a camera: until Ctrl-C, or q / Esc in the window).
    ``on_frame`` is called after each frame is written (tests use it). ``fallback_every`` 1 runs the
    detector's fallback on every frame without a face, as for photos.
    """
    cv2 = _cv2()
    log = log or (lambda msg: None)
    cap = open_source(source)
    show = display_available() if display is not False else False
    if display and not show:
        cap.release()
        raise WatchError("no window can be opened here (OpenCV without GUI, or no display); write a file with --out")
    if show:
        log("showing the video in a window (q, Esc or closing it stops)")
    out_path = Path(out) if out is not None else (None if show else default_out(source))
    if out_path is not None and out_path.exists() and Path(str(source)).exists() \
            and out_path.resolve() == Path(str(source)).resolve():
        cap.release()
        raise WatchError(f"--out {out_path} is the video being read; choose another name")
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps_out = fps_in if 1.0 <= fps_in <= 240.0 else FALLBACK_FPS
    analyzer = FrameAnalyzer(clf, every=every, smooth=smooth, fallback_every=fallback_every)
    result = WatchResult(out=out_path)
    sink: VideoOut | None = None
    shown_fps: float | None = None
    started = last = time.perf_counter()
    try:
        for frame in frames(cap):
            if max_frames and result.frames >= max_frames:
                break
            img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            record = analyzer(img)
            draw(frame, record.faces, shown_fps, whole_frame=analyzer.detector is None)
            if out_path is not None:
                if sink is None:
                    sink = VideoOut(out_path, fps_out, (frame.shape[1], frame.shape[0]))
                    log(f"writing {out_path}")
                sink.write(frame)
            result.frames += 1
            result.records.append(record)
            if on_frame is not None:
                on_frame(record)
            if show:
                cv2.imshow(WINDOW, frame)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    result.interrupted = True
                    break
            # The shown rate is of the whole loop (read, detect, classify, draw, write), smoothed.
            now = time.perf_counter()
            inst = 1.0 / max(now - last, 1e-6)
            shown_fps = inst if shown_fps is None else 0.8 * shown_fps + 0.2 * inst
            last = now
    except KeyboardInterrupt:
        result.interrupted = True
        log("stopped (Ctrl-C); finalising the output")
    finally:
        result.seconds = time.perf_counter() - started
        cap.release()
        if sink is not None:
            sink.close()
        if show:
            cv2.destroyAllWindows()
    if result.frames == 0:
        raise WatchError(f"no frame could be read from {describe_source(source)!r}")
    if sink is not None:
        result.out_frames = count_frames(sink.path)
        if result.out_frames != sink.frames:
            raise WatchError(f"{sink.path}: {sink.frames} frames written but {result.out_frames} read back; "
                             "the codec may not be supported here, try an .avi name")
    return result
