"""The forward pass on ONNX Runtime: a learner's graph in fp32 and in static int8, verified before use.

A ResNet34 forward in torch on one CPU thread costs about 34 ms a crop; the same
graph statically quantized to int8 runs in a fraction of that. Quantization can
change answers, so an int8 graph is only used when its card says, with figures
measured when it was written, that it gives the learner's label on the
validation photos (:data:`MIN_SAME_LABEL`) and loses no more than
:data:`MAX_ACCURACY_DROP` of accuracy on any class; and a graph whose bytes differ
from the sha256 its card records is never run (it was swapped or damaged).

The graphs hold the network only (input: the normalised batch, output: logits):
preprocessing stays the learner's own validation transforms (:class:`LearnerInput`),
and the flip test-time augmentation is the crop and its mirror as one batch of two.

Files beside ``export.pkl``: ``export.onnx`` (fp32, opset 17) and ``export.int8.onnx``
(:data:`INT8_RECIPE`: QDQ, uint8 activations, per-channel int8 weights, MinMax calibration on face crops
and their mirrors).
Their figures live in the card under ``"engines"``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .files import atomic_path, sha256_file
from .images import load_image

__all__ = ["ENGINES", "ENGINE_HELP", "FLIP_UNLESS_SURE", "INT8_RECIPE", "MAX_ACCURACY_DROP", "MIN_SAME_LABEL",
           "OPSET", "EngineChoice", "LearnerInput", "OnnxForward", "SpecInput", "TorchForward", "agreement",
           "choose_engine", "export_onnx", "graph_agreement", "graph_path", "passes", "preprocessing_spec",
           "quantize_int8", "tta_probs", "write_engines"]

OPSET = 17
#: ``auto``: the verified int8 graph, else the verified fp32 graph, else torch.
ENGINES = ("auto", "torch", "onnx", "int8")
#: An int8 (or fp32) graph is used only if it gave the learner's label on at least this share of validation photos...
MIN_SAME_LABEL = 0.995
#: ...and its accuracy on no class is lower than the learner's by more than this (0.3 points).
MAX_ACCURACY_DROP = 0.003
#: What each engine costs and gives (``predict --help``, the card).
ENGINE_HELP = {
    "torch": "the learner's own PyTorch model: the reference answers; slowest (ResNet34 about 34 ms a crop on "
             "1 thread, twice that with the flip augmentation)",
    "onnx": "the same network exported to ONNX (fp32) on ONNX Runtime: the learner's probabilities within 1e-4, "
            "a little faster than torch",
    "int8": "the network statically quantized to int8 on ONNX Runtime: about 4-5x faster than torch; used only "
            f"when its card shows the learner's label on >= {MIN_SAME_LABEL:.1%} of validation photos and no "
            f"class's accuracy lower by more than {MAX_ACCURACY_DROP * 100:.1f} points",
    "auto": "int8 when its graph is there and verified, else onnx, else torch (the default)",
}
SUFFIXES = {"onnx": ".onnx", "int8": ".int8.onnx"}


def graph_path(model_path: str | Path, engine: str) -> Path:
    """Where a model's graph for ``engine`` lives: ``export.onnx`` / ``export.int8.onnx`` beside ``export.pkl``."""
    p = Path(model_path)
    return p.with_name(p.stem + SUFFIXES[engine])


def _say(msg: str) -> None:
    print(f"selfiemask: {msg}", file=sys.stderr, flush=True)


# -- preprocessing and the forward passes -----------------------------------------------------------
class LearnerInput:
    """A learner's own validation transforms (split_idx=1: centred resize, no flips or lighting) as a batch."""

    def __init__(self, learn) -> None:
        import torch

        valid = learn.dls.valid
        self._item = type(valid.after_item)(valid.after_item.fs, split_idx=1)
        self._batch = type(valid.after_batch)(valid.after_batch.fs, split_idx=1)
        self._torch = torch

    def __call__(self, images: Sequence[Image.Image]):
        """A normalised float32 batch (N, 3, H, W), a plain torch tensor."""
        from fastai.vision.core import PILImage

        torch = self._torch
        tensors = [self._item((PILImage.create(img.convert("RGB")),))[0] for img in images]
        # A plain tensor: a fastai TensorImage sends every layer through fastai's __torch_function__.
        return self._batch((torch.stack(tensors),))[0].as_subclass(torch.Tensor)


class SpecInput:
    """The same batch as :class:`LearnerInput`, from the numbers a card records (:func:`preprocessing_spec`).

    With a verified ONNX graph this is all a process needs to classify: no fastai or torch is imported,
    which takes ``selfiemask predict photo.jpg`` from seconds of imports to well under one. The steps are
    fastai's own for the project's validation transforms: a squashing bilinear resize, a centred crop,
    /255, ``(x - mean) / std`` in float32 (``tests/test_engines.py`` checks the arrays are the learner's).
    """

    def __init__(self, spec: dict) -> None:
        self.resize = tuple(spec["resize"])
        self.crop = tuple(spec["crop"])
        div = round(1 / spec["scale"])
        mean, std = np.asarray(spec["mean"], np.float64), np.asarray(spec["std"], np.float64)
        # (x / div - mean) / std as one multiply and one add per pixel: x * gain + offset.
        self.gain = (1 / (div * std)).astype(np.float32)
        self.offset = (-mean / std).astype(np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """A normalised float32 batch (N, 3, H, W)."""
        (rw, rh), (cw, ch) = self.resize, self.crop
        left, top = (rw - cw) // 2, (rh - ch) // 2
        out = np.empty((len(images), 3, ch, cw), np.float32)
        for i, img in enumerate(images):
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            a = np.asarray(rgb.resize((rw, rh), Image.Resampling.BILINEAR).crop((left, top, left + cw, top + ch)))
            for c in range(3):  # straight from the uint8 pixels, one channel at a time: no float copy to transpose
                np.multiply(a[..., c], self.gain[c], out=out[i, c], dtype=np.float32)
                out[i, c] += self.offset[c]
        return out


class TorchForward:
    """Logits of a torch model for a normalised batch (channels_last: 10-20% faster convolutions on CPU)."""

    name = "torch"

    def __init__(self, model) -> None:
        import torch

        self.model = model.eval().to(memory_format=torch.channels_last)
        self._torch = torch

    def __call__(self, x) -> np.ndarray:
        torch = self._torch
        x = torch.as_tensor(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x).float().numpy()


class OnnxForward:
    """Logits of an ONNX graph on ONNX Runtime's CPU provider, for a normalised batch."""

    def __init__(self, path: str | Path, threads: int = 0, name: str = "onnx") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, threads)  # 0: ONNX Runtime's own choice
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path, self.name = Path(path), name
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
        return self.session.run(None, {self._input: x})[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


#: A plain pass at least this sure of its class is not run again on the mirror image (``unless_sure``). On the
#: shipped model, all 936 validation photos under the 25 stress conditions (benchmarks/conditions.py
#: --flip-unless-sure both): about half of the crops skipped the mirror (80% of the photos as they are), and
#: no label, no "Not sure" and no figure changed; confidences moved by 0.012 at most. At 0.99, two wrong
#: verdicts the mirror had made "Not sure" became confident (docs/cli.md#speed).
FLIP_UNLESS_SURE = 0.999


def tta_probs(forward: Callable, x: np.ndarray, tta: bool, unless_sure: float | None = None) -> np.ndarray:
    """Class probabilities of a batch; with ``tta`` the mean over each crop and its mirror.

    Without ``unless_sure`` crop and mirror run as one batch. With it the crops run first, and only those
    whose top probability is below ``unless_sure`` run again mirrored: most faces are that sure, so
    the flip costs little more than one pass where a mirror could hardly change what is shown.
    """
    x = np.asarray(x, dtype=np.float32)
    if not tta:
        return _softmax(forward(x).astype(np.float64)).astype(np.float32)
    n = len(x)
    if unless_sure is None:
        p = _softmax(forward(np.concatenate([x, x[..., ::-1]])).astype(np.float64))
        return ((p[:n] + p[n:]) / 2).astype(np.float32)
    p = _softmax(forward(x).astype(np.float64))
    unsure = np.flatnonzero(p.max(axis=1) < unless_sure)
    if len(unsure):
        mirrored = _softmax(forward(np.ascontiguousarray(x[unsure][..., ::-1])).astype(np.float64))
        p[unsure] = (p[unsure] + mirrored) / 2
    return p.astype(np.float32)


# -- writing the graphs -----------------------------------------------------------------------------
def export_onnx(model, size: tuple[int, int], path: str | Path, opset: int = OPSET) -> Path:
    """The network as an ONNX graph (batch dimension free), written atomically."""
    import torch

    net = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    x = torch.randn(2, 3, *size)
    path = Path(path)
    with atomic_path(path) as tmp, torch.inference_mode():
        torch.onnx.export(net, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return path


#: How the int8 graph is made. Activations are uint8: ONNX Runtime's x86 kernels are fast for uint8 activations
#: with int8 weights, and int8 activations ran 2.5x slower here (ResNet34, one crop and its mirror on one thread:
#: 35.5 ms against 14.3 ms; fp32 53.7 ms, torch 72.5 ms). ``reduce_range`` keeps weights to 7 bits, so the
#: uint8 x int8 products cannot saturate on CPUs without VNNI (AVX2's VPMADDUBSW): the agreement measured here
#: then holds on any x86 CPU (16.3 ms against 13.3 ms without it, in another run).
INT8_RECIPE = {"format": "QDQ", "weights": "int8, per channel, 7-bit range (reduce_range)",
               "activations": "uint8", "calibration": "MinMax"}


def quantize_int8(fp32_path: str | Path, path: str | Path, calibration: np.ndarray, bs: int = 16) -> Path:
    """Static int8 (:data:`INT8_RECIPE`) of an fp32 graph, calibrated on normalised ``calibration``."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{"input": calibration[i:i + bs]} for i in range(0, len(calibration), bs)])

        def get_next(self):
            return next(self._batches, None)

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference and graph fusions (conv + batchnorm) before quantizing, as ONNX Runtime advises
            quant_pre_process(str(fp32_path), str(prepared))
        except Exception:  # noqa: BLE001 - optional: quantize the graph as exported
            prepared = Path(fp32_path)
        with atomic_path(path) as out:
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                            calibrate_method=CalibrationMethod.MinMax)
    return path


# -- agreement --------------------------------------------------------------------------------------
def agreement(reference: np.ndarray, candidate: np.ndarray, labels: Sequence[int], classes: Sequence[str]) -> dict:
    """Same label as the learner, and accuracy per class of both, on the same labelled photos."""
    ref, cand, y = reference.argmax(1), candidate.argmax(1), np.asarray(labels)
    per_class = {}
    for k, c in enumerate(classes):
        mask = y == k
        n = int(mask.sum())
        per_class[c] = {"n": n,
                        "learner": round(float((ref[mask] == k).mean()), 4) if n else None,
                        "graph": round(float((cand[mask] == k).mean()), 4) if n else None}
    return {"photos": int(len(y)), "same_label": round(float((ref == cand).mean()), 4) if len(y) else 0.0,
            "max_prob_diff": round(float(np.abs(reference - candidate).max()), 6) if len(y) else None,
            "accuracy_per_class": per_class}


def passes(figures: dict | None) -> tuple[bool, str]:
    """Whether recorded agreement figures allow a graph to stand in for the learner, and why not."""
    if not figures or not figures.get("photos"):
        return False, "its card records no agreement measured on validation photos"
    same = figures.get("same_label", 0.0)
    if same < MIN_SAME_LABEL:
        return False, f"it gave the learner's label on {same:.1%} of validation photos (needs {MIN_SAME_LABEL:.1%})"
    for c, acc in figures.get("accuracy_per_class", {}).items():
        if acc.get("n") and acc["graph"] < acc["learner"] - MAX_ACCURACY_DROP - 1e-9:
            return False, (f"its accuracy on {c} is {acc['graph']:.1%} against the learner's {acc['learner']:.1%} "
                           f"(more than {MAX_ACCURACY_DROP * 100:.1f} points lower)")
    return True, ""


def preprocessing_spec(learn) -> dict | None:
    """The learner's validation preprocessing as plain numbers, when it is the project's own (else None).

    Recorded in the card so that a process could, one day, run the int8 graph without importing
    fastai or torch: a squashing resize to ``resize``, a centred ``crop``, /255, then ``(x - mean) / std``.
    """
    import math

    from fastai.vision.augment import RandomResizedCrop
    from fastai.vision.core import PILImage  # noqa: F401 - fastai's transforms need its types registered

    valid = learn.dls.valid
    # Training-only transforms (split_idx 0: phone conditions, occluders) do nothing at inference.
    item = [f for f in valid.after_item.fs if type(f).__name__ != "ToTensor" and getattr(f, "split_idx", None) != 0]
    norm = [f for f in valid.after_batch.fs if type(f).__name__ == "Normalize"]
    if len(item) != 1 or not isinstance(item[0], RandomResizedCrop) or len(norm) != 1:
        return None
    rrc = item[0]
    size = tuple(rrc.size[:2])
    xtra = math.ceil(max(*size) * rrc.val_xtra / 8) * 8
    return {"resize": [size[1] + xtra, size[0] + xtra], "crop": [size[1], size[0]], "resample": "bilinear",
            "scale": 1 / 255, "mean": [float(v) for v in norm[0].mean.flatten()],
            "std": [float(v) for v in norm[0].std.flatten()]}


def _as_images(items: Sequence) -> list[Image.Image]:
    return [it if isinstance(it, Image.Image) else load_image(it) for it in items]


def _probs_of(forward: Callable, prep: LearnerInput, images: list[Image.Image], tta: bool, bs: int = 32
              ) -> np.ndarray:
    out = [tta_probs(forward, prep(images[i:i + bs]).numpy(), tta) for i in range(0, len(images), bs)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def graph_agreement(learn, graph: str | Path, validation: Sequence[tuple[object, str]], tta: bool = True,
                    threads: int = 0, reference: np.ndarray | None = None) -> dict:
    """Measured agreement of an ONNX graph with ``learn`` on labelled (image or path, label) pairs."""
    classes = list(learn.dls.vocab)
    prep = LearnerInput(learn)
    images = _as_images([im for im, _ in validation])
    labels = [classes.index(lbl) for _, lbl in validation]
    if reference is None:
        reference = _probs_of(TorchForward(copy.deepcopy(learn.model).float().cpu()), prep, images, tta)
    return agreement(reference, _probs_of(OnnxForward(graph, threads), prep, images, tta), labels, classes)


def write_engines(learn, model_path: str | Path, calibration_images: Sequence,
                  validation: Sequence[tuple[object, str]], tta: bool = True, int8: bool = True,
                  threads: int = 0) -> dict:
    """Write ``export.onnx`` and ``export.int8.onnx`` beside ``model_path``; return the card's ``"engines"`` field.

    ``calibration_images``: face crops (PIL images or paths) the int8 ranges are measured on, each also
    mirrored; ``validation``: (image or path, label) pairs the graphs are compared with the learner on,
    with the flip augmentation when ``tta``.
    """
    classes = list(learn.dls.vocab)
    prep = LearnerInput(learn)
    images = _as_images([im for im, _ in validation])
    labels = [classes.index(lbl) for _, lbl in validation]
    probe = prep([Image.new("RGB", (64, 64))])
    size = tuple(probe.shape[2:])
    torch_fwd = TorchForward(copy.deepcopy(learn.model).float().cpu())
    reference = _probs_of(torch_fwd, prep, images, tta)
    fields: dict = {"tta": "flip" if tta else "none", "input": [3, *size],
                    "rule": f"auto uses int8, else onnx, when the graph's sha256 matches and it gave the learner's "
                            f"label on >= {MIN_SAME_LABEL:.1%} of validation photos with no class's accuracy more than "
                            f"{MAX_ACCURACY_DROP * 100:.1f} points lower; else torch",
                    "costs": {k: v for k, v in ENGINE_HELP.items() if k != "auto"}}
    fields["preprocessing"] = preprocessing_spec(learn)
    onnx_path = export_onnx(learn.model, size, graph_path(model_path, "onnx"))
    graphs = {"onnx": onnx_path}
    if int8:
        cal = _as_images(calibration_images)
        x = np.concatenate([prep(cal[i:i + 32]).numpy() for i in range(0, len(cal), 32)]) if cal else None
        if x is None:
            raise ValueError("int8 quantization needs calibration images")
        x = np.concatenate([x, x[..., ::-1]]).astype(np.float32)  # the flip included
        graphs["int8"] = quantize_int8(onnx_path, graph_path(model_path, "int8"), x)
        fields["calibration"] = {"images": len(cal), "with_mirrors": int(len(x)), "method": "MinMax",
                                 "format": ", ".join(f"{k} {v}" for k, v in INT8_RECIPE.items())}
    for name, path in graphs.items():
        loaded = list(zip(images, [classes[k] for k in labels]))  # decoded once for every graph
        figures = graph_agreement(learn, path, loaded, tta, threads, reference)
        ok, why = passes(figures)
        fields[name] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                        "opset": OPSET, "agreement": figures, "passes": ok, **({"why_not": why} if why else {})}
    return fields


# -- choosing one at load time ----------------------------------------------------------------------
@dataclass
class EngineChoice:
    name: str  # "torch", "onnx" or "int8"
    forward: Callable | None  # None: torch (the caller has the model)
    note: str  # one line: which, and why


def _check_graph(model_path: Path, card: dict, engine: str) -> tuple[str, str]:
    """("ok" | "missing" | "tampered" | "unverified", why) for one graph of a model."""
    rec = (card.get("engines") or {}).get(engine)
    path = graph_path(model_path, engine)
    if not path.exists():
        return "missing", f"no {path.name} beside {model_path.name}"
    if not rec or not rec.get("sha256"):
        return "unverified", f"{path.name} is not recorded in the model card"
    actual = sha256_file(path)
    if actual != rec["sha256"]:
        return "tampered", (f"refusing {path}: its sha256 {actual[:12]}… differs from the card's "
                            f"{rec['sha256'][:12]}… (the file was replaced or damaged)")
    ok, why = passes(rec.get("agreement"))
    if not ok:
        return "unverified", f"{path.name} fails its agreement check: {why}"
    return "ok", ""


def choose_engine(model_path: str | Path, card: dict, wanted: str = "auto", threads: int = 0,
                  say: Callable[[str], None] = _say) -> EngineChoice:
    """The graph to run for a model: verified int8, else verified fp32, else torch; refusals are said once.

    A graph whose sha256 differs from the card is refused and torch is used, whatever was asked:
    a swapped file says nothing good about its neighbours.
    """
    if wanted not in ENGINES:
        raise ValueError(f"unknown engine {wanted!r}; choose one of {', '.join(ENGINES)}")
    model_path = Path(model_path)
    if wanted == "torch":
        return EngineChoice("torch", None, "torch (asked for)")
    order = ["int8", "onnx"] if wanted == "auto" else [wanted]
    checks = {e: _check_graph(model_path, card, e) for e in order}
    tampered = [why for state, why in checks.values() if state == "tampered"]
    if tampered:
        for why in tampered:
            say(why)
        say("classifying with torch instead")
        return EngineChoice("torch", None, "torch (a graph was refused)")
    for e in order:
        state, why = checks[e]
        if state == "ok":
            try:
                fwd = OnnxForward(graph_path(model_path, e), threads, e)
            except Exception as exc:  # noqa: BLE001 - a graph ONNX Runtime cannot load: torch still works
                say(f"cannot load {graph_path(model_path, e).name} ({type(exc).__name__}: {exc}); using torch")
                return EngineChoice("torch", None, "torch (a graph failed to load)")
            fig = card["engines"][e]["agreement"]
            return EngineChoice(e, fwd, f"{e} ({graph_path(model_path, e).name}: the learner's label on "
                                        f"{fig['same_label']:.1%} of {fig['photos']} validation photos)")
        if wanted != "auto" or state == "unverified":
            say(f"{why}; " + ("classifying with torch" if wanted != "auto" else "not using it"))
    return EngineChoice("torch", None, "torch (no verified ONNX graph)")
