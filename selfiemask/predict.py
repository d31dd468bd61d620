"""Classifying photos with an exported learner: the one path the CLI, the app and video share.

The learner is loaded once; images go through the learner's own validation
transforms (so inference sees exactly what validation saw) and through the
model in batches, without building a DataLoader per call. :func:`predict_rows`
turns a list of files into the CSV rows of ``selfiemask predict``, in one
process or shared out over a distributed run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import distributed as dist
from .card import ModelError, verify_model
from .crops import served_aligned, served_detector
from .engines import LearnerInput, SpecInput, TorchForward, choose_engine, tta_probs
from .faces import DEFAULT_MARGIN, Face, FaceDetector, crop_face
from .images import ImageError, load_image, original_size
from .paths import DEFAULT_MODEL
from .verdicts import is_uncertain

__all__ = ["DEFAULT_MODEL", "FACE_FIELDS", "PREDICT_FIELDS", "Classifier", "FaceVerdict", "PhotoResult", "Verdict",
           "predict_rows", "result_rows"]


@dataclass
class Verdict:
    label: str
    confidence: float
    probs: dict[str, float]


@dataclass
class FaceVerdict(Verdict):
    box: tuple[int, int, int, int] | None = None  # None: the whole image was judged
    face_score: float | None = None  # the detector's score of the face; None: the whole image was judged
    no_face: bool = False  # the detector looked and found no face: a whole-image fallback, never confident

    @property
    def uncertain(self) -> bool:
        """Shown as "Not sure": see :mod:`selfiemask.verdicts` for the measured thresholds and the no-face rule."""
        return is_uncertain(self.confidence, self.face_score, self.no_face)


@dataclass
class PhotoResult:
    """Everything we say about one photo. ``faces`` empty and ``fallback`` set: no face was found (or none was
    looked for: a whole-image model); a fallback after a search has ``no_face`` set, and is "Not sure"."""

    path: str
    faces: list[FaceVerdict] = field(default_factory=list)
    fallback: FaceVerdict | None = None
    error: str = ""
    image: Image.Image | None = None
    size: tuple[int, int] | None = None  # the upright original's size: face boxes are in its pixels

    @property
    def main(self) -> FaceVerdict | None:
        """The verdict for the photo: its largest face, else the whole-image fallback."""
        return self.faces[0] if self.faces else self.fallback


def to_original(box: tuple[int, int, int, int], img: Image.Image, size: tuple[int, int] | None
                ) -> tuple[int, int, int, int]:
    """A box found on the working copy ``img``, in pixels of the original of ``size`` (clipped to it)."""
    if not size or size == img.size:
        return box
    sx, sy = size[0] / img.width, size[1] / img.height
    l, t, r, b = box
    return (max(0, round(l * sx)), max(0, round(t * sy)), min(size[0], round(r * sx)), min(size[1], round(b * sy)))


def unexpected(e: BaseException) -> str:
    """The error text of a photo that failed in a way no check foresaw (a row, not a traceback)."""
    return f"could not be analysed ({type(e).__name__}: {e})"


class Classifier:
    """An exported learner plus the face detector its card says it was trained with."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL, detect_faces: bool | None = None,
                 check_sha: bool = True, allow_unverified: bool = False, unsafe_pickle: bool = False,
                 tta: bool | None = None, engine: str | None = None, threads: int | None = None,
                 lazy: bool = False, flip_unless_sure: float | None = None) -> None:
        """``check_sha`` False or ``allow_unverified``: a model without a (complete) card loads, with a warning.

        ``engine`` (default: the ``SELFIEMASK_ENGINE`` setting, else ``auto``) chooses the forward pass:
        ``auto`` runs the verified int8 ONNX graph beside the model when its card's agreement figures pass,
        else the verified fp32 graph, else torch (:mod:`selfiemask.engines`); ``threads`` is ONNX Runtime's
        thread count (default: torch's).

        The learner is unpickled through :mod:`selfiemask.safe_load`'s allowlist, so a model file cannot
        run code; ``unsafe_pickle`` (Python API only, for a model you made with code the list lacks) uses
        fastai's ``load_learner`` and its warning is left visible.

        ``lazy`` (``selfiemask predict``): when a verified graph will run and the card records the
        preprocessing, the learner is not unpickled and neither fastai nor torch is imported until
        something asks for them (``learn``, ``model``); the card, checked against the model file's
        sha256, gives the classes, and :class:`engines.SpecInput` the learner's own preprocessing.
        """
        self.model_path = Path(model_path)
        self.card = verify_model(self.model_path, allow_unverified=allow_unverified or not check_sha)
        self._unsafe_pickle = unsafe_pickle
        self._learn = None
        trained_on_crops = self.card.get("input", "face crops") == "face crops"
        self.detect_faces = trained_on_crops if detect_faces is None else detect_faces
        # The detector the model was trained with, as its card records it (cards before RetinaFace: MTCNN).
        self.detector = FaceDetector(served_detector(self.card)) if self.detect_faces else None
        #: Faces turned upright before cropping, as the card says (``crops.served_aligned``).
        self.align, self.align_min_face = served_aligned(self.card)
        #: Flip test-time augmentation: the mean of the photo's and its mirror image's probabilities.
        self.tta = self.card.get("inference", {}).get("tta") == "flip" if tta is None else tta
        #: The mirror is run only for crops whose plain pass is less sure than this (``engines.tta_probs``):
        #: the card's ``inference.flip_unless_sure``, else every crop is mirrored. 0 or less: every crop.
        sure = self.card.get("inference", {}).get("flip_unless_sure") if flip_unless_sure is None else flip_unless_sure
        self.flip_unless_sure: float | None = sure if sure and sure > 0 else None
        wanted = engine or os.environ.get("SELFIEMASK_ENGINE") or "auto"
        spec = (self.card.get("engines") or {}).get("preprocessing")
        if lazy and spec and self.card.get("classes") and not unsafe_pickle and wanted != "torch":
            choice = choose_engine(self.model_path, self.card, wanted, threads or 0)
            if choice.forward is not None:
                self.classes: list[str] = list(self.card["classes"])
                self._input = SpecInput(spec)
                self.engine, self.engine_note, self._forward = choice.name, choice.note, choice.forward
                return
        else:
            choice = None
        self._load_learner()
        if choice is None:  # (a lazy start that fell back to torch has chosen, and said why, once)
            choice = choose_engine(self.model_path, self.card, wanted,
                                   self._torch.get_num_threads() if threads is None else threads)
        #: ``torch``, ``onnx`` or ``int8``: what runs the forward pass; ``engine_note`` says which and why.
        self.engine, self.engine_note = choice.name, choice.note
        self._forward = choice.forward or self._torch_forward
        if choice.forward is not None and spec:
            # A graph's input in numpy from the card's numbers: the learner's own batch (tested equal), without
            # fastai's per-item pipeline (24 against 39 ms for 32 crops, a tenth of int8's forward pass).
            self._input = SpecInput(spec)

    def _load_learner(self) -> None:
        """Unpickle the learner (through the safe loader) and take its classes and validation transforms."""
        import torch

        from .safe_load import UnsafeModelError, load_learner_safely

        try:
            if self._unsafe_pickle:
                from fastai.learner import load_learner

                self._learn = load_learner(self.model_path, cpu=True)
            else:
                self._learn = load_learner_safely(self.model_path)
        except UnsafeModelError as e:
            raise ModelError(f"refusing to load {self.model_path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - unpickling errors are many; the user needs one message
            raise ModelError(f"cannot load {self.model_path}: {type(e).__name__}: {e}") from None
        self._torch = torch
        # channels_last: the same numbers, 10-20% faster convolutions on CPU (benchmarks/speed.py).
        self._torch_forward = TorchForward(self._learn.model)
        vocab = list(self._learn.dls.vocab)
        if getattr(self, "classes", vocab) != vocab:
            raise ModelError(f"{self.model_path}: the learner's classes {vocab} are not its card's {self.classes}")
        self.classes = vocab
        if not isinstance(getattr(self, "_input", None), SpecInput):
            # The validation-mode transforms (split_idx=1): centred resize, no flips or lighting.
            self._input = LearnerInput(self._learn)

    @property
    def learn(self):
        """The fastai learner (unpickled on first use when the classifier started lazily)."""
        if self._learn is None:
            self._load_learner()
        return self._learn

    @property
    def model(self):
        """The torch model (channels_last), loaded with the learner."""
        if self._learn is None:
            self._load_learner()
        return self._torch_forward.model

    # -- the model --------------------------------------------------------
    def preprocess(self, images: list[Image.Image]):
        """A normalised batch, through the learner's own validation transforms."""
        return self._input(images)

    def classify(self, images: list[Image.Image], bs: int = 32) -> list[Verdict]:
        """Verdicts for already-cropped images, in batches of ``bs`` (the flip augmentation in the same batch)."""
        out: list[Verdict] = []
        for i in range(0, len(images), bs):
            x = self.preprocess(images[i:i + bs])
            probs = tta_probs(self._forward, x if isinstance(x, np.ndarray) else x.numpy(), self.tta,
                              self.flip_unless_sure)
            for row in probs.tolist():
                k = max(range(len(row)), key=row.__getitem__)
                out.append(Verdict(self.classes[k], row[k], dict(zip(self.classes, row))))
        return out

    def crop(self, img: Image.Image, face: Face, margin: float = DEFAULT_MARGIN) -> Image.Image:
        """``face``'s crop as this model was trained on (aligned or not): app, CLI and video alike."""
        return crop_face(img, face, margin, align=self.align, min_face=self.align_min_face)

    # -- photos -----------------------------------------------------------
    def analyze_images(self, images: list[Image.Image], names: list[str] | None = None, bs: int = 32,
                       margin: float = DEFAULT_MARGIN) -> list[PhotoResult]:
        """Detect the faces of each photo and classify every face crop; no face: whole-image fallback."""
        names = names or [""] * len(images)
        results: list[PhotoResult] = []
        crops: list[Image.Image] = []
        owners: list[tuple[int, Face | None]] = []
        for n, img in enumerate(images):
            results.append(PhotoResult(names[n], image=img, size=original_size(img)))
            faces = self.detector.detect(img) if self.detector else []
            if faces:
                for f in faces:
                    crops.append(self.crop(img, f, margin))
                    owners.append((n, f))
            else:
                crops.append(img)
                owners.append((n, None))
        for (n, face), v in zip(owners, self.classify(crops, bs)):
            fv = FaceVerdict(v.label, v.confidence, v.probs,
                             to_original(face.box, images[n], results[n].size) if face else None,
                             face.prob if face else None, no_face=face is None and self.detector is not None)
            if face is None:
                results[n].fallback = fv
            else:
                results[n].faces.append(fv)
        return results

    def _analyze_each_on_failure(self, images: list[Image.Image], names: list[str], bs: int) -> list[PhotoResult]:
        """The batch at once; if it fails, each photo alone, so only the photo that fails gets an error row."""
        try:
            return self.analyze_images(images, names, bs)
        except Exception:  # noqa: BLE001 - find the photo that fails below
            pass
        results = []
        for img, name in zip(images, names):
            try:
                results.extend(self.analyze_images([img], [name], bs))
            except Exception as e:  # noqa: BLE001 - its row says what happened; the run goes on
                results.append(PhotoResult(name, error=unexpected(e)))
        return results

    def analyze_files(self, paths: list[str | Path], bs: int = 32, progress=None) -> list[PhotoResult]:
        """Like :meth:`analyze_images` for files; unreadable files get ``error`` and the run goes on."""
        results: list[PhotoResult] = []
        chunk = max(1, bs)
        for i in range(0, len(paths), chunk):
            batch_paths = paths[i:i + chunk]
            ok_imgs, ok_names, slots = [], [], []
            batch_results: list[PhotoResult | None] = []
            for p in batch_paths:
                try:
                    img = load_image(p)
                except ImageError as e:
                    batch_results.append(PhotoResult(str(p), error=str(e)))
                    continue
                except OSError as e:
                    batch_results.append(PhotoResult(str(p), error=f"cannot read file: {e.strerror or e}"))
                    continue
                except Exception as e:  # noqa: BLE001 - one odd file must not end the run
                    batch_results.append(PhotoResult(str(p), error=unexpected(e)))
                    continue
                slots.append(len(batch_results))
                batch_results.append(None)
                ok_imgs.append(img)
                ok_names.append(str(p))
            for slot, res in zip(slots, self._analyze_each_on_failure(ok_imgs, ok_names, bs)):
                res.image = None  # do not keep every photo of a big folder in memory
                batch_results[slot] = res
            results.extend(r for r in batch_results if r is not None)
            if progress is not None:
                progress(len(batch_paths))
        return results


# -- the CSV rows of ``selfiemask predict`` ------------------------------------------
#: ``uncertain`` comes last so that readers of the older columns by position keep working; ``label`` stays the
#: model's class either way (1: the app would say "Not sure", see :mod:`selfiemask.verdicts`).
PREDICT_FIELDS = ["path", "label", "confidence", "error", "faces", "judged_on", "uncertain"]
FACE_FIELDS = ["path", "face", "box", "label", "confidence", "error", "uncertain"]


def result_rows(res, per_face: bool) -> list[dict]:
    """CSV rows for one photo (documented in docs/cli.md)."""
    if res.error:
        if per_face:
            return [{"path": res.path, "face": "", "box": "", "label": "error", "confidence": "", "error": res.error,
                     "uncertain": ""}]
        return [{"path": res.path, "label": "error", "confidence": "", "error": res.error, "faces": "",
                 "judged_on": "", "uncertain": ""}]
    if per_face:
        if not res.faces:
            v = res.fallback
            return [{"path": res.path, "face": "none", "box": "", "label": v.label,
                     "confidence": f"{v.confidence:.4f}", "error": "", "uncertain": int(v.uncertain)}]
        return [{"path": res.path, "face": i, "box": " ".join(map(str, f.box)), "label": f.label,
                 "confidence": f"{f.confidence:.4f}", "error": "", "uncertain": int(f.uncertain)}
                for i, f in enumerate(res.faces)]
    v = res.main
    return [{"path": res.path, "label": v.label, "confidence": f"{v.confidence:.4f}", "error": "",
             "faces": len(res.faces), "judged_on": "largest_face" if res.faces else "whole_image",
             "uncertain": int(v.uncertain),
             "face_labels": [f.label for f in res.faces]}]  # not a CSV column: for the note when faces disagree


def predict_rows(clf: Classifier, paths: list[Path], per_face: bool, bs: int = 32,
                 progress: Callable[[int], object] | None = None, chunk: int = 256) -> Iterator[list[dict]]:
    """The rows of ``paths``, in input order, a chunk at a time so that a long run shows its rows early.

    In a distributed run each process classifies its contiguous share and the
    main process yields every row at the end; the others yield nothing.
    ``progress`` is called with the number of files done (single process only).
    """
    if dist.active():
        yield from _shard_rows(clf, paths, per_face, bs)
        return
    for start in range(0, len(paths), chunk):
        results = clf.analyze_files(paths[start:start + chunk], bs=bs, progress=progress)
        yield [row for res in results for row in result_rows(res, per_face)]


def _shard_rows(clf: Classifier, paths: list[Path], per_face: bool, bs: int) -> Iterator[list[dict]]:
    """Each process classifies its contiguous share of ``paths``; the main one yields all rows in input order."""
    mine = dist.shard_range(len(paths))
    results = clf.analyze_files(paths[mine.start:mine.stop], bs=bs)
    part = [(i, row) for i, res in zip(mine, results) for row in result_rows(res, per_face)]
    parts = dist.gather(part)  # over the process group: no shared folder needed across nodes
    dist.shutdown()
    if parts is not None:
        yield dist.merge_parts(parts, len(paths))
