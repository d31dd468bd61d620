"""Cleaning steps 3 and 4, the ones that need a trained model: relabel, then compare the re-exported model.

Relabelling works like fastai's ``ImageClassifierCleaner``: the model points at
the photos it disagrees with most (top losses) or is least sure about, and a
person moves each to another label or to ``rejected/``. Our view takes plain
(path, label, predicted, confidence) rows instead of a Learner, because the
model we ship is an exported learner without its training DataLoaders.

Every move is appended to ``clean/relabel_log.csv`` (time, file, old label, new
label, where it went); :func:`undo` reverses the last N moves, or all, and
marks them undone, so the log stays a full history.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .card import read_card, write_card
from .clean import REJECT_FIELDS, Layout, append_rows, now, read_rows, set_aside, unique_dest, write_rows
from .crops import list_labelled_images
from .images import ImageError, load_image

REJECT = "rejected"
KEEP = "<keep>"
RELABEL_FIELDS = ["time", "file", "old_label", "new_label", "new_file", "undone"]


@dataclass
class Candidate:
    """A photo worth a second look: its label, the model's verdict, and the loss of its label."""

    path: Path
    label: str
    predicted: str
    confidence: float
    loss: float = 0.0


def review_candidates(clf, folder: str | Path, files: list[Path] | None = None, top_losses: int = 24,
                      least_confident: int = 12, bs: int = 32, progress: bool = True) -> list[Candidate]:
    """The ``top_losses`` photos whose label the model finds least likely, then the ``least_confident`` others.

    ``clf`` is a :class:`selfiemask.predict.Classifier`; ``files`` defaults to every
    image of ``folder/<label>/`` (pass a subset to save time: on a CPU each
    photo costs tens of milliseconds).
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    files = list(files) if files is not None else list_labelled_images(folder)
    bar = tqdm(total=len(files), desc="review", unit="img", disable=not progress, file=sys.stderr)
    try:
        results = clf.analyze_files(files, bs=bs, progress=bar.update)
    finally:
        bar.close()
    cands = []
    for p, res in zip(files, results):
        if res.error or res.main is None:
            continue
        label = Path(p).relative_to(folder).parts[0]
        v = res.main
        loss = -math.log(max(v.probs.get(label, 0.0), 1e-7))
        cands.append(Candidate(Path(p), label, v.label, v.confidence, round(loss, 4)))
    by_loss = sorted(cands, key=lambda c: -c.loss)[:top_losses]
    chosen = {c.path for c in by_loss}
    unsure = [c for c in sorted(cands, key=lambda c: c.confidence) if c.path not in chosen][:least_confident]
    return by_loss + unsure


# -- moves, logged and undoable ---------------------------------------------
def _layout(clean_dir: Path, rejected_dir: Path | None) -> Layout:
    clean_dir = Path(clean_dir)
    return Layout(clean_dir.parent / "raw", clean_dir, Path(rejected_dir or clean_dir.parent / "rejected"),
                  clean_dir.parent / "cache")


def relabel(path: str | Path, new_label: str, clean_dir: str | Path, rejected_dir: str | Path | None = None,
            log_path: str | Path | None = None) -> Path:
    """Move ``clean/<old>/name`` to ``clean/<new_label>/name`` (or to ``rejected/relabel/``) and log it.

    Returns the new path; a file already there is never overwritten (``name~1.jpg``).
    """
    layout = _layout(Path(clean_dir).resolve(), Path(rejected_dir).resolve() if rejected_dir else None)
    path = Path(path).resolve()
    if not path.is_relative_to(layout.clean) or len(path.relative_to(layout.clean).parts) < 2:
        raise ValueError(f"{path} is not a photo under {layout.clean}/<label>/")
    rel = path.relative_to(layout.clean)
    old_label, inner = rel.parts[0], Path(*rel.parts[1:])
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    if new_label in ("", ".", "..") or "/" in new_label or "\\" in new_label:
        raise ValueError(f"not a label name: {new_label!r}")
    if new_label == old_label:
        return path
    if new_label == REJECT:
        dest = set_aside(path, rel.as_posix(), layout, "relabel", f"rejected in review (was {old_label})")
    else:
        dest = unique_dest(layout.clean / new_label / inner)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
    append_rows(Path(log_path or layout.relabel_log), RELABEL_FIELDS, [{
        "time": now(), "file": rel.as_posix(), "old_label": old_label, "new_label": new_label,
        "new_file": Path(os.path.relpath(dest, layout.clean)).as_posix(), "undone": ""}])
    return dest


def undo(clean_dir: str | Path, n: int | None = 1, rejected_dir: str | Path | None = None,
         log_path: str | Path | None = None) -> list[dict]:
    """Reverse the last ``n`` relabel moves not yet undone (``n=None``: all of them), newest first.

    The rows stay in the log, marked with the time they were undone. Returns the
    rows undone; a move whose file is no longer where it went is skipped and
    left unmarked (``FileNotFoundError`` lists them after the others are undone).
    """
    layout = _layout(Path(clean_dir), rejected_dir)
    log = Path(log_path or layout.relabel_log)
    rows = read_rows(log)
    active = [i for i, r in enumerate(rows) if not r["undone"]]
    todo = active[::-1] if n is None else active[::-1][:max(0, n)]
    done, missing = [], []
    for i in todo:
        r = rows[i]
        src = Path(os.path.normpath(layout.clean / r["new_file"]))
        if not src.exists():
            missing.append(str(src))
            continue
        dest = unique_dest(layout.clean / r["file"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dest)
        if r["new_label"] == REJECT:
            append_rows(layout.reject_log, REJECT_FIELDS, [{
                "time": now(), "original": str(src), "new": str(dest), "reason": "restored by undo",
                "step": "relabel", "sha256": ""}])
        r["undone"] = now()
        done.append(r)
    if done:
        write_rows(log, RELABEL_FIELDS, rows)
    if missing:
        raise FileNotFoundError(f"undid {len(done)} move(s); these files are no longer where they were moved: "
                                + ", ".join(missing))
    return done


# -- the widget ---------------------------------------------------------------
def _thumb_bytes(path: Path, side: int) -> bytes:
    from PIL import Image

    try:
        img = load_image(path, max_side=side)
    except (ImageError, OSError):
        img = Image.new("RGB", (side, side), (90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class RelabelView:
    """A grid of photos with a dropdown each (keep / another label / reject) and an Apply button.

    ``items`` are :class:`Candidate` or ``(path, label, predicted, confidence)``
    tuples. Nothing moves until Apply; then each changed choice goes through
    :func:`relabel` (so it is logged and undoable) and the dropdown returns to
    keep. Display it in a notebook as it is, or ``display(view.widget)``.
    """

    def __init__(self, items, labels: list[str], clean_dir: str | Path, rejected_dir: str | Path | None = None,
                 log_path: str | Path | None = None, thumb: int = 150, columns: int = 4) -> None:
        import ipywidgets as w

        self.clean_dir, self.rejected_dir, self.log_path = Path(clean_dir), rejected_dir, log_path
        self.labels = sorted(labels)
        self.items: list[list] = []
        self.dropdowns: list = []
        self.captions: list = []
        cells = []
        for it in items:
            path, label, predicted, confidence = ((it.path, it.label, it.predicted, it.confidence)
                                                  if isinstance(it, Candidate) else it)
            self.items.append([Path(path), label, predicted, float(confidence)])
            image = w.Image(value=_thumb_bytes(Path(path), thumb), format="jpeg",
                            layout=w.Layout(width=f"{thumb}px", height=f"{thumb}px", object_fit="contain"))
            caption = w.HTML(layout=w.Layout(width=f"{thumb + 10}px"))
            dropdown = w.Dropdown(options=self._options(label), value=KEEP, layout=w.Layout(width=f"{thumb}px"))
            self.captions.append(caption)
            self.dropdowns.append(dropdown)
            self._caption(len(self.items) - 1)
            cells.append(w.VBox([image, caption, dropdown]))
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="check",
                                     tooltip="move the photos whose dropdown is not 'keep'; logged and undoable")
        self.apply_button.on_click(lambda _: self.apply())
        self.status = w.HTML(f"{len(self.items)} photos; choose a new label or reject, then Apply.")
        grid = w.GridBox(cells, layout=w.Layout(grid_template_columns=f"repeat({columns}, {thumb + 20}px)"))
        self.widget = w.VBox([grid, w.HBox([self.apply_button, self.status])])

    def _options(self, label: str) -> list[tuple[str, str]]:
        return ([("keep", KEEP)] + [(f"move to {c}", c) for c in self.labels if c != label]
                + [("reject", REJECT)])

    def _caption(self, i: int) -> None:
        path, label, predicted, confidence = self.items[i]
        from html import escape

        self.captions[i].value = (f"<b>{escape(label)}</b> · model: {escape(predicted)} {confidence:.0%}"
                                  f"<br><small>{escape(path.name)}</small>")

    def apply(self) -> list[tuple[Path, str, str]]:
        """Carry out every choice that is not 'keep'; returns (new path, old label, new label) per move."""
        moved = []
        for i, dd in enumerate(self.dropdowns):
            if dd.value == KEEP or dd.disabled:
                continue
            path, old = self.items[i][0], self.items[i][1]
            new = dd.value
            dest = relabel(path, new, self.clean_dir, self.rejected_dir, self.log_path)
            moved.append((dest, old, new))
            self.items[i][0], self.items[i][1] = dest, new
            dd.options, dd.value = self._options(new), KEEP
            self._caption(i)
            if new == REJECT:
                dd.disabled = True
        self.status.value = (f"moved {len(moved)} photo(s); logged in relabel_log.csv "
                             "(undo with <code>selfiemask clean undo N</code>)") if moved else "nothing to move"
        return moved

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# -- re-export: backup and comparison --------------------------------------------
def backup_model(path: str | Path, suffix: str = ".bak") -> Path | None:
    """Copy ``export.pkl`` to ``export.pkl.bak`` with its card, before a retrain replaces it.

    The card goes where :func:`selfiemask.card.card_path` looks for it
    (``export.pkl.json``), with ``export_sha256`` intact, so the backup loads
    and verifies like any model. Returns the backup's path, or None when there
    is no model yet.
    """
    path = Path(path)
    if not path.exists():
        return None
    bak = path.with_name(path.name + suffix)
    tmp = bak.with_name(bak.name + ".tmp")
    shutil.copy2(path, tmp)
    os.replace(tmp, bak)
    card = read_card(path)
    if card:
        write_card(bak, {**card, "model": bak.name, "backup_of": path.name, "backed_up": now()})
    return bak


def compare_models(old_pkl: str | Path, new_pkl: str | Path, folder: str | Path, classes: list[str] | None = None,
                   valid_pct: float | None = None, seed: int | None = None, bs: int = 32) -> dict:
    """Both models on the same validation photos of ``folder`` (the project's seeded split; defaults: training's).

    Returns ``{"old": metrics, "new": metrics, "n", "predictions"}`` where the
    metrics are :func:`selfiemask.training.class_metrics` (plus the card's data
    fingerprint) and ``predictions`` lists per photo the label and both verdicts.
    """
    from .data import DEFAULT_SEED, DEFAULT_VALID_PCT  # fastai: imported only when a model is needed
    from .predict import Classifier
    from .training import class_metrics, validation_items

    folder = Path(folder)
    valid_pct = DEFAULT_VALID_PCT if valid_pct is None else valid_pct
    seed = DEFAULT_SEED if seed is None else seed
    items = validation_items(folder, classes, valid_pct, seed)
    if not items:
        raise ValueError(f"no validation photos in {folder} (valid_pct={valid_pct}): add photos or raise valid_pct")
    labels = [p.relative_to(folder).parts[0] for p in items]
    out: dict = {"folder": str(folder), "n": len(items)}
    verdicts: dict[str, list[str]] = {}
    for name, pkl in (("old", old_pkl), ("new", new_pkl)):
        clf = Classifier(pkl)
        results = clf.analyze_files(items, bs=bs)
        vocab = clf.classes
        verdicts[name] = [r.main.label if not r.error and r.main else "error" for r in results]
        pairs = [(vocab.index(t), vocab.index(v)) for t, v in zip(labels, verdicts[name]) if t in vocab and v in vocab]
        metrics = class_metrics([a for a, _ in pairs], [b for _, b in pairs], vocab)
        metrics.update(model=str(pkl), skipped=len(items) - len(pairs), data=clf.card.get("data", {}))
        out[name] = metrics
    out["predictions"] = [{"file": p.relative_to(folder).as_posix(), "label": t, "old": o, "new": n}
                          for p, t, o, n in zip(items, labels, verdicts["old"], verdicts["new"])]
    return out


def comparison_table(result: dict):
    """Accuracy and per-class recall, old vs new, as a DataFrame (one row per figure)."""
    import pandas as pd

    rows = {"accuracy": (result["old"]["accuracy"], result["new"]["accuracy"])}
    for c in sorted(set(result["old"]["per_class"]) | set(result["new"]["per_class"])):
        rows[f"recall {c}"] = tuple(result[k]["per_class"].get(c, {}).get("recall", float("nan"))
                                    for k in ("old", "new"))
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["old", "new"])
    df["change"] = df["new"] - df["old"]
    return df


def plot_confusions(result: dict):
    """The two confusion matrices side by side (rows: true label, columns: predicted)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, name in zip(axes, ("old", "new")):
        cm = result[name]["confusion_matrix"]
        labels, mat = cm["labels"], np.array(cm["rows_true_cols_predicted"])
        ax.imshow(mat, cmap="Blues")
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: {result[name]['accuracy']:.1%} of {result[name]['n']}")
    fig.tight_layout()
    return fig
