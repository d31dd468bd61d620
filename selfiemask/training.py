"""Training, step by step: the cells of notebook 03, and ``selfiemask train`` running them in one go.

The steps are fastbook's chapter 2 with this project's choices, one method of
:class:`Training` each::

    run = Training(TrainConfig(data_dir="data/clean"))
    dls = run.dataloaders()        # face crops, the DataBlock, the seeded hash split
    learn = run.learner()          # vision_learner: the architecture, from ImageNet weights or not
    run.estimate()                 # how long the rest will take, from two timed steps
    run.find_lr()                  # lr_find (fewer steps on few photos), or the rate given
    run.fit()                      # fine_tune (ImageNet weights) or fit_one_cycle (from scratch)
    interp = run.interpretation()  # ClassificationInterpretation: metrics, confusion matrix
    run.top_losses(interp)         # the worst mistakes, titled in words
    card = run.export()            # export, compare with the current model, replace it only if not worse

:func:`train` is exactly that sequence (plus the distributed bookkeeping).
Nothing touches the current ``export.pkl`` and its card until the very end:
the new model is exported in a work folder, compared with the current one on
the same validation photos (``evaluate.compare_models``) and installed only
when it does at least as well, or when forced (``card.install_model``); the
model it replaces, or the new one when it is not installed, is kept in
``models/history/`` (``card.keep_version``; ``selfiemask restore`` puts one
back). Each epoch is checkpointed, so ``--resume`` continues a stopped run.
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

from fastai.callback.core import Callback

from . import distributed as dist
from .card import ModelError, install_model, keep_version, read_card, version_name, write_card
from .crops import MANIFEST, SETTINGS, CropSettings, crop_counts, crop_folder
from .data import DEFAULT_SEED, DEFAULT_VALID_PCT, is_valid_item, make_dls
from .evaluate import class_metrics, compare_models, comparison_summary, judge, plot_top_losses, save_figure
from .files import fingerprint, photo_digests, sha256_file
from .images import list_labelled_images
from .paths import default_crop_cache, history_dir
from .pretrained import PretrainedUnavailable, resolve_pretrained

__all__ = ["ARCH", "EPOCHS", "SIZE", "NoTrainingData", "SaveEachEpoch", "TrainConfig", "Training",
           "WeightsMissing", "lr_find_steps", "train"]

ARCH = "resnet34"
#: The shipped model's recipe (export.json): the notebook's and the command's defaults.
EPOCHS = 14
SIZE = 128
#: lr_find's steps: fastai's 100 on a large set; on a small one about two epochs' worth, at least this many.
LR_FIND_MIN_STEPS = 20
#: Fewer batches than this an epoch, and the batch size shrinks (a 100-photo set would make 1 batch of 64).
MIN_BATCHES = 4
#: The rate used when lr_find cannot suggest one, or suggests one outside ``LR_RANGE``.
FALLBACK_LR = 1e-3
#: The rates lr_find's suggestion is trusted in: over 20 steps its curve is noisy, and on 100 photos it has
#: suggested 4e-6 (a run that then learned nothing in 14 epochs) where other seeds gave 1e-3 and 2.5e-3.
LR_RANGE = (1e-5, 1e-1)


@dataclass
class TrainConfig:
    data_dir: Path
    out: Path = Path("export.pkl")
    epochs: int = EPOCHS
    size: int = SIZE
    bs: int = 64
    pretrained: bool | None = None  # None: ImageNet weights when they can be had, else from scratch (said loudly)
    crops: bool = True
    crop_cache: Path | None = None
    classes: list[str] | None = None
    lr: float | None = None
    freeze_epochs: int = 1
    valid_pct: float = DEFAULT_VALID_PCT
    seed: int = DEFAULT_SEED
    resume: bool = False
    callbacks: list = field(default_factory=list)  # extra fastai callbacks for the fit (e.g. a logger)
    num_workers: int | None = None
    notes: dict = field(default_factory=dict)
    distributed: bool = False  # one of several processes started by torchrun / accelerate launch
    arch: str = ARCH  # "resnet34" or "mobilenet_v2" (arches.py)
    teacher: Path | None = None  # an export.pkl to distil from (distill.py)
    distill_temperature: float = 4.0
    distill_alpha: float = 0.7
    force: bool = False  # replace the current model even when the new one does worse on the same photos


# -- talking to people: the command line or a notebook ------------------------------------------------------------
def in_notebook() -> bool:
    """Whether we run in a Jupyter kernel: messages then name the notebook's parameters, not the command's options.

    Asked of IPython's running shell, not of ``sys.modules``: a process that merely imported ipykernel (ipywidgets
    does) is not a notebook.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


#: The same advice in the two places training runs from: (command line, notebook 03's parameters).
TERMS = {
    "scratch": ("--no-pretrained", "`pretrained = False`"),
    "require": ("--pretrained", "`pretrained = True`"),
    "default": ("the default (no --pretrained)", "`pretrained = None`"),
    "mobilenet": ("--arch mobilenet_v2", '`arch = "mobilenet_v2"`'),
    "force": ("--force", "`force = True`"),
}


def term(key: str) -> str:
    return TERMS[key][in_notebook()]


def _log(msg: str) -> None:
    """One copy of each line (the main process's); on stderr for the command, in the output of a notebook cell."""
    if dist.is_main():
        print(f"[selfiemask] {msg}", file=sys.stdout if in_notebook() else sys.stderr, flush=True)


class _Plain:
    """An error whose message says all: a notebook shows it without a traceback (IPython's ``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return [f"Stopped: {self}"]


class NoTrainingData(_Plain, FileNotFoundError):
    """The training folder is missing or holds no labelled photos; the message says where photos come from."""


class WeightsMissing(_Plain, PretrainedUnavailable):
    """ImageNet weights were required (``pretrained = True`` / ``--pretrained``) and cannot be had."""


WHERE_PHOTOS_COME_FROM = (
    "Training reads one folder per class: <data_dir>/with_mask/, <data_dir>/without_mask/. Photos come from\n"
    "  - notebook 01 (01_scrape.ipynb), which saves them in data/raw/<label>/, or\n"
    "  - your own photos, put in data/raw/with_mask/ and data/raw/without_mask/;\n"
    "then notebook 02 (02_clean.ipynb, or `selfiemask clean all`) checks them and writes data/clean/, the default.\n"
    "(The project's own training set, ../shared/data/train, is only beside the project's own checkout.)")


def _photos(data_dir: Path, classes: list[str] | None) -> list[Path]:
    if not data_dir.is_dir():
        raise NoTrainingData(f"training folder not found: {data_dir}\n{WHERE_PHOTOS_COME_FROM}")
    sources = list_labelled_images(data_dir, classes)
    if not sources:
        raise NoTrainingData(f"no photos in the label folders of {data_dir}\n{WHERE_PHOTOS_COME_FROM}")
    return sources


def lr_find_steps(batches_per_epoch: int) -> int:
    """fastai's 100 steps, or two epochs' worth when that is less (at least 20): on 100 photos, 100 steps of
    64 would be 60 epochs of lr_find for a 14-epoch training."""
    return max(LR_FIND_MIN_STEPS, min(100, 2 * batches_per_epoch))


def _weights(requested: bool | None, arch: str) -> tuple[bool, str]:
    """ImageNet weights or not, and how (for the card); ``None`` falls back to from scratch, saying why."""
    from .arches import WeightsError

    try:
        return resolve_pretrained(requested, arch=arch)
    except (PretrainedUnavailable, WeightsError) as e:
        reason = str(e).splitlines()[0]
    better = (f"{term('mobilenet')} fine-tunes MobileNetV2, whose ImageNet weights ship with the project, or put "
              f"the weights file where it is looked for (above)")
    if requested:
        raise WeightsMissing(f"{reason}\n  Set {term('scratch')} to train from scratch (lower accuracy, most of all on "
                             f"few photos; the card says so), or {better}.")
    _log(f"*** No ImageNet weights for {arch}: {reason}\n"
         f"*** Training FROM SCRATCH instead, as {term('default')} does without them: lower accuracy, most of all "
         f"on few photos (the card says so). {term('require')} stops instead, {term('scratch')} skips this check; "
         f"for ImageNet weights: {better}. ***")
    return False, f"from scratch: no ImageNet weights could be had ({reason[:160]})"


class SaveEachEpoch(Callback):
    """Saves model and optimiser after every epoch, with the settings, so a stopped run can resume.

    Like fastai's ``SaveModelCallback``: a top-level class configured in
    ``__init__``; ``checkpoint.json`` beside the weights says how many epochs
    are done and with which settings.
    """

    order = 90

    def __init__(self, work: Path, settings: dict) -> None:
        self.work, self.settings = work, settings
        self.meta = work / "checkpoint.json"

    def done_epochs(self) -> int:
        if not self.meta.exists():
            return 0
        meta = json.loads(self.meta.read_text())
        saved = {k: v for k, v in meta.get("settings", {}).items() if k != "lr_used"}
        return meta["epochs_done"] if saved == self.settings else 0

    def after_epoch(self):
        self.learn.save("checkpoint", with_opt=True)  # fastai saves on rank 0 only
        if dist.is_main():
            self.meta.write_text(json.dumps({"epochs_done": self.epoch + 1, "settings": self.settings}))


#: Settings that do not change what is trained: a checkpoint made with other values still resumes.
_NOT_SETTINGS = {"resume", "num_workers", "notes", "out", "callbacks", "force"}


class Training:
    """One training run, one step per method, in the order of the module docstring.

    The steps share what they make (data loaders, learner, learning rate,
    metrics) through this object; each says what it did in a line or two, and
    a figure shows in a notebook and is saved beside the model.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        dist.setup(cfg.distributed)  # joins the launcher's process group, or refuses a launch without the flag
        self.data_dir, self.out = Path(cfg.data_dir), Path(cfg.out)
        self.work = self.out.parent / f".{self.out.stem}.work"  # checkpoints, figures, the new model until judged
        self.sources = _photos(self.data_dir, cfg.classes)
        self.card: dict = {"format": 1}
        self.dls = self.learn = None
        self.lr: float | None = cfg.lr
        self.lr_info: dict = {}
        self.start_epoch = 0
        self.extra_cbs: list = []
        self.distillation: dict = {}
        self.timing: dict = {}
        counts = Counter(p.relative_to(self.data_dir).parts[0] for p in self.sources)
        _log(f"{len(self.sources)} photos in {self.data_dir} ("
             + ", ".join(f"{n} {label}" for label, n in sorted(counts.items())) + ")")
        _log(self._current_model_note())

    def _current_model_note(self) -> str:
        if not self.out.exists():
            return f"the new model will be {self.out} (there is none yet)"
        try:
            v = read_card(self.out).get("validation", {})
        except ModelError:
            v = {}
        score = f" ({v['accuracy']:.1%} on its {v['n']} validation photos)" if "accuracy" in v else ""
        rule = "replaced by the new one in any case" if self.cfg.force else \
            "replaced only if the new one does at least as well on the same validation photos"
        return (f"the current model {self.out}{score} will be {rule}; "
                f"either way both are kept ({history_dir(self.out)}/)")

    def _figure(self, name: str) -> Path:
        return self.work / f"{self.out.stem}.{name}.png"

    # -- 1. data ------------------------------------------------------------------------------------------------
    def dataloaders(self):
        """Face crops (cached), then the DataBlock of ``data.py`` over them: fastai's ``DataLoaders``."""
        cfg, data_dir = self.cfg, self.data_dir
        if (data_dir / MANIFEST).exists() and (data_dir / SETTINGS).exists():
            # A crop folder made earlier (by crop_folder): train on it as it is.
            train_dir = data_dir
            self.card["input"] = "face crops"
            self.card["detector"] = json.loads((data_dir / SETTINGS).read_text())
            self.card["detector"]["counts"] = crop_counts(data_dir)
            _log(f"{data_dir} is a face-crop folder: training on it as it is")
        elif cfg.crops:
            cache = cfg.crop_cache or default_crop_cache(data_dir)
            _log(f"detecting faces in {len(self.sources)} photos (cached in {cache})")
            summary = dist.on_main(crop_folder, data_dir, cache, cfg.classes, per_node=True)  # one writer per cache
            _log(f"face crops: {summary.face} faces, {summary.whole} photos kept whole, {summary.failed} unreadable; "
                 f"{summary.reused} reused from the cache")
            train_dir = cache
            self.card["input"] = "face crops"
            self.card["detector"] = {**CropSettings().as_dict(), "counts": crop_counts(cache)}
        else:
            train_dir = data_dir
            self.card["input"] = "whole images"
        self.train_dir = train_dir

        from fastai.torch_core import set_seed

        set_seed(cfg.seed)
        self.bs = self._batch_size(train_dir)
        self.dls = make_dls(train_dir, cfg.size, self.bs, cfg.classes, cfg.valid_pct, cfg.seed, cfg.num_workers)
        _log(f"classes {list(self.dls.vocab)}: {len(self.dls.train_ds)} training, {len(self.dls.valid_ds)} "
             f"validation images of {cfg.size} px, {len(self.dls.train)} batches of {self.bs} an epoch")
        return self.dls

    def _batch_size(self, train_dir: Path) -> int:
        """``cfg.bs``, or less when it would leave fewer than ``MIN_BATCHES`` batches an epoch (fastai drops the
        last, partial batch: 85 photos in batches of 64 would train on one batch an epoch)."""
        cfg = self.cfg
        n_train = sum(not is_valid_item(p, cfg.valid_pct, cfg.seed) for p in list_labelled_images(train_dir,
                                                                                                   cfg.classes))
        bs = max(1, min(cfg.bs, max(8, n_train // MIN_BATCHES), n_train))
        if bs < cfg.bs:
            _log(f"batch size {bs} instead of {cfg.bs}: {n_train} training photos would make fewer than "
                 f"{MIN_BATCHES} batches an epoch")
        return bs

    # -- 2. learner ---------------------------------------------------------------------------------------------
    def learner(self):
        """``vision_learner`` over the chosen architecture, from ImageNet weights or from scratch (said which)."""
        from fastai.vision.all import accuracy, vision_learner

        from .arches import arch_function

        cfg = self.cfg
        if self.dls is None:
            raise RuntimeError("run dataloaders() first")
        arch = arch_function(cfg.arch)
        self.pretrained, self.weights = dist.on_main(_weights, cfg.pretrained, cfg.arch, per_node=True)  # one download
        learn = vision_learner(self.dls, arch, pretrained=self.pretrained, metrics=accuracy)
        if self.dls.device.type == "cuda":
            learn.to_fp16()  # mixed precision on a GPU; the export is converted back to float32
        self.work.mkdir(parents=True, exist_ok=True)
        learn.path, learn.model_dir = self.work, "."
        settings = {k: str(v) for k, v in vars(cfg).items() if k not in _NOT_SETTINGS}
        self.ckpt = SaveEachEpoch(self.work, settings)
        self.start_epoch = self.ckpt.done_epochs() if cfg.resume else 0
        if self.start_epoch:
            meta = json.loads(self.ckpt.meta.read_text())
            self.lr = meta["settings"].get("lr_used", self.lr)
            learn.load("checkpoint", with_opt=True)
            _log(f"resuming after epoch {self.start_epoch} of {cfg.epochs}")
        if cfg.teacher:
            from .distill import KnowledgeDistillation

            teacher_model, self.distillation = _load_teacher(Path(cfg.teacher), list(self.dls.vocab))
            self.distillation.update(
                temperature=cfg.distill_temperature, alpha=cfg.distill_alpha,
                method="Hinton et al. 2015: (1-alpha)*CE + alpha*T^2*KL(teacher_T || student_T), "
                       "teacher on the same augmented batch (selfiemask.distill)")
            self.extra_cbs.append(KnowledgeDistillation(teacher_model, cfg.distill_temperature, cfg.distill_alpha))
            _log(f"distilling from {cfg.teacher} ({self.distillation['architecture']}), "
                 f"T={cfg.distill_temperature}, alpha={cfg.distill_alpha}")
        n_params = sum(p.numel() for p in learn.model.parameters())
        how = f"fine_tune from {self.weights}" if self.pretrained else "fit_one_cycle from scratch"
        _log(f"vision_learner({cfg.arch}, pretrained={self.pretrained}): {n_params / 1e6:.1f} M parameters, {how}")
        self.learn = learn
        return learn

    # -- 3. how long --------------------------------------------------------------------------------------------
    def _lr_steps(self) -> int:
        return 0 if self.lr is not None else lr_find_steps(len(self.dls.train))

    def _fit_epochs(self) -> int:
        cfg = self.cfg
        if self.pretrained and not self.start_epoch and cfg.epochs:
            return cfg.freeze_epochs + cfg.epochs
        return max(0, cfg.epochs - self.start_epoch)

    def estimate(self) -> dict:
        """Time two training steps on a copy of the model and say how long lr_find and the fit should take.

        The copy keeps the learner untouched, and the random state is put back, so
        the estimate changes nothing of the run. Loading and augmenting a batch is
        timed too (here in one process; the fit's workers overlap it with compute).
        """
        import copy

        from fastai.torch_core import get_random_states, set_random_states

        learn, dls = self.learn, self.dls
        if learn is None:
            raise RuntimeError("run learner() first")
        states = get_random_states()
        try:
            t0 = time.perf_counter()
            xb, yb = dls.train.one_batch()
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
        lr_steps, epochs = self._lr_steps(), self._fit_epochs()
        est = {"step_seconds": round(per_step, 2), "lr_find_seconds": round(lr_steps * per_step),
               "epoch_seconds": round(per_epoch, 1), "epochs": epochs}
        est["seconds"] = round(est["lr_find_seconds"] + epochs * per_epoch)
        self.timing["estimate"] = est
        lr_part = f"lr_find {lr_steps} steps ~{_duration(est['lr_find_seconds'])}" if lr_steps else "no lr_find"
        _log(f"estimated time: about {_duration(est['seconds'])} ({lr_part}; {epochs} epochs of "
             f"{len(dls.train)} batches ~{_duration(per_epoch)} each), from two timed steps of {len(xb)} images "
             f"({per_step:.2f} s each with loading); then validation, export and the comparison")
        return est

    # -- 4. learning rate ---------------------------------------------------------------------------------------
    def find_lr(self) -> float:
        """fastai's ``lr_find`` (its plot shown and saved) and its ``valley`` suggestion, or the rate given."""
        if self.learn is None:
            raise RuntimeError("run learner() first")
        if self.lr is not None:
            why = "of the interrupted run" if self.start_epoch else "given"
            _log(f"learning rate {self.lr:.2g} ({why}): lr_find skipped")
            return self.lr
        steps = self._lr_steps()
        t0 = time.monotonic()
        self.lr, self.lr_info = dist.on_main(_find_lr, self.learn, self.pretrained, self._figure("lr_find"), steps,
                                             in_notebook())  # one rate for every process
        self.timing["lr_find_seconds"] = round(time.monotonic() - t0)
        return self.lr

    # -- 5. fit -------------------------------------------------------------------------------------------------
    def fit(self) -> None:
        """``fine_tune`` from ImageNet weights (a frozen epoch, then all layers), else ``fit_one_cycle``."""
        cfg, learn, lr = self.cfg, self.learn, self.lr
        if learn is None or lr is None:
            raise RuntimeError("run learner() and find_lr() first")
        self.ckpt.settings["lr_used"] = lr
        cbs = [self.ckpt, *cfg.callbacks, *self.extra_cbs]
        t0 = time.monotonic()
        with dist.distrib_ctx(learn):  # DDP through fastai + Accelerate; nothing in a single process
            if self.pretrained:
                if not self.start_epoch:
                    learn.fine_tune(cfg.epochs, base_lr=lr, freeze_epochs=cfg.freeze_epochs, cbs=cbs)
                else:
                    learn.unfreeze()
                    learn.fit_one_cycle(cfg.epochs, slice(lr / 100, lr / 2), start_epoch=self.start_epoch, cbs=cbs)
                self.schedule = {"freeze_epochs": cfg.freeze_epochs, "unfrozen_epochs": cfg.epochs,
                                 "lr_max": [lr / 100, lr / 2]}
            else:
                learn.fit_one_cycle(cfg.epochs, lr, start_epoch=self.start_epoch, cbs=cbs)
                self.schedule = {"epochs": cfg.epochs, "lr_max": lr}
        self.timing["fit_seconds"] = round(time.monotonic() - t0)
        self.world_size = dist.world_size()  # read now: the main process validates and exports alone

    # -- 6. interpretation --------------------------------------------------------------------------------------
    def interpretation(self):
        """fastai's ``ClassificationInterpretation`` of the validation photos: per-class figures, confusion matrix."""
        import matplotlib.pyplot as plt
        from fastai.vision.all import ClassificationInterpretation

        learn = self.learn
        dl = learn.dls.valid.new(shuffle=False, drop_last=False)
        preds, targs, losses = learn.get_preds(dl=dl, with_loss=True)  # one pass for the metrics and the losses
        interp = ClassificationInterpretation(learn, dl, losses)
        vocab = list(learn.dls.vocab)
        self.metrics = m = class_metrics(targs.tolist(), preds.argmax(1).tolist(), vocab)
        lines = [f"validation accuracy {m['accuracy']:.1%} on {m['n']} photos"]
        lines += [f"  {c:14s} precision {v['precision']:.3f}  recall {v['recall']:.3f}  n={v['support']}"
                  for c, v in m["per_class"].items()]
        _log("\n".join(lines))
        interp.plot_confusion_matrix(title=f"validation, {m['n']} photos")
        save_figure(plt.gcf(), self._figure("confusion"), show=in_notebook())
        return interp

    def top_losses(self, interp, k: int = 9) -> None:
        """The ``k`` validation photos with the highest loss, titled label / verdict / confidence / loss / file."""
        save_figure(plot_top_losses(interp, k), self._figure("top_losses"), show=in_notebook())

    # -- 7. export ----------------------------------------------------------------------------------------------
    def export(self) -> dict:
        """Export the learner with its card, then replace the current model only if the new one is not worse.

        The new model is exported into the work folder first. With no current model
        it is installed. Otherwise both are run on the same validation photos of
        ``data_dir``: if the new one does at least as well (or ``force``), the current
        one is kept in ``models/history/`` and the new one installed; if not, the
        current one stays, byte for byte, and the new one is kept in the history
        instead. Returns the new model's card; its ``re_export`` says what happened.
        """
        import fastai
        import torch

        cfg, learn, dls = self.cfg, self.learn, self.dls
        self.work.mkdir(parents=True, exist_ok=True)
        staged = self.work / self.out.name
        tmp = staged.with_name(staged.name + ".tmp")
        if hasattr(learn, "mixed_precision"):
            learn.to_fp32()
        learn.path, learn.model_dir = Path("."), "models"
        learn.export(tmp.resolve())
        digest = sha256_file(tmp)
        files = list_labelled_images(self.train_dir, cfg.classes)
        training = {**self.schedule, "lr_find": self.lr_info, "world_size": self.world_size,
                    "batch_size": self.bs, "seed": cfg.seed, "valid_pct": cfg.valid_pct,
                    "split": "sha256 of label/name, seeded (data.is_valid_item)",
                    "train_images": len(dls.train_ds), "valid_images": len(dls.valid_ds),
                    "seconds": round(time.monotonic() - self.started), **self.timing, "device": str(dls.device),
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
        if self.distillation:
            training["distillation"] = self.distillation
        card = {**self.card,
                "model": self.out.name,
                "export_sha256": digest,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "classes": list(dls.vocab),
                "architecture": cfg.arch,
                "image_size": cfg.size,
                "pretrained": self.pretrained,
                "weights": self.weights,
                "training": training,
                "validation": self.metrics,
                "data": {"source_dir": str(self.data_dir), **fingerprint(self.data_dir, self.sources),
                         "trained_on": {**fingerprint(self.train_dir, files)},
                         "photo_sha256": photo_digests(self.sources)},  # for scrape forget: who saw a photo
                "versions": {"python": platform.python_version(), "torch": torch.__version__,
                             "fastai": fastai.__version__},
                **cfg.notes}
        tmp.replace(staged)
        write_card(staged, card)  # beside it, its figures: the work folder holds the whole model (card.model_files)
        if self.out.exists():
            self._replace_or_keep(staged, card)
        else:
            install_model(staged, self.out)
            _log(f"exported {self.out} ({self.metrics['accuracy']:.1%} validation accuracy), the first model there")
        shutil.rmtree(self.work, ignore_errors=True)
        return card

    def _replace_or_keep(self, staged: Path, card: dict) -> dict:
        """Compare, decide, and keep both models: the one that is not current goes to ``models/history/``."""
        cfg = self.cfg
        history = history_dir(self.out)
        _log(f"comparing the new model with the current {self.out} on the same validation photos of {self.data_dir}")
        try:
            result = compare_models(self.out, staged, self.data_dir, cfg.classes, cfg.valid_pct, cfg.seed)
        except ModelError as e:
            if str(staged) in str(e):  # the model just exported does not load: a bug, never installed
                raise
            result, replace = None, True  # the current model is damaged or refused: nothing to keep it for
            why = f"the current model could not be run ({str(e)[:300]})"
        else:
            replace, why = judge(result, cfg.force)
        outcome = {"decision": "replaced" if replace else "kept the current model", "reason": why,
                   **({"comparison": comparison_summary(result)} if result else {})}
        if replace:
            previous = history / version_name(self.out)
            outcome.update(model_at=str(self.out), previous_kept_at=str(previous),
                           message=f"Replaced {self.out}: {why}.\nThe previous model is kept in {previous}/; "
                                   f"`selfiemask restore {previous.name}` puts it back.")
        else:
            kept = history / version_name(staged)
            outcome.update(model_at=str(kept / self.out.name),
                           message=f"Kept the current model {self.out}, unchanged: {why}.\n"
                                   f"The new model is kept in {kept}/ instead; `selfiemask restore {kept.name}` "
                                   f"installs it, or train again with {term('force')}.")
        card["re_export"] = outcome
        write_card(staged, card)  # the same learner; its card now says how it compared
        if replace:
            keep_version(self.out)  # the current model is safe in the history before anything of it is replaced
            install_model(staged, self.out)
        else:
            keep_version(staged, history)
        _log(outcome["message"])
        return outcome


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def train(cfg: TrainConfig) -> dict:
    """Every step of :class:`Training`, in order: the model card ({} on all but the main process of a
    distributed run, where the main process alone validates, exports and compares)."""
    run = Training(cfg)
    run.dataloaders()
    run.learner()
    run.estimate()
    run.find_lr()
    run.fit()
    dist.shutdown()
    if not dist.is_main():
        return {}
    with dist.single_process():
        interp = run.interpretation()
        run.top_losses(interp)
        return run.export()


def _load_teacher(path: Path, vocab: list[str]):
    """The teacher's model (checked against its card) and what the student's card says of it."""
    from .card import verify_model
    from .safe_load import UnsafeModelError, load_learner_safely

    verify_model(path)
    card = read_card(path)
    try:
        teacher = load_learner_safely(path)  # a model file runs no code, teacher or not
    except UnsafeModelError as e:
        raise ModelError(f"refusing to load teacher {path}: {e}") from None
    if list(teacher.dls.vocab) != vocab:
        raise ValueError(f"teacher {path} has classes {list(teacher.dls.vocab)}, the student {vocab}")
    info = {"model": str(path), "export_sha256": card.get("export_sha256"),
            "architecture": card.get("architecture"), "weights": card.get("weights"),
            "validation_accuracy": card.get("validation", {}).get("accuracy")}
    return teacher.model, info


def _find_lr(learn, pretrained: bool, figure: Path, steps: int, show: bool) -> tuple[float, dict]:
    """fastai's lr_find over ``steps`` steps; the valley rate and all suggestions; the plot saved (and shown)."""
    import matplotlib.pyplot as plt
    from fastai.vision.all import minimum, steep, valley

    _log(f"lr_find: {steps} steps of rising learning rate")
    if pretrained:
        learn.freeze()
    try:
        sug = learn.lr_find(num_it=steps, suggest_funcs=(minimum, steep, valley), show_plot=True)
    except (IndexError, RuntimeError, ValueError) as e:  # too few points before the loss diverged
        _log(f"lr_find could not suggest a rate ({type(e).__name__}: {e}); using {FALLBACK_LR:g}")
        learn.recorder.plot_lr_find()
        save_figure(plt.gcf(), figure, show=show)
        return FALLBACK_LR, {"steps": steps, "fallback": FALLBACK_LR}
    save_figure(plt.gcf(), figure, show=show)
    info = {k: float(getattr(sug, k)) for k in ("minimum", "steep", "valley")}
    said = f"lr_find suggests valley {info['valley']:.2g} (steep {info['steep']:.2g}, minimum/10 {info['minimum']:.2g})"
    low, high = LR_RANGE
    if not low <= info["valley"] <= high:
        _log(f"{said}: outside {low:g}-{high:g}, a curve too noisy to read ({steps} steps); training at "
             f"{FALLBACK_LR:g} instead (set the learning rate to choose another)")
        return FALLBACK_LR, {**info, "steps": steps, "fallback": FALLBACK_LR}
    _log(f"{said}: training at {info['valley']:.2g}")
    return info["valley"], {**info, "steps": steps}
