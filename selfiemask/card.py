"""The model card: what an ``export.pkl`` is, how it was made and how well it did; its backups and versions.

The app and CLI check the learner's sha256 against the card before loading,
so a half-copied or swapped model is caught with a clear message.

A model is a set of files: the learner, its card and its figures. Before a
re-export or a restore replaces one, the old set is kept in
``models/history/<date>-<sha8>/`` (:func:`keep_version`), and the new set is put
in place by :func:`install_model`: every file is copied beside its destination
first and renamed only when all are copied, with Ctrl-C held back during the
renames, so an interruption leaves the old set or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .files import atomic_path, now, sha256_file, write_atomic
from .paths import history_dir

__all__ = ["FIGURES", "ModelError", "backup_model", "card_path", "find_version", "install_model", "keep_version",
           "list_versions", "model_files", "read_card", "restore_model", "verify_model", "version_name",
           "write_card"]

#: The figures training writes beside a model (``export.lr_find.png``...): they travel with it.
FIGURES = ("lr_find", "confusion", "top_losses")


class ModelError(RuntimeError):
    """The model file is missing, damaged or does not match its card; the message is for users."""


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_card(model_path: str | Path) -> dict:
    path = card_path(model_path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"the model card {path} is not valid JSON ({e})") from None


def write_card(model_path: str | Path, card: dict) -> Path:
    path = card_path(model_path)
    write_atomic(path, json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def verify_model(model_path: str | Path, allow_unverified: bool = False) -> dict:
    """Check that the model exists and matches its card; return the card.

    A model without a card, or whose card has no ``export_sha256``, is refused: otherwise
    deleting the card would switch the check off. ``allow_unverified`` loads it anyway,
    with a warning on stderr every time.
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise ModelError(f"model file not found: {model_path}. Train one with 'selfiemask train DATA_DIR' "
                         "or restore export.pkl with 'git checkout export.pkl'.")
    card = read_card(model_path)
    expected = card.get("export_sha256")
    if not expected:
        why = (f"its model card {card_path(model_path).name} is missing" if not card_path(model_path).exists()
               else f"its model card {card_path(model_path).name} has no export_sha256")
        if not allow_unverified:
            raise ModelError(f"{model_path} cannot be checked: {why}. Models are only loaded with the card "
                             "'selfiemask train' writes beside them; pass --allow-unverified-model to load it "
                             "anyway (only for a file you made yourself).")
        print(f"WARNING: loading {model_path} UNVERIFIED ({why}); its integrity is not checked.", file=sys.stderr)
    if expected:
        actual = sha256_file(model_path)
        if actual != expected:
            raise ModelError(f"{model_path} does not match its model card {card_path(model_path).name} "
                             f"(sha256 {actual[:12]}… instead of {expected[:12]}…): the file is damaged or "
                             "was replaced without its card. Re-export it with 'selfiemask train'.")
    return card


def model_files(model_path: str | Path) -> list[Path]:
    """The files of one model that exist: the learner, its card, then its figures."""
    p = Path(model_path)
    names = [p, card_path(p), *(p.with_name(f"{p.stem}.{fig}.png") for fig in FIGURES)]
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


def backup_model(path: str | Path, suffix: str = ".bak", into: str | Path | None = None) -> Path | None:
    """Copy a model with its card before something replaces it; None when there is no model yet.

    Default: ``export.pkl`` to ``export.pkl.bak``, the card where :func:`card_path` looks for it
    (``export.pkl.json``) with ``export_sha256`` intact and ``backup_of`` added, so the backup
    loads and verifies like any model (``selfiemask clean backup``). With ``into``: the model's
    files (card and figures too) byte for byte into that folder, under their own names.
    """
    path = Path(path)
    if not path.exists():
        return None
    if into is not None:
        return _copy_set(model_files(path), Path(into) / path.name)[0]
    bak = path.with_name(path.name + suffix)
    _copy_set([path], bak)
    card = read_card(path)
    if card:
        write_card(bak, {**card, "model": bak.name, "backup_of": path.name, "backed_up": now()})
    return bak


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
    return backup_model(p, into=dest.parent)


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
