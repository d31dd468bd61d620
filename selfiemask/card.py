"""The model card: what an ``export.pkl`` is, how it was made and how well it did.

The card is ``export.json`` beside ``export.pkl``. The app and CLI check the
learner's sha256 against it before loading, so a half-copied or swapped model is
caught with a clear message. A model's versions (keeping, installing, restoring
one) are :mod:`selfiemask.history`'s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .files import sha256_file, write_atomic

__all__ = ["ModelError", "card_path", "read_card", "verify_model", "write_card"]


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
