"""Stress benchmark: accuracy and per-class recall under conditions the training photos lack.

Each validation photo (the project's seeded split, never trained on) is judged
as it is and under each condition of ``selfiemask.augment.CONDITIONS`` (black and
white, red and blue light, dim, bright, blur, low resolution with the face at 32
and 48 px, JPEG quality 30), and framed tight and wide. The whole product path
runs on every variant: face detection, the largest face's crop, the model.
Detection does not depend on the model, so it runs once per variant and every
model listed judges the same crops.

    python benchmarks/conditions.py ../shared/data/train --model today=export.pkl \\
        --model teacher=models/teacher/export.pkl --tta student=models/student/export.pkl [--limit N]

``--model NAME=PATH`` judges with the model's card settings; ``--tta NAME=PATH``
adds flip test-time augmentation. ``--detector`` picks which detector finds the
faces for all models (default: the recommended one; ``mtcnn`` is the one older
cards name). ``--json`` writes every figure and each confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfiemask.augment import CONDITIONS, framed_tight, framed_wide  # noqa: E402
from selfiemask.data import validation_items  # noqa: E402
from selfiemask.evaluate import class_metrics  # noqa: E402
from selfiemask.faces import DEFAULT_MARGIN, RECOMMENDED, DetectorSettings, FaceDetector, crop_face  # noqa: E402
from selfiemask.images import load_image  # noqa: E402
from selfiemask.predict import Classifier  # noqa: E402

ORDER = ["as is", *CONDITIONS, "framed tight", "framed wide"]


def variants(img, face_box) -> dict:
    """The photo under every condition; 'framed tight' only where a face was found."""
    side = min(face_box[2] - face_box[0], face_box[3] - face_box[1]) if face_box else None
    out = {"as is": img, **{name: f(img, side) for name, f in CONDITIONS.items()}}
    if face_box:
        out["framed tight"] = framed_tight(img, face_box)
    out["framed wide"] = framed_wide(img)
    return out


def _spec(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def run(photos: Path, models: list[tuple[str, Path, bool]], limit: int = 0, detector: str = "recommended",
        progress: bool = True) -> dict:
    """Every figure, as a dict: conditions -> model -> metrics (see class_metrics)."""
    items = validation_items(photos)
    if limit:
        items = items[:: max(1, len(items) // limit)][:limit]
    if not items:
        raise SystemExit(f"no validation photos under {photos}/<label>/")
    settings = RECOMMENDED if detector == "recommended" else DetectorSettings()
    det = FaceDetector(settings)
    classifiers = {name: Classifier(path, tta=tta if tta else None) for name, path, tta in models}
    vocab = next(iter(classifiers.values())).classes
    truth: list[int] = []
    crops: dict[str, list] = {c: [] for c in ORDER}
    found: dict[str, list[int]] = {c: [] for c in ORDER}
    owners: dict[str, list[int]] = {c: [] for c in ORDER}
    t0 = time.monotonic()
    for n, path in enumerate(items):
        img = load_image(path)
        faces = det.detect(img)
        truth.append(vocab.index(path.parent.name))
        for cond, v in variants(img, faces[0].box if faces else None).items():
            fs = faces if cond == "as is" else det.detect(v)
            crops[cond].append(crop_face(v, fs[0].box, DEFAULT_MARGIN) if fs else v)
            found[cond].append(int(bool(fs)))
            owners[cond].append(n)
        if progress and n % 100 == 0:
            print(f"  detected {n}/{len(items)} photos, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    report: dict = {"photos": len(items), "source": str(photos), "detector": settings.name,
                    "models": {name: {"path": str(p), "tta": bool(tta)} for name, p, tta in models},
                    "conditions": {}}
    for cond in ORDER:
        report["conditions"][cond] = {"faces_found": sum(found[cond]) / max(1, len(found[cond])),
                                      "photos": len(crops[cond]), "models": {}}
    for name, clf in classifiers.items():
        t = time.monotonic()
        for cond in ORDER:
            if not crops[cond]:  # 'framed tight' when no face was found in any photo
                continue
            verdicts = clf.classify(crops[cond])
            y_true = [truth[i] for i in owners[cond]]
            y_pred = [vocab.index(v.label) for v in verdicts]
            report["conditions"][cond]["models"][name] = class_metrics(y_true, y_pred, vocab)
        if progress:
            print(f"  classified with {name} in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    return report


def table(report: dict) -> str:
    """Markdown: one row per condition, accuracy and the lowest per-class recall for each model."""
    names = list(report["models"])
    head = "| condition | faces found | " + " | ".join(f"{n}: acc (min recall)" for n in names) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(names)]
    for cond, r in report["conditions"].items():
        cells = []
        for n in names:
            m = r["models"].get(n)
            if m is None:
                cells.append("n/a (no photos)")
                continue
            low = min(c["recall"] for c in m["per_class"].values() if c["support"])
            cells.append(f"{m['accuracy']:.1%} ({low:.1%})")
        lines.append(f"| {cond} | {r['faces_found']:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a training folder (<label>/ subfolders); its validation split is used")
    ap.add_argument("--model", type=_spec, action="append", default=[], help="NAME=PATH of an export.pkl")
    ap.add_argument("--tta", type=_spec, action="append", default=[], help="NAME=PATH, judged with flip TTA")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    ap.add_argument("--detector", choices=["recommended", "mtcnn"], default="recommended")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    a = ap.parse_args(argv)
    if not a.photos.is_dir():
        print(f"{a.photos} not found (../shared/data/train exists only beside the project's own checkout)",
              file=sys.stderr)
        return 2
    models = [(n, p, False) for n, p in a.model] + [(n, p, True) for n, p in a.tta]
    if not models:
        models = [("export.pkl", ROOT / "export.pkl", False)]
    report = run(a.photos, models, a.limit, a.detector)
    print(f"\n{report['photos']} validation photos from {a.photos}; faces found by {report['detector']}\n")
    print(table(report))
    for n in report["models"]:
        m = report["conditions"]["as is"]["models"][n]
        print(f"\n{n}, as is: " + ", ".join(f"recall {c} {v['recall']:.1%} (n={v['support']})"
                                              for c, v in m["per_class"].items())
              + f"; confusion (rows true) {m['confusion_matrix']['rows_true_cols_predicted']}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
