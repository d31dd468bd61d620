"""Training in fastai's own words: the project's choices as callbacks and small functions around fastai's calls.

Notebook 03 reads like fastbook's chapter 2, and ``selfiemask train`` (:func:`train`) runs the same calls
in the same order::

    photos = face_crops(data_dir)                       # the largest face of each photo, cached
    dls = DataBlock(..., splitter=HashSplitter(valid_pct, seed), ...).dataloaders(photos.folder, bs=...)
    learn = vision_learner(dls, resnet34, pretrained=False, metrics=accuracy,
                           cbs=[ModelCard(photos), SaveEachEpoch(out)])
    start = start_from(learn, "shipped")                # the current model's weights, ImageNet's, or none
    estimate_time(learn, epochs, fine_tune=start.pretrained)
    lr = learn.lr_find(num_it=lr_find_steps(dls), suggest_funcs=trusted_valley).trusted_valley
    learn.fine_tune(epochs, lr)                         # or learn.fit_one_cycle(epochs, lr) from scratch
    interp = ClassificationInterpretation.from_learner(learn)
    card = keep_if_better(learn, out, interp=interp)    # export with card; replace the current model only if
                                                        # the new one is not worse on the same photos

Nothing touches the current ``export.pkl`` until :func:`keep_if_better`: the new model is exported into a
work folder, compared with the current one on the same validation photos (``evaluate.compare_models``)
and installed only when it does at least as well, or when forced; the model that is not current is kept
in ``models/history/`` (``card.keep_version``; ``selfiemask restore`` puts one back).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fastai.callback.core import Callback, CancelEpochException, CancelFitException

from . import distributed as dist
from . import messages
from .card import ModelError, read_card, verify_model, write_card
from .crops import MANIFEST, SETTINGS, CropSettings, crop_counts, crop_folder
from .data import HashSplitter, is_valid_item, make_datablock
from .evaluate import class_metrics, compare_models, comparison_summary, judge, plot_top_losses, save_figure
from .files import fingerprint, photo_digests, sha256_file
from .history import install_model, keep_version, version_name
from .images import list_labelled_images
from .messages import WHERE_PHOTOS_COME_FROM, term
from .paths import DEFAULT_MODEL, default_crop_cache, history_dir
from .pretrained import PretrainedUnavailable, resolve_pretrained
from .settings import TrainConfig, default, pretrained_choice

__all__ = ["FALLBACK_LR", "LR_RANGE", "ModelCard", "NoTrainingData", "SaveEachEpoch", "Start", "TrainConfig",
           "TrainingPhotos", "WeightsMissing", "batch_size", "estimate_time", "face_crops", "keep_if_better",
           "lr_find_steps", "start_from", "train", "trusted_valley"]

#: lr_find's steps: fastai's 100 on a large set; on a small one about two epochs' worth, at least this many.
LR_FIND_MIN_STEPS = 20
#: Fewer batches than this an epoch, and the batch size shrinks (a 100-photo set would make 1 batch of 64).
MIN_BATCHES = 4
#: The rate used when lr_find cannot suggest one, or suggests one outside ``LR_RANGE``.
FALLBACK_LR = 1e-3
#: The rates lr_find's suggestion is trusted in: over 20 steps its curve is noisy, and on 100 photos it has
#: suggested 4e-6 (a run that then learned nothing in 14 epochs) where other seeds gave 1e-3 and 2.5e-3.
LR_RANGE = (1e-5, 1e-1)


# -- talking to people: the command line or a notebook (the wording is messages.py's) ---------------------------
def _log(msg: str) -> None:
    """One copy of each line (the main process's); on stderr for the command, in the output of a notebook cell."""
    if dist.is_main():
        print(f"[selfiemask] {msg}", file=sys.stdout if messages.in_notebook() else sys.stderr, flush=True)


class _Plain:
    """An error whose message says all: a notebook shows it without a traceback (IPython's ``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return [f"Stopped: {self}"]


class NoTrainingData(_Plain, FileNotFoundError):
    """The training folder is missing or holds no labelled photos; the message says where photos come from."""


class WeightsMissing(_Plain, PretrainedUnavailable):
    """ImageNet weights were required (``pretrained = "imagenet"``) and cannot be had."""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


# -- 1. the photos ------------------------------------------------------------------------------------------------
@dataclass
class TrainingPhotos:
    """The labelled photos of a run and the folder the DataBlock reads (their face crops, or the photos).

    ``valid_pct`` and ``seed`` are the project's split (:class:`data.HashSplitter`): kept here so the export
    compares the old and new model on the same validation photos of ``source``.
    """

    source: Path
    folder: Path
    sources: list[Path]
    classes: list[str] | None = None
    valid_pct: float = default("valid_pct")
    seed: int = default("seed")
    card: dict = field(default_factory=dict)  # what the card says of the input: face crops or whole images

    @property
    def splitter(self) -> HashSplitter:
        return HashSplitter(self.valid_pct, self.seed)


def _photos(data_dir: Path, classes: list[str] | None) -> list[Path]:
    if not data_dir.is_dir():
        raise NoTrainingData(f"training folder not found: {data_dir}\n{WHERE_PHOTOS_COME_FROM}")
    sources = list_labelled_images(data_dir, classes)
    if not sources:
        raise NoTrainingData(f"no photos in the label folders of {data_dir}\n{WHERE_PHOTOS_COME_FROM}")
    return sources


def face_crops(data_dir: str | Path, crops: bool = default("crops"), cache: str | Path | None = None,
               classes: list[str] | None = None, valid_pct: float = default("valid_pct"),
               seed: int = default("seed"), align: bool = default("align")) -> TrainingPhotos:
    """The largest face of every photo, cropped (cached: a second run only looks at new or changed photos).

    Training photos are framed very differently from selfies, and a whole-image model learns the framing
    instead of the mask; the app and the CLI find faces first too. ``crops`` False trains on whole photos.
    ``align``: faces turned upright where their landmarks are trusted (the card says so, and the model is
    served the same way). A folder made by the crop pass itself is used as it is.
    """
    data_dir = Path(data_dir)
    sources = _photos(data_dir, classes)
    counts = Counter(p.relative_to(data_dir).parts[0] for p in sources)
    _log(f"{len(sources)} photos in {data_dir} (" + ", ".join(f"{n} {lbl}" for lbl, n in sorted(counts.items()))
         + ")")
    if (data_dir / MANIFEST).exists() and (data_dir / SETTINGS).exists():
        folder = data_dir
        card = {"input": "face crops", "detector": {**json.loads((data_dir / SETTINGS).read_text()),
                                                    "counts": crop_counts(data_dir)}}
        _log(f"{data_dir} is a face-crop folder: training on it as it is")
    elif crops:
        folder = Path(cache) if cache else default_crop_cache(data_dir)
        _log(f"detecting faces in {len(sources)} photos (cached in {folder})")
        settings = CropSettings(align=align)
        summary = dist.on_main(crop_folder, data_dir, folder, classes, settings, per_node=True)  # one writer a cache
        _log(f"face crops: {summary.face} faces, {summary.whole} photos kept whole, {summary.failed} unreadable; "
             f"{summary.reused} reused from the cache")
        card = {"input": "face crops", "detector": {**settings.as_dict(), "counts": crop_counts(folder)}}
    else:
        folder, card = data_dir, {"input": "whole images"}
    return TrainingPhotos(data_dir, folder, sources, classes, valid_pct, seed, card)


def batch_size(photos: TrainingPhotos, bs: int = default("bs")) -> int:
    """``bs``, or less when it would leave fewer than ``MIN_BATCHES`` batches an epoch (fastai drops the
    last, partial batch: 85 photos in batches of 64 would train on one batch an epoch)."""
    items = list_labelled_images(photos.folder, photos.classes)
    n_train = sum(not is_valid_item(p, photos.valid_pct, photos.seed) for p in items)
    if not n_train or n_train == len(items):
        raise NoTrainingData(f"{photos.folder}: the split (valid_pct={photos.valid_pct}, seed={photos.seed}) leaves "
                             f"{n_train} training and {len(items) - n_train} validation photos of {len(items)}: "
                             "add photos, or change valid_pct or seed")
    chosen = max(1, min(bs, max(8, n_train // MIN_BATCHES), n_train))
    if chosen < bs:
        _log(f"batch size {chosen} instead of {bs}: {n_train} training photos would make fewer than "
             f"{MIN_BATCHES} batches an epoch")
    return chosen


# -- 2. callbacks the learner carries -----------------------------------------------------------------------------
class ModelCard(Callback):
    """Records what training did, for the model card that :func:`keep_if_better` writes beside the export.

    Every fit is recorded as it happened (epochs, frozen or not, the highest learning rate of each parameter
    group, seconds), lr_find's runs apart; so a cell that calls ``fine_tune`` or ``fit_one_cycle`` with
    other numbers is recorded truly. The photos, the start (:func:`start_from`) and a teacher are added
    by whoever knows them. Nothing of this is pickled into the export (``keep_if_better`` removes it first).
    """

    order = 95  # after the schedulers: the learning rates it reads are the ones used

    def __init__(self, photos: TrainingPhotos | None = None) -> None:
        self.photos = photos
        self.started = time.monotonic()
        self.record: dict = {"fits": [], "lr_find": []}
        self.lr_curve: tuple[list[float], list[float]] | None = None
        self._fit: dict | None = None  # the fit under way; None when its before_fit never ran

    def before_fit(self) -> None:
        if hasattr(self.learn, "gather_preds"):  # get_preds runs the fit events too: not a fit (as fastai's
            self.run = False                     # SaveModelCallback tells them apart); fastai resets it after
            return
        self._finder = hasattr(self.learn, "lr_finder")
        frozen = getattr(self.opt, "frozen_idx", 0) > 0 if self.opt is not None else False
        self._fit = {"epochs": self.n_epoch, "frozen": frozen, "lr_max": None, "steps": 0}
        self._t0 = time.monotonic()

    def after_batch(self) -> None:
        if not self.training or self.opt is None:
            return
        lrs = [h["lr"] for h in self.opt.hypers]
        seen = self._fit["lr_max"]
        self._fit["lr_max"] = lrs if seen is None else [max(a, b) for a, b in zip(seen, lrs)]
        self._fit["steps"] += 1

    def after_fit(self) -> None:
        self.record["world_size"] = dist.world_size()  # read now: the main process validates and exports alone
        if self._fit is None:  # SaveEachEpoch (earlier in order) skipped a fit finished before an interruption
            self.record["fits"].append({"epochs": self.n_epoch, "frozen": None, "lr_max": None, "steps": 0,
                                        "seconds": None, "resumed": "finished before the interruption"})
            return
        self._fit["seconds"] = round(time.monotonic() - self._t0, 1)
        if self._fit["lr_max"]:
            self._fit["lr_max"] = [float(f"{v:.3g}") for v in self._fit["lr_max"]]
        if self._finder:
            self.record["lr_find"].append({"steps": self._fit["steps"], "seconds": self._fit["seconds"]})
            rec = self.learn.recorder  # the next fit overwrites it: the curve is kept for the saved figure
            self.lr_curve = ([float(v) for v in rec.lrs], [float(v) for v in rec.losses])
        elif self._fit["steps"] or not self.record["fits"]:
            self.record["fits"].append(self._fit)
        self._fit = None


class SaveEachEpoch(Callback):
    """Saves model and optimiser after every epoch, with the settings, so a stopped run can resume.

    Like fastai's ``SaveModelCallback``: configured in ``__init__``. ``checkpoint.json`` in the work folder
    beside ``out`` says which fit (``fine_tune`` makes two) and how many of its epochs are done, and with
    which settings. With ``resume``, finished fits are skipped and the interrupted one continues after its
    last saved epoch, whatever fastai calls made them.
    """

    order = 90

    def __init__(self, out: str | Path, settings: dict | None = None, resume: bool = False) -> None:
        # Absolute: fastai's save joins a relative name onto learn.path, which is this folder already.
        self.work = work_folder(Path(out).resolve())
        self.settings, self.resume = settings or {}, resume
        self.meta = self.work / "checkpoint.json"
        self.lr_used: float | None = None  # recorded with each checkpoint: a resumed run needs no lr_find
        self.fit_no = 0
        self._skip = 0

    def after_create(self) -> None:
        # Checkpoints and lr_find's temporary weights go to the work folder, not beside the photos.
        self.work.mkdir(parents=True, exist_ok=True)
        self.learn.path, self.learn.model_dir = self.work, "."

    def saved(self) -> dict:
        """The checkpoint's record when it was made with these settings, else ``{}``."""
        if not self.meta.exists():
            return {}
        meta = json.loads(self.meta.read_text())
        return meta if meta.get("settings") == self.settings else {}

    def before_fit(self) -> None:
        if hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"):
            self.run = False  # lr_find or get_preds: not a fit to count or save (fastai resets it after)
            return
        self.fit_no += 1
        self._skip = 0
        saved = self.saved() if self.resume else {}
        if not saved or saved["fit"] < self.fit_no:
            return
        if saved["fit"] > self.fit_no:  # finished before the interruption (fine_tune's frozen part)
            _log(f"resuming: fit {self.fit_no} was finished before the interruption, skipped")
            raise CancelFitException()
        self.learn.load(self.work / "checkpoint", with_opt=True)
        self._skip = saved["epochs_done"]
        _log(f"resuming after epoch {self._skip} of {self.n_epoch}")

    def before_epoch(self) -> None:
        if self._skip > 0 and self.epoch < self._skip:
            raise CancelEpochException()

    def after_epoch(self) -> None:
        if self._skip > 0 and self.epoch < self._skip:
            return
        self.learn.save(self.work / "checkpoint", with_opt=True)  # fastai saves on rank 0 only
        if dist.is_main():
            self.meta.write_text(json.dumps({"fit": self.fit_no, "epochs_done": self.epoch + 1,
                                             "lr_used": self.lr_used, "settings": self.settings}))


def work_folder(out: str | Path) -> Path:
    """Checkpoints, figures and the new model until judged: ``.<name>.work/`` beside the model."""
    out = Path(out)
    return out.parent / f".{out.stem}.work"


# -- 3. where the weights start ----------------------------------------------------------------------------------
@dataclass
class Start:
    """Where a learner's weights came from: ``pretrained`` True means fine-tune (fastai's ``fine_tune``)."""

    kind: str  # "shipped", "shipped body" (other classes: all but the last layer), "imagenet" or "none"
    pretrained: bool
    weights: str  # for the card, in words


def _arch_name(learn) -> str:
    from .arches import arch_name

    return arch_name(getattr(learn, "arch", None))


def _shipped_start(learn, model: Path) -> Start | str:
    """The current model's weights in ``learn`` (a Start), or why they cannot be (a str)."""
    from .safe_load import UnsafeModelError, load_learner_safely

    if not model.exists():
        return f"there is no model at {model}"
    try:
        card = verify_model(model)
        shipped = load_learner_safely(model)
    except (ModelError, UnsafeModelError) as e:
        return f"{model} cannot be loaded ({str(e).splitlines()[0][:200]})"
    other = _arch_name(learn)
    wrong_arch = f"is a {card.get('architecture', 'other architecture')}, not a {other}"
    same_classes = list(shipped.dls.vocab) == list(learn.dls.vocab)
    classes = f"{model} has the classes {list(shipped.dls.vocab)}, this training {list(learn.dls.vocab)}"
    try:
        if same_classes:
            learn.model.load_state_dict(shipped.model.state_dict())
        else:
            _all_but_the_last_layer(shipped.model, learn.model)
    except (RuntimeError, TypeError, IndexError):
        return f"{model} {wrong_arch}" if same_classes else f"{classes}, and {wrong_arch}"
    acc = card.get("validation", {}).get("accuracy")
    score = f", {acc:.1%} on its validation photos" if acc is not None else ""
    recorder = getattr(learn, "model_card", None)
    if recorder is not None and card.get("inference"):
        # Served as its start was (e.g. flip TTA, faces upright); the start's reasons were measured on the start.
        inherited = {k: v for k, v in card["inference"].items() if not k.endswith("why")}
        recorder.record["inference"] = {**inherited, "why": f"as the model it started from "
                                        f"({card.get('export_sha256', '?')[:8]}) is served"}
    what = f"{model} (sha256 {card.get('export_sha256', '?')[:16]}…, {card.get('architecture', '?')}{score})"
    if same_classes:
        return Start("shipped", True, f"the current model {what}")
    _log(f"{classes}: starting from its body and head, with a new last layer for {len(learn.dls.vocab)} classes")
    return Start("shipped body", True, f"the current model {what}, all but its last layer (it has the classes "
                                       f"{list(shipped.dls.vocab)})")


def _all_but_the_last_layer(source, target) -> None:
    """``source``'s weights in ``target`` except the final classifier layer, whose shape differs: a model that
    knows faces and masks is a better start for a new class than ImageNet, let alone nothing."""
    target[0].load_state_dict(source[0].state_dict())  # the body: raises when the architectures differ
    theirs, ours = source[1].state_dict(), target[1].state_dict()
    same = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    last = [k for k in ours if k not in same]
    if not last or len(last) > 2:  # the last Linear's weight and bias, nothing else
        raise RuntimeError(f"heads differ beyond their last layer: {last}")
    target[1].load_state_dict(same, strict=False)


def _resolve(required: bool, name: str) -> tuple[bool, str]:
    """Whether ImageNet weights for ``name`` can be had, and how (or why not, in its first line)."""
    from .arches import WeightsError

    try:
        return True, resolve_pretrained(True if required else None, arch=name)[1]
    except (PretrainedUnavailable, WeightsError) as e:
        return False, str(e).splitlines()[0]


def _imagenet_start(learn, required: bool) -> Start:
    """ImageNet weights in the learner's body when they can be had; else from scratch (said), or a stop."""
    from fastai.vision.learner import _default_meta, create_body, model_meta

    name = _arch_name(learn)
    found, how = dist.on_main(_resolve, required, name, per_node=True)  # one download a machine
    if not found:
        reason = how
        better = (f"{term('mobilenet')} fine-tunes MobileNetV2, whose ImageNet weights ship with the project, or "
                  f"put the weights file where it is looked for (above)")
        if required:
            raise WeightsMissing(f"{reason}\n  Set {term('scratch')} to train from scratch (lower accuracy, most of "
                                 f"all on few photos; the card says so), or {better}.") from None
        _log(f"*** No ImageNet weights for {name}: {reason}\n*** Training FROM SCRATCH instead: lower accuracy, "
             f"most of all on few photos (the card says so). {term('require')} stops instead, {term('scratch')} "
             f"skips this check; for ImageNet weights: {better}. ***")
        return Start("none", False, f"from scratch: no ImageNet weights could be had ({reason[:160]})")
    arch = learn.arch
    meta = model_meta.get(arch, _default_meta)
    model = arch(weights=meta["weights"]) if "weights" in meta else arch(pretrained=True)
    learn.model[0].load_state_dict(create_body(model, 3, True, meta["cut"]).state_dict())
    return Start("imagenet", True, how)


def start_from(learn, pretrained: str | bool | None = default("pretrained"), model: str | Path = DEFAULT_MODEL
               ) -> Start:
    """Put the chosen starting weights in ``learn`` (made by ``vision_learner(..., pretrained=False)``).

    ``"shipped"``: the project's current model (``model``), the best start for the same classes: a ResNet34
    that already knows masks, where ImageNet weights cannot be downloaded here and 100 photos from scratch
    train a model at chance. For other classes (a third one) all but its last layer are taken. When it
    cannot serve (another architecture, missing), ImageNet
    weights if they can be had, else from scratch, said in a line. ``"imagenet"``: ImageNet weights or a
    stop; ``"auto"``: ImageNet weights or from scratch; ``"none"``: from scratch. With weights, the body is
    frozen as ``vision_learner(pretrained=True)`` leaves it, for ``lr_find`` and ``fine_tune``.
    """
    choice = pretrained_choice(pretrained)
    start: Start | str
    if choice == "shipped":
        start = _shipped_start(learn, Path(model))
        if isinstance(start, str):
            _log(f"not starting from the current model: {start}; ImageNet weights instead when they can be had")
            start = _imagenet_start(learn, required=False)
    elif choice in ("imagenet", "auto"):
        start = _imagenet_start(learn, required=choice == "imagenet")
    else:
        start = Start("none", False, "from scratch (pretrained none)")
    if start.pretrained:
        learn.freeze()
    card = getattr(learn, "model_card", None)
    if card is not None:
        card.record["start"] = {"kind": start.kind, "pretrained": start.pretrained, "weights": start.weights}
    n_params = sum(p.numel() for p in learn.model.parameters())
    how = "fine_tune" if start.pretrained else "fit_one_cycle from scratch"
    _log(f"{_arch_name(learn)}, {n_params / 1e6:.1f} M parameters, starting from {start.weights}: {how}")
    return start


# -- 4. how long, and at which rate ------------------------------------------------------------------------------
def lr_find_steps(dls_or_batches) -> int:
    """fastai's 100 steps, or two epochs' worth when that is less (at least 20): on 100 photos, 100 steps of
    64 would be 60 epochs of lr_find for a 14-epoch training."""
    batches = dls_or_batches if isinstance(dls_or_batches, int) else len(dls_or_batches.train)
    return max(LR_FIND_MIN_STEPS, min(100, 2 * batches))


def estimate_time(learn, epochs: int, fine_tune: bool = False, lr_find: bool = True) -> dict:
    """Time two training steps on a copy of the model and say how long lr_find and the fit should take.

    The copy keeps the learner untouched, and the random state is put back, so the estimate changes
    nothing of the run. Loading and augmenting a batch is timed too.
    """
    import copy

    from fastai.torch_core import get_random_states, set_random_states

    dls = learn.dls
    states = get_random_states()
    try:
        t0 = time.perf_counter()
        xb, yb = dls.train.one_batch()[:2]  # a clean copy for a teacher (KeepCleanView) rides third
        load = time.perf_counter() - t0
        model = copy.deepcopy(learn.model).train()
        steps = []
        for _ in range(2):
            t0 = time.perf_counter()
            learn.loss_func(model(xb), yb).backward()
            model.zero_grad(set_to_none=True)
            steps.append(time.perf_counter() - t0)
        del model
    finally:
        set_random_states(**states)
    per_step = min(steps) + load
    per_epoch = (len(dls.train) * per_step + len(dls.valid) * min(steps) / 3) / dist.world_size()
    lr_steps = lr_find_steps(dls) if lr_find else 0
    n_epochs = epochs + (1 if fine_tune else 0)
    est = {"step_seconds": round(per_step, 2), "lr_find_seconds": round(lr_steps * per_step),
           "epoch_seconds": round(per_epoch, 1), "epochs": n_epochs}
    est["seconds"] = round(est["lr_find_seconds"] + n_epochs * per_epoch)
    card = getattr(learn, "model_card", None)
    if card is not None:
        card.record["estimate"] = est
    lr_part = f"lr_find {lr_steps} steps ~{_duration(est['lr_find_seconds'])}" if lr_steps else "no lr_find"
    _log(f"estimated time: about {_duration(est['seconds'])} ({lr_part}; {n_epochs} epochs of {len(dls.train)} "
         f"batches ~{_duration(per_epoch)} each), from two timed steps of {len(xb)} images ({per_step:.2f} s each "
         "with loading); then validation, export and the comparison")
    return est


def trusted_valley(lrs, losses, num_it):
    """fastai's ``valley`` suggestion, or :data:`FALLBACK_LR` when the curve is too short or noisy to read.

    A ``suggest_funcs`` for ``learn.lr_find``: over 20 steps on few photos the curve can end before a
    valley shows (fastai's ``valley`` then fails) or point far outside ``LR_RANGE``.
    """
    from fastai.callback.schedule import valley

    low, high = LR_RANGE
    try:
        lr, point = valley(lrs, losses, num_it)
    except (IndexError, RuntimeError, ValueError) as e:
        _log(f"lr_find could not suggest a rate ({type(e).__name__}: {e}); training at {FALLBACK_LR:g}")
        return FALLBACK_LR, (FALLBACK_LR, float(losses[-1]) if len(losses) else 0.0)
    if not low <= lr <= high:
        _log(f"lr_find suggests {lr:.2g}: outside {low:g}-{high:g}, a curve too noisy to read ({num_it} steps); "
             f"training at {FALLBACK_LR:g} instead (set the learning rate to choose another)")
        return FALLBACK_LR, point
    _log(f"lr_find suggests {lr:.2g} (valley): training at that rate")
    return lr, point


# -- 5. export, compare, keep the better one ---------------------------------------------------------------------
def _metrics(learn) -> dict:
    """Per-class precision and recall on the validation set (accuracy alone hides a class the model ignores)."""
    preds, targs = learn.get_preds(dl=learn.dls.valid.new(shuffle=False, drop_last=False))[:2]
    return class_metrics(targs.tolist(), preds.argmax(1).tolist(), list(learn.dls.vocab))


def _figures(learn, interp, figure: callable, lr_curve=None) -> None:
    """lr_find's curve, the confusion matrix and the top losses, saved beside the model (the notebook shows
    fastai's own as it goes; the command line has only these)."""
    import matplotlib.pyplot as plt
    from fastai.vision.all import ClassificationInterpretation

    if lr_curve:
        fig, ax = plt.subplots()
        ax.plot(*lr_curve)
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="lr_find")
        used = [f["lr_max"][-1] for f in getattr(learn.model_card, "record", {}).get("fits", []) if f["lr_max"]]
        for lr in used[:1]:  # the first fit: lr itself (fine_tune halves it for the unfrozen part)
            ax.axvline(lr, color="tab:orange", label=f"trained at {lr:.2g}")
            ax.legend()
        save_figure(fig, figure("lr_find"))
    interp = interp or ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(title=f"validation, {len(interp.losses)} photos")
    save_figure(plt.gcf(), figure("confusion"))
    save_figure(plot_top_losses(interp, 9), figure("top_losses"))


def keep_if_better(learn, out: str | Path, force: bool = default("force"), interp=None,
                   engines: bool = default("engines")) -> dict:
    """Export the learner with its card, then replace the model at ``out`` only if the new one is not worse.

    The new model is exported into the work folder first. With no current model it is installed.
    Otherwise both run on the same validation photos: if the new one does at least as well (or
    ``force``), the current one is kept in ``models/history/`` and the new one installed; if not, the
    current one stays, byte for byte, and the new one is kept in the history instead. Returns the new
    model's card; its ``re_export`` says what happened, in words.
    """
    import fastai
    import torch

    out = Path(out)
    recorder: ModelCard | None = getattr(learn, "model_card", None)
    photos = recorder.photos if recorder else None
    record = {**recorder.record, "seconds": round(time.monotonic() - recorder.started)} if recorder else {}
    work = work_folder(out)
    work.mkdir(parents=True, exist_ok=True)
    staged = work / out.name

    metrics = _metrics(learn)
    lines = [f"validation accuracy {metrics['accuracy']:.1%} on {metrics['n']} photos"]
    lines += [f"  {c:14s} precision {v['precision']:.3f}  recall {v['recall']:.3f}  n={v['support']}"
              for c, v in metrics["per_class"].items()]
    _log("\n".join(lines))
    _figures(learn, interp, lambda name: work / f"{out.stem}.{name}.png", recorder.lr_curve if recorder else None)

    # The export carries no training callbacks: a teacher or a checkpoint writer has no place in export.pkl.
    training_cbs = [cb for cb in learn.cbs if isinstance(cb, ModelCard | SaveEachEpoch) or hasattr(cb, "teacher")]
    learn.remove_cbs(training_cbs)
    try:
        if hasattr(learn, "mixed_precision"):
            learn.to_fp32()
        tmp = staged.with_name(staged.name + ".tmp")
        path, model_dir = learn.path, learn.model_dir
        learn.path, learn.model_dir = Path("."), "models"
        try:
            learn.export(tmp.resolve())
        finally:
            learn.path, learn.model_dir = path, model_dir
    finally:
        learn.add_cbs(training_cbs)
    digest = sha256_file(tmp)
    card = _card(learn, out, digest, metrics, record, photos, fastai.__version__, torch)
    tmp.replace(staged)
    if engines and photos is not None:
        graphs = _write_graphs(learn, staged, photos, card)
        if graphs:
            card["engines"] = graphs
    write_card(staged, card)  # beside it, its figures: the work folder holds the whole model (card.model_files)
    if out.exists():
        _replace_or_keep(out, staged, card, photos, force)
    else:
        install_model(staged, out)
        _log(f"exported {out} ({metrics['accuracy']:.1%} validation accuracy), the first model there")
    shutil.rmtree(work, ignore_errors=True)
    return card


#: Training crops the int8 ranges are measured on (evenly spaced, each with its mirror).
CALIBRATION_CROPS = 200


def _write_graphs(learn, staged: Path, photos: TrainingPhotos, card: dict) -> dict | None:
    """The new model's ONNX graphs beside it, calibrated on training crops and measured against the learner on
    every validation crop (``engines.write_engines``); None, said, when they cannot be made: the learner is the
    model, and torch runs it."""
    from .engines import write_engines

    items = list_labelled_images(photos.folder, photos.classes)
    train = [p for p in items if not is_valid_item(p, photos.valid_pct, photos.seed)]
    valid = [(p, p.relative_to(photos.folder).parts[0]) for p in items if is_valid_item(p, photos.valid_pct,
                                                                                          photos.seed)]
    calibration = train[:: max(1, len(train) // CALIBRATION_CROPS)][:CALIBRATION_CROPS]
    _log(f"writing the ONNX graphs: int8 calibrated on {len(calibration)} training crops, both measured against the "
         f"learner on {len(valid)} validation crops")
    start = time.monotonic()
    try:
        fields = write_engines(learn, staged, calibration, valid, tta=card.get("inference", {}).get("tta") == "flip")
    except Exception as e:  # noqa: BLE001 - the graphs are an optional speed-up: the export stands without them
        _log(f"the ONNX graphs were not written ({type(e).__name__}: {str(e)[:200]}); the model runs on torch")
        return None
    fields["command"] = (f"written at export (training.keep_if_better): int8 calibrated on {len(calibration)} "
                         f"training crops, measured on {len(valid)} validation crops")
    for name in ("int8", "onnx"):
        f = fields.get(name)
        if f:
            a = f["agreement"]
            _log(f"  {f['file']}: the learner's label on {a['same_label']:.2%} of {a['photos']} validation crops"
                 + ("" if f["passes"] else f"; not used: {f.get('why_not', '')}"))
    _log(f"  graphs written and measured in {_duration(time.monotonic() - start)}")
    return fields


def _card(learn, out: Path, digest: str, metrics: dict, record: dict, photos: TrainingPhotos | None,
          fastai_version: str, torch) -> dict:
    dls = learn.dls
    fits = record.get("fits", [])
    start = record.get("start", {"kind": "unrecorded", "pretrained": None,
                                 "weights": "not recorded (no start_from call)"})
    training = {"fits": fits, "epochs": sum(f["epochs"] for f in fits), "lr_find": record.get("lr_find", []),
                "world_size": record.get("world_size", 1), "batch_size": dls.train.bs,
                "train_images": len(dls.train_ds), "valid_images": len(dls.valid_ds),
                "seconds": record.get("seconds"),
                "estimate": record.get("estimate"), "device": str(dls.device),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    training["augmentation"] = _augmentation(dls)
    if "distillation" in record:
        training["distillation"] = record["distillation"]
    card = {"format": 1, **(photos.card if photos else {}),
            "model": out.name, "export_sha256": digest,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "classes": list(dls.vocab), "architecture": _arch_name(learn),
            "image_size": _image_size(dls), "pretrained": start["pretrained"], "weights": start["weights"],
            "start": start["kind"], "training": training, "validation": metrics,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai_version}}
    if photos is not None:
        # train_seed: set by `selfiemask train`; None from a notebook, which seeds (or not) in its own cells
        training.update(seed=photos.seed, train_seed=record.get("train_seed"), valid_pct=photos.valid_pct,
                        split="sha256 of label/name, seeded (data.is_valid_item)")
        trained_on = list_labelled_images(photos.folder, photos.classes)
        card["data"] = {"source_dir": str(photos.source), **fingerprint(photos.source, photos.sources),
                        "trained_on": fingerprint(photos.folder, trained_on),
                        "photo_sha256": photo_digests(photos.sources)}  # what `python -m scrape forget` matches
    inference = record.get("inference")
    if inference:
        card["inference"] = inference
    card.update(record.get("notes", {}))
    return card


def _augmentation(dls) -> dict:
    """The project's training-only conditions as the loaders ran them (a notebook may have changed them)."""
    from .augment import FilledEdges, OccludeFaces, PhoneConditions, RollFaces, TurnQuarter

    found: dict = {"occlude_p": 0.0, "turn_p": 0.0, "roll_p": 0.0}  # no such transform at all when it is off
    for f in dls.train.after_item.fs:
        if isinstance(f, OccludeFaces):
            found["occlude_p"] = f.p
            if f.hand != "flat":
                found["hand"] = f.hand
            if getattr(f, "masked_hand", "forehead") != "forehead":  # (learners pickled before it: forehead)
                found["masked_hand"] = f.masked_hand
        elif isinstance(f, FilledEdges):
            found["edge_p"] = f.p
        elif isinstance(f, TurnQuarter):
            found["turn_p"] = f.p
        elif isinstance(f, RollFaces):
            found["roll_p"] = f.p
            if f.flat:
                found["roll_fill"] = "flat"
        elif isinstance(f, PhoneConditions):
            found.update(phone_p=f.p, camera_p=f.camera_p)
    return found


def _image_size(dls) -> int | None:
    xb = dls.valid.one_batch()[0]
    return int(xb.shape[-1])


def _replace_or_keep(out: Path, staged: Path, card: dict, photos: TrainingPhotos | None, force: bool) -> dict:
    """Compare, decide, and keep both models: the one that is not current goes to ``models/history/``."""
    history = history_dir(out)
    if photos is None:
        result, replace, why = None, True, "no photos were recorded to compare on (no ModelCard callback)"
    else:
        _log(f"comparing the new model with the current {out} on the same validation photos of {photos.source}")
        try:
            result = compare_models(out, staged, photos.source, photos.classes, photos.valid_pct, photos.seed)
        except ModelError as e:
            if str(staged) in str(e):  # the model just exported does not load: a bug, never installed
                raise
            result, replace = None, True  # the current model is damaged or refused: nothing to keep it for
            why = f"the current model could not be run ({str(e)[:300]})"
        else:
            replace, why = judge(result, force)
    outcome = {"decision": "replaced" if replace else "kept the current model", "reason": why,
               **({"comparison": comparison_summary(result)} if result else {})}
    if replace:
        previous = history / version_name(out)
        outcome.update(model_at=str(out), previous_kept_at=str(previous),
                       message=f"Replaced {out}: {why}.\nThe previous model is kept in {previous}/; "
                               f"`selfiemask restore {previous.name}` puts it back.")
    else:
        kept = history / version_name(staged)
        outcome.update(model_at=str(kept / out.name),
                       message=f"Kept the current model {out}, unchanged: {why}.\n"
                               f"The new model is kept in {kept}/ instead; `selfiemask restore {kept.name}` "
                               f"installs it, or train again with {term('force')}.")
    card["re_export"] = outcome
    write_card(staged, card)  # the same learner; its card now says how it compared
    if replace:
        keep_version(out)  # the current model is safe in the history before anything of it is replaced
        install_model(staged, out)
    else:
        keep_version(staged, history)
    _log(outcome["message"])
    return outcome


# -- the command line: the same calls, in the same order ----------------------------------------------------------
def teacher_callback(path: str | Path, vocab: list[str], temperature: float, alpha: float,
                     only_right: bool = False, clean: bool = False):
    """A :class:`distill.KnowledgeDistillation` callback for the teacher at ``path`` (checked against its card);
    its ``info`` is what the student's card says of the teacher."""
    from .distill import KnowledgeDistillation
    from .safe_load import UnsafeModelError, load_learner_safely

    path = Path(path)
    verify_model(path)
    card = read_card(path)
    try:
        teacher = load_learner_safely(path)  # a model file runs no code, teacher or not
    except UnsafeModelError as e:
        raise ModelError(f"refusing to load teacher {path}: {e}") from None
    if list(teacher.dls.vocab) != list(vocab):
        raise ValueError(f"teacher {path} has classes {list(teacher.dls.vocab)}, the student {list(vocab)}")
    cb = KnowledgeDistillation(teacher.model, temperature, alpha, only_right)
    cb.info = {"model": str(path), "export_sha256": card.get("export_sha256"),
               "architecture": card.get("architecture"), "weights": card.get("weights"),
               "validation_accuracy": card.get("validation", {}).get("accuracy"),
               "temperature": temperature, "alpha": alpha, "only_right": only_right, "clean": clean,
               "method": "Hinton et al. 2015: (1-alpha)*CE + alpha*T^2*KL(teacher_T || student_T), "
                         + ("teacher on the same crops without the training-only conditions" if clean else
                            "teacher on the same augmented batch") + " (selfiemask.distill)"
                         + ("; the soft term only where the teacher's label is right" if only_right else "")}
    _log(f"distilling from {path} ({cb.info['architecture']}), T={temperature}, alpha={alpha}")
    return cb


#: Settings that do not change what is trained: a checkpoint made with other values still resumes.
_NOT_SETTINGS = {"resume", "num_workers", "notes", "out", "callbacks", "force", "distributed", "engines"}


def _lr_find(learn, lr: float | None) -> float:
    """The rate given, or ``learn.lr_find``'s trusted valley (its plot saved in the work folder)."""
    if lr is not None:
        _log(f"learning rate {lr:.2g} (given): lr_find skipped")
        return lr
    steps = lr_find_steps(learn.dls)
    _log(f"lr_find: {steps} steps of rising learning rate")
    return learn.lr_find(num_it=steps, suggest_funcs=trusted_valley, show_plot=True).trusted_valley


def train(cfg: TrainConfig) -> dict:
    """``selfiemask train``: notebook 03's calls in its order. Returns the model card ({} on all but the main
    process of a distributed run, where the main process alone validates, exports and compares)."""
    from fastai.torch_core import set_seed
    from fastai.vision.all import accuracy, vision_learner

    from .arches import arch_function

    if cfg.distill_clean and not cfg.teacher:
        raise ValueError("--distill-clean is what a teacher reads: give one with --teacher")
    dist.setup(cfg.distributed)  # joins the launcher's process group, or refuses a launch without the flag
    out = Path(cfg.out)
    photos = face_crops(cfg.data_dir, cfg.crops, cfg.crop_cache, cfg.classes, cfg.valid_pct, cfg.seed, cfg.align)
    train_seed = cfg.seed if cfg.train_seed is None else cfg.train_seed  # --seed alone also moves the split
    set_seed(train_seed)
    bs = batch_size(photos, cfg.bs)
    dblock = make_datablock(cfg.size, cfg.classes, cfg.valid_pct, cfg.seed, cfg.occlude_p, cfg.camera_p,
                            cfg.turn_p, clean_view=cfg.distill_clean, roll_p=cfg.roll_p, edge_p=cfg.edge_p,
                            hand=cfg.hand, roll_fill=cfg.roll_fill, masked_hand=cfg.masked_hand)
    dls = dblock.dataloaders(photos.folder, bs=bs, **({} if cfg.num_workers is None else
                                                      {"num_workers": cfg.num_workers}))
    if not len(dls.train_ds) or not len(dls.valid_ds):
        raise ValueError(f"{photos.folder}: the split left {len(dls.train_ds)} training and {len(dls.valid_ds)} "
                         "validation images; add more images per class")
    _log(f"classes {list(dls.vocab)}: {len(dls.train_ds)} training, {len(dls.valid_ds)} validation images of "
         f"{cfg.size} px, {len(dls.train)} batches of {bs} an epoch")
    settings = {k: str(v) for k, v in vars(cfg).items() if k not in _NOT_SETTINGS}
    cbs = [ModelCard(photos), SaveEachEpoch(out, settings, resume=cfg.resume)]
    learn = vision_learner(dls, arch_function(cfg.arch), pretrained=False, metrics=accuracy, cbs=cbs)
    if dls.device.type == "cuda":
        learn.to_fp16()  # mixed precision on a GPU; the export is converted back to float32
    start = start_from(learn, cfg.pretrained)
    if cfg.teacher:
        teacher = teacher_callback(cfg.teacher, list(dls.vocab), cfg.distill_temperature, cfg.distill_alpha,
                                   cfg.distill_only_right, cfg.distill_clean)
        learn.add_cb(teacher)
        learn.model_card.record["distillation"] = teacher.info
    learn.model_card.record["notes"] = cfg.notes
    learn.model_card.record["train_seed"] = train_seed
    saved = learn.save_each_epoch.saved() if cfg.resume else {}
    lr = saved.get("lr_used") or cfg.lr  # a resumed run trains at the rate it started with
    estimate_time(learn, cfg.epochs, fine_tune=start.pretrained, lr_find=lr is None)
    lr = dist.on_main(_lr_find, learn, lr)  # one rate for every process
    learn.save_each_epoch.lr_used = lr
    with dist.distrib_ctx(learn):  # DDP through fastai + Accelerate; nothing in a single process
        if start.pretrained:
            learn.fine_tune(cfg.epochs, lr, freeze_epochs=cfg.freeze_epochs, cbs=cfg.callbacks)
        else:
            learn.fit_one_cycle(cfg.epochs, lr, cbs=cfg.callbacks)
    dist.shutdown()
    if not dist.is_main():
        return {}
    with dist.single_process():
        from fastai.vision.all import ClassificationInterpretation

        interp = ClassificationInterpretation.from_learner(learn)
        return keep_if_better(learn, out, cfg.force, interp=interp, engines=cfg.engines)

