"""The DataBlock: how labelled folders become training batches.

Everything here is a module-level function or a small class, because the
exported learner pickles its transforms and ``load_learner`` must find them
in an importable package, not in ``__main__`` or a notebook.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fastai.vision.all import (
    CategoryBlock,
    DataBlock,
    ImageBlock,
    Normalize,
    RandomResizedCrop,
    aug_transforms,
    imagenet_stats,
    parent_label,
)

from .augment import FilledEdges, KeepCleanView, OccludeFaces, PhoneConditions, RollFaces, TurnQuarter
from .images import list_labelled_images
from .settings import default

__all__ = ["DEFAULT_SEED", "DEFAULT_VALID_PCT", "THREE_CLASSES", "TWO_CLASSES", "HashSplitter",
           "LabelledImages", "batch_transforms", "is_valid_item", "item_transforms", "make_datablock", "make_dls",
           "split_key", "validation_items"]

#: The project's split (TrainConfig's valid_pct and seed, written once in settings.py).
DEFAULT_VALID_PCT: float = default("valid_pct")
DEFAULT_SEED: int = default("seed")
TWO_CLASSES = ["with_mask", "without_mask"]
THREE_CLASSES = ["incorrect_mask", "with_mask", "without_mask"]

_FACE_SUFFIX = re.compile(r"__face\d+$")


def split_key(path: Path) -> str:
    """The photo a file stands for: ``label/name`` without extension or face index.

    The whole photo and its face crop share a key, so whole-image and
    face-crop models are validated on the same photos.
    """
    return f"{path.parent.name}/{_FACE_SUFFIX.sub('', path.stem)}"


def is_valid_item(path: Path, valid_pct: float = DEFAULT_VALID_PCT, seed: int = DEFAULT_SEED) -> bool:
    """Stable, seeded split by hashing the photo's name.

    Unlike a shuffled split, adding new photos never moves an old photo from
    validation into training, so models before and after a re-export can be
    compared on the same validation photos.
    """
    digest = hashlib.sha256(f"{seed}:{split_key(path)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < valid_pct


def validation_items(folder: Path, classes: list[str] | None = None, valid_pct: float = DEFAULT_VALID_PCT,
                     seed: int = DEFAULT_SEED) -> list[Path]:
    """The validation photos of a folder under the project's split: for comparing models on the same photos."""
    return [p for p in list_labelled_images(folder, classes) if is_valid_item(p, valid_pct, seed)]


class HashSplitter:
    """Picklable splitter using :func:`is_valid_item`."""

    def __init__(self, valid_pct: float = DEFAULT_VALID_PCT, seed: int = DEFAULT_SEED) -> None:
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: list[Path]) -> tuple[list[int], list[int]]:
        train, valid = [], []
        for i, p in enumerate(items):
            (valid if is_valid_item(Path(p), self.valid_pct, self.seed) else train).append(i)
        return train, valid


class LabelledImages:
    """Picklable ``get_items``: images under ``<root>/<class>/`` for the chosen classes."""

    def __init__(self, classes: list[str] | None = None) -> None:
        self.classes = classes

    def __call__(self, root: Path) -> list[Path]:
        return list_labelled_images(Path(root), self.classes)


def item_transforms(size: int, occlude_p: float = default("occlude_p"), camera_p: float = default("camera_p"),
                    classes: list[str] | None = None, turn_p: float = default("turn_p"), clean_view: bool = False,
                    roll_p: float = default("roll_p"), edge_p: float = default("edge_p"),
                    hand: str = default("hand"), roll_fill: str = default("roll_fill"),
                    masked_hand: str = default("masked_hand")):
    """A hand or sunglasses on some faces, random crops of 50-100% of the face crop, then phone-photo conditions
    (train); a centred resize (validation and inference).

    The conditions (black and white, coloured light, dim and bright, blur, low resolution, JPEG, and with
    ``camera_p`` a small face through a phone camera, with ``turn_p`` a quarter turn, with ``roll_p`` a roll of up to
    60 degrees, with ``edge_p`` flat fill beyond a photo's edge) hit both classes alike: see
    ``augment.py``. The occluders
    are placed so that none predicts a label (``augment.OccludeFaces``); ``without_mask`` sorts last among the
    project's classes, so it is the last index of the vocab. ``clean_view``: training items carry a copy
    without those conditions, for a teacher (``augment.KeepCleanView``; only with a distillation callback).
    """
    tfms = [RandomResizedCrop(size, min_scale=0.5, ratio=(0.8, 1.25)), PhoneConditions(camera_p=camera_p)]
    if edge_p:
        tfms.insert(0, FilledEdges(edge_p))
    if occlude_p:  # (before the edges: the hand is drawn on the face first, the photo's edge cuts both)
        tfms.insert(0, OccludeFaces(occlude_p, unmasked=len(classes or TWO_CLASSES) - 1, hand=hand,
                                       masked_hand=masked_hand))
    if turn_p:
        tfms.append(TurnQuarter(turn_p))
    if roll_p:
        tfms.append(RollFaces(roll_p, flat=roll_fill == "flat"))
    if clean_view:
        tfms.insert(0, KeepCleanView())
    return tfms


def batch_transforms():
    """Selfie-like variation: flips, small rotations, zoom in and out, lighting and slight warps."""
    return [*aug_transforms(max_rotate=15, min_zoom=0.8, max_zoom=1.2, max_lighting=0.4, max_warp=0.15,
                            p_affine=0.75, p_lighting=0.75, pad_mode="reflection"),
            Normalize.from_stats(*imagenet_stats)]


def make_datablock(size: int = default("size"), classes: list[str] | None = None,
                   valid_pct: float = DEFAULT_VALID_PCT, seed: int = DEFAULT_SEED,
                   occlude_p: float = default("occlude_p"), camera_p: float = default("camera_p"),
                   turn_p: float = default("turn_p"), clean_view: bool = False,
                   roll_p: float = default("roll_p"), edge_p: float = default("edge_p"),
                   hand: str = default("hand"), roll_fill: str = default("roll_fill"),
                   masked_hand: str = default("masked_hand")) -> DataBlock:
    return DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=sorted(classes) if classes else None)),
        get_items=LabelledImages(classes),
        splitter=HashSplitter(valid_pct, seed),
        get_y=parent_label,
        item_tfms=item_transforms(size, occlude_p, camera_p, classes, turn_p, clean_view, roll_p, edge_p,
                                  hand, roll_fill, masked_hand),
        batch_tfms=batch_transforms(),
    )


def make_dls(path: str | Path, size: int = default("size"), bs: int = default("bs"), classes: list[str] | None = None,
             valid_pct: float = DEFAULT_VALID_PCT, seed: int = DEFAULT_SEED, num_workers: int | None = None):
    """DataLoaders over ``path/<class>/``; raises a clear error when a split would be empty."""
    path = Path(path)
    dblock = make_datablock(size, classes, valid_pct, seed)
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    dls = dblock.dataloaders(path, bs=bs, **kwargs)
    if not len(dls.train_ds) or not len(dls.valid_ds):
        raise ValueError(f"{path}: the split left {len(dls.train_ds)} training and {len(dls.valid_ds)} validation "
                         "images; add more images per class")
    return dls
