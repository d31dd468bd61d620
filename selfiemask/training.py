"""Training and exporting a learner: the pipeline behind ``selfiemask train`` and notebook 03.

An interrupted or failed run never touches the previous ``export.pkl`` or its
card: both are written under temporary names and renamed at the very end.
Each epoch is checkpointed, so ``--resume`` continues a run that was stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastai.callback.core import Callback

from . import distributed as dist
from .card import write_card
from .crops import MANIFEST, SETTINGS, CropSettings, crop_counts, crop_folder
from .data import DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_VALID_PCT, make_dls
from .evaluate import class_metrics, save_figure
from .files import fingerprint, sha256_file
from .images import list_labelled_images
from .paths import default_crop_cache
from .pretrained import resolve_pretrained

__all__ = ["ARCH", "SaveEachEpoch", "TrainConfig", "train"]

ARCH = "resnet34"


@dataclass
class TrainConfig:
    data_dir: Path
    out: Path = Path("export.pkl")
    epochs: int = 12
    size: int = DEFAULT_SIZE
    bs: int = 64
    pretrained: bool | None = None
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


def _log(msg: str) -> None:
    if dist.is_main():  # one copy of each line, not one per process
        print(f"[selfiemask] {msg}", file=sys.stderr, flush=True)


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


def train(cfg: TrainConfig) -> dict:
    """Run the whole pipeline and return the model card ({} on all but the main process of a distributed run)."""
    from fastai.vision.all import accuracy, vision_learner

    from .arches import arch_function

    started = time.time()
    dist.setup(cfg.distributed)  # joins the launcher's process group, or refuses a launch without the flag
    data_dir = Path(cfg.data_dir)
    if not data_dir.is_dir():
        hint = " (../shared is only beside the project's own checkout; pass your own folder)" \
            if "shared" in str(data_dir) else ""
        raise FileNotFoundError(f"training folder not found: {data_dir}{hint}")
    arch = arch_function(cfg.arch)
    pretrained, how = dist.on_main(resolve_pretrained, cfg.pretrained, per_node=True, arch=cfg.arch)  # one download
    if not pretrained:
        _log("*** Training FROM SCRATCH (no ImageNet weights). Expect lower accuracy; the card records it. ***")
    sources = list_labelled_images(data_dir, cfg.classes)
    card: dict = {"format": 1}
    if (data_dir / MANIFEST).exists() and (data_dir / SETTINGS).exists():
        # A crop folder made earlier (by crop_folder): train on it as it is.
        train_dir = data_dir
        card["input"] = "face crops"
        card["detector"] = json.loads((data_dir / SETTINGS).read_text())
        card["detector"]["counts"] = crop_counts(data_dir)
        _log(f"{data_dir} is a face-crop folder: training on it as it is")
    elif cfg.crops:
        cache = cfg.crop_cache or default_crop_cache(data_dir)
        _log(f"detecting faces in {len(sources)} photos (cached in {cache})")
        summary = dist.on_main(crop_folder, data_dir, cache, cfg.classes, per_node=True)  # one writer per cache
        _log(f"face crops: {summary.face} faces, {summary.whole} photos kept whole, {summary.failed} unreadable; "
             f"{summary.reused} reused from the cache")
        train_dir = cache
        card["input"] = "face crops"
        card["detector"] = {**CropSettings().as_dict(), "counts": crop_counts(cache)}
    else:
        train_dir = data_dir
        card["input"] = "whole images"

    from fastai.torch_core import set_seed

    set_seed(cfg.seed)
    dls = make_dls(train_dir, cfg.size, cfg.bs, cfg.classes, cfg.valid_pct, cfg.seed, cfg.num_workers)
    vocab = list(dls.vocab)
    _log(f"classes {vocab}: {len(dls.train_ds)} training, {len(dls.valid_ds)} validation images")
    learn = vision_learner(dls, arch, pretrained=pretrained, metrics=accuracy)
    if dls.device.type == "cuda":
        learn.to_fp16()  # mixed precision on a GPU; the export is converted back to float32
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.stem}.work"
    work.mkdir(exist_ok=True)
    learn.path, learn.model_dir = work, "."

    skip = {"resume", "num_workers", "notes", "out", "callbacks"}
    settings = {k: str(v) for k, v in vars(cfg).items() if k not in skip}
    ckpt = SaveEachEpoch(work, settings)
    start_epoch = ckpt.done_epochs() if cfg.resume else 0
    lr = cfg.lr
    lr_info: dict = {}
    if start_epoch:
        meta = json.loads((work / "checkpoint.json").read_text())
        lr = meta["settings"].get("lr_used", lr)
        learn.load("checkpoint", with_opt=True)
        _log(f"resuming after epoch {start_epoch} of {cfg.epochs}")
    if lr is None:
        lr, lr_info = dist.on_main(_find_lr, learn, pretrained, out)  # one rate for every process
    ckpt.settings["lr_used"] = lr
    cbs = [ckpt, *cfg.callbacks]
    distillation: dict = {}
    if cfg.teacher:
        from .distill import KnowledgeDistillation

        teacher_model, distillation = _load_teacher(Path(cfg.teacher), vocab)
        distillation.update(temperature=cfg.distill_temperature, alpha=cfg.distill_alpha,
                            method="Hinton et al. 2015: (1-alpha)*CE + alpha*T^2*KL(teacher_T || student_T), "
                                   "teacher on the same augmented batch (selfiemask.distill)")
        cbs.append(KnowledgeDistillation(teacher_model, cfg.distill_temperature, cfg.distill_alpha))
        _log(f"distilling from {cfg.teacher} ({distillation['architecture']}), T={cfg.distill_temperature}, "
             f"alpha={cfg.distill_alpha}")
    with dist.distrib_ctx(learn):  # DDP through fastai + Accelerate; nothing in a single process
        if pretrained:
            # fine_tune: frozen body first, then all layers with discriminative rates.
            if not start_epoch:
                learn.fine_tune(cfg.epochs, base_lr=lr, freeze_epochs=cfg.freeze_epochs, cbs=cbs)
            else:
                learn.unfreeze()
                learn.fit_one_cycle(cfg.epochs, slice(lr / 100, lr / 2), start_epoch=start_epoch, cbs=cbs)
            schedule = {"freeze_epochs": cfg.freeze_epochs, "unfrozen_epochs": cfg.epochs,
                        "lr_max": [lr / 100, lr / 2]}
        else:
            learn.fit_one_cycle(cfg.epochs, lr, start_epoch=start_epoch, cbs=cbs)
            schedule = {"epochs": cfg.epochs, "lr_max": lr}

    training = {**schedule, "lr_find": lr_info, "world_size": dist.world_size()}
    if distillation:
        training["distillation"] = distillation
    dist.shutdown()
    if not dist.is_main():
        return {}  # the main process validates, exports and writes the card alone
    with dist.single_process():
        return _finish(cfg, learn, dls, data_dir, train_dir, sources, card, started,
                       {"pretrained": pretrained, "weights": how, "training": training})


def _load_teacher(path: Path, vocab: list[str]):
    """The teacher's model (checked against its card) and what the student's card says of it."""
    from .card import ModelError, read_card, verify_model
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


def _find_lr(learn, pretrained: bool, out: Path) -> tuple[float, dict]:
    """fastai's lr_find; returns the valley rate and all suggestions, and saves the plot beside the export."""
    import matplotlib.pyplot as plt
    from fastai.vision.all import minimum, steep, valley

    _log("lr_find: choosing the learning rate")
    if pretrained:
        learn.freeze()
    sug = learn.lr_find(suggest_funcs=(minimum, steep, valley), show_plot=True)
    save_figure(plt.gcf(), out.with_name(f"{out.stem}.lr_find.png"))
    return float(sug.valley), {k: float(getattr(sug, k)) for k in ("minimum", "steep", "valley")}


def _finish(cfg, learn, dls, data_dir, train_dir, sources, card, started, extra: dict) -> dict:
    """Validation metrics, figures, then the atomic export of the learner and its card."""
    import matplotlib.pyplot as plt
    import torch
    from fastai.vision.all import ClassificationInterpretation

    out = Path(cfg.out)
    work = out.parent / f".{out.stem}.work"
    vocab = list(dls.vocab)
    preds, targs = learn.get_preds(ds_idx=1)
    metrics = class_metrics(targs.tolist(), preds.argmax(1).tolist(), vocab)
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(title=f"validation, {metrics['n']} images")

    save_figure(plt.gcf(), out.with_name(f"{out.stem}.confusion.png"))
    interp.plot_top_losses(min(9, len(dls.valid_ds)), figsize=(10, 10))
    save_figure(plt.gcf(), out.with_name(f"{out.stem}.top_losses.png"))

    tmp = out.with_name(out.name + ".tmp")
    if hasattr(learn, "mixed_precision"):
        learn.to_fp32()
    learn.path, learn.model_dir = Path("."), "models"
    learn.export(tmp.resolve())
    digest = sha256_file(tmp)
    import fastai

    files = list_labelled_images(train_dir, cfg.classes)
    card.update({
        "model": out.name,
        "export_sha256": digest,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "classes": vocab,
        "architecture": cfg.arch,
        "image_size": cfg.size,
        "pretrained": extra["pretrained"],
        "weights": extra["weights"],
        "training": {**extra["training"], "batch_size": cfg.bs, "seed": cfg.seed,
                     "valid_pct": cfg.valid_pct, "split": "sha256 of label/name, seeded (data.is_valid_item)",
                     "train_images": len(dls.train_ds), "valid_images": len(dls.valid_ds),
                     "seconds": round(time.time() - started), "device": str(dls.device),
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                     **extra["training"]},
        "validation": metrics,
        "data": {"source_dir": str(data_dir), **fingerprint(data_dir, sources),
                 "trained_on": {**fingerprint(train_dir, files)}},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "fastai": fastai.__version__},
        **cfg.notes,
    })
    # The rename is the commit point: before it, the old model and card are intact.
    tmp.replace(out)
    write_card(out, card)
    shutil.rmtree(work, ignore_errors=True)
    _log(f"exported {out} ({metrics['accuracy']:.1%} validation accuracy) in {card['training']['seconds']} s")
    return card


