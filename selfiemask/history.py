"""A model's versions: its files kept together in ``models/history/``, installed whole, listed, restored.

A model is a set of files: the learner, its card and its figures. Before a
re-export or a restore replaces one, the old set is kept in
``models/history/<date>-<time>-<sha8>/`` beside it (:func:`keep_version`); that
folder is the one backup there is. The new set is put in place by
:func:`install_model`: every file is copied beside its destination first and
renamed only when all are copied, with Ctrl-C held back during the renames, so
an interruption leaves the old set or the new one, never half of either.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .card import ModelError, card_path, read_card, verify_model
from .engines import SUFFIXES as GRAPH_SUFFIXES
from .files import atomic_path, sha256_file
from .paths import history_dir

__all__ = ["FIGURES", "find_version", "install_model", "keep_version", "list_versions", "model_files",
           "restore_model", "version_name"]

#: The figures training writes beside a model (``export.lr_find.png``...): they travel with it.
FIGURES = ("lr_find", "confusion", "top_losses")


def model_files(model_path: str | Path) -> list[Path]:
    """The files of one model that exist: the learner, its card, its figures, then its ONNX graphs.

    The graphs travel with their learner: a graph left beside another learner would be refused (its sha256
    is not in that learner's card), and one kept in the history comes back with a restore."""
    p = Path(model_path)
    names = [p, card_path(p), *(p.with_name(f"{p.stem}.{fig}.png") for fig in FIGURES),
             *(p.with_name(p.stem + suffix) for suffix in GRAPH_SUFFIXES.values())]
    return [f for f in names if f.exists()]


def _counterpart(f: Path, src: Path, dest: Path) -> Path:
    """Where file ``f`` of the model ``src`` goes when the model goes to ``dest`` (learner, card, figures)."""
    if f == src:
        return dest
    if f == card_path(src):
        return card_path(dest)
    return dest.with_name(dest.stem + f.name[len(src.stem):])


def _copy_set(files: list[Path], dest_model: Path) -> list[Path]:
    """Copy one model's files (the learner first) to ``dest_model`` and beside it, each atomically."""
    out = []
    for f in files:
        dest = _counterpart(f, files[0], dest_model)
        with atomic_path(dest) as tmp:
            shutil.copy2(f, tmp)
        out.append(dest)
    return out


def version_name(model_path: str | Path) -> str:
    """``<date>-<time>-<sha8>`` of a model: when its card says it was made (else the file's time), and its hash.

    Names sort by date, and the same model always gets the same name, so keeping it twice keeps one copy.
    """
    p = Path(model_path)
    card = read_card(p) if card_path(p).exists() else {}
    sha = card.get("export_sha256") or sha256_file(p)
    try:
        made = dt.datetime.fromisoformat(card["created"])
    except (KeyError, TypeError, ValueError):
        made = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC)
    return f"{made:%Y-%m-%d-%H%M%S}-{sha[:8]}"


def keep_version(model_path: str | Path, history: str | Path | None = None) -> Path | None:
    """Keep a model with its card and figures in ``history/<version>/``; return the kept learner (None: no model).

    ``history`` defaults to ``models/history/`` beside the model (``paths.history_dir``). A version
    already kept with the same learner is left as it is.
    """
    p = Path(model_path)
    if not p.exists():
        return None
    dest = Path(history or history_dir(p)) / version_name(p) / p.name
    if dest.exists() and sha256_file(dest) == sha256_file(p):
        return dest
    return _copy_set(model_files(p), dest)[0]


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C (or a notebook's interrupt) waits until the block is done, then interrupts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def install_model(src: str | Path, dest: str | Path) -> Path:
    """Put the model at ``src`` (learner, card, figures) in place of ``dest``'s; the ``src`` files stay.

    Every file is first copied to a temporary name beside its destination; only when all are
    copied are they renamed, with Ctrl-C held back, so an interruption or a full disk leaves the
    old learner and card together. The card, which vouches for the learner, is renamed last.
    ``dest``'s figures that ``src`` lacks are removed: they described the model being replaced
    (:func:`keep_version` keeps them with it).
    """
    src, dest = Path(src), Path(dest)
    files = model_files(src)
    if src not in files or card_path(src) not in files:
        raise ModelError(f"{src} and its card {card_path(src).name} are both needed to install a model")

    dest.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for f in [files[1], files[0], *files[2:]]:  # renamed in reverse: figures, learner, card
            shutil.copy2(f, stack.enter_context(atomic_path(_counterpart(f, src, dest))))
        renames = stack.pop_all()  # everything copied: nothing is removed on leaving this block
    kept = {_counterpart(f, src, dest) for f in files}
    with _ctrl_c_held():
        renames.close()
        for stale in model_files(dest):
            if stale not in kept:
                stale.unlink()
    return dest


def list_versions(model_path: str | Path) -> list[dict]:
    """The kept versions of a model, oldest first: name, learner path, card summary, and whether it is current."""
    model_path = Path(model_path)
    folder = history_dir(model_path)
    current = read_card(model_path).get("export_sha256") if model_path.exists() else None
    out = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        pkl = d / model_path.name
        if not pkl.exists():
            continue
        try:
            card = read_card(pkl)
        except ModelError:
            card = {}
        out.append({"version": d.name, "path": pkl, "created": card.get("created", ""),
                    "architecture": card.get("architecture", "?"), "classes": card.get("classes", []),
                    "accuracy": card.get("validation", {}).get("accuracy"), "n": card.get("validation", {}).get("n"),
                    "decision": card.get("comparison", {}).get("decision", ""),
                    "current": bool(current) and card.get("export_sha256") == current})
    return out


def find_version(model_path: str | Path, version: str) -> Path:
    """The kept learner named ``version``, or the one whose name contains it (its sha256 prefix, a date)."""
    versions = list_versions(model_path)
    names = [v["version"] for v in versions]
    matches = [v for v in versions if v["version"] == version] or [v for v in versions if version in v["version"]]
    if len(matches) == 1:
        return matches[0]["path"]
    where = history_dir(Path(model_path))
    if not matches:
        listing = ", ".join(names) if names else f"none: {where} is empty or missing"
        raise ModelError(f"no kept version {version!r} of {model_path} in {where}; kept versions: {listing}")
    raise ModelError(f"{version!r} matches {len(matches)} versions ({', '.join(v['version'] for v in matches)}): "
                     "give more of the name")


def restore_model(model_path: str | Path, version: str) -> tuple[Path, Path | None]:
    """Put a kept version back as ``model_path``, with its card and figures; the model it replaces is kept first.

    The version is checked against its own card before anything moves. Returns the restored
    version's learner in the history and where the replaced model was kept (None: there was none).
    """
    model_path = Path(model_path)
    src = find_version(model_path, version)
    verify_model(src)
    replaced = keep_version(model_path)
    install_model(src, model_path)
    return src, replaced
