"""Does the verdict depend on how the photo is framed?  Accuracy and flip rate, per pipeline.

On the validation photos of a training folder (the project's seeded split, so
never a photo the model trained on), each photo is classified as it is,
framed tight (cropped to its face plus 10%) and framed wide (padded with a
plain background to twice its size). A pipeline whose verdict flips between
these has learned the framing, not the mask.

    python benchmarks/framing.py ../shared/data/train --model export.pkl [--whole-model W.pkl] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfiemask.augment import framed_tight, framed_wide  # noqa: E402
from selfiemask.data import validation_items  # noqa: E402
from selfiemask.evaluate import class_metrics  # noqa: E402
from selfiemask.faces import FaceDetector  # noqa: E402
from selfiemask.images import load_image  # noqa: E402
from selfiemask.predict import Classifier  # noqa: E402


def variants(img, face_box):
    """As is, tight (face box plus 10%, when a face was found), wide (padded to twice the size)."""
    out = {"as_is": img, "wide": framed_wide(img)}
    if face_box:
        out["tight"] = framed_tight(img, face_box)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a training folder (<label>/ subfolders); its validation split is used")
    ap.add_argument("--model", type=Path, default=ROOT / "export.pkl", help="the face-crop model")
    ap.add_argument("--whole-model", type=Path, default=None, help="a model trained on whole photos, to compare")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    if not a.photos.is_dir():
        sys.exit(f"{a.photos} not found (../shared/data/train exists only beside the project's own checkout)")
    items = validation_items(a.photos)
    if a.limit:
        items = items[:: max(1, len(items) // a.limit)][: a.limit]
    clf = Classifier(a.model)
    vocab = clf.classes
    pipelines = {"face-crop model, on faces": clf,
                 "face-crop model, on whole photos": Classifier(a.model, detect_faces=False)}
    if a.whole_model:
        pipelines["whole-image model, on whole photos"] = Classifier(a.whole_model, detect_faces=False)
    detector = FaceDetector()
    truth, verdicts = [], {name: {"as_is": [], "tight": [], "wide": []} for name in pipelines}
    t0 = time.monotonic()
    for n, path in enumerate(items):
        img = load_image(path)
        faces = detector.detect(img)
        vs = variants(img, faces[0].box if faces else None)
        truth.append(vocab.index(path.parent.name))
        for name, c in pipelines.items():
            results = c.analyze_images(list(vs.values()))
            got = {k: vocab.index(r.main.label) for k, r in zip(vs, results)}
            for k in ("as_is", "tight", "wide"):
                verdicts[name][k].append(got.get(k, -1))
        if n % 50 == 0:
            print(f"  {n}/{len(items)} photos, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    report = {"photos": len(items), "source": str(a.photos), "model": str(a.model), "pipelines": {}}
    print(f"\n{len(items)} validation photos from {a.photos}\n")
    print(f"{'pipeline':38s} {'acc as is':>9s} {'recall ' + vocab[0]:>18s} {'recall ' + vocab[1]:>20s} "
          f"{'acc tight':>9s} {'acc wide':>9s} {'flip rate':>9s}")
    for name, v in verdicts.items():
        base = class_metrics(truth, v["as_is"], vocab)
        has_face = [i for i, x in enumerate(v["tight"]) if x != -1]
        acc = {k: float(np.mean([v[k][i] == truth[i] for i in (has_face if k == "tight" else range(len(truth)))]))
               for k in ("tight", "wide")}
        flips = [i for i in range(len(truth)) if v["wide"][i] != v["as_is"][i]
                 or (v["tight"][i] != -1 and v["tight"][i] != v["as_is"][i])]
        flip = len(flips) / len(truth)
        report["pipelines"][name] = {"as_is": base, "accuracy_tight": acc["tight"], "accuracy_wide": acc["wide"],
                                     "flip_rate": flip, "photos_with_face": len(has_face)}
        r = [base["per_class"][c]["recall"] for c in vocab[:2]]
        print(f"{name:38s} {base['accuracy']:9.2%} {r[0]:18.2%} {r[1]:20.2%} {acc['tight']:9.2%} "
              f"{acc['wide']:9.2%} {flip:9.2%}")
    print(f"\n(tight: {len(has_face)} photos with a face found; {time.monotonic() - t0:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
