"""The Voilà app's widgets: upload a selfie (or try a sample), get a verdict per face.

``app.ipynb`` only calls :func:`build_app`; the logic lives here so it can be
tested in-process (set ``upload.value``, read the verdict widgets) and in a
real browser. Users never see a traceback: every failure becomes a message.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
from PIL import Image, ImageDraw

from .card import ModelError
from .images import ImageError, load_image
from .paths import DEFAULT_MODEL, SAMPLES
from .predict import Classifier, PhotoResult
from .verdicts import colour, human_label

__all__ = ["MAX_UPLOAD_BYTES", "SAMPLES", "App", "build_app", "get_classifier"]

#: Uploads above this size are refused before decoding (the server accepts up to voila.json's limit).
MAX_UPLOAD_BYTES = 40 * 2**20
DISPLAY_SIDE = 480

_classifiers: dict[Path, Classifier] = {}


def get_classifier(model_path: str | Path = DEFAULT_MODEL) -> Classifier:
    """One learner per kernel: loading takes seconds, classifying a photo a fraction of that."""
    path = Path(model_path).resolve()
    if path not in _classifiers:
        _classifiers[path] = Classifier(path)
    return _classifiers[path]


def draw_boxes(img: Image.Image, result: PhotoResult) -> Image.Image:
    """The photo with a coloured box and number on each face, scaled for the page."""
    out = img.copy()
    scale = min(1.0, DISPLAY_SIDE / max(out.size))
    if scale < 1:
        out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))  # 20000x1 too
    box_scale = out.width / (result.size or img.size)[0]  # boxes are in pixels of the original photo
    d = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 160))
    for i, f in enumerate(result.faces, start=1):
        box = [round(v * box_scale) for v in f.box]
        shade = colour(f.label)
        d.rectangle(box, outline=shade, width=width)
        d.rectangle([box[0], max(0, box[1] - 14), box[0] + 14, max(14, box[1])], fill=shade)
        d.text((box[0] + 4, max(0, box[1] - 13)), str(i), fill="white")
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def verdict_widget(label: str, confidence: float, title: str, fallback: bool = False) -> W.HTML:
    """One verdict: label, percentage and a bar; CSS classes ``verdict`` and ``verdict-<label>``."""
    pct = confidence * 100
    shade = colour(label)
    note = " <span class='verdict-note'>(no face found: judged on the whole photo)</span>" if fallback else ""
    w = W.HTML(
        f"<div style='margin:4px 0'><b>{html.escape(title)}:</b> "
        f"<span class='verdict-label' style='color:{shade};font-size:1.2em;font-weight:600'>"
        f"{html.escape(human_label(label))}</span> <span class='verdict-confidence'>{pct:.1f}%</span>{note}"
        f"<div style='background:#eee;width:240px;height:10px;border-radius:5px'>"
        f"<div style='background:{shade};width:{pct * 2.4:.0f}px;height:10px;border-radius:5px'></div></div></div>"
    )
    w.add_class("verdict")
    w.add_class(f"verdict-{label}")
    if fallback:
        w.add_class("verdict-fallback")
    return w


def message_widget(text: str, kind: str) -> W.HTML:
    colours = {"upload-error": "#c62828", "no-face": "#6d4c41", "model-error": "#c62828"}
    w = W.HTML(f"<div style='color:{colours.get(kind, '#333')};margin:4px 0'>{html.escape(text)}</div>")
    w.add_class(kind)
    return w


@dataclass
class App:
    """The page's widgets and what happens when a photo arrives."""

    model_path: Path = DEFAULT_MODEL

    def __post_init__(self) -> None:
        self.upload = W.FileUpload(accept="image/*,.heic,.heif", multiple=True, description="Upload selfie")
        self.samples = {p.stem.replace("_", " "): p for p in sorted(SAMPLES.glob("*.jpg"))}
        self.sample_buttons = [W.Button(description=f"Sample: {name}", tooltip=f"Try {p.name}, shipped with the app",
                                        layout=W.Layout(width="auto")) for name, p in self.samples.items()]
        for b, p in zip(self.sample_buttons, self.samples.values()):
            b.on_click(lambda _btn, p=p: self.show([(p.name, p.read_bytes())]))
            b.add_class("sample-button")
        self.results = W.VBox()
        self.results.add_class("results")
        self.status = W.HTML()
        self.guard = W.HTML()  # where the browser-side size check (upload_guard.py) writes its message
        self.guard.add_class("upload-guard")
        self.footer = W.HTML()
        self.upload.observe(self._on_upload, names="value")
        self.classifier: Classifier | None = None
        self.model_problem = ""
        try:
            self.classifier = get_classifier(self.model_path)
            card = self.classifier.card
            acc = card.get("validation", {}).get("accuracy")
            self.footer.value = (
                f"<small>Model: {html.escape(card.get('architecture', '?'))} on {html.escape(card.get('input', '?'))}"
                f", trained {html.escape(card.get('created', '?')[:10])}, version {card.get('export_sha256', '?')[:8]}"
                + (f", validation accuracy {acc:.1%}" if acc else "") + "</small>")
            self.footer.add_class("model-info")
        except ModelError as e:
            self.model_problem = str(e)
        except Exception as e:  # noqa: BLE001 - the page must explain, not crash
            self.model_problem = f"the model could not be loaded ({type(e).__name__}: {e})"
        if self.model_problem:
            self.results.children = [message_widget(f"The app cannot classify right now: {self.model_problem}",
                                                    "model-error")]

    def widget(self) -> W.Widget:
        title = W.HTML("<h2 style='margin-bottom:0'>Selfie Mask Detector</h2>")
        intro = W.HTML("Upload one or more selfies (JPG, PNG, HEIC, WEBP, GIF): each face gets <b>Mask on</b> or "
                       "<b>No mask</b> with the model's confidence. Photos stay in this session; nothing is stored.")
        return W.VBox([title, intro, W.HBox([self.upload, *self.sample_buttons]), self.status, self.guard, self.results,
                       self.footer])

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        # ipywidgets 8: a tuple of dicts whose 'content' is a memoryview.
        self.show([(f.get("name", "upload"), bytes(f["content"])) for f in files])

    def show(self, files: list[tuple[str, bytes]]) -> None:
        """Classify and display ``files`` (name, bytes), replacing what was shown before."""
        if self.classifier is None:
            self.results.children = [message_widget(f"The app cannot classify right now: {self.model_problem}",
                                                    "model-error")]
            return
        self.status.value = f"<i>Classifying {len(files)} photo(s)…</i>"
        try:
            self.results.children = [self._one(name, data) for name, data in files]
        finally:
            self.status.value = ""

    def _one(self, name: str, data: bytes) -> W.Widget:
        header = W.HTML(f"<h4 style='margin:8px 0 2px'>{html.escape(name)}</h4>")
        try:
            if len(data) > MAX_UPLOAD_BYTES:
                raise ImageError(f"file too large ({len(data) / 2**20:.0f} MB; the limit is "
                                 f"{MAX_UPLOAD_BYTES // 2**20} MB)")
            img = load_image(data)
            result = self.classifier.analyze_images([img], [name])[0]
        except ImageError as e:
            box = W.VBox([header, message_widget(f"Sorry, this file cannot be used: {e}. "
                                                 "Please upload a photo (JPG, PNG, HEIC, WEBP or GIF).",
                                                 "upload-error")])
            box.add_class("result")
            return box
        except Exception as e:  # noqa: BLE001 - never a traceback on the page
            box = W.VBox([header, message_widget(f"Sorry, something went wrong with this photo ({type(e).__name__})."
                                                 " Please try another one.", "upload-error")])
            box.add_class("result")
            return box
        picture = W.Image(value=png_bytes(draw_boxes(img, result)), format="png")
        picture.add_class("result-image")
        verdicts: list[W.Widget] = []
        if result.faces:
            n = len(result.faces)
            verdicts.append(W.HTML(f"<span class='face-count'>{n} face{'s' if n > 1 else ''} found</span>"))
            for i, f in enumerate(result.faces, start=1):
                verdicts.append(verdict_widget(f.label, f.confidence, f"Face {i}" if n > 1 else "Verdict"))
        else:
            verdicts.append(message_widget("No face found in this photo. Try a photo where the face is larger "
                                           "and looks at the camera.", "no-face"))
            fb = result.fallback
            verdicts.append(verdict_widget(fb.label, fb.confidence, "Whole photo", fallback=True))
        box = W.VBox([header, W.HBox([picture, W.VBox(verdicts)])])
        box.add_class("result")
        return box


def build_app(model_path: str | Path = DEFAULT_MODEL) -> App:
    return App(Path(model_path))

