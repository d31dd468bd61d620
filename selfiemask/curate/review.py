"""Review: the model points at the photos it disagrees with most, and a person relabels them in a widget.

Relabelling works like fastai's ``ImageClassifierCleaner``: the model points at
the photos it disagrees with most (top losses) or is least sure about, and a
person moves each to another label or to ``rejected/``. Our view takes plain
(path, label, predicted, confidence) rows instead of a Learner, because the
model we ship is an exported learner without its training DataLoaders. Each
move goes through :func:`selfiemask.curate.relabel.relabel`, so it is logged and undoable.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..images import list_labelled_images, thumbnail
from .relabel import KEEP, REJECT, relabel

__all__ = ["Candidate", "RelabelView", "review_candidates"]


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


def _thumb_bytes(path: Path, side: int) -> bytes:
    buf = io.BytesIO()
    thumbnail(path, side).save(buf, "JPEG", quality=85)
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
