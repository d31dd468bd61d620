"""The face-crop pass: turns a folder of labelled photos into a folder of labelled face crops.

It is cached and resumable because it is the slow part of retraining on a
CPU (about 35 ms a photo): a photo whose bytes and detector settings are
unchanged is never detected twice, and an interrupted pass picks up where it
stopped. ``crops.csv`` links every crop to its source photo.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .faces import ALIGN_MIN_FACE, DEFAULT_MARGIN, RECOMMENDED, DetectorSettings, FaceDetector, crop_face
from .files import atomic_path, read_rows, sha256_file, write_rows
from .images import ImageError, list_labelled_images, load_image

__all__ = ["CROP_SIDE", "MANIFEST", "SETTINGS", "CropSettings", "CropSummary", "crop_counts", "crop_folder",
           "served_aligned", "served_detector"]

MANIFEST = "crops.csv"
SETTINGS = "crop_settings.json"
FIELDS = ["source", "source_sha256", "label", "crop", "kind", "faces", "box", "prob", "error"]
#: Crops are stored at most this large: room for training's image size (settings.py) and its random crops.
CROP_SIDE = 256


@dataclass(frozen=True)
class CropSettings:
    """How crops are made; written to the crop folder and, through training, to the model card (``detector``).

    ``align``: each face turned so its eye line is level where its landmarks are
    trusted and it is at least ``align_min_face`` px (``faces.crop_face``). A model
    trained on aligned crops is served aligned (:func:`served_aligned`). Off by
    default: the shipped model was trained on unaligned crops.
    """

    detector: DetectorSettings = RECOMMENDED
    margin: float = DEFAULT_MARGIN
    crop_side: int = CROP_SIDE
    align: bool = False
    align_min_face: int = ALIGN_MIN_FACE

    def as_dict(self) -> dict:
        d = asdict(self)
        d["detector"]["thresholds"] = list(self.detector.thresholds)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> CropSettings:
        """Settings as a crop folder or a card records them; fields a record lacks (older ones) take their defaults.

        A record without ``detector`` means the settings before RetinaFace (MTCNN), as
        ``DetectorSettings.from_dict`` reads them; one without ``align`` means unaligned.
        """
        d = dict(d or {})
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "detector"}
        return cls(detector=DetectorSettings.from_dict(d.get("detector")), **known)


def served_detector(card: dict) -> DetectorSettings:
    """The detector a model is served with: the one its card was trained with (cards before RetinaFace: MTCNN).

    ``inference.turned`` (set by hand on a card, for a model measured to do better with it) turns on
    the search of photos without a face turned a quarter each way (``DetectorSettings.turned``);
    ``inference.orient`` likewise the check that a face found upright is not lying on its side
    (``DetectorSettings.orient``).
    """
    settings = DetectorSettings.from_dict(card.get("detector", {}).get("detector"))
    inference = card.get("inference", {})
    for name in ("turned", "orient"):
        if inference.get(name) is not None:
            settings = replace(settings, **{name: bool(inference[name])})
    return settings


def served_aligned(card: dict) -> tuple[bool, int]:
    """Whether a model is served aligned faces, and the smallest face aligned: what its card says.

    ``inference.align`` (set by hand on a card, for a model measured to do
    better served aligned) wins; otherwise the crop settings it was trained on
    (``detector.align``), so a model trained on aligned crops sees aligned crops.
    """
    crops = CropSettings.from_dict(card.get("detector"))
    wanted = card.get("inference", {}).get("align")
    return (crops.align if wanted is None else bool(wanted)), crops.align_min_face


@dataclass
class CropSummary:
    out_dir: Path
    total: int
    detected: int
    reused: int
    face: int
    whole: int
    failed: int


def _read_manifest(path: Path) -> dict[str, dict]:
    return {row["source"]: row for row in read_rows(path)}


def _write_manifest(path: Path, rows: dict[str, dict]) -> None:
    write_rows(path, FIELDS, [rows[key] for key in sorted(rows)])


def _save_jpeg(img, dest: Path, side: int) -> None:
    img = img.copy()
    img.thumbnail((side, side))
    with atomic_path(dest, ".part") as tmp:
        img.save(tmp, "JPEG", quality=95)


def crop_folder(src: str | Path, out: str | Path, classes: list[str] | None = None,
                settings: CropSettings | None = None, progress: bool = True) -> CropSummary:
    """Crop the largest face of every photo in ``src/<label>/`` into ``out/<label>/`` (same file name).

    Photos with no face found are kept whole (``kind=whole``) and counted; the
    crop keeps the source's relative path, so a split keyed on names puts a
    photo and its crop on the same side.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"training folder not found: {src}")
    settings = settings or CropSettings()
    out.mkdir(parents=True, exist_ok=True)
    settings_path, manifest_path = out / SETTINGS, out / MANIFEST
    wanted = settings.as_dict()
    old = json.loads(settings_path.read_text()) if settings_path.exists() else None
    # Compared as settings, so a folder written before a field existed (align) is still reused.
    rows = _read_manifest(manifest_path) if old is not None and CropSettings.from_dict(old) == settings else {}
    settings_path.write_text(json.dumps(wanted, indent=1))

    files = list_labelled_images(src, classes)
    if not files:
        raise FileNotFoundError(f"no images found in {src}/<label>/ folders")
    detector = FaceDetector(settings.detector)
    keep: dict[str, dict] = {}
    reused = detected = 0
    from tqdm.auto import tqdm

    bar = tqdm(files, desc="face crops", unit="photo", disable=not progress, file=sys.stderr)
    try:
        for i, path in enumerate(bar):
            rel = path.relative_to(src).as_posix()
            digest = sha256_file(path)
            row = rows.get(rel)
            if row and row["source_sha256"] == digest and (row["error"] or (out / row["crop"]).exists()):
                keep[rel] = row
                reused += 1
                continue
            label = rel.split("/")[0]
            row = {"source": rel, "source_sha256": digest, "label": label, "crop": "", "kind": "",
                   "faces": 0, "box": "", "prob": "", "error": ""}
            try:
                img = load_image(path)
            except ImageError as e:
                row["error"] = str(e)
                keep[rel] = row
                continue
            faces = detector.detect(img)
            detected += 1
            dest = out / Path(rel).with_suffix(".jpg")
            if faces:
                f = faces[0]
                crop = crop_face(img, f, settings.margin, align=settings.align, min_face=settings.align_min_face)
                _save_jpeg(crop, dest, settings.crop_side)
                row.update(kind="face", faces=len(faces), box=" ".join(map(str, f.box)), prob=f"{f.prob:.4f}")
            else:
                _save_jpeg(img, dest, settings.crop_side)
                row.update(kind="whole")
            row["crop"] = dest.relative_to(out).as_posix()
            keep[rel] = row
            if i % 200 == 0:
                _write_manifest(manifest_path, {**rows, **keep})
    finally:
        # Whatever happened, record what was done so that a re-run resumes.
        _write_manifest(manifest_path, {**rows, **keep} if len(keep) < len(files) else keep)
    # Crops whose source disappeared are stale: remove them so training never sees them.
    live = {r["crop"] for r in keep.values() if r["crop"]}
    for p in out.rglob("*.jpg"):
        if p.relative_to(out).as_posix() not in live:
            p.unlink()
    counts = crop_counts(out)
    return CropSummary(out, len(files), detected, reused, counts["with_face"], counts["no_face_kept_whole"],
                       counts["unreadable_skipped"])


def crop_counts(out: str | Path) -> dict:
    """The counts of a crop folder, from its manifest."""
    rows = _read_manifest(Path(out) / MANIFEST).values()
    kinds = [r["kind"] for r in rows]
    return {"photos": len(kinds), "with_face": kinds.count("face"), "no_face_kept_whole": kinds.count("whole"),
            "unreadable_skipped": sum(1 for r in rows if r["error"])}
