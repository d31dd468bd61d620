"""The Voilà app's widgets: upload a selfie (or try a sample), get a verdict per face.

``app.ipynb`` only calls :func:`build_app`; the logic lives here so it can be
tested in-process (set ``upload.value``, read the verdict widgets) and in a
real browser. Users never see a traceback: every failure becomes a message.

The page must work on a phone: the photo and its verdicts wrap (photo above
verdicts on a narrow screen, :data:`PAGE_CSS`), and nothing is wider than the
screen. The model loads in a background thread (``build_app(background=True)``,
as ``app.ipynb`` does), so the page shows at once with a loading note instead of
a blank wait; Voilà's preheated kernel (``voila.json``) runs this before the
visitor arrives, so the first visitor normally never sees the note.
"""

from __future__ import annotations

import html
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
from PIL import Image, ImageDraw

from .card import ModelError
from .images import ImageError, load_image
from .paths import DEFAULT_MODEL, SAMPLES
from .predict import Classifier, PhotoResult
from .upload_guard import MAX_UPLOAD_BYTES
from .verdicts import UNSURE, human_label, is_uncertain, shown_colour, shown_label, summary

__all__ = ["LOADING_NOTE", "PAGE_CSS", "SAMPLES", "App", "build_app", "get_classifier"]

DISPLAY_SIDE = 480
LOADING_NOTE = "Loading the model (a few seconds)… You can choose a photo meanwhile."
#: Narrow screens (phones): the photo above its verdicts, buttons and images no wider than the screen.
#: The flex wrapping is also set on the widgets' layouts; this sheet adds what layouts cannot say.
#: (``!important`` where a widget's layout sets the same property inline.)
PAGE_CSS = """
<style>
.selfiemask-app, .selfiemask-app .result { max-width: 100%; box-sizing: border-box; }
.selfiemask-app .sample-button, .selfiemask-app .widget-upload { flex: 0 0 auto; max-width: 100%; }
.selfiemask-app .sample-button { text-overflow: clip; white-space: nowrap; }
.selfiemask-app img.result-image { max-width: 100%; height: auto; }
.selfiemask-app .verdict-bar { max-width: 100%; }
@media (max-width: 600px) {
  .selfiemask-app .result-row { flex-direction: column !important; }
  .selfiemask-app .verdicts { width: 100%; flex: 0 0 auto !important; }
}
</style>
"""

_classifiers: dict[Path, Classifier] = {}


def get_classifier(model_path: str | Path = DEFAULT_MODEL) -> Classifier:
    """One learner per kernel: loading takes seconds, classifying a photo a fraction of that."""
    path = Path(model_path).resolve()
    if path not in _classifiers:
        clf = Classifier(path)
        _warm_up(clf)
        _classifiers[path] = clf
    return _classifiers[path]


def _warm_up(clf: Classifier) -> None:
    """One photo through the whole path before any visitor's: the first call of each library (ONNX Runtime's
    sessions, torch's kernels, the JPEG decoder) costs far more than the next, and a preheated kernel should
    pay it, not the first visitor."""
    try:
        for p in sorted(SAMPLES.glob("*.jpg"))[:1]:
            clf.analyze_images([load_image(p)])
    except Exception:  # noqa: BLE001 - a warm-up is an optimisation: a failure shows on the first real photo
        pass


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
        shade = shown_colour(f.label, f.confidence, f.face_score)  # grey for "Not sure", as its verdict
        d.rectangle(box, outline=shade, width=width)
        d.rectangle([box[0], max(0, box[1] - 14), box[0] + 14, max(14, box[1])], fill=shade)
        d.text((box[0] + 4, max(0, box[1] - 13)), str(i), fill="white")
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def verdict_widget(label: str, confidence: float, title: str, fallback: bool = False,
                   face_score: float | None = None, no_face: bool = False) -> W.HTML:
    """One verdict: what people are told, the percentage and a bar.

    CSS classes ``verdict`` and ``verdict-<label>`` (the model's class), plus ``verdict-uncertain`` when
    it reads "Not sure" (:func:`selfiemask.verdicts.is_uncertain`): the model's guess is then shown, small.
    ``no_face``: the detector found no face (the whole-photo fallback), which is "Not sure" whatever the confidence.
    """
    pct = confidence * 100
    shade = shown_colour(label, confidence, face_score, no_face)
    unsure = is_uncertain(confidence, face_score, no_face)
    said = shown_label(label, confidence, face_score, no_face)
    if unsure:
        number = (f"<span class='verdict-confidence'>(the model's guess: {html.escape(human_label(label))}, "
                  f"{pct:.1f}%)</span>")
    else:
        number = f"<span class='verdict-confidence'>{pct:.1f}%</span>"
    note = " <span class='verdict-note'>(no face found: judged on the whole photo)</span>" if fallback else ""
    w = W.HTML(
        f"<div style='margin:4px 0'><b>{html.escape(title)}:</b> "
        f"<span class='verdict-label' style='color:{shade};font-size:1.2em;font-weight:600'>"
        f"{html.escape(said)}</span> {number}{note}"
        f"<div class='verdict-bar' style='background:#eee;width:240px;height:10px;border-radius:5px'>"
        f"<div style='background:{shade};width:{pct:.0f}%;height:10px;border-radius:5px'></div></div></div>"
    )
    w.add_class("verdict")
    w.add_class(f"verdict-{label}")
    if unsure:
        w.add_class("verdict-uncertain")
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
    """The page's widgets and what happens when a photo arrives.

    ``background`` True: the model loads in a thread and the page shows meanwhile, with
    :data:`LOADING_NOTE`; a photo chosen before it is ready waits for it. False (tests, scripts):
    the model is loaded before the constructor returns.
    """

    model_path: Path = DEFAULT_MODEL
    background: bool = False

    def __post_init__(self) -> None:
        self.upload = W.FileUpload(accept="image/*,.heic,.heif", multiple=True, description="Upload selfie")
        self.samples = {p.stem.replace("_", " "): p for p in sorted(SAMPLES.glob("*.jpg"))}
        self.sample_buttons = [W.Button(description=f"Sample: {name}", tooltip=f"Try {p.name}, shipped with the app",
                                        layout=W.Layout(width="auto", flex="0 0 auto", overflow="visible"))
                               for name, p in self.samples.items()]
        for b, p in zip(self.sample_buttons, self.samples.values()):
            b.on_click(lambda _btn, p=p: self.show([(p.name, p.read_bytes())]))
            b.add_class("sample-button")
        self.results = W.VBox()
        self.results.add_class("results")
        self.status = W.HTML()
        self.guard = W.HTML()  # where the browser-side size check (upload_guard.py) writes its message
        self.guard.add_class("upload-guard")
        self.footer = W.HTML()
        self.loading = W.HTML(f"<div style='color:#555;margin:4px 0'><i>{html.escape(LOADING_NOTE)}</i></div>")
        self.loading.add_class("loading-note")
        self.upload.observe(self._on_upload, names="value")
        self.classifier: Classifier | None = None
        self.model_problem = ""
        self.loaded = threading.Event()
        if self.background:
            threading.Thread(target=self.load, name="selfiemask-model-load", daemon=True).start()
        else:
            self.load()

    def load(self) -> None:
        """Load the classifier (seconds), then replace the loading note by the model's description or problem."""
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
        finally:  # even a BaseException: a photo waiting for the model must not wait forever
            if self.model_problem:
                self.results.children = [message_widget(f"The app cannot classify right now: {self.model_problem}",
                                                        "model-error")]
            self.loading.layout.display = "none"
            self.loaded.set()

    def widget(self) -> W.Widget:
        title = W.HTML("<h2 style='margin-bottom:0'>Selfie Mask Detector</h2>")
        intro = W.HTML("Upload one or more selfies (JPG, PNG, HEIC, WEBP, GIF): each face gets <b>Mask on</b> or "
                       f"<b>No mask</b> with the model's confidence, or <b>{UNSURE}</b> when the model is not "
                       "confident enough to say. Photos stay in this session; nothing is stored.")
        controls = W.HBox([self.upload, *self.sample_buttons], layout=W.Layout(flex_flow="row wrap"))
        controls.add_class("controls")
        page = W.VBox([W.HTML(PAGE_CSS), title, intro, controls, self.loading, self.status, self.guard, self.results,
                       self.footer], layout=W.Layout(max_width="100%"))
        page.add_class("selfiemask-app")
        return page

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        # ipywidgets 8: a tuple of dicts whose 'content' is a memoryview.
        self.show([(f.get("name", "upload"), bytes(f["content"])) for f in files])

    def show(self, files: list[tuple[str, bytes]]) -> None:
        """Classify and display ``files`` (name, bytes), replacing what was shown before."""
        if not self.loaded.is_set():
            self.status.value = "<i>Waiting for the model to finish loading…</i>"
            self.loaded.wait()
            self.status.value = ""
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
        picture = W.Image(value=png_bytes(draw_boxes(img, result)), format="png",
                          layout=W.Layout(max_width="100%", height="auto", object_fit="contain"))
        picture.add_class("result-image")
        verdicts: list[W.Widget] = []
        if result.faces:
            n = len(result.faces)
            # Several faces: the photo's summary first ("3 faces: 1 mask on, 2 no mask"), then each face.
            text = summary((f.label, f.confidence, f.face_score) for f in result.faces) if n > 1 else "1 face found"
            count = W.HTML(f"<span style='font-weight:600'>{html.escape(text)}</span>")
            count.add_class("face-count")
            verdicts.append(count)
            for i, f in enumerate(result.faces, start=1):
                verdicts.append(verdict_widget(f.label, f.confidence, f"Face {i}" if n > 1 else "Verdict",
                                               face_score=f.face_score))
        else:
            verdicts.append(message_widget("No face found in this photo. Try a photo where the face is larger "
                                           "and looks at the camera.", "no-face"))
            fb = result.fallback
            verdicts.append(verdict_widget(fb.label, fb.confidence, "Whole photo", fallback=True, no_face=fb.no_face))
        column = W.VBox(verdicts, layout=W.Layout(flex="1 1 240px", min_width="0"))
        column.add_class("verdicts")
        row = W.HBox([picture, column], layout=W.Layout(flex_flow="row wrap", max_width="100%"))
        row.add_class("result-row")
        box = W.VBox([header, row], layout=W.Layout(max_width="100%"))
        box.add_class("result")
        return box


def build_app(model_path: str | Path = DEFAULT_MODEL, background: bool = False) -> App:
    """The app on ``model_path``; ``background``: load the model in a thread and show the page meanwhile."""
    return App(Path(model_path), background=background)

