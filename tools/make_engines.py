"""Write the ONNX graphs of an already exported model and record their agreement in its card.

What ``selfiemask train`` does at export, for a model that was exported before
there were graphs (the shipped one): face-crop the photos it needs with the
detector settings of its card, calibrate the int8 graph on the crops of
``--calibration`` training photos (half per class, the flip included), and
measure both graphs against the learner on the validation photos of the seeded
split the card used. ``export.pkl`` and its ``export_sha256`` are not touched.

    python tools/make_engines.py ../shared/data/train --model export.pkl --crops /tmp/engine-crops
    python tools/make_engines.py ../shared/data/train --stage crops   # only the face-crop pass (resumable)
    python tools/make_engines.py ../shared/data/train --stage stress --detections models/bench/detections.json

``--stage stress`` judges every validation photo under every stress condition of ``benchmarks/conditions.py``
with the learner (torch) and with the int8 graph, as the model is served, and records in the card, per
condition, the share of photos the graph labels as the learner does (``engines.int8.stress_agreement``).

The crops go to ``--crops`` (keep it outside the repository: they are crops of third-party photos).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def subset(data: Path, n_calibration: int, classes: list[str]) -> tuple[list[Path], list[Path]]:
    """(calibration photos: evenly spaced training photos, half per class; validation photos of the split)."""
    from selfiemask.data import is_valid_item
    from selfiemask.images import list_labelled_images

    calibration, validation = [], []
    for c in classes:
        photos = list_labelled_images(data, [c])
        validation += [p for p in photos if is_valid_item(p)]
        train = [p for p in photos if not is_valid_item(p)]
        k = max(1, n_calibration // len(classes))
        calibration += train[:: max(1, len(train) // k)][:k]
    return calibration, validation


def link_tree(photos: list[Path], data: Path, dest: Path) -> None:
    """``dest/<label>/<name>`` symlinks to the photos: the crop pass runs over these and nothing else."""
    for p in photos:
        link = dest / p.relative_to(data)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(p.resolve())


def stress_agreement(data: Path, model: Path, detections: Path | None) -> None:
    """The int8 graph against the learner on every stress condition, recorded in the card."""
    import importlib.util

    from selfiemask.card import read_card, verify_model, write_card

    verify_model(model)
    spec = importlib.util.spec_from_file_location("conditions_benchmark", ROOT / "benchmarks" / "conditions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    start = time.perf_counter()
    report = bench.run(data, [("model", model, False)], detections=detections, engines=["torch", "int8"])
    conditions = report["engine_agreement"]["model: int8 vs torch"]
    same = sum(c["same_label"] * c["photos"] for c in conditions.values())
    total = sum(c["photos"] for c in conditions.values())
    # A condition no photo reached (e.g. 'framed tight' where no face was found) has no figures.
    accuracy = {col: {cond: {"accuracy": r["models"][col]["accuracy"],
                             "recall": {c: v["recall"] for c, v in r["models"][col]["per_class"].items()
                                        if v["support"]}}
                      for cond, r in report["conditions"].items() if col in r["models"]}
                for col in ("model [torch]", "model [int8]")}
    card = read_card(model)
    if "int8" not in card.get("engines", {}):
        raise SystemExit(f"{model}'s card records no int8 graph: write it first (--stage engines)")
    card["engines"]["int8"]["stress_agreement"] = {
        "command": "python tools/make_engines.py ../shared/data/train --stage stress",
        "photos": report["photos"], "same_label": round(same / total, 4),
        "conditions": conditions,
        "accuracy": {"learner": accuracy["model [torch]"], "graph": accuracy["model [int8]"]}}
    write_card(model, card)
    worst = min(conditions.items(), key=lambda kv: kv[1]["same_label"])
    print(f"int8 against the learner, {report['photos']} photos x {len(conditions)} conditions: the same label on "
          f"{same / total:.2%}; lowest {worst[1]['same_label']:.2%} ({worst[0]}); {time.perf_counter() - start:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the labelled photos the model was trained on (data/<label>/)")
    ap.add_argument("--model", type=Path, default=ROOT / "export.pkl")
    ap.add_argument("--calibration", type=int, default=200, help="training photos to calibrate on (default 200)")
    ap.add_argument("--stage", choices=["crops", "engines", "all", "stress"], default="all")
    ap.add_argument("--detections", type=Path, default=None,
                    help="--stage stress: the benchmark's kept detections (benchmarks/conditions.py --detections)")
    ap.add_argument("--crops", type=Path, default=None,
                    help="work folder for links and crops (outside the repo; not needed by --stage stress)")
    args = ap.parse_args()
    if args.stage == "stress":
        stress_agreement(args.data, args.model, args.detections)
        return
    if args.crops is None:
        ap.error("--crops is needed to write the graphs")

    from selfiemask.card import read_card, verify_model, write_card
    from selfiemask.crops import CropSettings, crop_folder, served_aligned

    card = verify_model(args.model)
    classes = card["classes"]
    calibration, validation = subset(args.data, args.calibration, classes)
    print(f"{len(calibration)} calibration photos, {len(validation)} validation photos "
          f"(the card says {card.get('validation', {}).get('n', '?')})")
    # The crops as the model is served them: its detector, margin, and faces upright or not (served_aligned).
    align, min_face = served_aligned(card)
    settings = replace(CropSettings.from_dict(card.get("detector")), align=align, align_min_face=min_face)
    out = {}
    for name, photos in (("calibration", calibration), ("validation", validation)):
        src, dest = args.crops / "photos" / name, args.crops / "crops" / name
        out[name] = dest
        if args.stage in ("crops", "all"):
            link_tree(photos, args.data, src)
            start = time.perf_counter()
            summary = crop_folder(src, dest, classes, settings, progress=False)
            print(f"{name}: {summary} in {time.perf_counter() - start:.0f} s")
    if args.stage == "crops":
        return

    from selfiemask.engines import write_engines
    from selfiemask.images import list_labelled_images
    from selfiemask.safe_load import load_learner_safely

    learn = load_learner_safely(args.model)
    cal = list_labelled_images(out["calibration"], classes)
    val = [(p, p.parent.name) for p in list_labelled_images(out["validation"], classes)]
    start = time.perf_counter()
    fields = write_engines(learn, args.model, cal, val, tta=card.get("inference", {}).get("tta") == "flip")
    fields["command"] = ("python tools/make_engines.py ../shared/data/train --crops DIR "
                         f"(calibration: {len(cal)} training photos' face crops)")
    print(f"graphs written and measured in {time.perf_counter() - start:.0f} s")
    card = read_card(args.model)  # re-read: unchanged but for the new field
    card["engines"] = fields
    write_card(args.model, card)
    for name in ("onnx", "int8"):
        f = fields.get(name)
        if f:
            a = f["agreement"]
            print(f"{name}: {f['file']} {f['bytes'] / 1e6:.1f} MB, same label {a['same_label']:.2%} of "
                  f"{a['photos']}, max prob diff {a['max_prob_diff']}, per class {a['accuracy_per_class']}, "
                  f"passes {f['passes']} {f.get('why_not', '')}")


if __name__ == "__main__":
    main()
