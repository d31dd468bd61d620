"""Write the ONNX graphs of an already exported model and record their agreement in its card.

What ``selfiemask train`` does at export, for a model that was exported before
there were graphs (the shipped one): face-crop the photos it needs with the
detector settings of its card, calibrate the int8 graph on the crops of
``--calibration`` training photos (half per class, the flip included), and
measure both graphs against the learner on the validation photos of the seeded
split the card used. ``export.pkl`` and its ``export_sha256`` are not touched.

    python tools/make_engines.py ../shared/data/train --model export.pkl --crops /tmp/engine-crops
    python tools/make_engines.py ../shared/data/train --stage crops   # only the face-crop pass (resumable)

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the labelled photos the model was trained on (data/<label>/)")
    ap.add_argument("--model", type=Path, default=ROOT / "export.pkl")
    ap.add_argument("--crops", type=Path, required=True, help="work folder for links and crops (outside the repo)")
    ap.add_argument("--calibration", type=int, default=200, help="training photos to calibrate on (default 200)")
    ap.add_argument("--stage", choices=["crops", "engines", "all"], default="all")
    args = ap.parse_args()

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
