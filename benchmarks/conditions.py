"""Stress benchmark: accuracy and per-class recall under conditions the training photos lack.

Each validation photo (the project's seeded split, never trained on) is judged
as it is and under each condition, in groups (``--conditions``):

- ``phone``: ``selfiemask.augment.CONDITIONS`` (black and white, red and blue light,
  dim, bright, blur, low resolution with the face at 32 and 48 px, JPEG quality 30),
  framed tight and wide;
- ``tilt``: the whole photo rolled 30, 60, 90 degrees both ways, and a lying-down
  selfie (90 degrees, its EXIF saying upright), before detection;
- ``occlusion``: a hand-like skin-coloured patch over mouth and chin (unmasked photos
  only: over a mask it would hide the label) and sunglasses-like lenses (every photo),
  drawn where the as-is detection put the landmarks;
- ``camera``: the face as a phone camera records it at 24, 40 and 64 px (blur, sensor
  noise, low-quality JPEG), scaled back up.

The whole product path runs on every variant: face detection, the largest
face's crop (aligned or not), the model. Detection does not depend on the
model, so it runs once per variant and every model listed judges the same crops.

    python benchmarks/conditions.py ../shared/data/train --model today=export.pkl \\
        --model teacher=models/teacher/export.pkl --tta student=models/student/export.pkl [--limit N]
    python benchmarks/conditions.py ../shared/data/train --model today=export.pkl --align both \\
        --conditions tilt occlusion camera --limit 200

``--model NAME=PATH`` judges with the model's card settings; ``--tta NAME=PATH``
adds flip test-time augmentation. ``--align`` crops faces as each card says
(``card``), never, always (faces whose landmarks are trusted), or ``both``: every
model twice, unaligned and as ``NAME aligned``; ``--turned`` and ``--orient`` likewise for the search of
photos without a trusted face turned a quarter and for the check that a face found upright is not lying on its
side. ``--detector`` picks which detector finds the
faces for all models (default: the recommended one; ``mtcnn`` is the one older
cards name). ``--json`` writes every figure and each confusion matrix; ``--photos-csv`` every photo's
verdict under every condition, to look at the mistakes one by one.

``--detections FILE`` keeps every variant's detected faces in a JSON file (keyed by the photo's sha256, the
condition and the detector settings) and reads them back on the next run: detection is most of a run's time
(about 12 of 19 minutes over 936 photos here), and it does not depend on the model, so comparing a new model
with the shipped one then costs only the variants and the classification.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfiemask.augment import (  # noqa: E402
    CAMERA_CONDITIONS,
    CONDITIONS,
    OCCLUSIONS,
    TILTS,
    framed_tight,
    framed_wide,
)
from selfiemask.crops import served_aligned, served_detector  # noqa: E402
from selfiemask.data import validation_items  # noqa: E402
from selfiemask.engines import FLIP_UNLESS_SURE  # noqa: E402
from selfiemask.evaluate import class_metrics  # noqa: E402
from selfiemask.faces import (  # noqa: E402
    ALIGN_MIN_ANGLE,
    DEFAULT_MARGIN,
    RECOMMENDED,
    DetectorSettings,
    Face,
    FaceDetector,
    crop_face,
    eye_angle,
    trusted_landmarks,
)
from selfiemask.files import atomic_path, sha256_file  # noqa: E402
from selfiemask.images import load_image  # noqa: E402
from selfiemask.predict import Classifier  # noqa: E402
from selfiemask.verdicts import MIN_CONFIDENCE  # noqa: E402

GROUPS = {
    "phone": [*CONDITIONS, "framed tight", "framed wide"],
    "tilt": list(TILTS),
    "occlusion": list(OCCLUSIONS),
    "camera": list(CAMERA_CONDITIONS),
}
ORDER = ["as is", *(c for g in GROUPS.values() for c in g)]


def variants(img, face, label: str | None = None, wanted: list[str] | None = None) -> dict:
    """The photo under every condition of ``wanted`` (default all) that applies to it.

    'framed tight' and the occlusions need the as-is photo's face (``face``, a
    ``faces.Face``); the hand goes only on the classes its condition names.
    """
    wanted = ORDER if wanted is None else wanted
    box = face.box if face else None
    side = min(box[2] - box[0], box[3] - box[1]) if box else None
    makers = {**{n: (lambda f=f: f(img, side)) for n, f in CONDITIONS.items()},
              "framed wide": lambda: framed_wide(img),
              **{n: (lambda f=f: f(img)) for n, f in TILTS.items()},
              **{n: (lambda f=f: f(img, side)) for n, f in CAMERA_CONDITIONS.items()}}
    if face:
        makers["framed tight"] = lambda: framed_tight(img, box)
        for n, (f, classes) in OCCLUSIONS.items():
            if classes is None or label in classes:
                makers[n] = lambda f=f: f(img, box, face.landmarks)
    out = {"as is": img} if "as is" in wanted else {}
    out.update({n: makers[n]() for n in wanted if n in makers})
    return out


def _rotated(face, min_face: int) -> bool:
    """Whether alignment turns this face (its landmarks trusted and tilted past the minimum angle)."""
    return (face is not None and trusted_landmarks(face, min_face)
            and abs(eye_angle(face.landmarks)) >= ALIGN_MIN_ANGLE)


class DetectionCache:
    """Detected faces of each photo's variants, kept in a JSON file between runs (``--detections``).

    Keyed by the photo's sha256 and the condition; the file records the detector settings and is ignored
    (rebuilt) when they differ, so a changed detector is never answered from an old run.
    """

    VERSION = 1

    def __init__(self, path: Path | None, settings: DetectorSettings) -> None:
        self.path = path
        # The orientation check is never kept here (it runs on every read), so its switch is not part of the key.
        detector = {k: v for k, v in json.loads(json.dumps(asdict(settings))).items() if k != "orient"}
        self.header = {"version": self.VERSION, "detector": detector}
        self.entries: dict[str, dict] = {}
        self.hits = self.misses = 0
        if path and path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("header") == self.header:
                self.entries = data.get("entries", {})
            else:
                print(f"  {path}: made with other detector settings, detecting again", file=sys.stderr)

    @staticmethod
    def _to(faces: list[Face] | None) -> list | None:
        return None if faces is None else [[list(f.box), f.prob, None if f.landmarks is None else
                                            [list(p) for p in f.landmarks], f.turn] for f in faces]

    @staticmethod
    def _from(rows: list | None) -> list[Face] | None:
        return None if rows is None else [Face(tuple(b), p, None if lm is None else tuple(tuple(q) for q in lm), t)
                                          for b, p, lm, t in rows]

    def faces(self, key: str, img, det: FaceDetector, turned: bool) -> tuple[list[Face], list[Face]]:
        """(faces found upright, faces after the turned search, or the upright ones when ``turned`` is off)."""
        hit = self.entries.get(key)
        if hit is not None and (hit["turned"] is not None or not turned):
            self.hits += 1
            plain = self._from(hit["plain"])
            return plain, (self._from(hit["turned"]) if turned else plain)
        self.misses += 1
        plain = det.detect(img)
        quarter = det.check_turned(img, plain) if turned else None
        self.entries[key] = {"plain": self._to(plain), "turned": self._to(quarter)}
        return plain, (quarter if turned else plain)

    def save(self) -> None:
        if not self.path or not self.misses:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"header": self.header, "entries": self.entries}))


def _spec(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def run(photos: Path, models: list[tuple[str, Path, bool]], limit: int = 0, detector: str = "recommended",
        progress: bool = True, conditions: list[str] | None = None, align: str = "card",
        align_min_face: int | None = None, turned: str = "card", detections: Path | None = None,
        engines: list[str] | None = None, orient: str = "card", flip_unless_sure: str = "card") -> dict:
    """Every figure, as a dict: conditions -> model -> metrics (see class_metrics).

    ``align``: "card" (each model as its card says), "off", "on", or "both" (each model
    twice: unaligned, and aligned as ``NAME aligned``). ``align_min_face`` replaces the
    card's smallest aligned face. ``turned`` likewise for the search of photos without a face
    turned a quarter each way (``both``: every model also as ``NAME turned``), and ``orient`` for the check
    that a face found upright is not lying on its side (``NAME oriented``), and ``flip_unless_sure`` for the
    flip augmentation skipped where the plain pass is sure (``NAME sure-flip``, at ``FLIP_UNLESS_SURE``).
    ``detections``: a JSON file of detected faces kept between runs (:class:`DetectionCache`). ``engines``:
    what runs each model's forward pass (``auto``: as it is served); with more than one, every model is judged on each,
    as ``NAME [ENGINE]``, and ``engine_agreement`` gives the share of photos given the same label as on the first.
    """
    items = validation_items(photos)
    if limit:
        items = items[:: max(1, len(items) // limit)][:limit]
    if not items:
        raise SystemExit(f"no validation photos under {photos}/<label>/")
    wanted = ORDER if not conditions else ["as is", *(c for c in ORDER if c in conditions and c != "as is")]
    settings = RECOMMENDED if detector == "recommended" else DetectorSettings()
    det = FaceDetector(settings)
    engines = engines or ["auto"]
    many = len(engines) > 1
    classifiers = {name + (f" [{e}]" if many else ""): Classifier(path, tta=tta if tta else None, engine=e)
                   for name, path, tta in models for e in engines}
    paths = {name + (f" [{e}]" if many else ""): (path, tta) for name, path, tta in models for e in engines}
    # (classifier name, column name, align, smallest aligned face, turned search, orientation check, mirror
    # only below this plain-pass confidence)
    judges: list[tuple[str, str, bool, int, bool, bool, float | None]] = []
    for name, clf in classifiers.items():
        card_align, card_min = served_aligned(clf.card)
        min_face = align_min_face or card_min
        modes = {"card": [card_align], "off": [False], "on": [True], "both": [False, True]}[align]
        turns = {"card": [served_detector(clf.card).turned], "off": [False], "on": [True],
                 "both": [False, True]}[turned]
        orients = {"card": [served_detector(clf.card).orient], "off": [False], "on": [True],
                   "both": [False, True]}[orient]
        card_sure = clf.flip_unless_sure
        sures = {"card": [card_sure], "off": [None], "on": [FLIP_UNLESS_SURE],
                 "both": [None, FLIP_UNLESS_SURE]}[flip_unless_sure]
        judges += [(name, name + (" aligned" if a and align == "both" else "") + (" turned" if t and turned == "both"
                                                                                  else "")
                    + (" oriented" if o and orient == "both" else "")
                    + (" sure-flip" if f and flip_unless_sure == "both" else ""), a, min_face, t, o, f)
                   for a in modes for t in turns for o in orients for f in sures]
    keys = sorted({(a, m, t, o) for _, _, a, m, t, o, _ in judges})
    vocab = next(iter(classifiers.values())).classes
    truth: list[int] = []
    crops: dict[tuple, dict[str, list]] = {k: {c: [] for c in wanted} for k in keys}
    upright_counts: dict[tuple, dict[str, int]] = {k: {c: 0 for c in wanted} for k in keys}
    found: dict[str, list[int]] = {c: [] for c in wanted}
    found_turned: dict[str, list[int]] = {c: [] for c in wanted}
    owners: dict[str, list[int]] = {c: [] for c in wanted}
    t0 = time.monotonic()
    cache = DetectionCache(detections, settings)
    any_turned = any(k[2] for k in keys)
    for n, path in enumerate(items):
        img = load_image(path)
        digest = sha256_file(path)
        faces, _ = cache.faces(f"{digest}|as is", img, det, any_turned)
        truth.append(vocab.index(path.parent.name))
        for cond, v in variants(img, faces[0] if faces else None, path.parent.name, wanted).items():
            # FaceDetector.detect with the turned search on: the same upright faces, then its check.
            plain, quarter = cache.faces(f"{digest}|{cond}", v, det, any_turned)
            # The orientation check is cheap (three searches of a 192 px region) and is not kept in the file.
            oriented = {t: det.check_orientation(v, quarter if t else plain) for t in {k[2] for k in keys if k[3]}}
            for key in keys:
                a, m, t, o = key
                fs = oriented[t] if o else (quarter if t else plain)
                crops[key][cond].append(crop_face(v, fs[0], DEFAULT_MARGIN, align=a, min_face=m) if fs else v)
                upright_counts[key][cond] += int(bool(fs and ((a and _rotated(fs[0], m)) or fs[0].turn)))
            found[cond].append(int(bool(plain)))
            found_turned[cond].append(int(bool(quarter)))
            owners[cond].append(n)
        if progress and n % 50 == 0:
            print(f"  detected {n}/{len(items)} photos, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        if n % 200 == 199:
            cache.save()  # an interrupted run keeps what it detected
    cache.save()
    if progress and detections:
        print(f"  detections: {cache.hits} read from {detections}, {cache.misses} new", file=sys.stderr)
    report: dict = {"photos": len(items), "source": str(photos), "detector": settings.name,
                    "models": {col: {"path": str(paths[name][0]), "tta": bool(paths[name][1]),
                                     "engine": classifiers[name].engine, "align": a, "align_min_face": mf,
                                     "turned": t, "orient": o, "flip_unless_sure": f}
                               for name, col, a, mf, t, o, f in judges},
                    "conditions": {}}
    for cond in wanted:
        report["conditions"][cond] = {"faces_found": sum(found[cond]) / max(1, len(found[cond])),
                                      "faces_found_turned": sum(found_turned[cond]) / max(1, len(found[cond])),
                                      "photos": len(owners[cond]), "models": {}}
    rows: list[dict] = []  # one per photo, condition and model (``--photos-csv``)
    for name, col, a, m, t, o, f in judges:
        clf = classifiers[name]
        clf.flip_unless_sure = f
        started = time.monotonic()
        for cond in wanted:
            if not crops[(a, m, t, o)][cond]:  # 'framed tight' when no face was found in any photo
                continue
            verdicts = clf.classify(crops[(a, m, t, o)][cond])
            y_true = [truth[i] for i in owners[cond]]
            y_pred = [vocab.index(v.label) for v in verdicts]
            for k, (i, v) in enumerate(zip(owners[cond], verdicts)):
                rows.append({"photo": str(items[i]), "label": vocab[truth[i]], "condition": cond, "model": col,
                             "predicted": v.label, "confidence": round(v.confidence, 4),
                             "face_found": found_turned[cond][k] if t else found[cond][k]})
            metrics = class_metrics(y_true, y_pred, vocab)
            metrics["faces_turned"] = upright_counts[(a, m, t, o)][cond]
            report["conditions"][cond]["models"][col] = metrics
        if progress:
            print(f"  classified with {col} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    report["verdicts"] = rows
    if many:
        report["engine_agreement"] = engine_agreement(rows, engines)
    if flip_unless_sure == "both":
        report["flip_agreement"] = flip_agreement(rows)
    return report


def engine_agreement(rows: list[dict], engines: list[str]) -> dict:
    """Per model and condition, the share of photos each other engine labels as the first engine does."""
    first = f" [{engines[0]}]"
    labels = {(r["model"], r["condition"], r["photo"]): r["predicted"] for r in rows}
    out: dict = {}
    for (col, cond, photo), label in labels.items():
        if first not in col:
            continue
        base = col.replace(first, "")
        for e in engines[1:]:
            other = labels.get((col.replace(first, f" [{e}]"), cond, photo))
            if other is not None:
                agg = out.setdefault(f"{base}: {e} vs {engines[0]}", {}).setdefault(cond, [0, 0])
                agg[0] += int(other == label)
                agg[1] += 1
    return {pair: {cond: {"same_label": round(same / n, 4), "photos": n} for cond, (same, n) in conds.items()}
            for pair, conds in out.items()}


def flip_agreement(rows: list[dict]) -> dict:
    """Per model and condition, how often the mirror skipped where the plain pass is sure (``NAME sure-flip``)
    shows what the mirror on every crop shows: the same label, and the same "Not sure" or not."""
    seen = {(r["model"], r["condition"], r["photo"]): r for r in rows}
    out: dict = {}
    for (col, cond, photo), r in seen.items():
        if not col.endswith(" sure-flip"):
            continue
        full = seen.get((col[: -len(" sure-flip")], cond, photo))
        if full is None:
            continue
        agg = out.setdefault(col, {}).setdefault(cond, [0, 0, 0, 0.0])
        agg[0] += int(r["predicted"] == full["predicted"])
        agg[1] += int((r["confidence"] >= MIN_CONFIDENCE) == (full["confidence"] >= MIN_CONFIDENCE))
        agg[2] += 1
        agg[3] = max(agg[3], abs(r["confidence"] - full["confidence"]))
    return {col: {cond: {"same_label": round(a / n, 4), "same_not_sure": round(b / n, 4), "photos": n,
                         "largest_confidence_change": round(d, 4)} for cond, (a, b, n, d) in conds.items()}
            for col, conds in out.items()}


def table(report: dict) -> str:
    """Markdown: one row per condition, accuracy and each class's recall for each model."""
    names = list(report["models"])
    classes = next((list(m["per_class"]) for r in report["conditions"].values() for m in r["models"].values()), [])
    recalls = "/".join(f"{c} recall" for c in classes)
    head = ("| condition | photos | faces found | "
            + " | ".join(f"{n}: acc ({recalls})" for n in names) + " |")
    lines = [head, "|---|---:|---:|" + "---:|" * len(names)]
    for cond, r in report["conditions"].items():
        cells = []
        for n in names:
            m = r["models"].get(n)
            if m is None:
                cells.append("n/a (no photos)")
                continue
            rec = "/".join(f"{c['recall']:.1%}" if c["support"] else "n/a" for c in m["per_class"].values())
            turned = f", {m['faces_turned']} turned" if m.get("faces_turned") else ""
            cells.append(f"{m['accuracy']:.1%} ({rec}{turned})")
        found = f"{r['faces_found']:.0%}"
        if r.get("faces_found_turned", r["faces_found"]) != r["faces_found"]:
            found += f" ({r['faces_found_turned']:.0%} turned)"
        lines.append(f"| {cond} | {r['photos']} | {found} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a training folder (<label>/ subfolders); its validation split is used")
    ap.add_argument("--model", type=_spec, action="append", default=[], help="NAME=PATH of an export.pkl")
    ap.add_argument("--tta", type=_spec, action="append", default=[], help="NAME=PATH, judged with flip TTA")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    ap.add_argument("--detector", choices=["recommended", "mtcnn"], default="recommended")
    ap.add_argument("--conditions", nargs="+", default=None, metavar="GROUP_OR_NAME",
                    help=f"groups ({', '.join(GROUPS)}) or condition names; default: all. 'as is' is always judged")
    ap.add_argument("--align", choices=["card", "off", "on", "both"], default="card",
                    help="crop faces upright: as each card says, never, always, or both (each model twice)")
    ap.add_argument("--align-min-face", type=int, default=None,
                    help="the smallest face (px) aligned; default: the card's")
    ap.add_argument("--turned", choices=["card", "off", "on", "both"], default="card",
                    help="search photos without a face turned a quarter each way: as each card says, never, "
                         "always, or both (each model twice)")
    ap.add_argument("--orient", choices=["card", "off", "on", "both"], default="card",
                    help="check that a face found upright is not lying on its side: as each card says, never, "
                         "always, or both (each model twice)")
    ap.add_argument("--flip-unless-sure", choices=["card", "off", "on", "both"], default="card",
                    help="with flip TTA, mirror only crops whose plain pass is below FLIP_UNLESS_SURE: as each "
                         "card says, never skip, always, or both (each model twice)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--engines", nargs="+", default=["auto"], choices=["auto", "torch", "onnx", "int8"],
                    help="what runs each model (default auto: as served); several: each model on each, and how "
                         "often they agree per condition")
    ap.add_argument("--photos-csv", type=Path, default=None, metavar="FILE",
                    help="also write every photo's verdict under every condition, for each model (to look at "
                         "the mistakes one by one)")
    ap.add_argument("--detections", type=Path, default=None, metavar="FILE",
                    help="keep detected faces in this JSON file and reuse them on the next run (same detector)")
    a = ap.parse_args(argv)
    if not a.photos.is_dir():
        print(f"{a.photos} not found (../shared/data/train exists only beside the project's own checkout)",
              file=sys.stderr)
        return 2
    models = [(n, p, False) for n, p in a.model] + [(n, p, True) for n, p in a.tta]
    if not models:
        models = [("export.pkl", ROOT / "export.pkl", False)]
    conditions = None
    if a.conditions:
        conditions = []
        for c in a.conditions:
            if c in GROUPS:
                conditions += GROUPS[c]
            elif c in ORDER:
                conditions.append(c)
            else:
                print(f"unknown condition {c!r}; groups: {', '.join(GROUPS)}; names: {', '.join(ORDER)}",
                      file=sys.stderr)
                return 2
    report = run(a.photos, models, a.limit, a.detector, conditions=conditions, align=a.align,
                 align_min_face=a.align_min_face, turned=a.turned, detections=a.detections, engines=a.engines,
                 orient=a.orient, flip_unless_sure=a.flip_unless_sure)
    print(f"\n{report['photos']} validation photos from {a.photos}; faces found by {report['detector']}\n")
    print(table(report))
    for n in report["models"]:
        m = report["conditions"]["as is"]["models"][n]
        print(f"\n{n}, as is: " + ", ".join(f"recall {c} {v['recall']:.1%} (n={v['support']})"
                                              for c, v in m["per_class"].items())
              + f"; confusion (rows true) {m['confusion_matrix']['rows_true_cols_predicted']}")
    for pair, conds in report.get("engine_agreement", {}).items():
        worst = min(conds.items(), key=lambda kv: kv[1]["same_label"])
        same = sum(c["same_label"] * c["photos"] for c in conds.values())
        total = max(1, sum(c["photos"] for c in conds.values()))
        print(f"\n{pair}: the same label on {same / total:.2%} of all photos and conditions; lowest "
              f"{worst[1]['same_label']:.2%} ({worst[0]})")
    for col, conds in report.get("flip_agreement", {}).items():
        total = max(1, sum(c["photos"] for c in conds.values()))
        label = sum(c["same_label"] * c["photos"] for c in conds.values()) / total
        unsure = sum(c["same_not_sure"] * c["photos"] for c in conds.values()) / total
        worst = min(conds.items(), key=lambda kv: (kv[1]["same_label"], kv[1]["same_not_sure"]))
        print(f"\n{col} against the mirror on every crop: the same label on {label:.2%}, the same 'Not sure' on "
              f"{unsure:.2%} of all photos and conditions; lowest {worst[1]['same_label']:.2%} / "
              f"{worst[1]['same_not_sure']:.2%} ({worst[0]})")
    rows = report.pop("verdicts")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    if a.photos_csv:
        with a.photos_csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["photo"])
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
