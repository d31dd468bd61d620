"""Classifying photos with an exported learner: the one path the CLI, the app and video share.

The learner is loaded once; images go through the learner's own validation
transforms (so inference sees exactly what validation saw) and through the
model in batches, without building a DataLoader per call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .card import ModelError, verify_model
from .faces import DEFAULT_MARGIN, DetectorSettings, Face, FaceDetector, crop_face
from .images import ImageError, load_image

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "export.pkl"


@dataclass
class Verdict:
    label: str
    confidence: float
    probs: dict[str, float]


@dataclass
class FaceVerdict(Verdict):
    box: tuple[int, int, int, int] | None = None  # None: the whole image was judged


@dataclass
class PhotoResult:
    """Everything we say about one photo. ``faces`` empty and ``fallback`` set: no face was found."""

    path: str
    faces: list[FaceVerdict] = field(default_factory=list)
    fallback: FaceVerdict | None = None
    error: str = ""
    image: Image.Image | None = None

    @property
    def main(self) -> FaceVerdict | None:
        """The verdict for the photo: its largest face, else the whole-image fallback."""
        return self.faces[0] if self.faces else self.fallback


class Classifier:
    """An exported learner plus the face detector its card says it was trained with."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL, detect_faces: bool | None = None,
                 check_sha: bool = True, tta: bool | None = None) -> None:
        import torch
        from fastai.learner import load_learner

        self.model_path = Path(model_path)
        self.card = verify_model(self.model_path) if check_sha else {}
        try:
            with warnings.catch_warnings():
                # fastai warns that pickles can run code; we checked the file's sha256 against its card.
                warnings.filterwarnings("ignore", message=".*insecure pickle.*")
                self.learn = load_learner(self.model_path, cpu=True)
        except Exception as e:  # noqa: BLE001 - unpickling errors are many; the user needs one message
            raise ModelError(f"cannot load {self.model_path}: {type(e).__name__}: {e}") from None
        # channels_last: the same numbers, 10-20% faster convolutions on CPU (benchmarks/speed.py).
        self.model = self.learn.model.eval().to(memory_format=torch.channels_last)
        self.classes: list[str] = list(self.learn.dls.vocab)
        # The validation-mode transforms (split_idx=1): centred resize, no flips or lighting.
        valid = self.learn.dls.valid
        self._item = type(valid.after_item)(valid.after_item.fs, split_idx=1)
        self._batch = type(valid.after_batch)(valid.after_batch.fs, split_idx=1)
        trained_on_crops = self.card.get("input", "face crops") == "face crops"
        self.detect_faces = trained_on_crops if detect_faces is None else detect_faces
        # The detector the model was trained with, as its card records it (cards before RetinaFace: MTCNN).
        detector = DetectorSettings.from_dict(self.card.get("detector", {}).get("detector"))
        self.detector = FaceDetector(detector) if self.detect_faces else None
        #: Flip test-time augmentation: the mean of the photo's and its mirror image's probabilities.
        self.tta = self.card.get("inference", {}).get("tta") == "flip" if tta is None else tta
        self._torch = torch

    # -- the model --------------------------------------------------------
    def preprocess(self, images: list[Image.Image]):
        """A normalised batch, through the learner's own validation transforms."""
        from fastai.vision.core import PILImage

        torch = self._torch
        tensors = [self._item((PILImage.create(img.convert("RGB")),))[0] for img in images]
        # A plain tensor: a fastai TensorImage sends every layer through fastai's __torch_function__.
        return self._batch((torch.stack(tensors),))[0].as_subclass(torch.Tensor)

    def classify(self, images: list[Image.Image], bs: int = 32) -> list[Verdict]:
        """Verdicts for already-cropped images, in batches of ``bs``."""
        torch = self._torch
        out: list[Verdict] = []
        for i in range(0, len(images), bs):
            x = self.preprocess(images[i:i + bs]).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                probs = torch.softmax(self.model(x).float(), dim=1)
                if self.tta:
                    probs = (probs + torch.softmax(self.model(x.flip(3)).float(), dim=1)) / 2
            for row in probs.tolist():
                k = max(range(len(row)), key=row.__getitem__)
                out.append(Verdict(self.classes[k], row[k], dict(zip(self.classes, row))))
        return out

    # -- photos -----------------------------------------------------------
    def analyze_images(self, images: list[Image.Image], names: list[str] | None = None, bs: int = 32,
                       margin: float = DEFAULT_MARGIN) -> list[PhotoResult]:
        """Detect the faces of each photo and classify every face crop; no face: whole-image fallback."""
        names = names or [""] * len(images)
        results: list[PhotoResult] = []
        crops: list[Image.Image] = []
        owners: list[tuple[int, Face | None]] = []
        for n, img in enumerate(images):
            results.append(PhotoResult(names[n], image=img))
            faces = self.detector.detect(img) if self.detector else []
            if faces:
                for f in faces:
                    crops.append(crop_face(img, f.box, margin))
                    owners.append((n, f))
            else:
                crops.append(img)
                owners.append((n, None))
        for (n, face), v in zip(owners, self.classify(crops, bs)):
            fv = FaceVerdict(v.label, v.confidence, v.probs, face.box if face else None)
            if face is None:
                results[n].fallback = fv
            else:
                results[n].faces.append(fv)
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
                slots.append(len(batch_results))
                batch_results.append(None)
                ok_imgs.append(img)
                ok_names.append(str(p))
            for slot, res in zip(slots, self.analyze_images(ok_imgs, ok_names, bs)):
                res.image = None  # do not keep every photo of a big folder in memory
                batch_results[slot] = res
            results.extend(r for r in batch_results if r is not None)
            if progress is not None:
                progress(len(batch_paths))
        return results
